//! Running the migrations: on the one server, or on every node of a
//! cluster, one version at a time.

use clickhouse::Client;

use crate::clickhouse::{ClickHouseSettings, exception_code};

use super::cluster::{ClusterError, discover};
use super::{Layout, Migration, Step, clickhouse_migrations, render};

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
/// A replicated table created with another structure than its replicas
/// have now (in ZooKeeper).
const STRUCTURE_DIFFERS: u32 = 122;

/// A server to migrate, and the shard it belongs to (0 for one server).
struct Node {
    shard: u32,
    settings: ClickHouseSettings,
    /// Versions it has recorded.
    done: Vec<u32>,
}

/// Applies every ClickHouse migration not yet recorded: on the configured
/// server, or, with `settings.cluster`, on every node of the cluster, each
/// node keeping its own record. A version is applied on every node before
/// the next, so replicas create a replicated table with the structure the
/// others have at that version; a replica made later (new, or rebuilt)
/// takes the structure its shard's replicas have now.
pub async fn migrate_clickhouse(
    settings: &ClickHouseSettings,
) -> Result<MigrateReport, MigrateError> {
    let (layout, servers) = match discover(settings).await? {
        None => (Layout::Single, vec![(0, settings.clone())]),
        Some(topology) => {
            let servers = topology
                .nodes
                .iter()
                .map(|n| (n.shard, settings.on_host(&n.host)))
                .collect();
            (topology.layout(), servers)
        }
    };
    let mut nodes = Vec::with_capacity(servers.len());
    for (shard, settings) in servers {
        let done = prepare(&settings).await?;
        nodes.push(Node {
            shard,
            settings,
            done,
        });
    }
    let mut report = MigrateReport {
        applied: Vec::new(),
        already: Vec::new(),
        servers: nodes.iter().map(|n| n.settings.url()).collect(),
    };
    for migration in clickhouse_migrations(&layout) {
        let mut applied = false;
        for node in &nodes {
            if node.done.contains(&migration.version) {
                continue;
            }
            let peers: Vec<&ClickHouseSettings> = nodes
                .iter()
                .filter(|p| p.shard == node.shard && p.settings.host != node.settings.host)
                .map(|p| &p.settings)
                .collect();
            apply(&node.settings, &migration, &peers).await?;
            applied = true;
        }
        if applied {
            report.applied.push(migration.version);
        } else {
            report.already.push(migration.version);
        }
    }
    Ok(report)
}

/// Makes the database and the record of migrations on one server, and
/// returns the versions recorded there.
async fn prepare(settings: &ClickHouseSettings) -> Result<Vec<u32>, MigrateError> {
    let url = settings.url();
    let unreachable = |source| MigrateError::Unreachable {
        url: url.clone(),
        source,
    };
    let db = settings.database.as_str();
    settings
        .client_without_database()
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
    client
        .query(&format!(
            "SELECT DISTINCT version FROM {db}.tributary_migrations"
        ))
        .fetch_all()
        .await
        .map_err(unreachable)
}

/// Runs `migration` on one server and records it there. `peers`: the other
/// replicas of its shard.
async fn apply(
    settings: &ClickHouseSettings,
    migration: &Migration,
    peers: &[&ClickHouseSettings],
) -> Result<(), MigrateError> {
    let url = settings.url();
    let db = settings.database.as_str();
    let client = settings.client();
    let failed = |sql: String, source| MigrateError::Step {
        url: url.clone(),
        version: migration.version,
        name: migration.name,
        sql,
        source,
    };
    for step in &migration.steps {
        match run_step(&client, db, step).await {
            Err(e) if exception_code(&e) == Some(STRUCTURE_DIFFERS) => {
                copy_from_peer(&client, db, step, peers)
                    .await
                    .map_err(|_| failed(render(step, db), e))?;
            }
            other => other.map_err(|e| failed(render(step, db), e))?,
        }
    }
    client
        .query(&format!(
            "INSERT INTO {db}.tributary_migrations (version, name) VALUES (?, ?)"
        ))
        .bind(migration.version)
        .bind(migration.name)
        .execute()
        .await
        .map_err(|e| failed("INSERT INTO tributary_migrations".into(), e))?;
    tracing::info!(
        server = %url,
        version = migration.version,
        name = migration.name,
        "ClickHouse migration applied"
    );
    Ok(())
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

/// A replica made after its shard's replicas moved on (later versions
/// changed the table in ZooKeeper) creates the table as a peer has it now:
/// its `SHOW CREATE TABLE`, which keeps the `{shard}`/`{replica}` macros.
/// The later versions' steps then find nothing to do on it.
async fn copy_from_peer(
    client: &Client,
    db: &str,
    step: &Step,
    peers: &[&ClickHouseSettings],
) -> Result<(), clickhouse::error::Error> {
    let table = match step {
        Step::Sql(sql) => sql
            .split("CREATE TABLE IF NOT EXISTS {db}.")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_default(),
        Step::AddColumn { table, .. } => table,
    };
    let mut last =
        clickhouse::error::Error::Custom(format!("no replica of this shard has {db}.{table}"));
    for peer in peers {
        let shown: Result<String, _> = peer
            .client()
            .query(&format!("SHOW CREATE TABLE {db}.{table}"))
            .fetch_one()
            .await;
        match shown {
            Ok(ddl) => {
                let ddl = ddl.replacen("CREATE TABLE ", "CREATE TABLE IF NOT EXISTS ", 1);
                tracing::info!(peer = %peer.url(), table, "replica made with the structure its shard has now");
                return client.query(&ddl.replace('?', "??")).execute().await;
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}
