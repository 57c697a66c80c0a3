//! Query through its dependencies' failures, each reached through a proxy
//! that can cut or stall it: Redis down (answers uncached, async jobs 503,
//! back by itself), ClickHouse unreachable (502 at once, `/ready` 503, back
//! by itself) and ClickHouse stalled (504 within `QUERY_TIMEOUT_SECS`, no
//! hang). No answer names an address or carries a stack trace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use common::{Ev, START_MS};
use serde_json::{Value, json};
use tributary_tests::tcp_proxy::TcpProxy;
use tributary_tests::{Stack, poll_until};

const TIMEOUT_SECS: u64 = 2;

fn addr(host: &str, port: u16) -> SocketAddr {
    (host, port).to_socket_addrs().unwrap().next().unwrap()
}

/// Tells nothing of where the servers are, nor their internals.
fn discreet(what: &str, body: &Value, ports: &[u16]) {
    let text = body.to_string();
    for port in ports {
        assert!(!text.contains(&port.to_string()), "{what}: {text}");
    }
    assert!(!text.contains("127.0.0.1"), "{what}: {text}");
    assert!(!text.contains("Stack trace"), "{what}: {text}");
}

async fn post(http: &reqwest::Client, url: &str) -> (u16, Value, Duration) {
    let started = Instant::now();
    let body = json!({"series": [{"event": "$pageview"}], "date_from": "2026-10-20", "date_to": "2026-10-23"});
    let r = http.post(url).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    (
        status,
        r.json().await.unwrap_or(Value::Null),
        started.elapsed(),
    )
}

/// `/health/detailed`'s state and problem of `dependency`.
async fn health_of(
    http: &reqwest::Client,
    base: &str,
    dependency: &str,
    ports: &[u16],
) -> (String, Value) {
    let body: Value = http
        .get(format!("{base}/health/detailed"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    discreet("health/detailed", &body, ports);
    let dep = body["dependencies"]
        .as_array()
        .and_then(|deps| deps.iter().find(|d| d["name"] == dependency))
        .cloned()
        .unwrap_or(Value::Null);
    (body["status"].as_str().unwrap_or_default().to_owned(), dep)
}

#[tokio::test]
async fn redis_down_clickhouse_unreachable_and_stalled_are_answered_and_recovered_from() {
    let stack = Stack::require();
    let events: Vec<Ev> = (0..40u64)
        .map(|i| Ev {
            uuid: uuid::Uuid::from_u64_pair(7, i + 1).to_string(),
            project_id: 1,
            event: "$pageview".into(),
            distinct_id: format!("u{i}"),
            props: serde_json::Map::new(),
            ts_ms: START_MS + 86_400_000 + i * 1000,
        })
        .collect();
    let (_, db) = common::load(&stack, &events).await;

    let (ch_host, ch_port) = tributary_tests::clickhouse::host_port(&stack.clickhouse_url);
    let clickhouse = TcpProxy::start(addr(&ch_host, ch_port), None).unwrap();
    let redis_port = stack.redis_port();
    let redis = TcpProxy::start(addr("127.0.0.1", redis_port), None).unwrap();
    let ports = [
        clickhouse.addr().port(),
        redis.addr().port(),
        ch_port,
        redis_port,
    ];

    let vars: std::collections::HashMap<String, String> = [
        ("QUERY_HOST", "127.0.0.1".to_owned()),
        ("QUERY_CLICKHOUSE_HOST", "127.0.0.1".to_owned()),
        (
            "QUERY_CLICKHOUSE_PORT",
            clickhouse.addr().port().to_string(),
        ),
        ("QUERY_CLICKHOUSE_DATABASE", db.clone()),
        (
            "REDIS_URL",
            format!("redis://127.0.0.1:{}", redis.addr().port()),
        ),
        ("QUERY_REQUIRE_API_KEY", "false".to_owned()),
        ("QUERY_KEYLESS_PROJECT_ID", "1".to_owned()),
        ("QUERY_TIMEOUT_SECS", TIMEOUT_SECS.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let (base, stop) = common::serve(&vars).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let trend = format!("{base}/api/query/trend");
    let fresh = format!("{trend}?refresh=true");
    let job = format!("{trend}?async=true&refresh=true");

    // Healthy: the answer, then the same from the cache.
    let (status, answer, _) = post(&http, &trend).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(common::series_total(&answer, 0), 40);
    let (_, again, _) = post(&http, &trend).await;
    assert_eq!(again["cached"], true);
    let (status, clickhouse_health) = health_of(&http, &base, "clickhouse", &ports).await;
    assert_eq!(status, "ok", "{clickhouse_health}");
    assert!(
        clickhouse_health["latency_ms"].as_f64().is_some(),
        "{clickhouse_health}"
    );

    // Redis down: answers computed without the cache, async jobs refused
    // (their state lives in Redis), ready still (ClickHouse answers).
    redis.cut();
    let (status, answer, took) = post(&http, &trend).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (common::series_total(&answer, 0), answer["cached"].clone()),
        (40, json!(false))
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let (status, refused, _) = post(&http, &job).await;
    assert_eq!(status, 503, "{refused}");
    assert_eq!(refused["error"], "redis_unavailable");
    discreet("async job, Redis down", &refused, &ports);
    let ready = http.get(format!("{base}/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let (status, redis_health) = health_of(&http, &base, "redis", &ports).await;
    assert_eq!(
        (status.as_str(), redis_health["state"].as_str()),
        ("degraded", Some("down"))
    );
    assert!(
        redis_health["problem"]
            .as_str()
            .is_some_and(|p| p.starts_with("unavailable"))
    );
    redis.restore();
    poll_until(
        "async jobs to be taken again",
        Duration::from_secs(30),
        || async {
            let (status, _, _) = post(&http, &job).await;
            (status == 202).then_some(())
        },
    )
    .await;

    // ClickHouse unreachable: 502 at once, not ready; back by itself.
    clickhouse.cut();
    let (status, failed, took) = post(&http, &fresh).await;
    assert_eq!(status, 502, "{failed}");
    assert_eq!(failed["error"], "clickhouse_unavailable");
    assert!(
        took < Duration::from_secs(TIMEOUT_SECS + 3),
        "took {took:?}"
    );
    discreet("trend, ClickHouse unreachable", &failed, &ports);
    let ready = http.get(format!("{base}/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    discreet("ready, ClickHouse unreachable", &body, &ports);
    let (_, clickhouse_health) = health_of(&http, &base, "clickhouse", &ports).await;
    assert_eq!(clickhouse_health["state"], "down", "{clickhouse_health}");
    assert_eq!(clickhouse_health["problem"], "unreachable");
    clickhouse.restore();
    poll_until(
        "trends to be answered again",
        Duration::from_secs(30),
        || async {
            let (status, answer, _) = post(&http, &fresh).await;
            (status == 200 && common::series_total(&answer, 0) == 40).then_some(())
        },
    )
    .await;

    // ClickHouse stalled (takes the query, never answers): 504 within the
    // configured timeout, not a hang; back once it answers.
    clickhouse.hold_replies(true);
    let (status, slow, took) = post(&http, &fresh).await;
    assert_eq!(status, 504, "{slow}");
    assert_eq!(slow["error"], "timeout");
    assert!(
        took < Duration::from_millis(TIMEOUT_SECS * 1000 + 500),
        "took {took:?}"
    );
    discreet("trend, ClickHouse stalled", &slow, &ports);
    clickhouse.hold_replies(false);
    poll_until(
        "trends to be answered after the stall",
        Duration::from_secs(30),
        || async {
            let (status, answer, _) = post(&http, &fresh).await;
            (status == 200 && common::series_total(&answer, 0) == 40).then_some(())
        },
    )
    .await;

    stop.cancel();
    common::drop_db(&stack, &db).await;
}
