//! The schema on the stack's two-shard cluster: `tributary migrate` with
//! `*_CLICKHOUSE_CLUSTER` makes `events_local` on every node and a
//! `Distributed` `events` sharded by user, node by node; a rerun does
//! nothing; a node that missed the migrations catches up; rows written
//! through `events` land on the shard of their user, and a replayed event
//! collapses there.
//!
//! What it cannot show: replicas (the stack's shards have one each; a
//! replicated engine needs ZooKeeper), and a node down during the run (the
//! stack's nodes are shared; a database dropped on one node stands for it).

use tributary_core::schema::cluster::ClusterError;
use tributary_core::schema::{EXTRACTED_PROPERTIES, MigrateError, migrate_clickhouse};
use tributary_tests::clickhouse::{client, cluster_settings, drop_database};
use tributary_tests::{Stack, unique_name};

const USERS: u64 = 200;

/// Each node's URL, shard 1 first.
async fn nodes(url: &str, cluster: &str) -> Vec<String> {
    let hosts: Vec<String> = client(url)
        .query("SELECT host_name FROM system.clusters WHERE cluster = ? ORDER BY shard_num")
        .bind(cluster)
        .fetch_all()
        .await
        .unwrap();
    let port = url.rsplit(':').next().unwrap();
    hosts.iter().map(|h| format!("http://{h}:{port}")).collect()
}

async fn engine(url: &str, db: &str, table: &str) -> String {
    client(url)
        .query("SELECT engine FROM system.tables WHERE database = ? AND name = ?")
        .bind(db)
        .bind(table)
        .fetch_one()
        .await
        .unwrap_or_else(|e| panic!("{db}.{table} on {url}: {e}"))
}

async fn count(url: &str, sql: &str) -> u64 {
    client(url)
        .query(sql)
        .fetch_one()
        .await
        .unwrap_or_else(|e| panic!("{sql} on {url}: {e}"))
}

/// One event per user, written through the Distributed table.
async fn insert_events(url: &str, db: &str) {
    let sql = format!(
        "INSERT INTO {db}.events (uuid, project_id, event, distinct_id, properties, timestamp, timestamp_ms, received_at, ip, lib, lib_version) \
         SELECT toUUID(concat('00000000-0000-4000-8000-', substring(toString(1000000000000 + number), 2))), 7, 'signup', \
                concat('user-', toString(number)), '{{\"$browser\":\"Firefox\"}}', toDateTime(1700000000), 1700000000000, \
                toDateTime(1700000001), '', 'test', '1' FROM system.numbers LIMIT {USERS}"
    );
    client(url)
        .query(&sql)
        .with_setting("insert_distributed_sync", "1")
        .execute()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[tokio::test]
async fn the_schema_spans_every_shard_and_users_stay_on_one() {
    let stack = Stack::require();
    let (cluster, url) = stack.cluster();
    let db = unique_name("cluster_schema");
    let settings = cluster_settings(&url, &db, &cluster);
    let nodes = nodes(&url, &cluster).await;
    assert_eq!(nodes.len(), 2, "the stack's cluster has two shards");

    let report = migrate_clickhouse(&settings).await.unwrap();
    assert_eq!(report.applied, [1, 2], "{report:?}");
    assert_eq!(report.servers, nodes);
    for node in &nodes {
        assert_eq!(
            engine(node, &db, "events_local").await,
            "ReplacingMergeTree"
        );
        assert_eq!(engine(node, &db, "events").await, "Distributed");
        for (table, kind) in [("events_local", "MATERIALIZED"), ("events", "ALIAS")] {
            let extracted = count(
                node,
                &format!(
                    "SELECT count() FROM system.columns WHERE database = '{db}' AND table = '{table}' \
                     AND default_kind = '{kind}'"
                ),
            )
            .await;
            assert_eq!(
                extracted,
                EXTRACTED_PROPERTIES.len() as u64,
                "{table} on {node}"
            );
        }
    }
    let again = migrate_clickhouse(&settings).await.unwrap();
    assert!(again.applied.is_empty(), "{again:?}");

    // Rows land on the shard their user hashes to, and both shards get some.
    insert_events(&url, &db).await;
    let mut stored = 0;
    for (i, node) in nodes.iter().enumerate() {
        let here = count(node, &format!("SELECT count() FROM {db}.events_local")).await;
        assert!(here > 0, "shard {} holds none of {USERS} users", i + 1);
        let elsewhere = count(
            node,
            &format!(
                "SELECT count() FROM {db}.events_local \
                 WHERE cityHash64(project_id, distinct_id) % {} != {i}",
                nodes.len()
            ),
        )
        .await;
        assert_eq!(elsewhere, 0, "shard {} holds another shard's users", i + 1);
        stored += here;
    }
    assert_eq!(stored, USERS);
    let browsers = count(
        &url,
        &format!("SELECT count() FROM {db}.events WHERE mat_browser = 'Firefox'"),
    )
    .await;
    assert_eq!(browsers, USERS, "materialized columns read through events");

    // A replay of every event collapses on its shard.
    insert_events(&url, &db).await;
    for node in &nodes {
        client(node)
            .query(&format!("OPTIMIZE TABLE {db}.events_local FINAL"))
            .execute()
            .await
            .unwrap();
    }
    let total = count(&url, &format!("SELECT count() FROM {db}.events")).await;
    assert_eq!(total, USERS, "replayed events collapse on their shard");

    // A node that missed the migrations catches up on the next run.
    drop_database(&nodes[1], &db).await;
    let caught_up = migrate_clickhouse(&settings).await.unwrap();
    assert_eq!(caught_up.applied, [1, 2], "{caught_up:?}");
    assert_eq!(engine(&nodes[1], &db, "events").await, "Distributed");

    for node in &nodes {
        drop_database(node, &db).await;
    }
}

#[tokio::test]
async fn a_cluster_the_servers_do_not_know_is_named() {
    let stack = Stack::require();
    let (_, url) = stack.cluster();
    let settings = cluster_settings(&url, &unique_name("no_cluster"), "no_such_cluster");
    let e = migrate_clickhouse(&settings).await.unwrap_err();
    assert!(
        matches!(
            &e,
            MigrateError::Cluster(ClusterError::Missing { cluster, .. }) if cluster == "no_such_cluster"
        ),
        "{e}"
    );
    assert!(e.to_string().contains("no cluster no_such_cluster"), "{e}");
}
