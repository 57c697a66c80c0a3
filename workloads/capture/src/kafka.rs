//! The Kafka sink: an idempotent `acks=all` producer, and the broker check
//! behind `/ready`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use futures::future::join_all;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use tokio_util::sync::CancellationToken;

use crate::config::KafkaSettings;
use crate::metrics::{CaptureMetrics, ReasonLabels};
pub use crate::sink::{ProduceError, Record};
use crate::sink::{Readiness, SendFuture, Sink, WatchFuture};

/// The readiness reason before the first check.
const NOT_CHECKED: &str = "not checked yet";

/// Could not create the producer (bad settings).
#[derive(Debug, thiserror::Error)]
#[error("cannot create the Kafka producer for {servers}: {source}")]
pub struct ProducerSetupError {
    servers: String,
    #[source]
    source: KafkaError,
}

/// Consecutive requests whose events timed out, while the brokers answer
/// metadata, after which the producer is replaced (see [`EventProducer`]).
const STUCK_AFTER_TIMEOUTS: u64 = 2;

/// Produces events to the topic and tracks whether the brokers answer.
///
/// The librdkafka producer is replaced by a fresh one when it reports a fatal
/// error, or when requests keep timing out although the brokers answer: an
/// idempotent producer whose broker lost its producer state (a broker
/// restarted without its log) can otherwise wait forever for a producer id.
/// Messages still queued in the old producer fail, so their requests get 503
/// and clients retry; nothing is acknowledged that was not written.
#[derive(Clone)]
pub struct EventProducer(Arc<Inner>);

/// What every clone of an [`EventProducer`] shares.
struct Inner {
    current: RwLock<FutureProducer>,
    /// Counts replacements: a request replaces only the producer it used.
    generation: AtomicU64,
    config: ClientConfig,
    topic: String,
    produce_timeout: Duration,
    ready_interval: Duration,
    max_message_bytes: usize,
    /// Requests in a row whose events timed out.
    timed_out_requests: AtomicU64,
    ready: AtomicBool,
    /// The last broker check's error (with addresses: for logs only).
    last_error: Mutex<String>,
    metrics: CaptureMetrics,
}

/// What became of one produced message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Delivery {
    Acknowledged,
    /// The broker refused it as larger than a message may be.
    TooLarge,
    /// Not acknowledged within `message.timeout.ms`.
    TimedOut(String),
    /// The broker no longer takes this producer's id or epoch (after
    /// timeouts made librdkafka bump its epoch, or the broker lost its
    /// producer state): every later message fails alike until the
    /// producer is replaced.
    Fenced(String),
    Failed(String),
}

impl Delivery {
    fn of<A, C>(result: Result<Result<A, (KafkaError, OwnedMessage)>, C>) -> Self {
        match result {
            Ok(Ok(_)) => Self::Acknowledged,
            Ok(Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _))) => {
                Self::TooLarge
            }
            Ok(Err((e @ KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut), _))) => {
                Self::TimedOut(e.to_string())
            }
            Ok(Err((
                e @ KafkaError::MessageProduction(
                    RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::InvalidProducerEpoch
                    | RDKafkaErrorCode::UnknownProducerId
                    | RDKafkaErrorCode::InvalidProducerIdMapping
                    | RDKafkaErrorCode::OutOfOrderSequenceNumber,
                ),
                _,
            ))) => Self::Fenced(e.to_string()),
            Ok(Err((e, _))) => Self::Failed(e.to_string()),
            Err(_canceled) => Self::Failed("producer shut down".to_owned()),
        }
    }
}

/// A request's deliveries summed up.
#[derive(Debug, PartialEq, Eq)]
struct Tally {
    acknowledged: usize,
    failed: usize,
    timed_out: bool,
    /// The broker refused the producer itself (see [`Delivery::Fenced`]).
    fenced: bool,
    /// The first message the broker refused as too large.
    too_large: Option<usize>,
    first_reason: Option<String>,
}

impl Tally {
    fn of(deliveries: &[Delivery]) -> Self {
        let mut tally = Self {
            acknowledged: 0,
            failed: 0,
            timed_out: false,
            fenced: false,
            too_large: None,
            first_reason: None,
        };
        for (index, delivery) in deliveries.iter().enumerate() {
            match delivery {
                Delivery::Acknowledged => tally.acknowledged += 1,
                Delivery::TooLarge => {
                    tally.too_large.get_or_insert(index);
                }
                Delivery::TimedOut(reason)
                | Delivery::Fenced(reason)
                | Delivery::Failed(reason) => {
                    tally.failed += 1;
                    tally.timed_out |= matches!(delivery, Delivery::TimedOut(_));
                    tally.fenced |= matches!(delivery, Delivery::Fenced(_));
                    tally.first_reason.get_or_insert_with(|| reason.clone());
                }
            }
        }
        tally
    }
}

impl EventProducer {
    pub fn new(
        settings: &KafkaSettings,
        metrics: CaptureMetrics,
    ) -> Result<Self, ProducerSetupError> {
        let timeout_ms = settings.produce_timeout.as_millis().to_string();
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &settings.bootstrap_servers)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", &timeout_ms)
            .set("linger.ms", settings.linger.as_millis().to_string())
            .set("compression.type", &settings.compression)
            .set(
                "queue.buffering.max.messages",
                settings.queue_messages.to_string(),
            )
            .set(
                "queue.buffering.max.kbytes",
                (settings.queue_bytes / 1024).max(1).to_string(),
            )
            // Room for one maximal event plus the record overhead.
            .set(
                "message.max.bytes",
                (settings.max_message_bytes + 64 * 1024).to_string(),
            )
            // The same key must map to the same partition as in every other
            // Kafka client (Java's murmur2), so consumers and tools agree.
            .set("partitioner", "murmur2_random")
            .set("client.id", "tributary-capture");
        let producer: FutureProducer = config.create().map_err(|source| ProducerSetupError {
            servers: settings.bootstrap_servers.clone(),
            source,
        })?;
        Ok(Self(Arc::new(Inner {
            current: RwLock::new(producer),
            generation: AtomicU64::new(0),
            config,
            topic: settings.topic.clone(),
            produce_timeout: settings.produce_timeout,
            ready_interval: settings.ready_interval,
            max_message_bytes: settings.max_message_bytes,
            timed_out_requests: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            last_error: Mutex::new(NOT_CHECKED.to_owned()),
            metrics,
        })))
    }

    fn producer(&self) -> FutureProducer {
        self.current().0
    }

    /// The producer in use and its generation.
    fn current(&self) -> (FutureProducer, u64) {
        let producer = self
            .0
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        (producer.clone(), self.0.generation.load(Ordering::SeqCst))
    }

    fn last_error(&self) -> String {
        self.0
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the librdkafka producer with a fresh one; with `used`,
    /// only if that generation is still the one in use (requests failing
    /// together replace it once).
    fn replace_producer(&self, why: &str, used: Option<u64>) {
        match self.0.config.create::<FutureProducer>() {
            Ok(fresh) => {
                let mut current = self
                    .0
                    .current
                    .write()
                    .unwrap_or_else(PoisonError::into_inner);
                if used.is_some_and(|g| g != self.0.generation.load(Ordering::SeqCst)) {
                    return;
                }
                *current = fresh;
                self.0.generation.fetch_add(1, Ordering::SeqCst);
                drop(current);
                self.0.timed_out_requests.store(0, Ordering::Relaxed);
                self.0.metrics.producer_replacements.inc();
                tracing::warn!(reason = why, "Kafka producer replaced");
            }
            Err(e) => {
                tracing::error!(error = %e, reason = why, "could not create a replacement Kafka producer")
            }
        }
    }

    /// True while the last broker check succeeded.
    pub fn is_ready(&self) -> bool {
        self.0.ready.load(Ordering::Relaxed)
    }

    /// Produces every record and waits until Kafka has acknowledged all of
    /// them (or the produce timeout has passed). Every record of the request
    /// was made before: an oversized event refuses the request before
    /// anything of it is produced.
    pub async fn send_all(&self, records: &[Record]) -> Result<(), ProduceError> {
        if !self.is_ready() {
            self.count_errors("kafka_not_ready", records.len());
            return Err(ProduceError::NotReady(self.last_error()));
        }
        let started = Instant::now();
        let (producer, generation) = self.current();
        let deliveries = self.enqueue(&producer, records)?;
        let deliveries = self.acknowledgements(deliveries).await;
        self.0
            .metrics
            .produce_duration
            .observe(started.elapsed().as_secs_f64());
        let Some(deliveries) = deliveries else {
            self.count_errors("timeout", records.len());
            return Err(ProduceError::NotAcknowledged {
                failed: records.len(),
                total: records.len(),
                reason: "no acknowledgement within the produce timeout".into(),
            });
        };
        let tally = Tally::of(&deliveries);
        if tally.fenced {
            // Waiting for the broker check would refuse every request until
            // then: replace it now.
            self.replace_producer(
                "the broker refused the producer's id or epoch",
                Some(generation),
            );
        }
        self.settle(records, &tally)
    }

    /// Hands every record to librdkafka. A full queue refuses the request
    /// (503): events already queued will still be delivered, and the
    /// client's retry gives its events the same uuids again (see
    /// `normalize::derived_uuid`), so readers never show the repeats.
    fn enqueue(
        &self,
        producer: &FutureProducer,
        records: &[Record],
    ) -> Result<Vec<DeliveryFuture>, ProduceError> {
        let mut deliveries = Vec::with_capacity(records.len());
        for r in records {
            let record = FutureRecord::to(&self.0.topic)
                .key(r.key.as_slice())
                .payload(&r.payload);
            match producer.send_result(record) {
                Ok(delivery) => deliveries.push(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    self.count_errors("queue_full", records.len());
                    return Err(ProduceError::QueueFull);
                }
                Err((e, _)) => {
                    self.count_errors("enqueue", records.len());
                    return Err(ProduceError::NotAcknowledged {
                        failed: records.len(),
                        total: records.len(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        Ok(deliveries)
    }

    /// What became of each message; `None` if the answers did not come.
    /// librdkafka fails each message after `message.timeout.ms`; the outer
    /// timeout only guards against a lost callback.
    async fn acknowledgements(&self, deliveries: Vec<DeliveryFuture>) -> Option<Vec<Delivery>> {
        let results = tokio::time::timeout(
            self.0.produce_timeout + Duration::from_secs(5),
            join_all(deliveries),
        )
        .await
        .ok()?;
        Some(results.into_iter().map(Delivery::of).collect())
    }

    /// Counts a request's deliveries, notes whether the producer seems
    /// stuck, and answers for the request.
    fn settle(&self, records: &[Record], tally: &Tally) -> Result<(), ProduceError> {
        if let Some(index) = tally.too_large {
            self.count_errors("too_large", 1);
            return Err(ProduceError::TooLarge {
                index,
                size: records.get(index).map_or(0, |r| r.payload.len()),
                limit: self.0.max_message_bytes,
            });
        }
        self.0.metrics.produced.inc_by(tally.acknowledged as u64);
        if tally.timed_out {
            self.0.timed_out_requests.fetch_add(1, Ordering::Relaxed);
        } else if tally.failed == 0 {
            self.0.timed_out_requests.store(0, Ordering::Relaxed);
        }
        if tally.failed > 0 {
            self.count_errors("not_acknowledged", tally.failed);
            return Err(ProduceError::NotAcknowledged {
                failed: tally.failed,
                total: records.len(),
                reason: tally.first_reason.clone().unwrap_or_default(),
            });
        }
        Ok(())
    }

    fn count_errors(&self, reason: &str, n: usize) {
        self.0
            .metrics
            .produce_errors
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc_by(n as u64);
    }

    /// One broker check: the brokers answer a metadata request and the topic
    /// exists with at least one partition.
    async fn check_once(&self, timeout: Duration) -> Result<(), String> {
        let producer = self.producer();
        let topic = self.0.topic.clone();
        let checked = tokio::task::spawn_blocking(move || {
            let metadata = producer
                .client()
                .fetch_metadata(Some(&topic), timeout)
                .map_err(|e| format!("brokers did not answer: {e}"))?;
            match metadata.topics().iter().find(|t| t.name() == topic) {
                Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(()),
                Some(t) => Err(match t.error() {
                    Some(code) => format!("topic {topic}: {:?}", RDKafkaErrorCode::from(code)),
                    None => format!("topic {topic} has no partitions"),
                }),
                None => Err(format!("topic {topic} does not exist")),
            }
        })
        .await;
        checked.unwrap_or_else(|e| Err(format!("broker check failed: {e}")))
    }

    /// Checks the brokers every `ready_interval` until `shutdown`, updating
    /// readiness, the `capture_kafka_ready` gauge, and logging changes.
    pub async fn watch_brokers(self, shutdown: CancellationToken) {
        let interval = self.0.ready_interval;
        let timeout = interval.clamp(Duration::from_millis(500), Duration::from_secs(5));
        loop {
            let result = self.check_once(timeout).await;
            if let Some((code, reason)) = self.producer().client().fatal_error() {
                self.replace_producer(&format!("fatal error {code:?}: {reason}"), None);
            } else if result.is_ok()
                && self.0.timed_out_requests.load(Ordering::Relaxed) >= STUCK_AFTER_TIMEOUTS
            {
                self.replace_producer("requests time out although the brokers answer", None);
            }
            let was_ready = self.0.ready.swap(result.is_ok(), Ordering::Relaxed);
            self.0.metrics.kafka_ready.set(i64::from(result.is_ok()));
            match result {
                Ok(()) if !was_ready => {
                    tracing::info!(topic = %self.0.topic, "Kafka reachable; ready")
                }
                Ok(()) => {}
                Err(e) => {
                    if was_ready {
                        tracing::warn!(error = %e, topic = %self.0.topic, "Kafka unreachable; not ready");
                    }
                    *self
                        .0
                        .last_error
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = e;
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}

/// What `/ready` says of a broker check's error: what is wrong, without
/// the brokers' addresses or the client's words.
fn summary(last_error: &str) -> &'static str {
    if last_error.contains("does not exist") || last_error.contains("no partitions") {
        "the topic does not exist"
    } else if last_error.starts_with("topic ") {
        "the topic is not available"
    } else if last_error == NOT_CHECKED {
        "not checked yet"
    } else {
        "the brokers do not answer"
    }
}

impl Sink for EventProducer {
    fn send<'a>(&'a self, records: &'a [Record]) -> SendFuture<'a> {
        Box::pin(self.send_all(records))
    }

    fn readiness(&self) -> Readiness {
        if self.is_ready() {
            Readiness::Ready
        } else {
            Readiness::NotReady(summary(&self.last_error()))
        }
    }

    fn queued(&self) -> Option<usize> {
        usize::try_from(self.producer().in_flight_count()).ok()
    }

    fn watch(self: Arc<Self>, shutdown: CancellationToken) -> WatchFuture {
        Box::pin(EventProducer::clone(&self).watch_brokers(shutdown))
    }

    /// Waits (bounded) for queued messages to be delivered.
    fn flush(&self, timeout: Duration) -> Result<(), String> {
        self.producer().flush(timeout).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_counts_failures_and_remembers_the_first_reason() {
        let tally = Tally::of(&[
            Delivery::Acknowledged,
            Delivery::Failed("broker gone".into()),
            Delivery::TimedOut("timed out".into()),
            Delivery::Acknowledged,
        ]);
        assert_eq!(
            tally,
            Tally {
                acknowledged: 2,
                failed: 2,
                timed_out: true,
                fenced: false,
                too_large: None,
                first_reason: Some("broker gone".into()),
            }
        );
    }

    #[test]
    fn a_fenced_producer_is_told_apart() {
        let tally = Tally::of(&[
            Delivery::Fenced("ProducerFenced".into()),
            Delivery::Acknowledged,
        ]);
        assert!(tally.fenced);
        assert_eq!(tally.failed, 1);
        assert!(!Tally::of(&[Delivery::Failed("x".into())]).fenced);
    }

    #[test]
    fn a_tally_names_the_first_message_too_large() {
        let tally = Tally::of(&[
            Delivery::Acknowledged,
            Delivery::TooLarge,
            Delivery::TooLarge,
        ]);
        assert_eq!(tally.too_large, Some(1));
        assert_eq!(tally.failed, 0);
        assert!(!tally.timed_out);
    }

    #[test]
    fn ready_summaries_name_no_address() {
        assert_eq!(summary(NOT_CHECKED), "not checked yet");
        assert_eq!(
            summary("topic events does not exist"),
            "the topic does not exist"
        );
        assert_eq!(
            summary("topic events: LeaderNotAvailable"),
            "the topic is not available"
        );
        assert_eq!(
            summary("brokers did not answer: 10.0.0.7:9092 refused"),
            "the brokers do not answer"
        );
    }
}
