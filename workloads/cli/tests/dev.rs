//! `tributary dev --demo` as a developer runs it (the README's first command
//! runs it too): one process brings up auth, capture, the consumer and query
//! against the stack, the demo sends a synthetic shop through them, and the
//! trend and funnel it prints are checked here against the dataset it
//! sent, regenerated from the seed and clock it printed. SIGTERM then
//! stops everything cleanly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use tributary_cli::demo::dataset::{Expected, FUNNEL, Shape, generate};
use tributary_tests::Stack;
use tributary_tests::process::{Dev, Guarded, drain, lines_until};

const USERS: usize = 60;
const SEED: u64 = 42;

/// The numbers of the table row that starts with `label`.
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
    let mut dev = Dev::new(Path::new(env!("CARGO_BIN_EXE_tributary")), &stack);
    dev.command
        .args(["--demo", "--demo-users", &USERS.to_string()])
        .args(["--demo-seed", &SEED.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = Guarded(dev.command.spawn().unwrap());
    let stderr = drain(child.0.stderr.take().unwrap());
    let stdout = child.0.stdout.take().unwrap();
    let lines = match lines_until(
        stdout,
        |l| l.starts_with("demo: done"),
        Duration::from_secs(150),
    ) {
        Ok(lines) => lines,
        Err(lines) => {
            child.terminate(Duration::from_secs(10));
            let errors = stderr
                .recv_timeout(Duration::from_secs(5))
                .unwrap_or_default();
            panic!(
                "the demo did not finish; stdout:\n{}\nstderr:\n{errors}",
                lines.join("\n")
            );
        }
    };

    let capture = format!("http://127.0.0.1:{}", dev.capture_port);
    assert!(
        lines.iter().any(|l| l.contains(&capture)),
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

    let status = child.terminate(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "dev exited with {status:?} after SIGTERM"
    );
}

#[test]
fn a_bad_setting_stops_dev_before_anything_starts() {
    let out = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .arg("dev")
        // Settings read before capture's are valid, whatever the environment.
        .env("POSTGRES_DSN", "postgres://u:p@127.0.0.1:1/db")
        .env("JWT_SECRET", "a-secret-of-at-least-thirty-two-bytes-0000")
        .env("CAPTURE_PORT", "eighty")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CAPTURE_PORT"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("pipeline is up"));
}
