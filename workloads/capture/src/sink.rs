//! Where capture puts events: a [`Sink`] takes a request's records and
//! answers once every one is acknowledged, and says whether it can take
//! any now. [`EventProducer`](crate::kafka::EventProducer) is the Kafka
//! sink; [`MemorySink`](crate::memory_sink::MemorySink) keeps records in
//! memory, so the HTTP side can be tested without a broker.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tributary_core::Event;

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

impl Record {
    /// Event `index` of a request serialised, keyed by its `distinct_id`,
    /// or refused when it would not fit in a message of `limit` bytes.
    pub fn of(event: &Event, index: usize, limit: usize) -> Result<Self, ProduceError> {
        let payload = event
            .to_kafka_payload()
            .map_err(|e| ProduceError::Serialize(e.to_string()))?;
        // Room for the key and the record's own overhead.
        if payload.len() + event.kafka_key().len() + 128 > limit {
            return Err(ProduceError::TooLarge {
                index,
                size: payload.len(),
                limit,
            });
        }
        Ok(Self {
            key: event.kafka_key().to_owned(),
            payload,
        })
    }
}

/// Whether a sink takes events now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// What is wrong, fit for anyone to read (no addresses, no client's
    /// own words: the log has those).
    NotReady(&'static str),
}

pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), ProduceError>> + Send + 'a>>;
pub type WatchFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Takes a request's records and acknowledges them all, or none of the
/// request counts as taken.
pub trait Sink: Send + Sync + 'static {
    /// Sends every record; resolves `Ok` only once all are acknowledged.
    fn send<'a>(&'a self, records: &'a [Record]) -> SendFuture<'a>;

    /// Whether [`send`](Self::send) can succeed now.
    fn readiness(&self) -> Readiness;

    /// Messages handed over and not yet acknowledged, if the sink queues.
    fn queued(&self) -> Option<usize> {
        None
    }

    /// Background work while capture serves (watching the brokers); ends
    /// when `shutdown` fires.
    fn watch(self: Arc<Self>, shutdown: CancellationToken) -> WatchFuture {
        drop(shutdown);
        Box::pin(async {})
    }

    /// Waits, at most `timeout`, for what was sent to be delivered; called
    /// once at shutdown, on a blocking thread.
    fn flush(&self, timeout: Duration) -> Result<(), String> {
        let _ = timeout;
        Ok(())
    }
}
