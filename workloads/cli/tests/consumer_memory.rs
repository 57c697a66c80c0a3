//! The consumer's memory is bounded by bytes, not by messages: 300 events
//! of 900 kB each (270 MB, under the batch's message count) waiting in
//! Kafka are stored while the real consumer's peak resident memory
//! (`VmHWM`) stays far below what holding them at once would take. The
//! flush interval is 20 s, so only `CONSUMER_BATCH_MAX_BYTES` ends a batch
//! before it; without it, the consumer held them all in one batch (and,
//! with larger backlogs, more than its pod's 1 GiB: a crash loop).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::Utc;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tributary_core::Event;
use tributary_tests::kafka::{PrivateBroker, client_config, create_topic, free_port};
use tributary_tests::process::Guarded;
use tributary_tests::process::peak_rss;
use tributary_tests::{Stack, poll_until, unique_name};

const EVENTS: usize = 300;
const EVENT_BYTES: usize = 900_000;
/// What the process may peak at: a fraction of the 270 MB backlog (two
/// 16 MiB batches, each as read and as rows, librdkafka's prefetch of one
/// batch, the insert's buffer and the binary itself). Measured 146-156 MiB
/// since the prefetch is one batch (`queued.max.messages.kbytes`); with
/// librdkafka's default 64 MiB it was 186-195 MiB and once 224 MiB with
/// the suite running beside it.
const PEAK_LIMIT: u64 = 192 * 1024 * 1024;

#[tokio::test]
async fn large_events_are_stored_within_a_bounded_memory() {
    let stack = Stack::require();
    let broker = PrivateBroker::start(&stack.tansu_bin.clone().expect("TANSU_BIN"));
    let bootstrap = broker.bootstrap();
    let topic = unique_name("large_events");
    let dlq = unique_name("large_events_dlq");
    create_topic(&bootstrap, &topic, 1).await;
    create_topic(&bootstrap, &dlq, 1).await;

    // The events wait in Kafka before the consumer starts.
    // One record per produce request: tansu 0.6 reports the high
    // watermark of a many-record batch short, and consumers then wait.
    let producer: FutureProducer = client_config(&bootstrap)
        .set("message.max.bytes", "2000000")
        .set("linger.ms", "0")
        .set("batch.num.messages", "1")
        .create()
        .unwrap();
    let mut sent = Vec::with_capacity(EVENTS);
    for i in 0..EVENTS {
        let mut e = Event::new(1, "upload", format!("user-{i}"), Utc::now());
        e.properties
            .insert("blob".into(), "x".repeat(EVENT_BYTES).into());
        let payload = e.to_kafka_payload().unwrap();
        sent.push(
            producer
                .send_result(
                    FutureRecord::to(&topic)
                        .key(e.distinct_id.as_str())
                        .payload(&payload),
                )
                .map_err(|(e, _)| e),
        );
    }
    for delivery in sent {
        delivery
            .unwrap_or_else(|e| panic!("{e}"))
            .await
            .unwrap()
            .unwrap_or_else(|(e, _)| panic!("{e}"));
    }
    drop(producer);

    let database = unique_name("large_events");
    let (host, port) = tributary_tests::clickhouse::host_port(&stack.clickhouse_url);
    let migrated = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .arg("migrate")
        .env("CONSUMER_CLICKHOUSE_HOST", &host)
        .env("CONSUMER_CLICKHOUSE_PORT", port.to_string())
        .env("CONSUMER_CLICKHOUSE_DATABASE", &database)
        .output()
        .unwrap();
    assert!(migrated.status.success(), "{migrated:?}");

    let consumer = Guarded(
        Command::new(env!("CARGO_BIN_EXE_tributary"))
            .arg("consumer")
            .env("CONSUMER_KAFKA_BOOTSTRAP_SERVERS", &bootstrap)
            .env("CONSUMER_KAFKA_TOPIC", &topic)
            .env("CONSUMER_KAFKA_GROUP_ID", unique_name("large_events"))
            .env("CONSUMER_DLQ_TOPIC", &dlq)
            .env("CONSUMER_CLICKHOUSE_HOST", &host)
            .env("CONSUMER_CLICKHOUSE_PORT", port.to_string())
            .env("CONSUMER_CLICKHOUSE_DATABASE", &database)
            .env("CONSUMER_METRICS_PORT", free_port().to_string())
            .env("CONSUMER_FLUSH_INTERVAL_MS", "20000")
            .env("LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = consumer.0.id();

    let client = tributary_tests::clickhouse::client(&stack.clickhouse_url);
    let count_sql = format!("SELECT count() FROM {database}.events");
    poll_until("every large event stored", Duration::from_secs(50), || {
        let (client, sql) = (client.clone(), count_sql.clone());
        async move {
            let n: u64 = client.query(&sql).fetch_one().await.ok()?;
            (n >= EVENTS as u64).then_some(())
        }
    })
    .await;
    let peak = peak_rss(pid);
    println!(
        "consumer peak RSS {} MiB (limit {} MiB)",
        peak / 1024 / 1024,
        PEAK_LIMIT / 1024 / 1024
    );
    assert!(
        peak < PEAK_LIMIT,
        "the consumer peaked at {} MiB storing {} MB of events",
        peak / 1024 / 1024,
        EVENTS * EVENT_BYTES / 1_000_000
    );
    client
        .query(&format!("DROP DATABASE {database}"))
        .execute()
        .await
        .unwrap();
}
