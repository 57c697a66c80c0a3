//! Per-key request rates and per-project async jobs are bounded: past them
//! a 429 says when to come back, and other keys and projects go on. (Before,
//! nothing limited either: one key could take every query pod's capacity,
//! and one project could queue jobs without end.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::net::TcpListener;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tributary_tests::Stack;

/// Query with static keys (`busy` and `quiet` of projects 1 and 2) and
/// `extra`, its ClickHouse at `clickhouse_port`.
async fn start(
    stack: &Stack,
    clickhouse_port: u16,
    extra: &[(&str, &str)],
) -> (String, CancellationToken) {
    let port = clickhouse_port.to_string();
    let vars: HashMap<String, String> = [
        ("QUERY_HOST", "127.0.0.1"),
        ("QUERY_CLICKHOUSE_HOST", "127.0.0.1"),
        ("QUERY_CLICKHOUSE_PORT", port.as_str()),
        ("REDIS_URL", stack.redis_url.as_str()),
        ("QUERY_API_KEYS", "busy=1,quiet=2"),
        ("QUERY_TIMEOUT_SECS", "30"),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let (base, stop) = common::serve(&vars).await;
    (base, stop)
}

async fn trend(base: &str, key: &str, query: &str, day: u32) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/api/query/trend{query}"))
        .header("x-api-key", key)
        .json(&json!({"series": [{"event": "e"}], "date_from": format!("2026-10-{day:02}"), "date_to": "2026-10-28"}))
        .send()
        .await
        .unwrap()
}

/// Accepts connections and never answers: a ClickHouse that hangs.
fn black_hole() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

#[tokio::test]
async fn a_key_past_its_rate_is_told_when_to_retry() {
    let stack = Stack::require();
    let (_hole, port) = black_hole();
    let (base, stop) = start(
        &stack,
        port,
        &[
            ("QUERY_RATE_LIMIT_PER_KEY", "0.5"),
            ("QUERY_RATE_LIMIT_PER_KEY_BURST", "2"),
        ],
    )
    .await;
    // Async: the answer is a job id, whatever ClickHouse does.
    for day in 1..=2 {
        assert_eq!(trend(&base, "busy", "?async=true", day).await.status(), 202);
    }
    let limited = trend(&base, "busy", "?async=true", 3).await;
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited", "{body}");
    assert_eq!(trend(&base, "quiet", "?async=true", 4).await.status(), 202);
    stop.cancel();
}

#[tokio::test]
async fn a_project_runs_a_bounded_number_of_async_jobs() {
    let stack = Stack::require();
    let (_hole, port) = black_hole();
    let (base, stop) = start(
        &stack,
        port,
        &[
            ("QUERY_MAX_JOBS_PER_PROJECT", "2"),
            ("QUERY_TIMEOUT_SECS", "2"),
        ],
    )
    .await;
    // ClickHouse hangs: the jobs stay running until the query timeout.
    for day in 1..=2 {
        assert_eq!(trend(&base, "busy", "?async=true", day).await.status(), 202);
    }
    let refused = trend(&base, "busy", "?async=true", 3).await;
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "too_many_jobs", "{body}");
    assert_eq!(
        trend(&base, "quiet", "?async=true", 3).await.status(),
        202,
        "another project"
    );
    // The two jobs time out; their places are given back.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = trend(&base, "busy", "?async=true", 5).await.status();
        if status == 202 {
            break;
        }
        assert_eq!(status, 429);
        assert!(
            std::time::Instant::now() < deadline,
            "job places never came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.cancel();
}
