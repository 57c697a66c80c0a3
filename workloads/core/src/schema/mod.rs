//! ClickHouse schema migrations: versioned, recorded, idempotent.
//!
//! Each migration is a list of steps; every step is safe to run again (CREATE
//! ... IF NOT EXISTS; a column is added only when `system.columns` lacks it,
//! and "already exists" answers from a concurrent run count as done). Applied
//! versions are recorded in `tributary_migrations`. So two copies of
//! `tributary migrate` running at once (a retried Job) both finish with the
//! same schema. Every statement runs on ClickHouse 18.16 and on a current
//! ClickHouse (a test executes them on chdb).
//!
//! On a cluster ([`Layout::Cluster`]) the statements run node by node, each
//! node recording its own versions, so a node that was down catches up on
//! the next run; `ON CLUSTER` would need ZooKeeper's DDL queue, which a
//! cluster without replicas does not have.

pub mod cluster;
mod migrate;

pub use migrate::{MigrateError, MigrateReport, migrate_clickhouse};

/// Where the events live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// One server holds `events`.
    Single,
    /// `events` is a `Distributed` table over `events_local` on every node
    /// of cluster `name`, sharded by `cityHash64(project_id, distinct_id)`
    /// so that all of one user's events are on one shard.
    /// `ReplicatedReplacingMergeTree` when shards have replicas.
    Cluster { name: String, replicated: bool },
}

impl Layout {
    /// The table the rows are stored in on each server.
    pub fn storage_table(&self) -> &'static str {
        match self {
            Layout::Single => "events",
            Layout::Cluster { .. } => "events_local",
        }
    }

    /// The engine of the storage table (`{db}` still to be substituted;
    /// `{shard}` and `{replica}` are the servers' own macros).
    fn engine(&self) -> &'static str {
        match self {
            Layout::Cluster {
                replicated: true, ..
            } => {
                "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{db}.events_local', '{replica}')"
            }
            _ => "ReplacingMergeTree()",
        }
    }

    /// The tables a column is added to: the storage table, and on a
    /// cluster the `Distributed` table, which must name it to read it.
    fn tables(&self) -> Vec<&'static str> {
        match self {
            Layout::Single => vec!["events"],
            Layout::Cluster { .. } => vec!["events_local", "events"],
        }
    }
}

/// The sharding key of the `Distributed` table: all of one user's events on
/// one shard, so per-user work (unique users, funnels, retention, replayed
/// events collapsing) needs no other shard.
pub const SHARDING_KEY: &str = "cityHash64(project_id, distinct_id)";

/// One step of a migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A statement that is idempotent by itself; `{db}` is the database.
    Sql(String),
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

/// Every ClickHouse migration for `layout`, in order. Versions and names
/// are the same in every layout.
pub fn clickhouse_migrations(layout: &Layout) -> Vec<Migration> {
    let events = include_str!("../../migrations/clickhouse/0001_events.sql")
        .replace("{engine}", layout.engine())
        .replace("{events}", layout.storage_table());
    let mut first = vec![Step::Sql(events)];
    if let Layout::Cluster { name, .. } = layout {
        first.push(Step::Sql(format!(
            "CREATE TABLE IF NOT EXISTS {{db}}.events AS {{db}}.events_local \
             ENGINE = Distributed({name}, {{db}}, events_local, {SHARDING_KEY})"
        )));
    }
    vec![
        Migration {
            version: 1,
            name: "events",
            steps: first,
        },
        Migration {
            version: 2,
            name: "extracted_properties",
            // MATERIALIZED columns are computed for new parts on insert and for
            // old parts on read (until they merge): no rewrite of the table.
            // A Distributed table declares them as ALIAS of the same
            // expression: a query names the column to the shards, which
            // read what they materialized, and an insert does not carry it
            // (18.16 forwards a MATERIALIZED column of a Distributed table
            // in the insert, which the shard then refuses).
            steps: layout
                .tables()
                .into_iter()
                .flat_map(|table| {
                    let kind = if table == "events_local" || *layout == Layout::Single {
                        "MATERIALIZED"
                    } else {
                        "ALIAS"
                    };
                    EXTRACTED_PROPERTIES
                        .iter()
                        .map(move |(column, key)| Step::AddColumn {
                            table,
                            column,
                            definition: format!(
                                "String {kind} visitParamExtractString(properties, '{key}')"
                            ),
                        })
                })
                .collect(),
        },
    ]
}

/// The schema version this build expects (the operator names its migration
/// Job after it).
pub fn clickhouse_schema_version() -> u32 {
    clickhouse_migrations(&Layout::Single)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(replicated: bool) -> Layout {
        Layout::Cluster {
            name: "tributary".into(),
            replicated,
        }
    }

    #[test]
    fn versions_are_increasing_unique_and_the_same_in_every_layout() {
        for layout in [Layout::Single, cluster(false), cluster(true)] {
            let versions: Vec<u32> = clickhouse_migrations(&layout)
                .iter()
                .map(|m| m.version)
                .collect();
            assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
            assert_eq!(clickhouse_schema_version(), *versions.last().unwrap());
        }
    }

    #[test]
    fn rendering_substitutes_the_database() {
        let single = clickhouse_migrations(&Layout::Single);
        let sql = render(&single[0].steps[0], "analytics");
        assert!(
            sql.contains("CREATE TABLE IF NOT EXISTS analytics.events\n"),
            "{sql}"
        );
        assert!(sql.contains("ENGINE = ReplacingMergeTree()"), "{sql}");
        assert!(!sql.contains('{'), "{sql}");
        let add = render(&single[1].steps[0], "analytics");
        assert_eq!(
            add,
            "ALTER TABLE analytics.events ADD COLUMN mat_current_url String MATERIALIZED visitParamExtractString(properties, '$current_url')"
        );
    }

    #[test]
    fn a_cluster_stores_events_locally_and_reads_them_through_a_distributed_table() {
        let m = clickhouse_migrations(&cluster(false));
        let local = render(&m[0].steps[0], "a");
        assert!(local.contains("CREATE TABLE IF NOT EXISTS a.events_local\n"));
        assert!(local.contains("ENGINE = ReplacingMergeTree()"), "{local}");
        assert_eq!(
            render(&m[0].steps[1], "a"),
            "CREATE TABLE IF NOT EXISTS a.events AS a.events_local \
             ENGINE = Distributed(tributary, a, events_local, cityHash64(project_id, distinct_id))"
        );
        let altered: Vec<String> = m[1].steps.iter().map(|s| render(s, "a")).collect();
        assert_eq!(altered.len(), 2 * EXTRACTED_PROPERTIES.len());
        assert_eq!(
            altered[0],
            "ALTER TABLE a.events_local ADD COLUMN mat_current_url String MATERIALIZED visitParamExtractString(properties, '$current_url')"
        );
        assert_eq!(
            altered[EXTRACTED_PROPERTIES.len()],
            "ALTER TABLE a.events ADD COLUMN mat_current_url String ALIAS visitParamExtractString(properties, '$current_url')"
        );
    }

    #[test]
    fn replicas_get_a_replicated_engine_keyed_by_the_servers_macros() {
        let m = clickhouse_migrations(&cluster(true));
        let local = render(&m[0].steps[0], "a");
        assert!(
            local.contains(
                "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/a.events_local', '{replica}')"
            ),
            "{local}"
        );
    }
}
