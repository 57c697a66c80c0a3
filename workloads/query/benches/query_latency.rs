//! Query latency on 10 million synthetic events (30 days, 100 000 users) in
//! the stack's ClickHouse: a 7-day daily unique-users trend with a breakdown
//! and a 3-step 30-day funnel, each 20 times uncached (`refresh=true`) and 20
//! times cached, over HTTP against the real service. The baseline, measured
//! in the same run, is ClickHouse counting the same 7 days' events with a
//! bare `SELECT count()`.
//!
//! Run: `make bench-query` (the data is generated in ClickHouse once, into
//! the `tributary_bench` database, and reused while it holds 10M rows).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tributary_core::config::Env;
use tributary_tests::Stack;

const DB: &str = "tributary_bench";
const EVENTS: u64 = 10_000_000;
/// 2026-10-01T00:00:00Z; the data covers 30 days from here.
const START: u64 = 1_790_812_800;
const RUNS: usize = 20;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i]
}

async fn ensure_data(stack: &Stack) {
    let ch = tributary_tests::clickhouse::client(&stack.clickhouse_url);
    let count: u64 = ch
        .query_raw(&format!("SELECT count() FROM {DB}.events"))
        .fetch_one()
        .await
        .unwrap_or(0);
    if count == EVENTS {
        println!("reusing {EVENTS} events in {DB}.events");
        return;
    }
    ch.query_raw(&format!("DROP DATABASE IF EXISTS {DB}"))
        .execute()
        .await
        .unwrap();
    let settings = tributary_tests::clickhouse::settings(&stack.clickhouse_url, DB);
    tributary_core::schema::migrate_clickhouse(&settings)
        .await
        .unwrap();
    let started = Instant::now();
    // Half pageviews, then view_item, checkout, purchase, signup; 100k users;
    // four browsers; spread evenly over 30 days.
    let sql = format!(
        "INSERT INTO {DB}.events (uuid, project_id, event, distinct_id, properties, timestamp, timestamp_ms, received_at, ip, lib, lib_version) \
         SELECT generateUUIDv4(), 1, \
           arrayElement(['$pageview','$pageview','$pageview','$pageview','$pageview','view_item','view_item','checkout','purchase','signup'], cityHash64(number) % 10 + 1), \
           concat('user-', toString(cityHash64(number, 1) % 100000)), \
           concat('{{\"$browser\":\"', arrayElement(['Chrome','Firefox','Safari','Edge'], cityHash64(number, 3) % 4 + 1), '\",\"amount\":', toString(number % 100), '}}'), \
           toDateTime({START} + cityHash64(number, 2) % 2592000) AS ts, toUInt64(ts) * 1000 + number % 1000, ts, '', 'bench', '1' \
         FROM system.numbers LIMIT {EVENTS}"
    );
    ch.query_raw(&sql).execute().await.unwrap();
    println!(
        "generated {EVENTS} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

async fn timed(http: &reqwest::Client, url: &str, body: &Value) -> (Duration, Value) {
    let started = Instant::now();
    let r = http.post(url).json(body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "{url}");
    let v: Value = r.json().await.unwrap();
    (started.elapsed(), v)
}

fn report(name: &str, samples: &mut [Duration], goal: Option<Duration>) -> Duration {
    let p50 = percentile(samples, 0.5);
    let p95 = percentile(samples, 0.95);
    let verdict = match goal {
        Some(g) if p95 < g => format!("goal p95 < {} ms: met", g.as_millis()),
        Some(g) => format!("goal p95 < {} ms: NOT met", g.as_millis()),
        None => String::new(),
    };
    println!(
        "{name:<34} p50 {:>8.1} ms   p95 {:>8.1} ms   {verdict}",
        p50.as_secs_f64() * 1000.0,
        p95.as_secs_f64() * 1000.0
    );
    p95
}

#[tokio::main]
async fn main() {
    let stack = Stack::require();
    ensure_data(&stack).await;
    let (host, port) = tributary_tests::clickhouse::host_port(&stack.clickhouse_url);
    let port = port.to_string();
    let vars = [
        // Keyless reads of the bench's project (the explicit opt-in).
        ("QUERY_REQUIRE_API_KEY", "false"),
        ("QUERY_KEYLESS_PROJECT_ID", "1"),
        ("QUERY_HOST", "127.0.0.1"),
        ("QUERY_CLICKHOUSE_HOST", host.as_str()),
        ("QUERY_CLICKHOUSE_PORT", port.as_str()),
        ("QUERY_CLICKHOUSE_DATABASE", DB),
        ("REDIS_URL", stack.redis_url.as_str()),
    ];
    let mut config = tributary_query::QueryConfig::from_env(&Env::new(&vars)).unwrap();
    config.listen.set_port(0);
    let server = tributary_query::QueryServer::bind(&config).await.unwrap();
    let base = format!("http://{}", server.local_addr().unwrap());
    let stop = CancellationToken::new();
    tokio::spawn(server.serve(stop.clone()));
    let http = reqwest::Client::new();

    let from = START + 20 * 86_400;
    let to = from + 7 * 86_400;
    let ch = tributary_tests::clickhouse::client(&stack.clickhouse_url);
    let mut baseline = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        let n: u64 = ch
            .query_raw(&format!(
                "SELECT count() FROM {DB}.events WHERE project_id = 1 AND timestamp >= toDateTime({from}) AND timestamp < toDateTime({to})"
            ))
            .fetch_one()
            .await
            .unwrap();
        assert!(n > 0);
        baseline.push(started.elapsed());
    }

    let trend = json!({"series":[{"event":"$pageview","math":"unique_users"}],"breakdown":"$browser","interval":"day",
        "date_from": chrono::DateTime::from_timestamp(from as i64, 0).unwrap().to_rfc3339(),
        "date_to": chrono::DateTime::from_timestamp(to as i64, 0).unwrap().to_rfc3339()});
    let funnel = json!({"steps":[{"event":"$pageview"},{"event":"view_item"},{"event":"purchase"}],"conversion_window":"1d",
        "date_from":"2026-10-01T00:00:00Z","date_to":"2026-10-31T00:00:00Z"});
    let trend_url = format!("{base}/api/query/trend");
    let funnel_url = format!("{base}/api/query/funnel");
    let mut samples: Vec<(String, Vec<Duration>)> = Vec::new();
    let mut last = (Value::Null, Value::Null);
    for (name, url, body) in [
        ("trend", &trend_url, &trend),
        ("funnel", &funnel_url, &funnel),
    ] {
        let mut uncached = Vec::new();
        for _ in 0..RUNS {
            let (d, v) = timed(&http, &format!("{url}?refresh=true"), body).await;
            uncached.push(d);
            if name == "trend" {
                last.0 = v
            } else {
                last.1 = v
            }
        }
        let mut cached = Vec::new();
        for _ in 0..RUNS {
            let (d, v) = timed(&http, url, body).await;
            assert_eq!(v["cached"], true);
            cached.push(d);
        }
        samples.push((format!("{name} uncached"), uncached));
        samples.push((format!("{name} cached"), cached));
    }
    println!("\n{EVENTS} events, 100000 users, 30 days; {RUNS} runs each");
    let base_p95 = report("baseline: bare count() over 7 days", &mut baseline, None);
    let goals = [
        Some(Duration::from_millis(500)),
        None,
        Some(Duration::from_secs(2)),
        None,
    ];
    let mut p95s = Vec::new();
    for ((name, s), goal) in samples.iter_mut().zip(goals) {
        p95s.push(report(name, s, goal));
    }
    println!(
        "ratio trend uncached p95 / baseline p95: {:.1}x",
        p95s[0].as_secs_f64() / base_p95.as_secs_f64()
    );
    println!(
        "funnel: {} users entered, {} converted",
        last.1["steps"][0]["count"], last.1["steps"][2]["count"]
    );
    println!(
        "trend lines: {}",
        last.0["results"].as_array().map_or(0, Vec::len)
    );
    stop.cancel();
}
