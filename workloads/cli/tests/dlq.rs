//! `tributary dlq` against the real broker, consumer and ClickHouse: poison
//! events land in the DLQ, `list`, `inspect` and `report` show them, a
//! replay without a fix dead-letters them again, a replay with the fix
//! stores them, and storing them again (a second replay) still counts
//! each event once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use tributary_core::Event;
use tributary_tests::clickhouse::{client, host_port, settings};
use tributary_tests::kafka::{client_config, create_topic, free_port};
use tributary_tests::process::Guarded;
use tributary_tests::{Stack, poll_until, unique_name};

const GOOD: u64 = 30;
const POISON: u64 = 6;

struct Pipeline {
    stack: Stack,
    topic: String,
    dlq: String,
    db: String,
    metrics_port: u16,
}

impl Pipeline {
    fn consumer(&self) -> Guarded {
        let (host, port) = host_port(&self.stack.clickhouse_url);
        Command::new(env!("CARGO_BIN_EXE_tributary"))
            .arg("consumer")
            .env(
                "CONSUMER_KAFKA_BOOTSTRAP_SERVERS",
                &self.stack.kafka_bootstrap,
            )
            .env("CONSUMER_KAFKA_TOPIC", &self.topic)
            .env("CONSUMER_DLQ_TOPIC", &self.dlq)
            .env("CONSUMER_KAFKA_GROUP_ID", unique_name("consumers"))
            .env("CONSUMER_CLICKHOUSE_HOST", host)
            .env("CONSUMER_CLICKHOUSE_PORT", port.to_string())
            .env("CONSUMER_CLICKHOUSE_DATABASE", &self.db)
            .env("CONSUMER_FLUSH_INTERVAL_MS", "200")
            .env("CONSUMER_METRICS_PORT", self.metrics_port.to_string())
            .env("LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(Guarded)
            .unwrap()
    }

    /// `tributary dlq ARGS` on this pipeline's DLQ.
    fn dlq(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_tributary"))
            .arg("dlq")
            .args(args)
            .env(
                "CONSUMER_KAFKA_BOOTSTRAP_SERVERS",
                &self.stack.kafka_bootstrap,
            )
            .env("CONSUMER_DLQ_TOPIC", &self.dlq)
            .env("LOG_LEVEL", "warn")
            .output()
            .unwrap()
    }

    /// Stdout of a `dlq` command that must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.dlq(args);
        assert!(
            out.status.success(),
            "tributary dlq {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Dead letters in the DLQ, as `report` counts them.
    fn dead_letters(&self) -> u64 {
        let report = self.ok(&["report", "--since", "1h"]);
        let first = report.lines().next().unwrap();
        first.rsplit(": ").next().unwrap().parse().unwrap()
    }

    async fn consumed(&self) -> u64 {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        let Ok(response) = reqwest::get(&url).await else {
            return 0;
        };
        let text = response.text().await.unwrap_or_default();
        let consumed = tributary_core::metrics::values(&text, "consumer_messages_consumed_total");
        consumed.first().map_or(0, |v| *v as u64)
    }

    async fn scalar(&self, sql: &str) -> u64 {
        client(&self.stack.clickhouse_url)
            .query(&sql.replace("{db}", &self.db))
            .fetch_one()
            .await
            .unwrap()
    }
}

fn count_of(text: &str, word: &str) -> u64 {
    text.lines().filter(|l| l.contains(word)).count() as u64
}

#[tokio::test]
async fn poison_events_fixed_and_replayed_are_stored_exactly_once() {
    let p = Pipeline {
        stack: Stack::require(),
        topic: unique_name("events"),
        dlq: unique_name("events_dlq"),
        db: unique_name("dlq"),
        metrics_port: free_port(),
    };
    create_topic(&p.stack.kafka_bootstrap, &p.topic, 3).await;
    create_topic(&p.stack.kafka_bootstrap, &p.dlq, 2).await;
    tributary_core::schema::migrate_clickhouse(&settings(&p.stack.clickhouse_url, &p.db))
        .await
        .unwrap();
    let mut consumer = p.consumer();

    // Good events, events a misconfigured producer stamped with wire
    // version 9, and one message that is not an event at all.
    let producer: FutureProducer = client_config(&p.stack.kafka_bootstrap).create().unwrap();
    let mut sends: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for i in 0..GOOD + POISON {
        let name = if i < GOOD { "page" } else { "blocked" };
        let event = Event::new(7, name, format!("user-{i}"), chrono::Utc::now());
        let mut value: Value = serde_json::from_slice(&event.to_kafka_payload().unwrap()).unwrap();
        if i >= GOOD {
            value["v"] = 9.into();
        }
        sends.push((
            event.kafka_key().to_owned(),
            serde_json::to_vec(&value).unwrap(),
        ));
    }
    sends.push((b"garbage".to_vec(), b"not an event {".to_vec()));
    for (key, value) in &sends {
        producer
            .send(
                FutureRecord::to(&p.topic).key(key).payload(value),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
    let stored = "SELECT uniqExact(uuid) FROM {db}.events WHERE event = 'blocked'";
    poll_until(
        "the good events stored and the rest dead-lettered",
        Duration::from_secs(60),
        || async {
            let good = p
                .scalar("SELECT uniqExact(uuid) FROM {db}.events WHERE event = 'page'")
                .await;
            (good == GOOD && p.dead_letters() == POISON + 1).then_some(())
        },
    )
    .await;
    assert_eq!(p.scalar(stored).await, 0);

    // What failed and why.
    let list = p.ok(&["list"]);
    assert_eq!(count_of(&list, "unsupported_version"), POISON, "{list}");
    assert_eq!(count_of(&list, "invalid_event"), 1, "{list}");
    assert!(list.contains("blocked / user-"), "{list}");
    let at = list
        .lines()
        .find(|l| l.contains("unsupported_version"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    let one = p.ok(&["inspect", &at]);
    assert!(one.contains("error kind     unsupported_version"), "{one}");
    assert!(
        one.contains(&format!("original       topic {}", p.topic)),
        "{one}"
    );
    assert!(one.contains("\"v\": 9"), "{one}");
    let missing = p.dlq(&["inspect", "0:999999"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no message 0:999999"));
    let only = p.ok(&["list", "--kind", "invalid_event"]);
    assert!(only.ends_with("1 message(s)\n"), "{only}");

    // Replayed unfixed, they fail again.
    let replay = p.ok(&["replay", "--kind", "unsupported_version"]);
    assert!(
        replay.starts_with(&format!("replayed {POISON} message(s)")),
        "{replay}"
    );
    poll_until(
        "the unfixed replay dead-lettered again",
        Duration::from_secs(60),
        || async { (p.dead_letters() == 2 * POISON + 1).then_some(()) },
    )
    .await;
    assert_eq!(p.scalar(stored).await, 0);

    // Fixed on the way (each twice: both generations are selected), then
    // the same replay again: every event is counted once.
    let fix = [
        "replay",
        "--kind",
        "unsupported_version",
        "--patch",
        r#"{"v":1}"#,
    ];
    let dry = p.ok(&[&fix[..], &["--dry-run"]].concat());
    assert!(
        dry.starts_with(&format!("would replay {} message(s)", 2 * POISON)),
        "{dry}"
    );
    for _ in 0..2 {
        let out = p.ok(&fix);
        assert!(
            out.starts_with(&format!("replayed {} message(s)", 2 * POISON)),
            "{out}"
        );
    }
    let produced = GOOD + POISON + 1 + POISON + 4 * POISON;
    poll_until(
        "every replayed message consumed",
        Duration::from_secs(60),
        || async { (p.consumed().await >= produced).then_some(()) },
    )
    .await;
    poll_until(
        "the fixed events stored",
        Duration::from_secs(30),
        || async { (p.scalar(stored).await == POISON).then_some(()) },
    )
    .await;
    // Queries count a uuid once (LIMIT 1 BY uuid), and merges keep one row.
    let counted = "SELECT count() FROM (SELECT uuid FROM {db}.events WHERE event = 'blocked' LIMIT 1 BY uuid)";
    assert_eq!(p.scalar(counted).await, POISON);
    assert_eq!(p.dead_letters(), 2 * POISON + 1, "nothing new failed");
    client(&p.stack.clickhouse_url)
        .query(&format!("OPTIMIZE TABLE {}.events FINAL", p.db))
        .execute()
        .await
        .unwrap();
    assert_eq!(
        p.scalar("SELECT count() FROM {db}.events WHERE event = 'blocked'")
            .await,
        POISON
    );

    // What cannot be fixed is kept back, and an empty selection is an error.
    let garbage = list
        .lines()
        .find(|l| l.contains("invalid_event"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    let kept = p.dlq(&["replay", "--offsets", &garbage, "--patch", r#"{"v":1}"#]);
    assert_eq!(kept.status.code(), Some(1), "nothing replayed is a failure");
    let said = String::from_utf8_lossy(&kept.stdout);
    assert!(
        said.contains("kept back 1 message(s)") && said.contains("cannot be patched"),
        "{said}"
    );
    let none = p.dlq(&["replay", "--kind", "no_such_kind"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&none.stderr).contains("nothing in"));

    let report = p.ok(&["report", "--since", "1h"]);
    assert!(report.contains("unsupported_version"), "{report}");
    assert!(
        report
            .lines()
            .any(|l| l.contains("unsupported_version") && l.contains(&format!(" {}", 2 * POISON))),
        "{report}"
    );

    let stopped = consumer.terminate(Duration::from_secs(30));
    assert!(stopped.is_some_and(|s| s.success()), "{stopped:?}");
}

#[tokio::test]
async fn an_empty_dlq_reads_as_empty() {
    let stack = Stack::require();
    let p = Pipeline {
        dlq: unique_name("empty_dlq"),
        topic: String::new(),
        db: String::new(),
        metrics_port: 0,
        stack,
    };
    create_topic(&p.stack.kafka_bootstrap, &p.dlq, 3).await;
    assert_eq!(p.dead_letters(), 0);
    assert!(p.ok(&["list"]).ends_with("0 message(s)\n"));
    let replay = p.dlq(&["replay", "--all"]);
    assert_eq!(replay.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&replay.stderr).contains("nothing in"));
}

#[test]
fn an_unreachable_broker_is_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(["dlq", "list"])
        .env("CONSUMER_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("127.0.0.1:1"), "{stderr}");
}
