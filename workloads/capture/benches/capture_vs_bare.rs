//! Capture throughput and latency against a bare axum handler, in one run.
//!
//! `cargo bench -p tributary-capture --bench capture_vs_bare` (or
//! `make bench-capture`). Needs the local stack (Kafka) and `wrk`.
//!
//! Both servers run as child processes of this binary (it re-executes itself
//! with `--serve-capture` / `--serve-bare`), so their memory is measured alone;
//! `wrk` drives the load from a third process over loopback, with a new
//! random `distinct_id` in every request so the events spread over the
//! topic's partitions. Printed: events/s, p50, p99, non-2xx answers, the ratio
//! capture / bare, and capture's peak RSS. `BENCH_PERF_DIR=<dir>` also
//! samples each case's stacks (`tributary_tests::perf`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tributary_tests::cpu::{cpu_by_thread, cpu_time, stack_pid};
use tributary_tests::perf::Profile;

// The same allocator as the `tributary` binary, so capture is measured as shipped.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DURATION_S: u64 = 10;
const WARMUP_S: u64 = 3;
fn connections() -> u32 {
    std::env::var("BENCH_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}
const THREADS: u32 = 2;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--serve-capture") => serve_capture(&args[2], &args[3]),
        Some("--serve-bare") => serve_bare(),
        _ => orchestrate(),
    }
}

// ------------------------------------------------------------- servers ---

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn announce(addr: SocketAddr) {
    println!("LISTENING {addr}");
    std::io::stdout().flush().unwrap();
}

fn serve_capture(bootstrap: &str, topic: &str) {
    use tributary_core::config::Env;
    // Other CAPTURE_* settings (e.g. CAPTURE_KAFKA_LINGER_MS) pass through.
    let linger = std::env::var("CAPTURE_KAFKA_LINGER_MS").unwrap_or_else(|_| "5".into());
    let vars = [
        // The bodies' key, known statically: the bench measures ingestion,
        // not the auth service.
        ("CAPTURE_API_KEYS", "phc_bench=1"),
        // One key for all the load: the per-key rate limit would answer
        // most of it 429.
        ("CAPTURE_RATE_LIMIT_PER_KEY", "0"),
        ("CAPTURE_KAFKA_LINGER_MS", linger.as_str()),
        ("CAPTURE_HOST", "127.0.0.1"),
        ("CAPTURE_KAFKA_BOOTSTRAP_SERVERS", bootstrap),
        ("CAPTURE_KAFKA_TOPIC", topic),
        ("CAPTURE_KAFKA_READY_INTERVAL_MS", "500"),
    ];
    let mut config = tributary_capture::CaptureConfig::from_env(&Env::new(&vars)).unwrap();
    config.listen.set_port(0);
    runtime().block_on(async move {
        let capture = tributary_capture::Capture::bind(&config).await.unwrap();
        announce(capture.local_addr().unwrap());
        capture
            .serve(tokio_util::sync::CancellationToken::new())
            .await
            .unwrap();
    });
}

/// The baseline: reads the body and answers 202, nothing else.
fn serve_bare() {
    runtime().block_on(async {
        let app = axum::Router::new().route(
            "/capture",
            axum::routing::post(|body: axum::body::Bytes| async move {
                std::hint::black_box(body.len());
                (axum::http::StatusCode::ACCEPTED, "{\"accepted\":1}")
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        announce(listener.local_addr().unwrap());
        axum::serve(listener, app).await.unwrap();
    });
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(args)
            .env("LOG_LEVEL", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("LISTENING ")
            .expect("server did not announce its address")
            .parse()
            .unwrap();
        Self { child, addr }
    }

    /// Peak and current resident memory, in MiB, from /proc.
    fn memory_mib(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib = |key: &str| -> f64 {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (kib("VmHWM:") / 1024.0, kib("VmRSS:") / 1024.0)
    }
}

/// A wrk run and the CPU time the server (and the broker) used during it.
fn measured(server: &Server, script: &str, case: &str) -> (Load, Duration, Option<Duration>) {
    let broker = stack_pid("kafka");
    let (cpu, broker_cpu) = (cpu_time(server.child.id()), broker.map(cpu_time));
    let threads = cpu_by_thread(server.child.id());
    let profile = Profile::start(server.child.id(), case);
    let load = wrk(server.addr, script, DURATION_S);
    if let Some(profile) = profile {
        profile.stop();
    }
    let used = cpu_time(server.child.id()).saturating_sub(cpu);
    let requests = load.requests_per_s * DURATION_S as f64;
    let mut line = String::new();
    for (kind, (user, system)) in cpu_by_thread(server.child.id()) {
        let (user0, system0) = threads.get(&kind).copied().unwrap_or_default();
        let (user, system) = (user.saturating_sub(user0), system.saturating_sub(system0));
        if user + system > Duration::ZERO {
            line += &format!(
                " {kind} {:.1} ({:.1} in the kernel);",
                micros_each(user + system, requests),
                micros_each(system, requests)
            );
        }
    }
    println!("  CPU us per request by thread:{line}");
    let broker_used = broker
        .zip(broker_cpu)
        .map(|(pid, before)| cpu_time(pid).saturating_sub(before));
    (load, used, broker_used)
}

/// Microseconds of `cpu` for each of `count`.
fn micros_each(cpu: Duration, count: f64) -> f64 {
    cpu.as_secs_f64() * 1e6 / count.max(1.0)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- load ---

/// A wrk script posting PostHog-like events with a random distinct_id.
fn wrk_script(events_per_request: usize) -> String {
    let event = r#"{"event":"$pageview","distinct_id":"user-%d","properties":{"$current_url":"https://shop.example.com/products/42?ref=newsletter","$host":"shop.example.com","$pathname":"/products/42","$browser":"Chrome","$browser_version":126,"$os":"Mac OS X","$device_type":"Desktop","$screen_height":1117,"$screen_width":1728,"$lib":"web","$lib_version":"1.200.0","$referrer":"https://news.example.org/","$session_id":"0190d2a1-7f3c-7c1e-9a55-5d3b1c9e0f11","plan":"pro","cart_value":129.5}}"#;
    let events = vec![event; events_per_request].join(",");
    let body = format!(r#"{{"api_key":"phc_bench","batch":[{events}]}}"#);
    let ids = vec!["math.random(1, 100000)"; events_per_request].join(", ");
    format!(
        "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nlocal template = [[{body}]]\nrequest = function()\n  return wrk.format(nil, \"/capture\", nil, string.format(template, {ids}))\nend\n"
    )
}

struct Load {
    requests_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
}

fn parse_duration_ms(s: &str) -> f64 {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let v: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => v / 1000.0,
        "ms" => v,
        "s" => v * 1000.0,
        "m" => v * 60_000.0,
        _ => f64::NAN,
    }
}

fn wrk(addr: SocketAddr, script: &str, seconds: u64) -> Load {
    let dir = std::env::temp_dir().join(format!("tributary-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("post.lua");
    std::fs::write(&path, script).unwrap();
    let out = Command::new("wrk")
        .args([
            "-t",
            &THREADS.to_string(),
            "-c",
            &connections().to_string(),
            "-d",
            &format!("{seconds}s"),
        ])
        .args([
            "--latency",
            "-s",
            path.to_str().unwrap(),
            &format!("http://{addr}"),
        ])
        .output()
        .expect("wrk not found: apt-get install wrk (make bench-capture does)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let find = |prefix: &str| -> Option<String> {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().last().map(str::to_owned))
    };
    Load {
        requests_per_s: find("Requests/sec:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0),
        p50_ms: find("50%")
            .map(|v| parse_duration_ms(&v))
            .unwrap_or(f64::NAN),
        p99_ms: find("99%")
            .map(|v| parse_duration_ms(&v))
            .unwrap_or(f64::NAN),
        non_2xx: find("Non-2xx or 3xx responses:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    }
}

// -------------------------------------------------------------- driver ---

fn orchestrate() {
    let stack = tributary_tests::Stack::require();
    let topic = tributary_tests::unique_name("bench_capture");
    runtime().block_on(tributary_tests::kafka::create_topic(
        &stack.kafka_bootstrap,
        &topic,
        12,
    ));

    let bare = Server::spawn(&["--serve-bare"]);
    let capture = Server::spawn(&["--serve-capture", &stack.kafka_bootstrap, &topic]);
    let ready = format!("http://{}/ready", capture.addr);
    runtime().block_on(tributary_tests::wait_for_ok(
        "capture ready",
        &ready,
        Duration::from_secs(30),
    ));

    let single = wrk_script(1);
    let batch = wrk_script(10);
    println!("warming up ({WARMUP_S} s each)...");
    wrk(bare.addr, &single, WARMUP_S);
    wrk(capture.addr, &single, WARMUP_S);

    println!(
        "measuring {DURATION_S} s per case, {} connections, {THREADS} wrk threads",
        connections()
    );
    let (base, base_cpu, _) = measured(&bare, &single, "bare");
    let (one, one_cpu, one_broker) = measured(&capture, &single, "capture-single");
    let (ten, ten_cpu, ten_broker) = measured(&capture, &batch, "capture-batch");
    let (peak_rss, rss) = capture.memory_mib();

    println!();
    println!(
        "{:<34} {:>12} {:>9} {:>9} {:>9}",
        "case", "events/s", "p50 ms", "p99 ms", "non-2xx"
    );
    for (name, load, per) in [
        ("bare axum handler (202)", &base, 1.0),
        ("capture, 1 event/request", &one, 1.0),
        ("capture, 10 events/request", &ten, 10.0),
    ] {
        println!(
            "{:<34} {:>12.0} {:>9.2} {:>9.2} {:>9}",
            name,
            load.requests_per_s * per,
            load.p50_ms,
            load.p99_ms,
            load.non_2xx
        );
    }
    // Ratios of refused requests measure nothing.
    let refused = base.non_2xx + one.non_2xx + ten.non_2xx;
    if refused > 0 {
        eprintln!("{refused} requests were not answered 2xx: no ratio is valid");
        stop_and_delete_topic([bare, capture], &stack, &topic);
        std::process::exit(1);
    }
    println!();
    println!(
        "ratio capture/bare, single events: {:.3} (goal >= 0.5)",
        one.requests_per_s / base.requests_per_s
    );
    println!(
        "ratio capture/bare, events in 10-event batches: {:.3} (goal >= 0.9)",
        ten.requests_per_s * 10.0 / base.requests_per_s
    );
    println!(
        "capture p99, single events: {:.1} ms (goal < 50 ms at 256 connections)",
        one.p99_ms
    );
    println!("capture RSS: peak {peak_rss:.1} MiB, now {rss:.1} MiB (goal < 64 MiB)");
    // CPU per request, from /proc: less noisy than throughput on a shared
    // machine, and it tells the server's share from the broker's.
    let requests = |load: &Load| load.requests_per_s * DURATION_S as f64;
    println!(
        "CPU per request: bare {:.1} us; capture, single events {:.1} us (goal <= 20 us), \
         10-event batches {:.1} us ({:.1} us an event)",
        micros_each(base_cpu, requests(&base)),
        micros_each(one_cpu, requests(&one)),
        micros_each(ten_cpu, requests(&ten)),
        micros_each(ten_cpu, requests(&ten) * 10.0),
    );
    if let (Some(one_b), Some(ten_b)) = (one_broker, ten_broker) {
        println!(
            "broker CPU per event: single events {:.1} us, 10-event batches {:.1} us",
            micros_each(one_b, requests(&one)),
            micros_each(ten_b, requests(&ten) * 10.0),
        );
    }
    stop_and_delete_topic([bare, capture], &stack, &topic);
}

/// The stack's broker keeps messages in memory: each run's topic goes,
/// once the servers are stopped (a producer asking for the topic's
/// metadata has the broker create it again), which taking them ensures.
fn stop_and_delete_topic(servers: [Server; 2], stack: &tributary_tests::Stack, topic: &str) {
    drop(servers);
    runtime().block_on(tributary_tests::kafka::delete_topics(
        &stack.kafka_bootstrap,
        &[topic],
    ));
}
