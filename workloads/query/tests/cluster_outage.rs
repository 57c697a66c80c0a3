//! A killed shard of a two-shard cluster (servers of the test's own, on
//! loopback addresses of their own): the trend, funnel and retention that
//! answered before now answer 502 `clickhouse_shard_unavailable` naming
//! shard 2, never a smaller number; its address is in the log, not the
//! answer. Restarted, the shard's events are counted again.
//!
//! Shown to fail with the guarantee broken: with `skip_unavailable_shards`
//! set on query's client, the trend answered 200 with shard 1's events
//! alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use tributary_core::schema::migrate_clickhouse;
use tributary_tests::clickhouse::{PrivateCluster, client, cluster_settings};
use tributary_tests::poll_until;

const USERS: u64 = 60;

fn questions() -> [(&'static str, Value); 3] {
    [
        (
            "trend",
            json!({"series": [{"event": "$pageview"}], "date_from": "2026-10-20", "date_to": "2026-10-23"}),
        ),
        (
            "funnel",
            json!({"steps": [{"event": "$pageview"}, {"event": "sign_up"}], "date_from": "2026-10-20", "date_to": "2026-10-23"}),
        ),
        (
            "retention",
            json!({"target": {"event": "$pageview"}, "date_from": "2026-10-20", "periods": 3}),
        ),
    ]
}

async fn ask(http: &reqwest::Client, base: &str, kind: &str, body: &Value) -> (u16, Value) {
    let r = http
        .post(format!("{base}/api/query/{kind}?refresh=true"))
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_killed_shard_is_named_and_never_counted_as_nothing() {
    let mut cluster = PrivateCluster::start(2);
    let db = tributary_tests::unique_name("shard_outage");
    let node = cluster.nodes[0].url();
    let settings = cluster_settings(&node, &db, &cluster.name);
    migrate_clickhouse(&settings).await.unwrap();
    // Each user views a page on 2026-10-21; every third signs up.
    let insert = format!(
        "INSERT INTO {db}.events (uuid, project_id, event, distinct_id, properties, timestamp, timestamp_ms, received_at, ip, lib, lib_version) \
         SELECT generateUUIDv4(), 1, if(number % 2 = 0, '$pageview', 'sign_up'), concat('u', toString(intDiv(number, 2))), '{{}}', \
                toDateTime(1792540800 + number), (1792540800 + number) * 1000, toDateTime(1792540800 + number), '', 'test', '1' \
         FROM (SELECT number FROM system.numbers LIMIT {}) WHERE number % 2 = 0 OR intDiv(number, 2) % 3 = 0",
        2 * USERS
    );
    settings.client().query(&insert).execute().await.unwrap();
    for (i, node) in cluster.nodes.iter().enumerate() {
        let here: u64 = client(&node.url())
            .query(&format!("SELECT count() FROM {db}.events_local"))
            .fetch_one()
            .await
            .unwrap();
        assert!(here > 0, "shard {} has no events to miss", i + 1);
    }

    let vars: HashMap<String, String> = [
        ("QUERY_HOST", "127.0.0.1".to_owned()),
        ("QUERY_CLICKHOUSE_HOST", cluster.nodes[0].host.clone()),
        (
            "QUERY_CLICKHOUSE_PORT",
            cluster.nodes[0].http_port.to_string(),
        ),
        ("QUERY_CLICKHOUSE_DATABASE", db.clone()),
        ("QUERY_CLICKHOUSE_CLUSTER", cluster.name.clone()),
        ("REDIS_URL", "redis://127.0.0.1:1".to_owned()),
        ("QUERY_REQUIRE_API_KEY", "false".to_owned()),
        ("QUERY_KEYLESS_PROJECT_ID", "1".to_owned()),
        ("QUERY_TIMEOUT_SECS", "5".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let (base, stop) = common::serve(&vars).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    // Ready once the node answers (and the shards are read).
    poll_until("query ready", Duration::from_secs(30), || async {
        let r = http.get(format!("{base}/ready")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;

    let mut before = Vec::new();
    for (kind, body) in questions() {
        let (status, answer) = ask(&http, &base, kind, &body).await;
        assert_eq!(status, 200, "{kind}: {answer}");
        before.push(answer);
    }
    assert_eq!(common::series_total(&before[0], 0), USERS);

    cluster.nodes[1].kill();
    let hidden = [
        cluster.nodes[1].host.clone(),
        cluster.nodes[1].tcp_port.to_string(),
    ];
    for (kind, body) in questions() {
        let (status, answer) = ask(&http, &base, kind, &body).await;
        assert_eq!(status, 502, "{kind} with shard 2 down: {answer}");
        assert_eq!(answer["error"], "clickhouse_shard_unavailable", "{answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(&format!("shard 2 of ClickHouse cluster {}", cluster.name)),
            "{kind}: {message}"
        );
        for secret in &hidden {
            assert!(!answer.to_string().contains(secret.as_str()), "{answer}");
        }
    }

    cluster.nodes[1].restart();
    let again = poll_until("shard 2 counted again", Duration::from_secs(30), || {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let (kind, body) = &questions()[0];
            let (status, answer) = ask(&http, &base, kind, body).await;
            (status == 200).then_some(answer)
        }
    })
    .await;
    assert_eq!(common::series_total(&again, 0), USERS);
    for (i, (kind, body)) in questions().iter().enumerate().skip(1) {
        let (status, mut answer) = ask(&http, &base, kind, body).await;
        assert_eq!(status, 200, "{kind}: {answer}");
        let mut first = before[i].clone();
        for a in [&mut answer, &mut first] {
            if let Some(o) = a.as_object_mut() {
                o.remove("computed_at");
                o.remove("cached");
            }
        }
        assert_eq!(answer, first, "{kind} after shard 2 came back");
    }
    stop.cancel();
}
