//! The Kafka side of capture: an idempotent `acks=all` producer, and the
//! broker check behind `/ready`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::future::join_all;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;
use tributary_core::Event;

use crate::config::KafkaSettings;
use crate::metrics::{CaptureMetrics, ReasonLabels};

/// Why a request's events were not all acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProduceError {
    #[error("Kafka is unavailable: {0}")]
    NotReady(String),
    #[error("the producer queue is full; retry shortly")]
    QueueFull,
    #[error("{failed} of {total} events were not acknowledged by Kafka: {reason}")]
    NotAcknowledged {
        failed: usize,
        total: usize,
        reason: String,
    },
    #[error("event could not be serialised: {0}")]
    Serialize(String),
    #[error(
        "event {index} is {size} bytes once serialised; the limit is {limit} bytes (CAPTURE_KAFKA_MAX_MESSAGE_BYTES)"
    )]
    TooLarge {
        index: usize,
        size: usize,
        limit: usize,
    },
}

impl ProduceError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotReady(_) => "kafka_not_ready",
            Self::QueueFull => "queue_full",
            Self::NotAcknowledged { .. } => "not_acknowledged",
            Self::Serialize(_) => "serialize",
            Self::TooLarge { .. } => "too_large",
        }
    }
}

/// One event as Kafka gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
}

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
pub struct EventProducer {
    current: Arc<std::sync::RwLock<FutureProducer>>,
    config: ClientConfig,
    topic: Arc<str>,
    produce_timeout: Duration,
    max_message_bytes: usize,
    timed_out_requests: Arc<AtomicU64>,
    ready: Arc<AtomicBool>,
    last_error: Arc<RwLock<String>>,
    metrics: CaptureMetrics,
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
        Ok(Self {
            current: Arc::new(std::sync::RwLock::new(producer)),
            config,
            topic: Arc::from(settings.topic.as_str()),
            produce_timeout: settings.produce_timeout,
            max_message_bytes: settings.max_message_bytes,
            timed_out_requests: Arc::new(AtomicU64::new(0)),
            ready: Arc::new(AtomicBool::new(false)),
            last_error: Arc::new(RwLock::new(NOT_CHECKED.to_owned())),
            metrics,
        })
    }

    fn producer(&self) -> FutureProducer {
        match self.current.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the librdkafka producer with a fresh one.
    fn replace_producer(&self, why: &str) {
        match self.config.create::<FutureProducer>() {
            Ok(fresh) => {
                match self.current.write() {
                    Ok(mut p) => *p = fresh,
                    Err(poisoned) => *poisoned.into_inner() = fresh,
                }
                self.timed_out_requests.store(0, Ordering::Relaxed);
                self.metrics.producer_replacements.inc();
                tracing::warn!(reason = why, "Kafka producer replaced");
            }
            Err(e) => {
                tracing::error!(error = %e, reason = why, "could not create a replacement Kafka producer")
            }
        }
    }

    /// True while the last broker check succeeded.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Why the producer is not ready (the last check's error), for logs.
    pub async fn not_ready_reason(&self) -> String {
        self.last_error.read().await.clone()
    }

    /// Why the producer is not ready, for anyone who asks (`/ready`): what
    /// is wrong, without the brokers' addresses or the client's words.
    pub async fn not_ready_summary(&self) -> &'static str {
        let reason = self.last_error.read().await;
        if reason.contains("does not exist") || reason.contains("no partitions") {
            "the topic does not exist"
        } else if reason.starts_with("topic ") {
            "the topic is not available"
        } else if reason.as_str() == NOT_CHECKED {
            "not checked yet"
        } else {
            "the brokers do not answer"
        }
    }

    /// An event serialised for Kafka, keyed by its `distinct_id`, or
    /// refused when it is larger than a message may be.
    pub fn record(&self, event: &Event, index: usize) -> Result<Record, ProduceError> {
        let payload = event
            .to_kafka_payload()
            .map_err(|e| ProduceError::Serialize(e.to_string()))?;
        // Room for the key and the record's own overhead.
        if payload.len() + event.kafka_key().len() + 128 > self.max_message_bytes {
            return Err(ProduceError::TooLarge {
                index,
                size: payload.len(),
                limit: self.max_message_bytes,
            });
        }
        Ok(Record {
            key: event.kafka_key().to_owned(),
            payload,
        })
    }

    /// The largest serialised event accepted.
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    /// Produces every record and waits until Kafka has acknowledged all of
    /// them (or the produce timeout has passed). Every record of the request
    /// was made before: an oversized event refuses the request before
    /// anything of it is produced.
    pub async fn send_all(&self, records: &[Record]) -> Result<(), ProduceError> {
        if !self.is_ready() {
            let reason = self.not_ready_reason().await;
            self.count_errors("kafka_not_ready", records.len());
            return Err(ProduceError::NotReady(reason));
        }
        let started = Instant::now();
        let producer = self.producer();
        let mut deliveries = Vec::with_capacity(records.len());
        for r in records {
            let record = FutureRecord::to(&self.topic)
                .key(r.key.as_slice())
                .payload(&r.payload);
            match producer.send_result(record) {
                Ok(delivery) => deliveries.push(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    // Events already queued will still be delivered; the
                    // client retries the whole request, and its events get
                    // the same uuids again (see normalize::derived_uuid), so
                    // readers never show the repeats.
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
        // librdkafka fails each message after message.timeout.ms; the outer
        // timeout only guards against a lost callback.
        let outcome = tokio::time::timeout(
            self.produce_timeout + Duration::from_secs(5),
            join_all(deliveries),
        )
        .await;
        self.metrics
            .produce_duration
            .observe(started.elapsed().as_secs_f64());
        let results = match outcome {
            Ok(results) => results,
            Err(_) => {
                self.count_errors("timeout", records.len());
                return Err(ProduceError::NotAcknowledged {
                    failed: records.len(),
                    total: records.len(),
                    reason: "no acknowledgement within the produce timeout".into(),
                });
            }
        };
        let mut failed = 0;
        let mut timed_out = false;
        let mut first_reason = None;
        for (index, result) in results.into_iter().enumerate() {
            match result {
                Ok(Ok(_)) => {}
                Ok(Err((
                    KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
                    _,
                ))) => {
                    self.count_errors("too_large", 1);
                    return Err(ProduceError::TooLarge {
                        index,
                        size: records
                            .get(index)
                            .map(|r| r.payload.len())
                            .unwrap_or_default(),
                        limit: self.max_message_bytes,
                    });
                }
                Ok(Err((e, _))) => {
                    failed += 1;
                    timed_out |= matches!(
                        e,
                        KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)
                    );
                    first_reason.get_or_insert_with(|| e.to_string());
                }
                Err(_canceled) => {
                    failed += 1;
                    first_reason.get_or_insert_with(|| "producer shut down".to_owned());
                }
            }
        }
        self.metrics
            .produced
            .inc_by((records.len() - failed) as u64);
        if timed_out {
            self.timed_out_requests.fetch_add(1, Ordering::Relaxed);
        } else if failed == 0 {
            self.timed_out_requests.store(0, Ordering::Relaxed);
        }
        if failed > 0 {
            self.count_errors("not_acknowledged", failed);
            return Err(ProduceError::NotAcknowledged {
                failed,
                total: records.len(),
                reason: first_reason.unwrap_or_default(),
            });
        }
        Ok(())
    }

    fn count_errors(&self, reason: &str, n: usize) {
        self.metrics
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
        let topic = self.topic.clone();
        let checked = tokio::task::spawn_blocking(move || {
            let metadata = producer
                .client()
                .fetch_metadata(Some(&topic), timeout)
                .map_err(|e| format!("brokers did not answer: {e}"))?;
            match metadata.topics().iter().find(|t| t.name() == &*topic) {
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

    /// Checks the brokers every `interval` until `shutdown`, updating
    /// readiness, the `capture_kafka_ready` gauge, and logging changes.
    pub async fn watch_brokers(self, interval: Duration, shutdown: CancellationToken) {
        let timeout = interval.clamp(Duration::from_millis(500), Duration::from_secs(5));
        loop {
            let result = self.check_once(timeout).await;
            if let Some((code, reason)) = self.producer().client().fatal_error() {
                self.replace_producer(&format!("fatal error {code:?}: {reason}"));
            } else if result.is_ok()
                && self.timed_out_requests.load(Ordering::Relaxed) >= STUCK_AFTER_TIMEOUTS
            {
                self.replace_producer("requests time out although the brokers answer");
            }
            let was_ready = self.ready.swap(result.is_ok(), Ordering::Relaxed);
            self.metrics.kafka_ready.set(i64::from(result.is_ok()));
            match result {
                Ok(()) if !was_ready => {
                    tracing::info!(topic = %self.topic, "Kafka reachable; ready")
                }
                Ok(()) => {}
                Err(e) => {
                    if was_ready {
                        tracing::warn!(error = %e, topic = %self.topic, "Kafka unreachable; not ready");
                    }
                    *self.last_error.write().await = e;
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// Waits (bounded) for queued messages to be delivered; call on shutdown.
    pub fn flush(&self, timeout: Duration) -> Result<(), String> {
        self.producer().flush(timeout).map_err(|e| e.to_string())
    }
}
