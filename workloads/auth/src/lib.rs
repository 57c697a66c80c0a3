//! Tributary auth: users (argon2 passwords), login tokens (JWT HS256,
//! `JWT_SECRET`), projects, and API keys (shown once, stored as SHA-256,
//! scoped `capture` or `query`, revocable), in Postgres (`POSTGRES_DSN`).
//!
//! [`secrets`] and [`throttle`] are pure; [`store`] holds the SQL; [`api`]
//! the routes. Logs never carry passwords, keys or tokens.

pub mod answers;
pub mod api;
pub mod config;
pub mod metrics;
pub mod openapi;
pub mod scopes;
pub mod secrets;
pub mod store;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod throttle;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::registry::Registry;
use sqlx::postgres::{PgPool, PgPoolOptions};
use tokio_util::sync::CancellationToken;
use tributary_core::http::{ServeError, bind, health_router, serve};

pub use config::AuthConfig;

/// The Postgres migrations (users, projects, keys).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot reach Postgres at {server}: {source}")]
    Connect {
        server: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("Postgres migration failed on {server}: {source}")]
    Migrate {
        server: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error(transparent)]
    Serve(#[from] ServeError),
}

pub use tributary_core::postgres::dsn_server;

pub async fn connect(dsn: &str) -> Result<PgPool, AuthError> {
    PgPoolOptions::new()
        .max_connections(10)
        .acquire_timeout(Duration::from_secs(10))
        .connect(dsn)
        .await
        .map_err(|source| AuthError::Connect {
            server: dsn_server(dsn),
            source,
        })
}

/// Applies the Postgres migrations (idempotent; concurrent runs serialise on
/// sqlx's advisory lock).
pub async fn migrate(pool: &PgPool, dsn: &str) -> Result<(), AuthError> {
    MIGRATOR
        .run(pool)
        .await
        .map_err(|source| AuthError::Migrate {
            server: dsn_server(dsn),
            source,
        })
}

/// A bound auth server.
pub struct Auth {
    listener: tokio::net::TcpListener,
    router: axum::Router,
}

impl Auth {
    pub async fn bind(config: &AuthConfig) -> Result<Self, AuthError> {
        let pool = connect(&config.postgres_dsn).await?;
        if config.migrate_on_start {
            migrate(&pool, &config.postgres_dsn).await?;
        }
        let mut registry = Registry::default();
        let metrics = metrics::AuthMetrics::register(&mut registry);
        let state = Arc::new(api::AppState {
            pool,
            jwt_secret: config.jwt_secret.clone(),
            jwt_ttl_secs: config.jwt_ttl.as_secs() as i64,
            throttle: Mutex::new(throttle::LoginThrottle::new(
                config.login_max_failures,
                config.login_window,
            )),
            metrics,
            trusted_proxy_hops: config.trusted_proxy_hops,
            per_address: config
                .rate_per_address
                .map(tributary_core::rate::Limiter::new),
            validations_per_address: config
                .validate_rate_per_address
                .map(tributary_core::rate::Limiter::new),
            hashing: tokio::sync::Semaphore::new(
                std::thread::available_parallelism()
                    .map(|n| n.get() * 2)
                    .unwrap_or(4),
            ),
        });
        let router = api::routes(state)
            // Slow clients cannot hold requests open: 408 after 30 s.
            .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                axum::http::StatusCode::REQUEST_TIMEOUT,
                Duration::from_secs(30),
            ))
            .merge(health_router("auth"))
            .merge(tributary_core::openapi::router(&openapi::document()))
            .merge(tributary_core::metrics::router(Arc::new(registry)));
        let listener = bind(config.listen).await?;
        Ok(Self { listener, router })
    }

    pub fn local_addr(&self) -> Result<std::net::SocketAddr, AuthError> {
        self.listener
            .local_addr()
            .map_err(|e| AuthError::Serve(ServeError::Serve(e)))
    }

    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), AuthError> {
        serve(self.listener, self.router, shutdown)
            .await
            .map_err(AuthError::from)
    }
}

pub async fn run(config: AuthConfig, shutdown: CancellationToken) -> Result<(), AuthError> {
    let auth = Auth::bind(&config).await?;
    tracing::info!(listen = %auth.local_addr()?, postgres = %dsn_server(&config.postgres_dsn), "auth listening");
    auth.serve(shutdown).await
}
