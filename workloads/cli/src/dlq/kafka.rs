//! The DLQ topic read from start to end, or at one offset (without a
//! consumer group: the tool never commits, so it neither moves nor competes
//! with anyone), and replays produced with the original key.

use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// A message of the DLQ topic.
#[derive(Debug, Clone)]
pub struct Message {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("Kafka at {bootstrap}: {message}")]
    Unreachable { bootstrap: String, message: String },
    #[error("topic {topic} does not exist at {bootstrap}")]
    NoTopic { topic: String, bootstrap: String },
    #[error("reading {topic}: {message}")]
    Read { topic: String, message: String },
    #[error("replaying to {topic}: {message}")]
    Produce { topic: String, message: String },
}

/// The reader's context: reaching a partition's end is how the read knows
/// it is done, not an error to log.
struct Reader;

impl ClientContext for Reader {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        use rdkafka::error::{KafkaError, RDKafkaErrorCode};
        let end = matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        );
        if !end {
            tracing::warn!(%error, reason, "Kafka client error");
        }
    }
}

impl ConsumerContext for Reader {}

/// A reader of `topic` that does not commit and reports partition ends;
/// an offset outside a partition is an error, not a jump elsewhere.
struct TopicReader<'a> {
    consumer: BaseConsumer<Reader>,
    bootstrap: &'a str,
    topic: &'a str,
}

impl<'a> TopicReader<'a> {
    fn new(bootstrap: &'a str, topic: &'a str) -> Result<Self, KafkaError> {
        let consumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("auto.offset.reset", "error")
            .set("group.id", "tributary-dlq-tool")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .create_with_context(Reader)
            .map_err(|e| unreachable(bootstrap, e))?;
        Ok(Self {
            consumer,
            bootstrap,
            topic,
        })
    }

    /// The topic's partitions; an error naming it when it does not exist.
    fn partitions(&self, timeout: Duration) -> Result<Vec<i32>, KafkaError> {
        let metadata = self
            .consumer
            .fetch_metadata(None, timeout)
            .map_err(|e| unreachable(self.bootstrap, e))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .find(|t| t.name() == self.topic && t.error().is_none())
            .map(|t| t.partitions().iter().map(|p| p.id()).collect())
            .unwrap_or_default();
        if partitions.is_empty() {
            return Err(KafkaError::NoTopic {
                topic: self.topic.to_owned(),
                bootstrap: self.bootstrap.to_owned(),
            });
        }
        Ok(partitions)
    }

    /// Reads `partitions` from `offset` on.
    fn assign(&self, partitions: &[i32], offset: Offset) -> Result<(), KafkaError> {
        let mut assignment = TopicPartitionList::new();
        for &p in partitions {
            assignment
                .add_partition_offset(self.topic, p, offset)
                .map_err(|e| unreachable(self.bootstrap, e))?;
        }
        self.consumer
            .assign(&assignment)
            .map_err(|e| unreachable(self.bootstrap, e))
    }

    fn failed(&self, message: String) -> KafkaError {
        KafkaError::Read {
            topic: self.topic.to_owned(),
            message,
        }
    }
}

fn unreachable(bootstrap: &str, e: rdkafka::error::KafkaError) -> KafkaError {
    KafkaError::Unreachable {
        bootstrap: bootstrap.to_owned(),
        message: e.to_string(),
    }
}

impl Message {
    fn owned(m: &BorrowedMessage<'_>) -> Self {
        Self {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().unwrap_or_default().to_vec(),
        }
    }
}

/// Runs the blocking `read` of `topic` off the async threads.
async fn blocking<T: Send + 'static>(
    topic: &str,
    read: impl FnOnce() -> Result<T, KafkaError> + Send + 'static,
) -> Result<T, KafkaError> {
    tokio::task::spawn_blocking(read)
        .await
        .map_err(|e| KafkaError::Read {
            topic: topic.to_owned(),
            message: e.to_string(),
        })?
}

/// The message at `partition:offset` of `topic`, read directly (`None`
/// when there is none: past the end, or removed by retention).
pub async fn read_at(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    offset: i64,
    timeout: Duration,
) -> Result<Option<Message>, KafkaError> {
    let (b, t) = (bootstrap.to_owned(), topic.to_owned());
    blocking(topic, move || {
        read_at_blocking(&b, &t, partition, offset, timeout)
    })
    .await
}

fn read_at_blocking(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    offset: i64,
    timeout: Duration,
) -> Result<Option<Message>, KafkaError> {
    let reader = TopicReader::new(bootstrap, topic)?;
    if !reader.partitions(timeout)?.contains(&partition) {
        return Ok(None);
    }
    reader.assign(&[partition], Offset::Offset(offset))?;
    // The broker answered the metadata request, so a fetch that brings
    // nothing for a while is an offset past the end (some brokers report
    // that as out of range, some return nothing).
    let deadline = Instant::now() + timeout.min(Duration::from_secs(5));
    while Instant::now() < deadline {
        match reader.consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => return Ok(None),
            Some(Err(rdkafka::error::KafkaError::MessageConsumption(
                RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange,
            ))) => return Ok(None),
            Some(Err(e)) => return Err(reader.failed(e.to_string())),
            Some(Ok(m)) => return Ok((m.offset() == offset).then(|| Message::owned(&m))),
        }
    }
    Ok(None)
}

/// Every message of `topic` present when the read began, in partition and
/// offset order.
pub async fn read_all(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<Message>, KafkaError> {
    let (b, t) = (bootstrap.to_owned(), topic.to_owned());
    blocking(topic, move || read_blocking(&b, &t, timeout)).await
}

fn read_blocking(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<Message>, KafkaError> {
    let reader = TopicReader::new(bootstrap, topic)?;
    let partitions = reader.partitions(timeout)?;
    // Read each partition from its start until the broker says it is at
    // the end (end-of-partition events; watermarks listed separately can
    // lag behind what a fetch sees).
    reader.assign(&partitions, Offset::Beginning)?;
    let mut pending: std::collections::BTreeSet<i32> = partitions.into_iter().collect();
    let mut messages = Vec::new();
    // However large the topic, the read fails only when it stops making
    // progress for `timeout`.
    let mut progress = Instant::now();
    while !pending.is_empty() {
        if progress.elapsed() >= timeout {
            return Err(reader.failed(format!(
                "partitions {pending:?} gave nothing and did not report their end for {timeout:?}"
            )));
        }
        let polled = reader.consumer.poll(Duration::from_millis(200));
        if polled.is_some() {
            progress = Instant::now();
        }
        match polled {
            None => {}
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                pending.remove(&p);
            }
            Some(Err(e)) => return Err(reader.failed(e.to_string())),
            Some(Ok(m)) => messages.push(Message::owned(&m)),
        }
    }
    messages.sort_by_key(|m| (m.partition, m.offset));
    Ok(messages)
}

/// A message to produce.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
}

/// Produces each record and waits for every acknowledgement.
pub async fn produce(
    bootstrap: &str,
    records: &[Outgoing],
    timeout: Duration,
) -> Result<(), KafkaError> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("message.timeout.ms", timeout.as_millis().to_string())
        .create()
        .map_err(|e| unreachable(bootstrap, e))?;
    let sends = records.iter().map(|Outgoing { topic, key, value }| {
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(value.as_slice());
        if let Some(key) = key {
            record = record.key(key.as_slice());
        }
        let producer = &producer;
        async move {
            producer
                .send(record, timeout)
                .await
                .map(|_| ())
                .map_err(|(e, _)| KafkaError::Produce {
                    topic: topic.clone(),
                    message: e.to_string(),
                })
        }
    });
    futures::future::try_join_all(sends).await.map(|_| ())
}
