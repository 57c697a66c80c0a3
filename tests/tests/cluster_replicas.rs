//! The schema on replicas (one shard, two replicas, Debian's ZooKeeper):
//! `events_local` is a `ReplicatedReplacingMergeTree` keyed by the servers'
//! own macros; rows written through `events` on one replica are on the
//! other; a replay written through the other replica collapses; a replica
//! made again after the others moved on takes their structure and rows; a
//! replica that was down is named by the migration, then catches up with
//! what was written without it, and the migration, run again, has nothing
//! left to do.
//!
//! The first test runs on the stack's replica pair; the second on replicas
//! of its own (they share the stack's ZooKeeper), so that it may kill one.

use std::time::Duration;

use tributary_core::schema::{MigrateError, migrate_clickhouse};
use tributary_tests::clickhouse::{PrivateCluster, client, cluster_settings, drop_database};
use tributary_tests::{Stack, poll_until, unique_name};

const USERS: u64 = 300;

async fn count(url: &str, sql: &str) -> u64 {
    client(url)
        .query(sql)
        .fetch_one()
        .await
        .unwrap_or_else(|e| panic!("{sql} on {url}: {e}"))
}

/// One event per user numbered `from..to`, with uuids fixed by the number.
fn insert(db: &str, table: &str, from: u64, to: u64) -> String {
    format!(
        "INSERT INTO {db}.{table} (uuid, project_id, event, distinct_id, properties, timestamp, timestamp_ms, received_at, ip, lib, lib_version) \
         SELECT toUUID(concat('00000000-0000-4000-8000-', substring(toString(1000000000000 + number), 2))), 7, 'signup', \
                concat('user-', toString(number)), '{{}}', toDateTime(1700000000), 1700000000000, toDateTime(1700000001), '', 'test', '1' \
         FROM system.numbers WHERE number >= {from} LIMIT {}",
        to - from
    )
}

async fn until_rows(url: &str, db: &str, rows: u64, what: &str) {
    let sql = format!("SELECT count() FROM {db}.events_local");
    poll_until(what, Duration::from_secs(60), || {
        let (url, sql) = (url.to_owned(), sql.clone());
        async move {
            let n: u64 = client(&url).query(&sql).fetch_one().await.ok()?;
            (n == rows).then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn replicas_share_every_row_and_a_replay_collapses() {
    let stack = Stack::require();
    let (cluster, url) = stack.replicated();
    let db = unique_name("replicas");
    let settings = cluster_settings(&url, &db, &cluster);
    let report = migrate_clickhouse(&settings).await.unwrap();
    assert_eq!(report.applied, [1, 2], "{report:?}");
    assert_eq!(report.servers.len(), 2, "{report:?}");
    let nodes = report.servers.clone();
    for node in &nodes {
        let engine: String = client(node)
            .query("SELECT engine FROM system.tables WHERE database = ? AND name = 'events_local'")
            .bind(&db)
            .fetch_one()
            .await
            .unwrap();
        assert_eq!(engine, "ReplicatedReplacingMergeTree", "{node}");
    }

    // Written through one replica's `events`, on both.
    settings
        .client()
        .query(&insert(&db, "events", 0, USERS))
        .execute()
        .await
        .unwrap();
    for node in &nodes {
        until_rows(node, &db, USERS, &format!("{USERS} rows on {node}")).await;
    }

    // A replay of half of them, through the other replica, collapses.
    settings
        .on_host(&tributary_tests::clickhouse::host_port(&nodes[1]).0)
        .client()
        .query(&insert(&db, "events", 0, USERS / 2))
        .execute()
        .await
        .unwrap();
    // The replay may reach this replica after a merge was asked for: ask
    // again until both replicas hold each event once.
    let optimize = format!("OPTIMIZE TABLE {db}.events_local FINAL");
    let count_sql = format!("SELECT count() FROM {db}.events_local");
    poll_until(
        "the replay collapsed on both replicas",
        Duration::from_secs(60),
        || {
            let (nodes, optimize, count_sql) = (nodes.clone(), optimize.clone(), count_sql.clone());
            async move {
                client(&nodes[0]).query(&optimize).execute().await.ok()?;
                for node in &nodes {
                    let n: u64 = client(node).query(&count_sql).fetch_one().await.ok()?;
                    if n != USERS {
                        return None;
                    }
                }
                Some(())
            }
        },
    )
    .await;
    assert_eq!(
        count(&url, &format!("SELECT count() FROM {db}.events")).await,
        USERS
    );

    // A replica made again (its database lost) takes the table as its shard
    // has it now, and fetches every row from the other.
    drop_database(&nodes[1], &db).await;
    let rebuilt = migrate_clickhouse(&settings).await.unwrap();
    assert_eq!(rebuilt.applied, [1, 2], "{rebuilt:?}");
    until_rows(
        &nodes[1],
        &db,
        USERS,
        "the rebuilt replica fetched every row",
    )
    .await;

    for node in &nodes {
        drop_database(node, &db).await;
    }
}

#[tokio::test]
async fn a_replica_that_was_down_is_named_then_catches_up() {
    let stack = Stack::require();
    let zookeeper = stack
        .zookeeper
        .clone()
        .expect("the stack's ZooKeeper (ZOOKEEPER); restart the stack");
    let mut cluster = PrivateCluster::start_replicated(2, &zookeeper);
    let db = unique_name("replica_down");
    let first = cluster.nodes[0].url();
    let settings = cluster_settings(&first, &db, &cluster.name);
    migrate_clickhouse(&settings).await.unwrap();

    cluster.nodes[1].kill();
    let second = cluster.nodes[1].url();
    // Rows written while the second replica is down.
    client(&first)
        .query(&insert(&db, "events_local", 0, USERS))
        .execute()
        .await
        .unwrap();
    let refused = migrate_clickhouse(&settings).await.unwrap_err();
    assert!(
        matches!(&refused, MigrateError::Cluster(_)) && refused.to_string().contains(&second),
        "the migration names the replica it cannot reach: {refused}"
    );

    cluster.nodes[1].restart();
    until_rows(&second, &db, USERS, "the second replica caught up").await;
    let again = migrate_clickhouse(&settings).await.unwrap();
    assert!(again.applied.is_empty(), "{again:?}");
    for node in &cluster.nodes {
        drop_database(&node.url(), &db).await;
    }
}
