//! What the capture handlers share.

use std::sync::Arc;

use crate::budget::ByteBudget;
use crate::metrics::CaptureMetrics;
use crate::sink::Sink;
use tributary_core::keys::{KeyValidator, Keyless};

/// Shared state of the handlers.
pub struct AppState {
    /// Where events go (Kafka, or memory in tests).
    pub sink: Arc<dyn Sink>,
    /// The largest serialised event a message may carry.
    pub max_message_bytes: usize,
    pub keys: Arc<dyn KeyValidator>,
    pub metrics: CaptureMetrics,
    /// What becomes of events without a key.
    pub keyless: Keyless,
    /// Requests per key (`None`: unlimited).
    pub per_key: Option<tributary_core::rate::Limiter>,
    /// The bytes all requests in flight may hold.
    pub budget: Arc<ByteBudget>,
    /// Most events in one request.
    pub max_events_per_request: usize,
    /// Places for heavy decoding and normalising, one per core.
    pub heavy: tokio::sync::Semaphore,
    pub max_event_body_bytes: usize,
    pub max_batch_body_bytes: usize,
    /// Proxies in front that append to `X-Forwarded-For`.
    pub trusted_proxy_hops: usize,
    pub body_timeout: std::time::Duration,
}
