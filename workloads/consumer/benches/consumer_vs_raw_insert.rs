//! Consumer throughput against a raw `clickhouse`-crate insert of the same
//! rows, and event visibility under steady capture load, in one run.
//!
//! `cargo bench -p tributary-consumer --bench consumer_vs_raw_insert` (or
//! `make bench-consumer`). Needs the local stack.
//!
//! 1. N events are produced to a fresh topic (12 partitions).
//! 2. Baseline: the same rows inserted with the `clickhouse` crate in batches
//!    of `CONSUMER_BATCH_SIZE` into a fresh table: rows/s.
//! 3. The consumer reads the pre-filled topic into another fresh table:
//!    rows/s from the moment it holds its partitions until the last row is
//!    written (decode, insert, commit included).
//! 4. The stack's two-shard cluster: 2 and 3 again with `events`
//!    Distributed over the shards (synchronous inserts, as the consumer
//!    makes them there).
//! 5. Visibility: capture and the consumer run together while events are
//!    posted at a steady rate (`BENCH_RATE`, 5000 events/s); p50/p95 of
//!    insert time minus capture's `received_at`, read from the consumer's
//!    histogram.
//!
//! `BENCH_PERF_DIR=<dir>` also samples the process's stacks during the
//! consumer's phases of steps 3 and 4 (`tributary_tests::perf`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

// The tests' fixtures: the consumer is started exactly as they start it.
#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tributary_consumer::ConsumerConfig;
use tributary_consumer::row::EventRow;
use tributary_core::Event;
use tributary_core::clickhouse::ClickHouseSettings;
use tributary_core::config::Env;
use tributary_tests::clickhouse::{cluster_settings, host_port};
use tributary_tests::cpu::{cpu_time, stack_pid};
use tributary_tests::kafka::{client_config, create_topic};
use tributary_tests::perf::Profile;
use tributary_tests::{Stack, poll_until, unique_name};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn batch() -> usize {
    std::env::var("BENCH_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

fn events(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| tributary_tests::sample::shop_event(i, chrono::Utc::now()))
        .collect()
}

fn env_map(pairs: &[(&str, String)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn settings(stack: &Stack, db: &str) -> ClickHouseSettings {
    tributary_tests::clickhouse::settings(&stack.clickhouse_url, db)
}

fn consumer_config(stack: &Stack, topic: &str, db: &str) -> ConsumerConfig {
    let (host, port) = host_port(&stack.clickhouse_url);
    let vars = env_map(&[
        (
            "CONSUMER_KAFKA_BOOTSTRAP_SERVERS",
            stack.kafka_bootstrap.clone(),
        ),
        ("CONSUMER_KAFKA_TOPIC", topic.to_owned()),
        ("CONSUMER_DLQ_TOPIC", format!("{topic}_dlq")),
        ("CONSUMER_KAFKA_GROUP_ID", unique_name("bench")),
        ("CONSUMER_CLICKHOUSE_HOST", host),
        ("CONSUMER_CLICKHOUSE_PORT", port.to_string()),
        ("CONSUMER_CLICKHOUSE_DATABASE", db.to_owned()),
        ("CONSUMER_BATCH_SIZE", batch().to_string()),
        ("CONSUMER_FLUSH_INTERVAL_MS", "500".to_owned()),
        ("CONSUMER_SESSION_TIMEOUT_MS", "6000".to_owned()),
    ]);
    ConsumerConfig::from_env(&Env::new(&vars)).unwrap()
}

/// CPU time used so far by this process (the consumer runs in it), the
/// stack's broker and its ClickHouse server, in that order.
fn cpu_now() -> [Duration; 3] {
    let of = |pid: Option<u32>| pid.map_or(Duration::ZERO, cpu_time);
    [
        cpu_time(std::process::id()),
        of(stack_pid("kafka")),
        of(stack_pid("clickhouse")),
    ]
}

/// CPU µs per row spent since `before` by each of the three of `cpu_now`.
fn cpu_per_row(before: [Duration; 3], rows: usize) -> [f64; 3] {
    per_row(before, cpu_now(), rows)
}

/// CPU µs per row spent between `before` and `after`, each of the three.
fn per_row(before: [Duration; 3], after: [Duration; 3], rows: usize) -> [f64; 3] {
    std::array::from_fn(|i| {
        after[i].saturating_sub(before[i]).as_secs_f64() * 1e6 / rows.max(1) as f64
    })
}

/// The CPU of a phase that wrote to ClickHouse, per row: the bench's and
/// the broker's over the phase's own seconds (`at_end`), ClickHouse's
/// until it has merged what the phase wrote (read now, after [`quiet`]).
fn phase_cpu(before: [Duration; 3], at_end: [Duration; 3], rows: usize) -> [f64; 3] {
    let merged = cpu_now();
    per_row(before, [at_end[0], at_end[1], merged[2]], rows)
}

/// Waits until the ClickHouse server at `url` has merged what the last
/// phase wrote: no merge running and the same count of active parts for
/// 3 s. Without it, the merges of the raw insert's parts ran during the
/// consumer's phase: they slowed it and counted in its ClickHouse CPU. It
/// watches the whole server (run the bench alone), and cannot know of a
/// merge ClickHouse would schedule after a longer pause.
async fn quiet(url: &str) {
    // Polled every half second: the polls are ClickHouse work too, and
    // the phase's ClickHouse CPU counts them.
    const EVERY: Duration = Duration::from_millis(500);
    const STEADY: Duration = Duration::from_secs(3);
    let client = tributary_tests::clickhouse::client(url);
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut seen, mut since) = (u64::MAX, Instant::now());
    loop {
        let merges: u64 = client
            .query("SELECT count() FROM system.merges")
            .fetch_one()
            .await
            .unwrap();
        let parts: u64 = client
            .query("SELECT count() FROM system.parts WHERE active")
            .fetch_one()
            .await
            .unwrap();
        if merges > 0 || parts != seen {
            seen = if merges > 0 { u64::MAX } else { parts };
            since = Instant::now();
        } else if since.elapsed() >= STEADY {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "ClickHouse at {url} kept merging for 120 s"
        );
        tokio::time::sleep(EVERY).await;
    }
}

/// A measured phase: its seconds, and the CPU µs per row of `cpu_now`'s
/// three (see [`phase_cpu`]).
struct Phase {
    secs: f64,
    cpu: [f64; 3],
}

/// Inserts `rows` in batches with the `clickhouse` crate into the (freshly
/// migrated) events of `settings`; `quiet_url` is the server whose merges
/// are waited for.
async fn raw_insert(settings: &ClickHouseSettings, rows: &[EventRow], quiet_url: &str) -> Phase {
    tributary_core::schema::migrate_clickhouse(settings)
        .await
        .unwrap();
    let client = settings.client();
    quiet(quiet_url).await;
    let cpu = cpu_now();
    let started = Instant::now();
    for chunk in rows.chunks(batch()) {
        let mut insert = client.insert::<EventRow>("events").await.unwrap();
        for row in chunk {
            insert.write(row).await.unwrap();
        }
        insert.end().await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let at_end = cpu_now();
    quiet(quiet_url).await;
    Phase {
        secs,
        cpu: phase_cpu(cpu, at_end, rows.len()),
    }
}

/// The consumer configured by `config` writing `n` rows from the
/// pre-filled topic into its (freshly migrated) database, timed (and its
/// CPU counted) from the first message read, like the raw read baseline:
/// group join and offset lookup are start-up, not throughput. `phase`
/// names its profile (`tributary_tests::perf`).
async fn consume(config: ConsumerConfig, n: usize, quiet_url: &str, phase: &str) -> Phase {
    tributary_core::schema::migrate_clickhouse(&config.clickhouse)
        .await
        .unwrap();
    quiet(quiet_url).await;
    let consumer = common::start(config);
    poll_until(
        "the consumer's first message",
        Duration::from_secs(60),
        || async { (consumer.metrics.consumed.get() > 0).then_some(()) },
    )
    .await;
    let cpu = cpu_now();
    let profile = Profile::start(std::process::id(), phase);
    let started = Instant::now();
    poll_until("every row written", Duration::from_secs(600), || async {
        (consumer.metrics.rows_written.get() >= n as u64).then_some(())
    })
    .await;
    let secs = started.elapsed().as_secs_f64();
    let at_end = cpu_now();
    if let Some(profile) = profile {
        profile.stop();
    }
    quiet(quiet_url).await;
    let cpu = phase_cpu(cpu, at_end, n);
    let batches = consumer.metrics.batches_written.get();
    println!(
        "  the consumer wrote {n} rows in {batches} inserts ({:.0} rows each)",
        n as f64 / batches.max(1) as f64
    );
    consumer.stop().await;
    Phase { secs, cpu }
}

/// Quantile from the cumulative `_bucket` lines of a histogram (upper bound
/// of the bucket holding the quantile, interpolated linearly inside it).
fn histogram_quantile(text: &str, name: &str, q: f64) -> f64 {
    let mut buckets: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}_bucket{{")))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let count: f64 = l.split_whitespace().last()?.parse().ok()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last().map(|b| b.1).unwrap_or(0.0);
    let target = q * total;
    let mut prev = (0.0, 0.0);
    for (le, count) in buckets {
        if count >= target {
            if !le.is_finite() {
                return prev.0;
            }
            let frac = if count > prev.1 {
                (target - prev.1) / (count - prev.1)
            } else {
                1.0
            };
            return prev.0 + (le - prev.0) * frac;
        }
        prev = (le, count);
    }
    f64::NAN
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let stack = Stack::require();
    let topic = unique_name("bench_events");
    create_topic(&stack.kafka_bootstrap, &topic, 12).await;
    create_topic(&stack.kafka_bootstrap, &format!("{topic}_dlq"), 1).await;

    println!("producing {n} events...");
    let all = events(n);
    let producer: rdkafka::producer::FutureProducer = client_config(&stack.kafka_bootstrap)
        .set("linger.ms", "20")
        .create()
        .unwrap();
    for chunk in all.chunks(20_000) {
        let payloads: Vec<Vec<u8>> = chunk
            .iter()
            .map(|e| e.to_kafka_payload().unwrap())
            .collect();
        let sends = chunk.iter().zip(&payloads).map(|(e, p)| {
            producer.send(
                rdkafka::producer::FutureRecord::to(&topic)
                    .key(e.kafka_key())
                    .payload(p),
                Duration::from_secs(60),
            )
        });
        for r in futures::future::join_all(sends).await {
            r.map_err(|(e, _)| e).unwrap();
        }
    }

    // Baseline: raw inserts of the same rows.
    let rows: Vec<EventRow> = all
        .iter()
        .map(|e| EventRow::from_event(e.clone()).unwrap())
        .collect();
    let raw_db = unique_name("bench_raw");
    let raw = raw_insert(&settings(&stack, &raw_db), &rows, &stack.clickhouse_url).await;
    let (raw_secs, raw_cpu) = (raw.secs, raw.cpu);
    let raw_rate = n as f64 / raw_secs;

    // Decode alone: the same messages pushed into batches of the
    // consumer's size, each dropped when full as a written one is; no I/O.
    // (One batch of all N, as before 2026-12-08, also timed its growth.)
    let payloads: Vec<(Vec<u8>, Vec<u8>)> = all
        .iter()
        .map(|e| (e.kafka_key().to_vec(), e.to_kafka_payload().unwrap()))
        .collect();
    let cpu = cpu_now();
    let started = Instant::now();
    let mut decoded = tributary_consumer::batch::Batch::default();
    let mut rows_decoded = 0;
    for (i, (k, p)) in payloads.into_iter().enumerate() {
        decoded.push(
            tributary_consumer::batch::Incoming {
                partition: (i % 12) as i32,
                offset: i as i64,
                key: Some(k),
                payload: Some(p),
            },
            Instant::now(),
        );
        if decoded.len() == batch() {
            rows_decoded += std::mem::take(&mut decoded).entries.len();
        }
    }
    rows_decoded += decoded.entries.len();
    drop(decoded);
    let decode_secs = started.elapsed().as_secs_f64();
    let decode_cpu = cpu_per_row(cpu, n);
    assert_eq!(rows_decoded, n);

    // Second baseline: only reading the topic (no decode, no insert), to show
    // what the broker alone allows.
    let reader: rdkafka::consumer::StreamConsumer = client_config(&stack.kafka_bootstrap)
        .set("group.id", unique_name("bench_reader"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    rdkafka::consumer::Consumer::subscribe(&reader, &[&topic]).unwrap();
    let first = reader.recv().await.unwrap();
    drop(first);
    let cpu = cpu_now();
    let started = Instant::now();
    for _ in 1..n {
        let m = reader.recv().await.unwrap();
        std::hint::black_box(rdkafka::Message::payload(&m).map(<[u8]>::len));
    }
    let read_secs = started.elapsed().as_secs_f64();
    let read_cpu = cpu_per_row(cpu, n);
    let read_rate = n as f64 / read_secs;
    drop(reader);

    // The consumer on the pre-filled topic.
    let db = unique_name("bench_consumer");
    let consumer = consume(
        consumer_config(&stack, &topic, &db),
        n,
        &stack.clickhouse_url,
        "consumer",
    )
    .await;
    let (consumer_secs, consumer_cpu) = (consumer.secs, consumer.cpu);
    let consumer_rate = n as f64 / consumer_secs;

    // The same two on the stack's two-shard cluster.
    let (cluster, node) = stack.cluster();
    let on_cluster = |db: &str| cluster_settings(&node, db, &cluster);
    // One node's merges are waited for: the other shard's are not seen.
    let raw_cluster_secs = raw_insert(&on_cluster(&unique_name("bench_raw_c")), &rows, &node)
        .await
        .secs;
    let mut config = consumer_config(&stack, &topic, "unused");
    config.clickhouse = on_cluster(&unique_name("bench_consumer_c"));
    let consumer_cluster_secs = consume(config, n, &node, "consumer-cluster").await.secs;

    // Visibility under steady capture load.
    let rate: u64 = std::env::var("BENCH_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let seconds: u64 = 20;
    let vis_topic = unique_name("bench_visibility");
    create_topic(&stack.kafka_bootstrap, &vis_topic, 12).await;
    create_topic(&stack.kafka_bootstrap, &format!("{vis_topic}_dlq"), 1).await;
    let vis_db = unique_name("bench_visibility");
    tributary_core::schema::migrate_clickhouse(&settings(&stack, &vis_db))
        .await
        .unwrap();
    let mut vis_config = consumer_config(&stack, &vis_topic, &vis_db);
    vis_config.flush_interval = Duration::from_millis(1000);
    let consumer = common::start(vis_config);
    let capture_vars = env_map(&[
        ("CAPTURE_REQUIRE_API_KEY", "false".to_owned()),
        ("CAPTURE_KEYLESS_PROJECT_ID", "1".to_owned()),
        ("CAPTURE_HOST", "127.0.0.1".to_owned()),
        (
            "CAPTURE_KAFKA_BOOTSTRAP_SERVERS",
            stack.kafka_bootstrap.clone(),
        ),
        ("CAPTURE_KAFKA_TOPIC", vis_topic.clone()),
    ]);
    let mut capture_config =
        tributary_capture::CaptureConfig::from_env(&Env::new(&capture_vars)).unwrap();
    capture_config.listen.set_port(0);
    let capture = tributary_capture::Capture::bind(&capture_config)
        .await
        .unwrap();
    let url = format!("http://{}/batch", capture.local_addr().unwrap());
    let capture_stop = CancellationToken::new();
    let capture_task = tokio::spawn(capture.serve(capture_stop.clone()));
    let http = reqwest::Client::new();
    let ready = url.replace("/batch", "/ready");
    tributary_tests::wait_for_ok("capture ready", &ready, Duration::from_secs(30)).await;
    poll_until(
        "the visibility consumer to hold its partitions",
        Duration::from_secs(60),
        || async { (consumer.metrics.assigned_partitions.get() > 0).then_some(()) },
    )
    .await;

    // 10 requests of rate/10 events per second.
    let per_request = (rate / 10).max(1) as usize;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut sent = 0u64;
    let mut first_tick = None;
    let mut last_tick = Instant::now();
    for i in 0..seconds * 10 {
        tick.tick().await;
        last_tick = Instant::now();
        first_tick.get_or_insert(last_tick);
        let batch: Vec<serde_json::Value> = (0..per_request)
            .map(|j| serde_json::json!({"event": "$pageview", "distinct_id": format!("v-{}", (i as usize * per_request + j) % 3000), "properties": {"$current_url": "https://example.com/"}}))
            .collect();
        let r = http
            .post(&url)
            .json(&serde_json::json!({"batch": batch}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        sent += per_request as u64;
    }
    // A post slower than its tick makes the next ones catch up: the rate
    // printed is the one achieved.
    // (the first tick is at once: the posts after it span the ticks.)
    let span = first_tick.map_or(Duration::ZERO, |t| last_tick - t);
    let achieved = (sent - per_request as u64) as f64 / span.as_secs_f64().max(1e-9);
    poll_until(
        "every captured event written",
        Duration::from_secs(120),
        || async { (consumer.metrics.rows_written.get() >= sent).then_some(()) },
    )
    .await;
    let text = consumer.metrics_text();
    let p50 = histogram_quantile(&text, "consumer_event_visibility_seconds", 0.50);
    let p95 = histogram_quantile(&text, "consumer_event_visibility_seconds", 0.95);
    consumer.stop().await;
    capture_stop.cancel();
    let _ = capture_task.await;

    println!();
    println!("{:<44} {:>12} {:>10}", "case", "rows/s", "seconds");
    println!(
        "{:<44} {:>12.0} {:>10.2}",
        format!("raw clickhouse-crate insert ({}/batch)", batch()),
        raw_rate,
        raw_secs
    );
    println!(
        "{:<44} {:>12.0} {:>10.2}",
        "consumer from a pre-filled topic", consumer_rate, consumer_secs
    );
    println!(
        "{:<44} {:>12.0} {:>10.2}",
        "raw insert, two-shard cluster (Distributed)",
        n as f64 / raw_cluster_secs,
        raw_cluster_secs
    );
    println!(
        "{:<44} {:>12.0} {:>10.2}",
        "consumer, two-shard cluster",
        n as f64 / consumer_cluster_secs,
        consumer_cluster_secs
    );
    println!(
        "{:<44} {:>12.0} {:>10.2}",
        "raw Kafka read of the topic (no decode/insert)", read_rate, read_secs
    );
    println!(
        "{:<44} {:>12.0} {:>10.2}",
        "decode only (into batches, no I/O)",
        n as f64 / decode_secs,
        decode_secs
    );
    println!();
    println!(
        "CPU µs per row (/proc): {:<30} {:>8} {:>8} {:>10} {:>8}",
        "case", "bench", "broker", "ClickHouse", "total"
    );
    for (case, cpu) in [
        ("raw insert (bench = client)", raw_cpu),
        ("decode only", decode_cpu),
        ("raw Kafka read", read_cpu),
        ("consumer (in the bench)", consumer_cpu),
    ] {
        println!(
            "CPU µs per row (/proc): {case:<30} {:>8.2} {:>8.2} {:>10.2} {:>8.2}",
            cpu[0],
            cpu[1],
            cpu[2],
            cpu.iter().sum::<f64>()
        );
    }
    println!();
    println!(
        "ratio consumer/raw insert: {:.3} (goal >= 0.8)",
        consumer_rate / raw_rate
    );
    println!(
        "ratio consumer/raw insert on the two-shard cluster: {:.3}",
        raw_cluster_secs / consumer_cluster_secs
    );
    println!(
        "ratio consumer/raw Kafka read: {:.3}",
        consumer_rate / read_rate
    );
    println!(
        "visibility at {achieved:.0} events/s (asked {rate}) for {seconds} s (flush interval 1 s): p50 {:.2} s, p95 {:.2} s (goal p95 < 2 s at 5000 events/s)",
        p50, p95
    );
    // After the figures are out, the one server's databases go (the
    // cluster's stay: dropping them needs each shard), and the topics.
    for db in [&raw_db, &db, &vis_db] {
        tributary_tests::clickhouse::drop_database(&stack.clickhouse_url, db).await;
    }
    let dead_letters = [format!("{topic}_dlq"), format!("{vis_topic}_dlq")];
    tributary_tests::kafka::delete_topics(
        &stack.kafka_bootstrap,
        &[&topic, &vis_topic, &dead_letters[0], &dead_letters[1]],
    )
    .await;
}
