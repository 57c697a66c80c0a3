//! Running the migrations: on the one server, or node by node on a cluster.

use clickhouse::Client;

use crate::clickhouse::{ClickHouseSettings, exception_code};

use super::cluster::{ClusterError, discover};
use super::{Layout, Step, clickhouse_migrations, render};

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
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// What a run did: versions applied now and found applied, over all the
/// servers, and the servers migrated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateReport {
    pub applied: Vec<u32>,
    pub already: Vec<u32>,
    /// The servers' URLs, in the order they were migrated.
    pub servers: Vec<String>,
}

const TABLE_ALREADY_EXISTS: u32 = 57;
const DUPLICATE_COLUMN: u32 = 44;

/// Applies every ClickHouse migration not yet recorded: on the configured
/// server, or, with `settings.cluster`, on every node of the cluster (each
/// node keeps its own record).
pub async fn migrate_clickhouse(
    settings: &ClickHouseSettings,
) -> Result<MigrateReport, MigrateError> {
    let (layout, servers) = match discover(settings).await? {
        None => (Layout::Single, vec![settings.clone()]),
        Some(topology) => {
            let servers = topology
                .nodes
                .iter()
                .map(|n| settings.on_host(&n.host))
                .collect();
            (topology.layout(), servers)
        }
    };
    let mut report = MigrateReport {
        applied: Vec::new(),
        already: Vec::new(),
        servers: Vec::new(),
    };
    for server in &servers {
        let (applied, already) = migrate_server(server, &layout).await?;
        for (into, versions) in [
            (&mut report.applied, applied),
            (&mut report.already, already),
        ] {
            for v in versions {
                if !into.contains(&v) {
                    into.push(v);
                }
            }
        }
        report.servers.push(server.url());
    }
    report.already.retain(|v| !report.applied.contains(v));
    Ok(report)
}

/// One server's migrations: (applied now, already applied).
async fn migrate_server(
    settings: &ClickHouseSettings,
    layout: &Layout,
) -> Result<(Vec<u32>, Vec<u32>), MigrateError> {
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

    let (mut applied, mut already) = (Vec::new(), Vec::new());
    for migration in clickhouse_migrations(layout) {
        if done.contains(&migration.version) {
            already.push(migration.version);
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
            server = %url,
            version = migration.version,
            name = migration.name,
            "ClickHouse migration applied"
        );
        applied.push(migration.version);
    }
    Ok((applied, already))
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
