//! Tributary capture: the front door of the pipeline.
//!
//! `POST /capture` (native: `X-API-Key`, answers 202 `{"accepted": n}`) and the
//! PostHog-compatible `/e`, `/i/v0/e`, `/track` and `/batch` (answer 200
//! `{"status": 1}` so unmodified PostHog SDKs work). Bodies may be JSON, gzip,
//! base64 or form-encoded `data=`; events are normalised into the core event
//! model and produced to Kafka keyed by `distinct_id`. A request is answered 2xx
//! only after Kafka acknowledged every one of its events.
//!
//! Layout: [`decode`] (bytes → checked JSON text), [`outline`] (the text →
//! its events, still text), [`tree_cost`] (what an event's tree will cost,
//! from its text), [`normalize`] (one event's JSON → an event) and
//! [`budget`] (the bytes requests in flight hold) are pure; [`sink`] is
//! where events go: [`kafka`] (the producer, watching the brokers) or
//! [`memory_sink`] (for tests); [`intake`] turns a request's bytes into
//! records within the budget; [`api`] holds the routes, [`error`] their
//! refusals, [`layers`] request ids and per-route metrics; [`config`] the
//! `CAPTURE_*` settings.

pub mod api;
pub mod bigbuf;
pub mod budget;
pub mod config;
pub mod decode;
pub mod error;
pub mod intake;
pub mod kafka;
pub mod layers;
pub mod memory_sink;
pub mod metrics;
pub mod normalize;
pub mod openapi;
pub mod outline;
pub mod sink;
pub mod state;
pub mod tree_cost;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::http::{StatusCode, header};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::cors::CorsLayer;
use tributary_core::http::{ServeError, bind, health_router, serve};

pub use config::CaptureConfig;

use crate::kafka::{EventProducer, ProducerSetupError};
use crate::metrics::CaptureMetrics;
use crate::sink::Sink;
use crate::state::AppState;
use tributary_core::key_service::AuthServiceKeys;
use tributary_core::keys::{self, KeyValidator, StaticKeys};

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(transparent)]
    Producer(#[from] ProducerSetupError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error(transparent)]
    Keys(keys::KeyError),
}

/// A capture server bound to its port, not yet serving.
pub struct Capture {
    listener: TcpListener,
    router: Router,
    sink: Arc<dyn Sink>,
}

impl Capture {
    /// Creates the producer and binds the listener (port 0 picks a free port).
    pub async fn bind(config: &CaptureConfig) -> Result<Self, CaptureError> {
        let keys: Arc<dyn KeyValidator> = match &config.auth_url {
            Some(url) => Arc::new(
                AuthServiceKeys::new(url, "capture", config.auth_cache)
                    .map_err(CaptureError::Keys)?,
            ),
            None => Arc::new(StaticKeys::new(config.api_keys.clone())),
        };
        Self::bind_with_keys(config, keys).await
    }

    /// Like [`Capture::bind`] with another key validator.
    pub async fn bind_with_keys(
        config: &CaptureConfig,
        keys: Arc<dyn KeyValidator>,
    ) -> Result<Self, CaptureError> {
        let mut registry = Registry::default();
        let metrics = CaptureMetrics::register(&mut registry);
        let producer = EventProducer::new(&config.kafka, metrics.clone())?;
        Self::assemble(config, keys, Arc::new(producer), registry, metrics).await
    }

    /// Like [`Capture::bind_with_keys`], sending events to `sink` instead
    /// of Kafka (the `CAPTURE_KAFKA_*` settings are not used).
    pub async fn bind_with_sink(
        config: &CaptureConfig,
        keys: Arc<dyn KeyValidator>,
        sink: Arc<dyn Sink>,
    ) -> Result<Self, CaptureError> {
        let mut registry = Registry::default();
        let metrics = CaptureMetrics::register(&mut registry);
        Self::assemble(config, keys, sink, registry, metrics).await
    }

    async fn assemble(
        config: &CaptureConfig,
        keys: Arc<dyn KeyValidator>,
        sink: Arc<dyn Sink>,
        mut registry: Registry,
        metrics: CaptureMetrics,
    ) -> Result<Self, CaptureError> {
        let budget = budget::ByteBudget::new(config.max_bytes_in_flight);
        registry.register(
            "capture_bytes_in_flight",
            "Bytes held for requests in flight (bodies, decoded payloads, events until acknowledged), bounded by CAPTURE_MAX_BYTES_IN_FLIGHT",
            budget.gauge(),
        );
        let state = Arc::new(AppState {
            sink: Arc::clone(&sink),
            max_message_bytes: config.kafka.max_message_bytes,
            keys,
            metrics,
            keyless: config.keyless,
            per_key: config.rate_per_key.map(tributary_core::rate::Limiter::new),
            budget,
            max_events_per_request: config.max_events_per_request,
            heavy: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
            ),
            max_event_body_bytes: config.max_event_body_bytes,
            max_batch_body_bytes: config.max_batch_body_bytes,
            trusted_proxy_hops: config.trusted_proxy_hops,
            body_timeout: config.body_timeout,
        });
        // Past the concurrency limit requests are shed with 503 at once
        // rather than queued: memory stays bounded and clients retry.
        let shed = tower::ServiceBuilder::new()
            .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, "1")],
                    axum::Json(serde_json::json!({"error": "overloaded", "message": "too many requests in flight; retry shortly"})),
                )
            }))
            .layer(tower::load_shed::LoadShedLayer::new())
            .layer(tower::limit::ConcurrencyLimitLayer::new(config.max_concurrent_requests));
        let router = api::routes(state)
            .layer(shed)
            .layer(CorsLayer::very_permissive())
            .merge(health_router("capture"))
            .merge(tributary_core::openapi::router(&openapi::document()))
            .merge(tributary_core::metrics::router(Arc::new(registry)));
        let listener = bind(config.listen).await?;
        Ok(Self {
            listener,
            router,
            sink,
        })
    }

    /// The routes as served, for driving them in-process (the instruction
    /// count of `examples/request_instructions.rs`).
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> Result<SocketAddr, CaptureError> {
        self.listener
            .local_addr()
            .map_err(|e| CaptureError::Serve(ServeError::Serve(e)))
    }

    /// Serves until `shutdown` fires, then finishes in-flight requests and
    /// flushes the sink.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), CaptureError> {
        let watcher = tokio::spawn(Arc::clone(&self.sink).watch(shutdown.clone()));
        let served = serve(self.listener, self.router, shutdown).await;
        watcher.abort();
        let sink = self.sink;
        let flushed =
            tokio::task::spawn_blocking(move || sink.flush(Duration::from_secs(10))).await;
        match flushed {
            Ok(Ok(())) => tracing::info!("producer flushed; capture stopped"),
            Ok(Err(e)) => tracing::warn!(error = %e, "producer flush incomplete at shutdown"),
            Err(e) => tracing::warn!(error = %e, "producer flush task failed"),
        }
        served.map_err(CaptureError::from)
    }
}

/// Runs capture with `config` until `shutdown` fires.
pub async fn run(config: CaptureConfig, shutdown: CancellationToken) -> Result<(), CaptureError> {
    let capture = Capture::bind(&config).await?;
    tracing::info!(
        listen = %capture.local_addr()?,
        topic = %config.kafka.topic,
        brokers = %config.kafka.bootstrap_servers,
        keyless = ?config.keyless,
        "capture listening"
    );
    capture.serve(shutdown).await
}
