//! Tributary query: trends, funnels and retention over ClickHouse, with a
//! Redis cache and async jobs, scoped to the project of the caller's API key.
//!
//! Pure parts: [`request`] (bodies and field errors), [`range`] (dates,
//! timezones, buckets), [`sql`] (literals, properties, filters), [`trend`],
//! [`funnel`], [`funnel_match`] and [`retention`] (SQL generation and
//! answers), [`rows`] (what answers are read into). I/O: [`warehouse`] (ClickHouse), [`cache`] (Redis), [`api`].

pub mod answer;
pub mod api;
pub mod cache;
pub mod config;
pub mod funnel;
pub mod funnel_in_clickhouse;
pub mod funnel_match;
pub mod metrics;
pub mod native;
pub mod openapi;
pub mod openapi_saved;
pub mod path_group;
pub mod path_sort;
pub mod range;
pub mod request;
pub mod retention;
pub mod rowbinary;
pub mod rows;
pub mod saved;
pub mod saved_api;
pub mod sql;
pub mod store;
pub mod trend;
pub mod ui;
pub mod warehouse;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tributary_core::http::{ServeError, bind, health_router, serve};
use tributary_core::key_service::AuthServiceKeys;
use tributary_core::keys::{KeyError, KeyValidator, StaticKeys};

pub use config::QueryConfig;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error(transparent)]
    Keys(KeyError),
    #[error(transparent)]
    Cache(#[from] cache::CacheError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

/// A query server bound to its port, not yet serving.
pub struct QueryServer {
    listener: TcpListener,
    router: axum::Router,
}

impl QueryServer {
    pub async fn bind(config: &QueryConfig) -> Result<Self, QueryError> {
        let keys: Arc<dyn KeyValidator> = match &config.auth_url {
            Some(url) => Arc::new(
                AuthServiceKeys::new(url, "query", config.auth_cache).map_err(QueryError::Keys)?,
            ),
            None => Arc::new(StaticKeys::new(config.api_keys.clone())),
        };
        // Saving needs a key of scope `dashboards`; static keys
        // (`QUERY_API_KEYS`, for development) may save too.
        let writers: Arc<dyn KeyValidator> = match &config.auth_url {
            Some(url) => Arc::new(
                AuthServiceKeys::new(url, "dashboards", config.auth_cache)
                    .map_err(QueryError::Keys)?,
            ),
            None => Arc::new(StaticKeys::new(config.api_keys.clone())),
        };
        let store = match &config.saved {
            Some(saved) => {
                let store = store::Store::new(&saved.postgres_dsn, !saved.migrate_on_start)?
                    .with_limits(saved.limits);
                if saved.migrate_on_start {
                    let migrating = store.clone();
                    tokio::spawn(async move {
                        migrating.migrate_until_done(Duration::from_secs(5)).await;
                    });
                }
                Some(store)
            }
            None => None,
        };
        let mut registry = Registry::default();
        let metrics = metrics::QueryMetrics::register(&mut registry);
        let warehouse = warehouse::Warehouse::new(&config.clickhouse, config.timeout)
            .with_funnel_budget(config.funnel_local_events)
            .with_funnel_matching_in_clickhouse(config.funnel_matching_in_clickhouse);
        registry.register(
            "query_funnel_paths_grouped",
            "Funnels by where their events were grouped into users' paths and matched (matched_in_clickhouse; service; clickhouse when QUERY_FUNNEL_LOCAL_EVENTS was in use)",
            warehouse.funnel_grouping(),
        );
        let state = Arc::new(api::AppState {
            warehouse,
            cache: cache::Cache::new(&config.redis_url, config.cache_ttl, config.job_ttl)?,
            keys,
            writers,
            store,
            metrics,
            keyless: config.keyless,
            per_key: config.rate_per_key.map(tributary_core::rate::Limiter::new),
            jobs: Arc::new(api::Jobs::new(config.max_jobs_per_project)),
            permits: tokio::sync::Semaphore::new(config.max_concurrent_queries),
            timeout_ms: config.timeout.as_millis() as i64,
        });
        let router = api::routes(state)
            // Bodies that do not arrive in time get 408.
            .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                axum::http::StatusCode::REQUEST_TIMEOUT,
                config.timeout + Duration::from_secs(30),
            ))
            .merge(ui::routes())
            .merge(health_router("query"))
            .merge(tributary_core::openapi::router(&openapi::document()))
            .merge(tributary_core::metrics::router(Arc::new(registry)));
        let listener = bind(config.listen).await?;
        Ok(Self { listener, router })
    }

    pub fn local_addr(&self) -> Result<std::net::SocketAddr, QueryError> {
        self.listener
            .local_addr()
            .map_err(|e| QueryError::Serve(ServeError::Serve(e)))
    }

    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), QueryError> {
        serve(self.listener, self.router, shutdown)
            .await
            .map_err(QueryError::from)
    }
}

pub async fn run(config: QueryConfig, shutdown: CancellationToken) -> Result<(), QueryError> {
    let server = QueryServer::bind(&config).await?;
    tracing::info!(
        listen = %server.local_addr()?,
        clickhouse = %config.clickhouse.url(),
        database = %config.clickhouse.database,
        keyless = ?config.keyless,
        "query listening"
    );
    server.serve(shutdown).await
}
