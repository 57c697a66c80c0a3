//! Query latency on 10 million synthetic events (30 days, 100 000 users) in
//! the stack's ClickHouse: a 7-day daily unique-users trend with a breakdown
//! and a 3-step 30-day funnel, each 20 times uncached (`refresh=true`) and 20
//! times cached, over HTTP against the real service. The baseline, measured
//! in the same run, is ClickHouse counting the same 7 days' events with a
//! bare `SELECT count()`.
//!
//! Then the same on the stack's two-shard cluster (`events` Distributed over
//! both shards), with the ratio of each p95 to one server's and a check that
//! both answer alike (`BENCH_NO_CLUSTER=1` skips it).
//!
//! Run: `make bench-query` (the data is generated in ClickHouse once, into
//! the `tributary_bench` database of the server and of the cluster, and
//! reused while it holds 10M rows).
//!
//! `BENCH_QUERY_EVENTS=N` runs the same on N events of the same shape (the
//! same users and days, denser), in a database of their own
//! (`tributary_bench_N`), for the table of how latency and memory grow;
//! `QUERY_FUNNEL_LOCAL_EVENTS` passes the service's funnel memory budget.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tributary_core::clickhouse::ClickHouseSettings;
use tributary_core::config::Env;
use tributary_tests::Stack;

/// The events generated, 10M unless `BENCH_QUERY_EVENTS` says otherwise.
fn events() -> u64 {
    std::env::var("BENCH_QUERY_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000)
}

/// The database of `events()` events: `tributary_bench` for the default.
fn database() -> String {
    match events() {
        10_000_000 => "tributary_bench".to_owned(),
        n => format!("tributary_bench_{n}"),
    }
}
/// 2026-10-01T00:00:00Z; the data covers 30 days from here.
const START: u64 = 1_790_812_800;
const RUNS: usize = 20;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i]
}

/// Where the events are: the stack's server, or its two-shard cluster.
struct Target {
    what: &'static str,
    settings: ClickHouseSettings,
}

async fn ensure_data(target: &Target) {
    let ch = target.settings.client();
    let count: u64 = ch
        .query_raw("SELECT count() FROM events")
        .fetch_one()
        .await
        .unwrap_or(0);
    let db = &target.settings.database;
    let events = events();
    if count == events {
        println!("{}: reusing {events} events in {db}.events", target.what);
        return;
    }
    drop_everywhere(target).await;
    tributary_core::schema::migrate_clickhouse(&target.settings)
        .await
        .unwrap();
    let started = Instant::now();
    // Half pageviews, then view_item, checkout, purchase, signup; 100k users;
    // four browsers; spread evenly over 30 days. On the cluster through the
    // Distributed table, synchronously, as the consumer writes.
    let sql = format!(
        "INSERT INTO {db}.events (uuid, project_id, event, distinct_id, properties, timestamp, timestamp_ms, received_at, ip, lib, lib_version) \
         SELECT generateUUIDv4(), 1, \
           arrayElement(['$pageview','$pageview','$pageview','$pageview','$pageview','view_item','view_item','checkout','purchase','signup'], cityHash64(number) % 10 + 1), \
           concat('user-', toString(cityHash64(number, 1) % 100000)), \
           concat('{{\"$browser\":\"', arrayElement(['Chrome','Firefox','Safari','Edge'], cityHash64(number, 3) % 4 + 1), '\",\"amount\":', toString(number % 100), '}}'), \
           toDateTime({START} + cityHash64(number, 2) % 2592000) AS ts, toUInt64(ts) * 1000 + number % 1000, ts, '', 'bench', '1' \
         FROM system.numbers LIMIT {events}"
    );
    ch.query_raw(&sql).execute().await.unwrap();
    println!(
        "{}: generated {events} events in {:.1} s",
        target.what,
        started.elapsed().as_secs_f64()
    );
}

/// Drops the database on the server, or on every node of the cluster.
async fn drop_everywhere(target: &Target) {
    let db = &target.settings.database;
    let hosts: Vec<String> = match &target.settings.cluster {
        None => vec![target.settings.host.clone()],
        Some(cluster) => target
            .settings
            .client_without_database()
            .query("SELECT host_name FROM system.clusters WHERE cluster = ?")
            .bind(cluster)
            .fetch_all()
            .await
            .unwrap(),
    };
    for host in hosts {
        target
            .settings
            .on_host(&host)
            .client_without_database()
            .query_raw(&format!("DROP DATABASE IF EXISTS {db}"))
            .execute()
            .await
            .unwrap();
    }
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

/// p95s of the trend and funnel (uncached, cached) and what they answered.
struct Measured {
    p95s: Vec<Duration>,
    answers: (Value, Value),
}

async fn measure(stack: &Stack, target: &Target) -> Measured {
    ensure_data(target).await;
    let port = target.settings.port.to_string();
    let mut vars = vec![
        // Keyless reads of the bench's project (the explicit opt-in).
        ("QUERY_REQUIRE_API_KEY", "false"),
        ("QUERY_KEYLESS_PROJECT_ID", "1"),
        ("QUERY_HOST", "127.0.0.1"),
        ("QUERY_CLICKHOUSE_HOST", target.settings.host.as_str()),
        ("QUERY_CLICKHOUSE_PORT", port.as_str()),
        (
            "QUERY_CLICKHOUSE_DATABASE",
            target.settings.database.as_str(),
        ),
        ("REDIS_URL", stack.redis_url.as_str()),
    ];
    if let Some(cluster) = &target.settings.cluster {
        vars.push(("QUERY_CLICKHOUSE_CLUSTER", cluster.as_str()));
    }
    // The funnel's memory budget, when the run sets it.
    let budget = std::env::var("QUERY_FUNNEL_LOCAL_EVENTS").ok();
    if let Some(events) = &budget {
        vars.push(("QUERY_FUNNEL_LOCAL_EVENTS", events.as_str()));
    }
    let vars: std::collections::HashMap<String, String> = vars
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let mut config = tributary_query::QueryConfig::from_env(&Env::new(&vars)).unwrap();
    config.listen.set_port(0);
    let server = tributary_query::QueryServer::bind(&config).await.unwrap();
    let base = format!("http://{}", server.local_addr().unwrap());
    let stop = CancellationToken::new();
    tokio::spawn(server.serve(stop.clone()));
    let http = reqwest::Client::new();

    let from = START + 20 * 86_400;
    let to = from + 7 * 86_400;
    let ch = target.settings.client();
    let mut baseline = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        let n: u64 = ch
            .query_raw(&format!(
                "SELECT count() FROM events WHERE project_id = 1 AND timestamp >= toDateTime({from}) AND timestamp < toDateTime({to})"
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
    println!(
        "\n{}: {} events, 100000 users, 30 days; {RUNS} runs each",
        target.what,
        events()
    );
    let base_p95 = report("baseline: bare count() over 7 days", &mut baseline, None);
    let goals = [
        Some(Duration::from_millis(200)),
        None,
        Some(Duration::from_secs(1)),
        None,
    ];
    let mut p95s = vec![base_p95];
    for ((name, s), goal) in samples.iter_mut().zip(goals) {
        p95s.push(report(name, s, goal));
    }
    println!(
        "ratio trend uncached p95 / baseline p95: {:.1}x",
        p95s[1].as_secs_f64() / base_p95.as_secs_f64()
    );
    println!(
        "funnel: {} users entered, {} converted",
        last.1["steps"][0]["count"], last.1["steps"][2]["count"]
    );
    println!(
        "trend lines: {}",
        last.0["results"].as_array().map_or(0, Vec::len)
    );
    // The service runs in this process: its peak is this process's.
    println!(
        "peak resident memory of the bench and the service in it: {} MiB",
        tributary_tests::process::peak_rss(std::process::id()) / (1024 * 1024)
    );
    stop.cancel();
    Measured {
        p95s,
        answers: last,
    }
}

#[tokio::main]
async fn main() {
    let stack = Stack::require();
    let single = Target {
        what: "one server",
        settings: tributary_tests::clickhouse::settings(&stack.clickhouse_url, &database()),
    };
    let one = measure(&stack, &single).await;
    if std::env::var_os("BENCH_NO_CLUSTER").is_some() {
        return;
    }
    let (cluster, node) = stack.cluster();
    let sharded = Target {
        what: "two-shard cluster",
        settings: tributary_tests::clickhouse::cluster_settings(&node, &database(), &cluster),
    };
    let two = measure(&stack, &sharded).await;
    println!();
    for (i, name) in [
        "baseline",
        "trend uncached",
        "trend cached",
        "funnel uncached",
        "funnel cached",
    ]
    .iter()
    .enumerate()
    {
        println!(
            "two-shard cluster / one server, {name} p95: {:.2}",
            two.p95s[i].as_secs_f64() / one.p95s[i].as_secs_f64()
        );
    }
    // The data differ only in uuids: the answers must not.
    let strip = |mut v: Value| {
        if let Some(o) = v.as_object_mut() {
            o.remove("computed_at");
            o.remove("cached");
        }
        v
    };
    assert_eq!(strip(one.answers.0), strip(two.answers.0), "trend");
    assert_eq!(strip(one.answers.1), strip(two.answers.1), "funnel");
    println!("the trend and funnel answers are equal on both");
}
