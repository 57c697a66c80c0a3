//! The query service over HTTP with keys from the real auth service (real
//! Postgres), ClickHouse 18.16 and Redis: scoping by the key's project,
//! refusals, cache, async jobs, ClickHouse errors and metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tributary_auth::testing::start_auth;
use tributary_tests::{Stack, poll_until, unique_name};

/// A user with two projects; a query key for each and a capture key.
struct Tenants {
    a: u64,
    b: u64,
    key_a: String,
    key_b: String,
    capture_key_a: String,
}

async fn tenants(http: &reqwest::Client, auth: &str) -> Tenants {
    let token = user_token(http, auth, "analyst").await;
    let (a, a_keys) = project_keys(http, auth, &token, "A", &["query", "capture"]).await;
    let (b, b_keys) = project_keys(http, auth, &token, "B", &["query"]).await;
    Tenants {
        a,
        b,
        key_a: a_keys[0].clone(),
        key_b: b_keys[0].clone(),
        capture_key_a: a_keys[1].clone(),
    }
}

/// `n` pageviews in `project`, one per user, on 2026-10-21.
fn pageviews(project: u64, n: u64) -> Vec<Ev> {
    (0..n)
        .map(|i| Ev {
            uuid: uuid::Uuid::from_u64_pair(project, i + 1).to_string(),
            project_id: project,
            event: "$pageview".into(),
            distinct_id: format!("p{project}-u{i}"),
            props: serde_json::Map::new(),
            ts_ms: START_MS + 86_400_000 + i * 1000,
        })
        .collect()
}

struct Service {
    base: String,
    stop: CancellationToken,
}

/// Query on `db`, checking keys with `auth`, with the binary's defaults but
/// for `extra` (keys are required unless `extra` says otherwise).
async fn start_query(stack: &Stack, db: &str, auth: &str, extra: &[(&str, &str)]) -> Service {
    let (host, port) = tributary_tests::clickhouse::host_port(&stack.clickhouse_url);
    let port = port.to_string();
    let vars: std::collections::HashMap<String, String> = [
        ("QUERY_HOST", "127.0.0.1"),
        ("QUERY_CLICKHOUSE_HOST", host.as_str()),
        ("QUERY_CLICKHOUSE_PORT", port.as_str()),
        ("QUERY_CLICKHOUSE_DATABASE", db),
        ("REDIS_URL", stack.redis_url.as_str()),
        ("QUERY_AUTH_URL", auth),
        ("QUERY_TIMEOUT_SECS", "10"),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let (base, stop) = common::serve(&vars).await;
    Service { base, stop }
}

async fn call(
    http: &reqwest::Client,
    url: String,
    key: Option<&str>,
    body: &Value,
) -> (u16, Value) {
    let mut req = http.post(url).json(body);
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn trend_body() -> Value {
    json!({"series":[{"event":"$pageview"}],"date_from":"2026-10-20","date_to":"2026-10-23"})
}

#[tokio::test]
async fn queries_are_scoped_cached_and_run_as_jobs() {
    let stack = Stack::require();
    let (auth, auth_stop) = start_auth(&stack.postgres_dsn).await;
    let http = reqwest::Client::new();
    let t = tenants(&http, &auth).await;
    let mut events = pageviews(t.a, 3);
    events.extend(pageviews(t.b, 5));
    let (_, db) = load(&stack, &events).await;
    let q = start_query(&stack, &db, &auth, &[]).await;
    let trend = format!("{}/api/query/trend", q.base);

    // The binary's defaults. Keys: none, unknown, capture-scoped → 401;
    // each query key sees its project.
    assert_eq!(call(&http, trend.clone(), None, &trend_body()).await.0, 401);
    let fake = format!("trb_{}", "x".repeat(43));
    assert_eq!(
        call(&http, trend.clone(), Some(&fake), &trend_body())
            .await
            .0,
        401
    );
    let (s, body) = call(&http, trend.clone(), Some(&t.capture_key_a), &trend_body()).await;
    assert_eq!(s, 401, "a capture key cannot query: {body}");
    let (s, a) = call(
        &http,
        format!("{trend}?refresh=true"),
        Some(&t.key_a),
        &trend_body(),
    )
    .await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(a["results"][0]["data"], json!([0, 3, 0, 0]));
    assert_eq!(a["cached"], false);
    let (_, b) = call(&http, trend.clone(), Some(&t.key_b), &trend_body()).await;
    assert_eq!(
        b["results"][0]["data"],
        json!([0, 5, 0, 0]),
        "project B's own answer, not A's cached one"
    );

    // The same query again comes from the cache; refresh bypasses it.
    let (_, again) = call(&http, trend.clone(), Some(&t.key_a), &trend_body()).await;
    assert_eq!(again["cached"], true);
    assert_eq!(again["results"], a["results"]);
    let (_, fresh) = call(
        &http,
        format!("{trend}?refresh=true"),
        Some(&t.key_a),
        &trend_body(),
    )
    .await;
    assert_eq!(fresh["cached"], false);

    // Bad requests name the field.
    let (s, e) = call(
        &http,
        trend.clone(),
        Some(&t.key_a),
        &json!({"series":[{"event":"x","math":"median"}],"date_from":"-7d"}),
    )
    .await;
    assert_eq!(
        (s, e["error"].as_str(), e["field"].as_str()),
        (400, Some("invalid_request"), Some("series[0].math")),
        "{e}"
    );
    let (s, e) = call(
        &http,
        trend.clone(),
        Some(&t.key_a),
        &json!({"series":[{"event":"x"}],"date_from":"2026-11-01","date_to":"2026-10-01"}),
    )
    .await;
    assert_eq!((s, e["field"].as_str()), (400, Some("date_from")), "{e}");
    let (s, e) = call(
        &http,
        format!("{}/api/query/funnel", q.base),
        Some(&t.key_a),
        &json!({"steps":[{"event":"a"}],"date_from":"-7d"}),
    )
    .await;
    assert_eq!((s, e["field"].as_str()), (400, Some("steps")), "{e}");
    let (s, _) = call(
        &http,
        format!("{trend}?async=perhaps"),
        Some(&t.key_a),
        &trend_body(),
    )
    .await;
    assert_eq!(s, 400);

    // Async: 202, then the job completes with the same answer; other
    // projects cannot see it.
    let funnel = json!({"steps":[{"event":"$pageview"},{"event":"signup"}],"date_from":"2026-10-20","date_to":"2026-10-23"});
    let (s, job) = call(
        &http,
        format!("{}/api/query/funnel?async=true&refresh=true", q.base),
        Some(&t.key_a),
        &funnel,
    )
    .await;
    assert_eq!(s, 202, "{job}");
    let url = format!("{}{}", q.base, job["status_url"].as_str().unwrap());
    let done: Value = poll_until("the async job", Duration::from_secs(20), || {
        let (http, url, key) = (http.clone(), url.clone(), t.key_a.clone());
        async move {
            let j: Value = http
                .get(url)
                .header("x-api-key", key)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (j["status"] != "running").then_some(j)
        }
    })
    .await;
    assert_eq!(done["status"], "complete", "{done}");
    assert_eq!(done["result"]["steps"][0]["count"], 3);
    assert_eq!(done["result"]["steps"][1]["count"], 0);
    let other = http
        .get(&url)
        .header("x-api-key", &t.key_b)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status().as_u16(), 404);
    let (s, r) = call(
        &http,
        format!("{}/api/query/retention", q.base),
        Some(&t.key_a),
        &json!({"target":{"event":"$pageview"},"date_from":"2026-10-20","periods":3}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(r["cohorts"][1]["size"], 3);

    // Metrics carry the seed's names.
    let metrics = http
        .get(format!("{}/metrics", q.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "query_requests_total",
        "query_trend_duration_seconds",
        "query_funnel_duration_seconds",
        "query_errors_total",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }
    assert!(
        metrics.contains(r#"query_errors_total{kind="invalid_request"} 4"#),
        "{metrics}"
    );
    let ready = http.get(format!("{}/ready", q.base)).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);

    q.stop.cancel();
    auth_stop.cancel();
    drop_db(&stack, &db).await;
}

#[tokio::test]
async fn clickhouse_errors_are_502_with_a_message_and_no_stack_trace() {
    let stack = Stack::require();
    let (auth, auth_stop) = start_auth(&stack.postgres_dsn).await;
    let http = reqwest::Client::new();
    let t = tenants(&http, &auth).await;
    // A database without the events table.
    let q = start_query(&stack, &unique_name("missing_db"), &auth, &[]).await;
    let (s, e) = call(
        &http,
        format!("{}/api/query/trend?refresh=true", q.base),
        Some(&t.key_a),
        &trend_body(),
    )
    .await;
    assert_eq!(s, 502, "{e}");
    assert_eq!(e["error"], "clickhouse_error");
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains("ClickHouse refused the query"),
        "{message}"
    );
    assert!(
        !message.contains("Stack trace") && !message.contains("e.what()"),
        "{message}"
    );
    let ready = http.get(format!("{}/ready", q.base)).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    q.stop.cancel();
    auth_stop.cancel();
}

/// Keyless reads are an explicit opt-in that names its project: they read
/// that project only, and an unknown or revoked key is refused even then
/// (before, with keys not required, both fell back to project 1, a real
/// tenant's).
#[tokio::test]
async fn keyless_reads_see_only_the_project_named_for_them_and_a_bad_key_is_refused_even_then() {
    let stack = Stack::require();
    let (auth, auth_stop) = start_auth(&stack.postgres_dsn).await;
    let http = reqwest::Client::new();
    let t = tenants(&http, &auth).await;
    let mut events = pageviews(t.a, 3);
    events.extend(pageviews(t.b, 5));
    let (_, db) = load(&stack, &events).await;
    let open = t.b.to_string();
    let q = start_query(
        &stack,
        &db,
        &auth,
        &[
            ("QUERY_REQUIRE_API_KEY", "false"),
            ("QUERY_KEYLESS_PROJECT_ID", open.as_str()),
        ],
    )
    .await;
    let trend = format!("{}/api/query/trend", q.base);
    let (s, keyless) = call(&http, trend.clone(), None, &trend_body()).await;
    assert_eq!(s, 200, "{keyless}");
    assert_eq!(
        keyless["results"][0]["data"],
        json!([0, 5, 0, 0]),
        "the keyless project's"
    );
    let fake = format!("trb_{}", "x".repeat(43));
    let (s, body) = call(&http, trend.clone(), Some(&fake), &trend_body()).await;
    assert_eq!(s, 401, "an unknown key falls back to nothing: {body}");
    let (s, body) = call(&http, trend.clone(), Some(&t.capture_key_a), &trend_body()).await;
    assert_eq!(s, 401, "a capture key cannot query: {body}");
    let (s, a) = call(&http, trend, Some(&t.key_a), &trend_body()).await;
    assert_eq!((s, &a["results"][0]["data"]), (200, &json!([0, 3, 0, 0])));
    q.stop.cancel();
    auth_stop.cancel();
}

/// A funnel within each separate limit (10 steps, 5 filters on each, 100
/// values of 100 bytes in each filter; a 500 KB body) whose statements
/// would be past what ClickHouse parses (256 KiB): refused with 400 naming
/// the limit, before ClickHouse is asked (before, ClickHouse refused it:
/// a 502).
#[tokio::test]
async fn an_oversized_query_is_refused_naming_its_limit_not_sent_to_clickhouse() {
    let stack = Stack::require();
    let (auth, auth_stop) = start_auth(&stack.postgres_dsn).await;
    let http = reqwest::Client::new();
    let t = tenants(&http, &auth).await;
    let (_, db) = load(&stack, &pageviews(t.a, 3)).await;
    let q = start_query(&stack, &db, &auth, &[]).await;
    let values: Vec<String> = (0..100)
        .map(|i| format!("{i:04}{}", "v".repeat(96)))
        .collect();
    let filters: Vec<Value> = (0..5)
        .map(|i| json!({"key": format!("p{i}"), "operator": "exact", "value": values}))
        .collect();
    let steps: Vec<Value> = (0..10)
        .map(|i| json!({"event": format!("step{i}"), "filters": filters}))
        .collect();
    let body = json!({"steps": steps, "date_from": "-30d"});
    let (s, e) = call(
        &http,
        format!("{}/api/query/funnel?refresh=true", q.base),
        Some(&t.key_a),
        &body,
    )
    .await;
    assert_eq!(s, 400, "{e}");
    assert_eq!(e["error"], "invalid_request", "{e}");
    let message = e["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("bytes of SQL") && message.contains("limit"),
        "{e}"
    );

    // Growing a funnel up to the limit, with long string values (by their
    // length) and with one-digit numbers (by the filters: more literals for
    // as many bytes): whatever is let through, ClickHouse runs (200, never
    // a 502); past the limit, 400.
    let strings = |length: usize| -> Value {
        json!(
            (0..100)
                .map(|i| format!("{i:03}{}", "v".repeat(length)))
                .collect::<Vec<_>>()
        )
    };
    let digits = json!((0..100).map(|i| i % 10).collect::<Vec<_>>());
    let grown: [Vec<(Value, usize)>; 2] = [
        [1, 16, 32, 48, 64, 96].map(|l| (strings(l), 2)).to_vec(),
        [1, 2, 4, 8, 12, 20].map(|n| (digits.clone(), n)).to_vec(),
    ];
    for sizes in grown {
        let mut answers = Vec::new();
        for (values, filters) in sizes {
            let filters: Vec<Value> = (0..filters)
                .map(|i| json!({"key": format!("p{i}"), "operator": "exact", "value": values}))
                .collect();
            let steps: Vec<Value> = (0..10)
                .map(|i| json!({"event": format!("step{i}"), "filters": filters}))
                .collect();
            let (s, e) = call(
                &http,
                format!("{}/api/query/funnel?refresh=true", q.base),
                Some(&t.key_a),
                &json!({"steps": steps, "date_from": "-30d"}),
            )
            .await;
            assert!(s == 200 || s == 400, "{s} {e}");
            answers.push(s);
        }
        assert_eq!(answers[0], 200, "{answers:?}");
        assert_eq!(*answers.last().unwrap(), 400, "{answers:?}");
        assert!(answers.windows(2).all(|w| w[0] <= w[1]), "{answers:?}");
    }
    q.stop.cancel();
    auth_stop.cancel();
}
