//! `tributary dev --demo` as a developer runs it (the README's first command
//! runs it too): one process brings up auth, capture, the consumer and query
//! against the stack, the demo sends a synthetic shop through them, and the
//! trend and funnel it prints are checked here against the dataset it
//! sent, regenerated from the seed and clock it printed. SIGTERM then
//! stops everything cleanly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use tributary_cli::demo::dataset::{Expected, FUNNEL, Shape, generate};
use tributary_tests::clickhouse::host_port;
use tributary_tests::kafka::free_port;
use tributary_tests::{Stack, unique_name};

const USERS: usize = 60;
const SEED: u64 = 42;

fn dev(stack: &Stack, capture_port: u16) -> Child {
    let (host, port) = host_port(&stack.clickhouse_url);
    Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(["dev", "--demo", "--demo-users", &USERS.to_string()])
        .args(["--demo-seed", &SEED.to_string()])
        .env("KAFKA_BOOTSTRAP_SERVERS", &stack.kafka_bootstrap)
        .env("CAPTURE_KAFKA_BOOTSTRAP_SERVERS", &stack.kafka_bootstrap)
        .env("CONSUMER_KAFKA_BOOTSTRAP_SERVERS", &stack.kafka_bootstrap)
        .env("POSTGRES_DSN", &stack.postgres_dsn)
        .env("REDIS_URL", &stack.redis_url)
        .env("CONSUMER_CLICKHOUSE_HOST", host)
        .env("CONSUMER_CLICKHOUSE_PORT", port.to_string())
        .env("CONSUMER_CLICKHOUSE_DATABASE", unique_name("dev"))
        .env("CAPTURE_KAFKA_TOPIC", unique_name("events"))
        .env("CONSUMER_DLQ_TOPIC", unique_name("events_dlq"))
        .env("CONSUMER_KAFKA_GROUP_ID", unique_name("consumers"))
        .env("CAPTURE_PORT", capture_port.to_string())
        .env("QUERY_PORT", free_port().to_string())
        .env("AUTH_PORT", free_port().to_string())
        .env("CONSUMER_METRICS_PORT", free_port().to_string())
        .env("CONSUMER_FLUSH_INTERVAL_MS", "200")
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Stdout lines until `last` is printed (or the process ends, or time runs
/// out), then stderr if it never came.
fn read_until(child: &mut Child, last: &str, timeout: Duration) -> Vec<String> {
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + timeout;
    let mut lines = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                let done = line.starts_with(last);
                lines.push(line);
                if done {
                    return lines;
                }
            }
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    panic!(
        "no line {last:?}; stdout:\n{}\nstderr:\n{stderr}",
        lines.join("\n")
    );
}

/// The numbers of the table rows that start with `label`.
fn row(lines: &[String], label: &str) -> Vec<u64> {
    let line = lines
        .iter()
        .find(|l| l.trim_start().starts_with(&format!("{label} ")))
        .unwrap_or_else(|| panic!("no row {label}"));
    line.split_whitespace()
        .skip(1)
        .filter_map(|w| w.parse().ok())
        .collect()
}

#[tokio::test]
async fn dev_demo_prints_a_trend_and_funnel_equal_to_the_data_it_sent() {
    let stack = Stack::require();
    let capture_port = free_port();
    let mut child = dev(&stack, capture_port);
    let lines = read_until(&mut child, "demo: done", Duration::from_secs(150));

    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("http://127.0.0.1:{capture_port}"))),
        "the banner names capture's URL: {lines:#?}"
    );
    let clock = lines
        .iter()
        .find_map(|l| {
            l.strip_prefix(&format!(
                "demo: shop seed {SEED}, {USERS} users, 7 days up to "
            ))
        })
        .expect("the demo names its clock");
    let now: DateTime<Utc> = clock.parse().unwrap();
    let shape = Shape {
        users: USERS,
        days: 7,
        seed: SEED,
    };
    let expected = Expected::of(&generate(&shape, now), &shape, now);

    for (day, views, users) in &expected.days {
        assert_eq!(row(&lines, &day.to_string()), [*views, *users], "{day}");
    }
    let printed_days = lines
        .iter()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|w| w.parse::<NaiveDate>().is_ok())
        })
        .count();
    assert_eq!(printed_days, 7);
    assert_eq!(row(&lines, "total"), [expected.page_views()]);
    for (step, users) in FUNNEL.iter().zip(expected.funnel) {
        assert_eq!(row(&lines, step)[0], users, "funnel step {step}");
    }
    assert!(
        expected.funnel[2] > 0,
        "a funnel worth showing: {:?}",
        expected.funnel
    );
    assert!(
        lines
            .iter()
            .any(|l| l == "demo: every number above equals what the demo sent")
    );

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "dev exited with {status} after SIGTERM");
}

#[test]
fn a_bad_setting_stops_dev_before_anything_starts() {
    let out = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .arg("dev")
        .env("CAPTURE_PORT", "eighty")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CAPTURE_PORT"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("pipeline is up"));
}
