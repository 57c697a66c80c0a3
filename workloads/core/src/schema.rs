//! ClickHouse schema migrations: versioned, recorded, idempotent.
//!
//! Each migration is a list of steps; every step is safe to run again (CREATE
//! ... IF NOT EXISTS; a column is added only when `system.columns` lacks it,
//! and "already exists" answers from a concurrent run count as done). Applied
//! versions are recorded in `tributary_migrations`. So two copies of
//! `tributary migrate` running at once (a retried Job) both finish with the
//! same schema. Every statement runs on ClickHouse 18.16 and on a current
//! ClickHouse (a test executes them on chdb).

use clickhouse::Client;

use crate::clickhouse::{ClickHouseSettings, exception_code};

/// One step of a migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A statement that is idempotent by itself; `{db}` is the database.
    Sql(&'static str),
    /// `ALTER TABLE {db}.{table} ADD COLUMN {column} {definition}` unless the
    /// column exists.
    AddColumn {
        table: &'static str,
        column: &'static str,
        definition: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub steps: Vec<Step>,
}

/// Properties extracted into materialized columns by migration 2:
/// (column, property key).
pub const EXTRACTED_PROPERTIES: [(&str, &str); 8] = [
    ("mat_current_url", "$current_url"),
    ("mat_pathname", "$pathname"),
    ("mat_host", "$host"),
    ("mat_referrer", "$referrer"),
    ("mat_browser", "$browser"),
    ("mat_os", "$os"),
    ("mat_device_type", "$device_type"),
    ("mat_session_id", "$session_id"),
];

/// Every ClickHouse migration, in order.
pub fn clickhouse_migrations() -> Vec<Migration> {
    vec![
        Migration {
            version: 1,
            name: "events",
            steps: vec![Step::Sql(include_str!(
                "../migrations/clickhouse/0001_events.sql"
            ))],
        },
        Migration {
            version: 2,
            name: "extracted_properties",
            // MATERIALIZED columns are computed for new parts on insert and for
            // old parts on read (until they merge): no rewrite of the table.
            steps: EXTRACTED_PROPERTIES
                .iter()
                .map(|(column, key)| Step::AddColumn {
                    table: "events",
                    column,
                    definition: format!(
                        "String MATERIALIZED visitParamExtractString(properties, '{key}')"
                    ),
                })
                .collect(),
        },
    ]
}

/// The schema version this build expects (the operator names its migration
/// Job after it).
pub fn clickhouse_schema_version() -> u32 {
    clickhouse_migrations()
        .last()
        .map(|m| m.version)
        .unwrap_or(0)
}

/// The SQL of a step for database `db`.
pub fn render(step: &Step, db: &str) -> String {
    match step {
        Step::Sql(sql) => sql.replace("{db}", db),
        Step::AddColumn {
            table,
            column,
            definition,
        } => format!("ALTER TABLE {db}.{table} ADD COLUMN {column} {definition}"),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("cannot reach ClickHouse at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: clickhouse::error::Error,
    },
    #[error("ClickHouse migration {version} ({name}) failed on {url}: {source}\nstatement: {sql}")]
    Step {
        url: String,
        version: u32,
        name: &'static str,
        sql: String,
        #[source]
        source: clickhouse::error::Error,
    },
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateReport {
    pub applied: Vec<u32>,
    pub already: Vec<u32>,
}

const TABLE_ALREADY_EXISTS: u32 = 57;
const DUPLICATE_COLUMN: u32 = 44;

/// Applies every ClickHouse migration not yet recorded.
pub async fn migrate_clickhouse(
    settings: &ClickHouseSettings,
) -> Result<MigrateReport, MigrateError> {
    let url = settings.url();
    let unreachable = |source| MigrateError::Unreachable {
        url: url.clone(),
        source,
    };
    let db = settings.database.as_str();
    let server = settings.client_without_database();
    server
        .query(&format!("CREATE DATABASE IF NOT EXISTS {db}"))
        .execute()
        .await
        .map_err(unreachable)?;
    let client = settings.client();
    client
        .query(&format!(
            "CREATE TABLE IF NOT EXISTS {db}.tributary_migrations \
             (version UInt32, name String, applied_at DateTime DEFAULT now()) \
             ENGINE = ReplacingMergeTree() ORDER BY version"
        ))
        .execute()
        .await
        .map_err(unreachable)?;
    let done: Vec<u32> = client
        .query(&format!(
            "SELECT DISTINCT version FROM {db}.tributary_migrations"
        ))
        .fetch_all()
        .await
        .map_err(unreachable)?;

    let mut report = MigrateReport {
        applied: Vec::new(),
        already: Vec::new(),
    };
    for migration in clickhouse_migrations() {
        if done.contains(&migration.version) {
            report.already.push(migration.version);
            continue;
        }
        for step in &migration.steps {
            run_step(&client, db, step)
                .await
                .map_err(|source| MigrateError::Step {
                    url: url.clone(),
                    version: migration.version,
                    name: migration.name,
                    sql: render(step, db),
                    source,
                })?;
        }
        client
            .query(&format!(
                "INSERT INTO {db}.tributary_migrations (version, name) VALUES (?, ?)"
            ))
            .bind(migration.version)
            .bind(migration.name)
            .execute()
            .await
            .map_err(|source| MigrateError::Step {
                url: url.clone(),
                version: migration.version,
                name: migration.name,
                sql: "INSERT INTO tributary_migrations".into(),
                source,
            })?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "ClickHouse migration applied"
        );
        report.applied.push(migration.version);
    }
    Ok(report)
}

async fn run_step(client: &Client, db: &str, step: &Step) -> Result<(), clickhouse::error::Error> {
    if let Step::AddColumn { table, column, .. } = step {
        let exists: u64 = client
            .query(
                "SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name = ?",
            )
            .bind(db)
            .bind(*table)
            .bind(*column)
            .fetch_one()
            .await?;
        if exists > 0 {
            return Ok(());
        }
    }
    match client.query(&render(step, db)).execute().await {
        Err(e)
            if matches!(
                exception_code(&e),
                Some(TABLE_ALREADY_EXISTS | DUPLICATE_COLUMN)
            ) =>
        {
            Ok(())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_increasing_and_unique() {
        let versions: Vec<u32> = clickhouse_migrations().iter().map(|m| m.version).collect();
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
        assert_eq!(clickhouse_schema_version(), *versions.last().unwrap());
    }

    #[test]
    fn rendering_substitutes_the_database() {
        let sql = render(&clickhouse_migrations()[0].steps[0], "analytics");
        assert!(
            sql.contains("CREATE TABLE IF NOT EXISTS analytics.events"),
            "{sql}"
        );
        assert!(!sql.contains("{db}"));
        let add = render(&clickhouse_migrations()[1].steps[0], "analytics");
        assert_eq!(
            add,
            "ALTER TABLE analytics.events ADD COLUMN mat_current_url String MATERIALIZED visitParamExtractString(properties, '$current_url')"
        );
    }
}
