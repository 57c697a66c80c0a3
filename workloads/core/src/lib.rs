//! Shared foundation of every Tributary workload.
//!
//! - [`event`]: the event model carried on the `events` Kafka topic.
//! - [`config`]: typed configuration read from environment variables, with
//!   errors that name the variable and the bad value.
//! - [`telemetry`]: structured JSON logs.
//! - [`metrics`]: the Prometheus `/metrics` handler every service mounts.
//! - [`http`]: `/health` and a server loop with graceful shutdown.
//! - [`shutdown`]: SIGTERM/SIGINT handling.
//! - [`clickhouse`] and [`schema`]: ClickHouse settings and migrations.
//! - [`keys`] and [`key_service`]: API key → project, from configuration or
//!   from the auth service with a short cache (capture and query).

pub mod clickhouse;
pub mod config;
pub mod event;
pub mod health;
pub mod http;
pub mod key_service;
pub mod keys;
pub mod metrics;
pub mod openapi;
pub mod postgres;
pub mod rate;
pub mod schema;
pub mod shutdown;
pub mod telemetry;
mod timestamp;
pub mod topic_config;
pub mod topics;

pub use config::{ConfigError, Env, EnvSource, ProcessEnv};
pub use event::{Event, EventDecodeError};
