//! The real `tributary consumer` process killed with SIGKILL mid-stream and
//! started again: every event is counted once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use tributary_core::Event;
use tributary_core::clickhouse::ClickHouseSettings;
use tributary_core::config::Env;
use tributary_tests::clickhouse::{client, host_port};
use tributary_tests::kafka::{client_config, create_topic, free_port};
use tributary_tests::{Stack, poll_until, unique_name};

struct Names {
    topic: String,
    dlq: String,
    group: String,
    db: String,
}

fn spawn_consumer(stack: &Stack, n: &Names) -> Child {
    let (host, port) = host_port(&stack.clickhouse_url);
    Command::new(env!("CARGO_BIN_EXE_tributary"))
        .arg("consumer")
        .env("CONSUMER_KAFKA_BOOTSTRAP_SERVERS", &stack.kafka_bootstrap)
        .env("CONSUMER_KAFKA_TOPIC", &n.topic)
        .env("CONSUMER_DLQ_TOPIC", &n.dlq)
        .env("CONSUMER_KAFKA_GROUP_ID", &n.group)
        .env("CONSUMER_CLICKHOUSE_HOST", host)
        .env("CONSUMER_CLICKHOUSE_PORT", port.to_string())
        .env("CONSUMER_CLICKHOUSE_DATABASE", &n.db)
        .env("CONSUMER_BATCH_SIZE", "400")
        .env("CONSUMER_FLUSH_INTERVAL_MS", "300")
        .env("CONSUMER_SESSION_TIMEOUT_MS", "6000")
        .env("CONSUMER_METRICS_PORT", free_port().to_string())
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn distinct(db: &str, url: &str) -> u64 {
    client(url)
        .query(&format!("SELECT uniqExact(uuid) FROM {db}.events"))
        .fetch_one()
        .await
        .unwrap_or(0)
}

#[tokio::test]
async fn sigkill_mid_stream_then_restart_counts_every_event_once() {
    let stack = Stack::require();
    let n = Names {
        topic: unique_name("events"),
        dlq: unique_name("events_dlq"),
        group: unique_name("consumers"),
        db: unique_name("tributary"),
    };
    create_topic(&stack.kafka_bootstrap, &n.topic, 4).await;
    create_topic(&stack.kafka_bootstrap, &n.dlq, 1).await;
    let (host, port) = host_port(&stack.clickhouse_url);
    let port = port.to_string();
    let vars = [
        ("CONSUMER_CLICKHOUSE_HOST", host.as_str()),
        ("CONSUMER_CLICKHOUSE_PORT", port.as_str()),
        ("CONSUMER_CLICKHOUSE_DATABASE", n.db.as_str()),
    ];
    let settings = ClickHouseSettings::from_env(&Env::new(&vars), "CONSUMER").unwrap();
    tributary_core::schema::migrate_clickhouse(&settings)
        .await
        .unwrap();

    const N: u64 = 6000;
    let producer: FutureProducer = client_config(&stack.kafka_bootstrap).create().unwrap();
    let events: Vec<Event> = (0..N)
        .map(|i| {
            Event::new(
                31,
                "purchase",
                format!("buyer-{}", i % 97),
                chrono::Utc::now(),
            )
        })
        .collect();
    let payloads: Vec<Vec<u8>> = events
        .iter()
        .map(|e| e.to_kafka_payload().unwrap())
        .collect();
    let sends = events.iter().zip(&payloads).map(|(e, payload)| {
        producer.send(
            FutureRecord::to(&n.topic)
                .key(e.kafka_key())
                .payload(payload),
            Duration::from_secs(30),
        )
    });
    for result in futures::future::join_all(sends).await {
        result.map_err(|(e, _)| e).unwrap();
    }

    let mut first = spawn_consumer(&stack, &n);
    // Kill it once some batches are in, while others are still in flight.
    let seen = poll_until(
        "the first batches to land",
        Duration::from_secs(60),
        || async {
            let d = distinct(&n.db, &stack.clickhouse_url).await;
            (d > 0).then_some(d)
        },
    )
    .await;
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(seen < N, "the consumer finished before it could be killed");

    let mut second = spawn_consumer(&stack, &n);
    let url = stack.clickhouse_url.clone();
    let db = n.db.clone();
    poll_until(
        "every event after the restart",
        Duration::from_secs(120),
        || {
            let (url, db) = (url.clone(), db.clone());
            async move { (distinct(&db, &url).await >= N).then_some(()) }
        },
    )
    .await;
    // SIGTERM: the second consumer drains and exits cleanly.
    let pid = second.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = tokio::task::spawn_blocking(move || second.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.success(),
        "consumer exited with {status} after SIGTERM"
    );

    let ch = client(&stack.clickhouse_url);
    assert_eq!(distinct(&n.db, &stack.clickhouse_url).await, N);
    ch.query(&format!("OPTIMIZE TABLE {}.events FINAL", n.db))
        .execute()
        .await
        .unwrap();
    let rows: u64 = ch
        .query(&format!("SELECT count() FROM {}.events", n.db))
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(rows, N, "replayed rows did not collapse");
}
