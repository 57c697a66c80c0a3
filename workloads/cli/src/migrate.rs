//! `tributary migrate` (and the first step of `tributary dev`): the
//! Postgres migrations of auth and of query's saved insights, then the
//! ClickHouse schema of the events.

use tributary_core::clickhouse::ClickHouseSettings;

/// A migration that failed, naming the database.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("Postgres {server}: {message}")]
    Postgres { server: String, message: String },
    #[error("ClickHouse {url}: {message}")]
    ClickHouse { url: String, message: String },
}

/// Applies what is missing and returns one line per database saying what
/// was done.
pub async fn migrate(
    clickhouse: &ClickHouseSettings,
    postgres_dsn: Option<&str>,
) -> Result<Vec<String>, MigrateError> {
    let mut report = Vec::new();
    if let Some(dsn) = postgres_dsn {
        let server = tributary_auth::dsn_server(dsn);
        let failed = |e: tributary_auth::AuthError| MigrateError::Postgres {
            server: server.clone(),
            message: e.to_string(),
        };
        let pool = tributary_auth::connect(dsn).await.map_err(failed)?;
        tributary_auth::migrate(&pool, dsn).await.map_err(failed)?;
        // Saved insights and dashboards, in the query service's schema.
        let store =
            tributary_query::store::Store::new(dsn, false).map_err(|e| MigrateError::Postgres {
                server: server.clone(),
                message: e.to_string(),
            })?;
        store.migrate().await.map_err(|e| MigrateError::Postgres {
            server: server.clone(),
            message: e.to_string(),
        })?;
        report.push(format!(
            "Postgres {server}: migrations applied (auth; saved insights in schema {})",
            tributary_query::store::SCHEMA
        ));
    }
    let applied = tributary_core::schema::migrate_clickhouse(clickhouse)
        .await
        .map_err(|e| MigrateError::ClickHouse {
            url: clickhouse.url(),
            message: e.to_string(),
        })?;
    let servers = match &clickhouse.cluster {
        None => clickhouse.url(),
        Some(cluster) => format!("cluster {cluster} ({})", applied.servers.join(", ")),
    };
    report.push(format!(
        "ClickHouse {servers} database {}: schema version {} (applied now: {:?}, already applied: {:?})",
        clickhouse.database,
        tributary_core::schema::clickhouse_schema_version(),
        applied.applied,
        applied.already
    ));
    Ok(report)
}
