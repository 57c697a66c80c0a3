//! The real `tributary consumer` process SIGKILLed mid-stream (three times;
//! `TRIBUTARY_FAULT_KILLS`, ten under `make faults`),
//! aimed between an insert and its commit, and started again each time:
//! duplicates are written (merges are stopped: the table holds more rows
//! than events were sent) and never shown (the query API counts every event
//! once), and after a merge the table holds each once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use tributary_core::Event;
use tributary_core::clickhouse::ClickHouseSettings;
use tributary_core::config::Env;
use tributary_tests::clickhouse::{client, host_port};
use tributary_tests::kafka::{client_config, create_topic, free_port};
use tributary_tests::kafka_tap::TappedBroker;
use tributary_tests::{Stack, poll_until, unique_name};

struct Names {
    /// The broker's address as clients reach it (through its proxy).
    bootstrap: String,
    topic: String,
    dlq: String,
    group: String,
    db: String,
}

fn spawn_consumer(stack: &Stack, n: &Names) -> Child {
    let (host, port) = host_port(&stack.clickhouse_url);
    Command::new(env!("CARGO_BIN_EXE_tributary"))
        .arg("consumer")
        .env("CONSUMER_KAFKA_BOOTSTRAP_SERVERS", &n.bootstrap)
        .env("CONSUMER_KAFKA_TOPIC", &n.topic)
        .env("CONSUMER_DLQ_TOPIC", &n.dlq)
        .env("CONSUMER_KAFKA_GROUP_ID", &n.group)
        .env("CONSUMER_CLICKHOUSE_HOST", host)
        .env("CONSUMER_CLICKHOUSE_PORT", port.to_string())
        .env("CONSUMER_CLICKHOUSE_DATABASE", &n.db)
        .env("CONSUMER_BATCH_SIZE", "400")
        .env("CONSUMER_FLUSH_INTERVAL_MS", "300")
        .env("CONSUMER_SESSION_TIMEOUT_MS", "3000")
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
async fn sigkill_between_insert_and_commit_writes_duplicates_that_are_never_shown() {
    let stack = Stack::require();
    // A broker of the test's own behind a proxy that can hold its replies:
    // a consumer whose commit gets no answer has inserted and not
    // committed, and is killed right there.
    let broker = TappedBroker::start(
        stack
            .tansu_bin
            .as_deref()
            .expect("TANSU_BIN not set by local-stack.sh"),
    );
    let n = Names {
        bootstrap: broker.bootstrap(),
        topic: unique_name("events"),
        dlq: unique_name("events_dlq"),
        group: unique_name("consumers"),
        db: unique_name("tributary"),
    };
    create_topic(&n.bootstrap, &n.topic, 4).await;
    create_topic(&n.bootstrap, &n.dlq, 1).await;
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
    // No background merge may collapse the duplicates before the query API
    // is asked: they must be there, and not shown.
    let ch = client(&stack.clickhouse_url);
    ch.query(&format!("SYSTEM STOP MERGES {}.events", n.db))
        .execute()
        .await
        .unwrap();

    const N: u64 = 30_000;
    // `make faults` kills ten times; the everyday suite, three.
    let kills: usize = std::env::var("TRIBUTARY_FAULT_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let producer: FutureProducer = client_config(&n.bootstrap).create().unwrap();
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

    // Every other kill waits for a batch inserted while the broker's
    // replies are held (its commit cannot complete): between an insert and
    // its commit. The others come after a pseudo-random wait (the seed is
    // printed, to replay a run).
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(7, |d| u64::from(d.subsec_nanos()));
    eprintln!("kill points from seed {seed}");
    let mut held_commits = 0;
    for kill in 0..kills {
        let mut consumer = spawn_consumer(&stack, &n);
        let before = distinct(&n.db, &stack.clickhouse_url).await;
        poll_until(
            "a batch of this run to land",
            Duration::from_secs(60),
            || async { (distinct(&n.db, &stack.clickhouse_url).await > before).then_some(()) },
        )
        .await;
        if kill % 2 == 0 {
            // Requests held: a batch whose insert lands after this point
            // cannot commit (its OffsetCommit waits in the proxy, and is
            // dropped with the connection at the kill). Killed once one has
            // landed (until then, released and held again after progress).
            for _ in 0..5 {
                broker.hold_requests(true);
                let held = distinct(&n.db, &stack.clickhouse_url).await;
                let deadline = std::time::Instant::now() + Duration::from_secs(5);
                while distinct(&n.db, &stack.clickhouse_url).await == held
                    && std::time::Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                if distinct(&n.db, &stack.clickhouse_url).await > held {
                    held_commits += 1;
                    break;
                }
                broker.hold_requests(false);
                let before = distinct(&n.db, &stack.clickhouse_url).await;
                poll_until(
                    "progress before holding again",
                    Duration::from_secs(30),
                    || async {
                        (distinct(&n.db, &stack.clickhouse_url).await > before).then_some(())
                    },
                )
                .await;
            }
        } else {
            let wait = (seed.wrapping_mul(kill as u64 + 1) >> 7) % 700;
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        consumer.kill().unwrap();
        consumer.wait().unwrap();
        // Whatever the killed consumer sent meanwhile never arrives.
        broker.cut(true);
        broker.hold_requests(false);
        broker.cut(false);
    }
    let seen = distinct(&n.db, &stack.clickhouse_url).await;
    assert!(seen < N, "the consumer finished before the last kill");
    eprintln!("{kills} kills, {held_commits} with the commit held");
    assert!(
        held_commits > 0,
        "no kill landed after an insert whose commit was held"
    );

    let mut last = spawn_consumer(&stack, &n);
    let url = stack.clickhouse_url.clone();
    let db = n.db.clone();
    poll_until(
        "every event after the restarts",
        Duration::from_secs(120),
        || {
            let (url, db) = (url.clone(), db.clone());
            async move { (distinct(&db, &url).await >= N).then_some(()) }
        },
    )
    .await;
    // SIGTERM: the last consumer drains and exits cleanly.
    let pid = last.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = tokio::task::spawn_blocking(move || last.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.success(),
        "consumer exited with {status} after SIGTERM"
    );

    // Duplicates were written, and are in the table as the API is asked.
    let rows: u64 = ch
        .query(&format!("SELECT count() FROM {}.events", n.db))
        .fetch_one()
        .await
        .unwrap();
    eprintln!("{rows} rows in the table for {N} events");
    assert!(rows > N, "no duplicate was written ({rows} rows)");
    // And never shown: the query API counts each event once.
    let total = trend_total(&stack, &n.db).await;
    assert_eq!(total, N, "the query API showed replayed rows");

    assert_eq!(distinct(&n.db, &stack.clickhouse_url).await, N);
    ch.query(&format!("SYSTEM START MERGES {}.events", n.db))
        .execute()
        .await
        .unwrap();
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

/// `purchase` events over the last day, as the query API counts them.
async fn trend_total(stack: &Stack, db: &str) -> u64 {
    let (host, port) = host_port(&stack.clickhouse_url);
    let listen = free_port();
    let mut query = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .arg("query")
        .env("QUERY_PORT", listen.to_string())
        .env("QUERY_CLICKHOUSE_HOST", host)
        .env("QUERY_CLICKHOUSE_PORT", port.to_string())
        .env("QUERY_CLICKHOUSE_DATABASE", db)
        .env("REDIS_URL", &stack.redis_url)
        .env("QUERY_REQUIRE_API_KEY", "false")
        .env("QUERY_KEYLESS_PROJECT_ID", "31")
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Fresh, not from the cache: other runs asked the same of project 31.
    let url = format!("http://127.0.0.1:{listen}/api/query/trend?refresh=true");
    let http = reqwest::Client::new();
    let body = serde_json::json!({
        "series": [{"event": "purchase", "math": "total"}],
        "date_from": "-1d", "interval": "day"
    });
    let answer: serde_json::Value =
        poll_until("the query API to answer", Duration::from_secs(60), || {
            let request = http.post(&url).json(&body).send();
            async move {
                let r = request.await.ok()?;
                if r.status() != 200 {
                    return None;
                }
                r.json().await.ok()
            }
        })
        .await;
    let _ = query.kill();
    let _ = query.wait();
    answer["results"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum()
}
