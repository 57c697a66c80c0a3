//! Capture's memory is bounded by bytes, not by requests: 512 hostile
//! requests at once, over and over (gzip bombs of small values, gzip bombs
//! of events whose JSON trees are 32 times their text and of events made of
//! small objects, 20 MiB bodies,
//! nesting a million levels deep, uploads that trickle), while clients
//! sending ordinary batches keep being served, and the real capture
//! process's peak resident memory (`VmHWM`) stays under 256 MiB with the
//! default settings. Before, four of the gzip bombs took capture past
//! 1.5 GiB: each became a full JSON tree.
//!
//! What it cannot show: memory under a release build's different
//! allocation pattern (the suite runs the debug build; the budget counts the
//! same bytes in both), or connections beyond what one test client opens.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tributary_tests::gzip;
use tributary_tests::kafka::{create_topic, free_port};
use tributary_tests::process::Guarded;
use tributary_tests::process::peak_rss;
use tributary_tests::{Stack, poll_until, unique_name};

const KEY: &str = "trb_0123456789abcdef0123456789abcdef0123456789a";
const PEAK_LIMIT: u64 = 256 * 1024 * 1024;
const MIB: usize = 1024 * 1024;
/// How long the hostile requests keep coming.
const HOSTILE_FOR: Duration = Duration::from_secs(15);

/// `[0,0,...]` of about `bytes` bytes.
fn zeros(bytes: usize) -> String {
    let mut s = String::with_capacity(bytes + 2);
    s.push('[');
    s.push_str(&"0,".repeat(bytes / 2));
    s.push('0');
    s.push(']');
    s
}

/// What one hostile request got: its status, or how it was cut off.
type Tally = Arc<Mutex<BTreeMap<String, usize>>>;

fn count(tally: &Tally, kind: &str, outcome: String) {
    *tally
        .lock()
        .unwrap()
        .entry(format!("{kind}: {outcome}"))
        .or_default() += 1;
}

/// Sends a request as raw bytes: the body in pieces, each after `pause`;
/// answers the status line's code, or what cut the exchange off.
async fn raw(port: u16, head: String, body: Arc<Vec<u8>>, piece: usize, pause: Duration) -> String {
    let Ok(mut conn) = TcpStream::connect(("127.0.0.1", port)).await else {
        return "connect failed".into();
    };
    let sent = async {
        conn.write_all(head.as_bytes()).await?;
        for chunk in body.chunks(piece) {
            conn.write_all(chunk).await?;
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
        std::io::Result::Ok(())
    }
    .await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), conn.read_to_end(&mut answer)).await;
    let read = match read {
        Ok(Err(_)) if answer.len() >= 12 => Ok(Ok(answer.len())),
        other => other,
    };
    match (read, sent) {
        (Ok(Ok(n)), _) if n >= 12 => {
            let text = String::from_utf8_lossy(&answer);
            let kind = text
                .split("\"error\":\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or("");
            format!("{} {kind}", &text[9..12])
        }
        (_, Err(e)) => format!("cut off ({:?})", e.kind()),
        (Ok(Ok(_)), Ok(())) => "closed".into(),
        (Ok(Err(e)), Ok(())) => format!("read failed ({:?})", e.kind()),
        (Err(_), Ok(())) => "no answer".into(),
    }
}

fn head(path: &str, length: usize, gzip: bool) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: capture\r\ncontent-type: application/json\r\n{}x-api-key: {KEY}\r\ncontent-length: {length}\r\nconnection: close\r\n\r\n",
        if gzip {
            "content-encoding: gzip\r\n"
        } else {
            ""
        }
    )
}

/// One lane of hostile requests of one kind, repeated until `until`.
#[allow(clippy::too_many_arguments)]
fn lane(
    port: u16,
    kind: &'static str,
    path: &'static str,
    body: Arc<Vec<u8>>,
    declared: usize,
    piece: usize,
    pause: Duration,
    until: Instant,
    tally: Tally,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while Instant::now() < until {
            let outcome = raw(
                port,
                head(path, declared, false),
                Arc::clone(&body),
                piece,
                pause,
            )
            .await;
            count(&tally, kind, outcome);
        }
    })
}

/// An ordinary posthog-js batch, retried on 503 as SDKs do: answers how
/// many tries it took, or why it was not accepted.
async fn ordinary_batch(http: &reqwest::Client, base: &str, n: usize) -> Result<usize, String> {
    let batch: Vec<_> = (0..10)
        .map(|i| json!({"event": "$pageview", "distinct_id": format!("user-{n}"), "properties": {"$current_url": "https://shop.example/", "i": i}}))
        .collect();
    let body = json!({"api_key": KEY, "batch": batch});
    for attempt in 1..=20 {
        let r = http
            .post(format!("{base}/batch"))
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("an ordinary batch failed: {e}"))?;
        match r.status().as_u16() {
            200 => return Ok(attempt),
            503 => {
                let wait: u64 = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1);
                tokio::time::sleep(Duration::from_secs(wait)).await;
            }
            other => {
                return Err(format!(
                    "an ordinary batch got {other}: {}",
                    r.text().await.unwrap_or_default()
                ));
            }
        }
    }
    Err("an ordinary batch was never accepted".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_cannot_take_capture_past_its_memory_bound() {
    let stack = Stack::require();
    let topic = unique_name("capture_memory");
    create_topic(&stack.kafka_bootstrap, &topic, 1).await;
    let port = free_port();
    let capture = Guarded(
        Command::new(env!("CARGO_BIN_EXE_tributary"))
            .arg("capture")
            .env("CAPTURE_HOST", "127.0.0.1")
            .env("CAPTURE_PORT", port.to_string())
            .env("CAPTURE_KAFKA_BOOTSTRAP_SERVERS", &stack.kafka_bootstrap)
            .env("CAPTURE_KAFKA_TOPIC", &topic)
            .env("CAPTURE_API_KEYS", format!("{KEY}=1"))
            .env("LOG_LEVEL", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = capture.0.id();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    poll_until("capture is ready", Duration::from_secs(60), || {
        let (http, url) = (http.clone(), format!("{base}/ready"));
        async move { (http.get(url).send().await.ok()?.status() == 200).then_some(()) }
    })
    .await;
    assert_eq!(ordinary_batch(&http, &base, 0).await, Ok(1));
    let idle = peak_rss(pid);

    // The hostile bodies, made once.
    let small_values = Arc::new(gzip(
        format!(r#"{{"api_key":"{KEY}","batch":{}}}"#, zeros(19 * MIB)).as_bytes(),
    ));
    let event = format!(r#"{{"event":"e","properties":{{"z":{}}}}}"#, zeros(900_000));
    let tree_bomb = Arc::new(gzip(
        format!(
            r#"{{"api_key":"{KEY}","batch":[{}]}}"#,
            vec![event.as_str(); 21].join(",")
        )
        .as_bytes(),
    ));
    // Events of one-entry objects: a B-tree node for every seven bytes.
    let objects = format!(
        r#"{{"event":"e","properties":{{"o":[{}{{}}]}}}}"#,
        r#"{"":0},"#.repeat(300_000 / 7)
    );
    let object_bomb = Arc::new(gzip(
        format!(
            r#"{{"api_key":"{KEY}","batch":[{}]}}"#,
            [objects.as_str(); 3].join(",")
        )
        .as_bytes(),
    ));
    let large = Arc::new(
        format!(
            r#"{{"batch":[{{"event":"e","distinct_id":"d","properties":{{"s":"{}"}}}}]}}"#,
            "x".repeat(20 * MIB - 100)
        )
        .into_bytes(),
    );
    let deep = Arc::new(format!("{}{}", "[".repeat(MIB / 2), "]".repeat(MIB / 2)).into_bytes());
    let trickle = Arc::new(vec![b' '; MIB]);

    let tally: Tally = Arc::default();
    let until = Instant::now() + HOSTILE_FOR;
    // (lanes, kind, route, body, bytes per write, pause between writes)
    let kinds = [
        (
            160,
            "gzip bomb of zeros",
            "/batch",
            &small_values,
            64 * 1024,
            Duration::ZERO,
        ),
        (
            64,
            "gzip bomb of objects",
            "/batch",
            &object_bomb,
            64 * 1024,
            Duration::ZERO,
        ),
        (
            64,
            "gzip bomb of trees",
            "/batch",
            &tree_bomb,
            64 * 1024,
            Duration::ZERO,
        ),
        (
            32,
            "20 MiB body",
            "/batch",
            &large,
            256 * 1024,
            Duration::ZERO,
        ),
        (64, "deep nesting", "/e", &deep, 64 * 1024, Duration::ZERO),
        (
            128,
            "slow upload",
            "/e",
            &trickle,
            1024,
            Duration::from_millis(200),
        ),
    ];
    let mut lanes = Vec::new();
    for (count, kind, path, body, piece, pause) in kinds {
        for _ in 0..count {
            lanes.push(lane(
                port,
                kind,
                path,
                Arc::clone(body),
                body.len(),
                piece,
                pause,
                until,
                tally.clone(),
            ));
        }
    }
    assert_eq!(lanes.len(), 512);

    // Ordinary clients, all the while.
    let mut ordinary = Vec::new();
    for client in 0..4 {
        let (http, base) = (http.clone(), base.clone());
        ordinary.push(tokio::spawn(async move {
            let mut tries = Vec::new();
            let mut n = client * 100_000;
            while Instant::now() < until {
                n += 1;
                tries.push(ordinary_batch(&http, &base, n).await);
            }
            tries
        }));
    }
    let (mut tries, mut failures) = (Vec::new(), Vec::new());
    for o in ordinary {
        for outcome in o.await.unwrap() {
            match outcome {
                Ok(n) => tries.push(n),
                Err(e) => failures.push(e),
            }
        }
    }
    // Slow uploads outlive the deadline by at most their body timeout.
    for l in lanes {
        l.await.unwrap();
    }
    let peak = peak_rss(pid);
    let tally = tally.lock().unwrap().clone();
    println!(
        "capture idle at {} MiB, peak {} MiB",
        idle / MIB as u64,
        peak / MIB as u64
    );
    println!(
        "ordinary batches: {} ({} failed), {} needed a retry, at most {} tries",
        tries.len(),
        failures.len(),
        tries.iter().filter(|&&t| t > 1).count(),
        tries.iter().max().unwrap_or(&0)
    );
    for (outcome, n) in &tally {
        println!("{n:>6}  {outcome}");
    }
    assert!(
        peak < PEAK_LIMIT,
        "capture peaked at {} MiB under hostile requests",
        peak / MIB as u64
    );
    assert!(
        failures.is_empty(),
        "ordinary clients were not served: {failures:?}"
    );
    assert!(
        tries.len() >= 20,
        "ordinary clients were served {} batches in {HOSTILE_FOR:?}",
        tries.len()
    );
    for outcome in tally.keys() {
        assert!(
            !outcome.contains(": 200") && !outcome.contains(": 202"),
            "a hostile request was accepted: {outcome}"
        );
        assert!(
            !outcome.contains(": 5") || outcome.contains(": 503"),
            "a server error other than 503: {outcome}"
        );
    }
    // Every byte taken was given back, and the refusals were counted.
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        tributary_core::metrics::values(&metrics, "capture_bytes_in_flight"),
        [0.0],
        "bytes still held after every request ended"
    );
    let overloaded: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("capture_events_rejected_total{reason=\"overloaded\"}"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        overloaded > 0.0,
        "no refusal counted as overloaded:\n{metrics}"
    );
    // And it still works.
    assert_eq!(ordinary_batch(&http, &base, 999_999).await, Ok(1));
}
