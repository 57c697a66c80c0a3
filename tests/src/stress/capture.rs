//! `make stress-capture`: SDK-like `/batch` requests at a fixed rate per
//! step (open loop: requests go out on schedule whether or not earlier ones
//! answered), then the seed's capture, lag and visibility SLOs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::StressError;
use super::pipeline::{Keys, Pipeline};
use super::stats::{Step, Summary, capture_capacity, ms, verdict};

/// Requests in flight at most; a tick finding none free is shed (counted
/// apart from errors, and a step that sheds does not meet the SLO).
const IN_FLIGHT: usize = 512;

pub struct CaptureOptions {
    /// Events per second of each step.
    pub steps: Vec<u64>,
    pub step: Duration,
    /// Events per request.
    pub batch: usize,
}

/// One request's body: `batch` events of `users` users, as posthog-js
/// sends them.
fn body(key: &str, n: u64, batch: usize) -> Vec<u8> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let pages = ["/", "/pricing", "/docs", "/blog/launch", "/signup"];
    let events: Vec<_> = (0..batch as u64)
        .map(|i| {
            let user = (n * 7 + i * 13) % 5000;
            let browser = ["Chrome", "Firefox", "Safari"][(user % 3) as usize];
            json!({
                // posthog-js sends a uuid with every event.
                "uuid": uuid::Uuid::now_v7().to_string(),
                "event": if i % 10 == 9 { "sign_up" } else { "$pageview" },
                "distinct_id": format!("stress-user-{user}"),
                "timestamp": now,
                "properties": {
                    "$current_url": format!("https://shop.example{}", pages[(i as usize) % pages.len()]),
                    "$browser": browser,
                    "$os": "Linux",
                    "$lib": "web",
                    "$lib_version": "1.170.0",
                    "$session_id": format!("s-{user}-{}", n / 100),
                },
            })
        })
        .collect();
    serde_json::to_vec(&json!({"api_key": key, "batch": events, "sent_at": now}))
        .unwrap_or_default()
}

/// What a capture run measured.
#[derive(Debug, Clone)]
pub struct CaptureReport {
    pub steps: Vec<Step>,
    /// Events capture accepted.
    pub accepted: u64,
    /// The largest partition lag seen at step ends; `None` when the
    /// consumer's metrics could not be read.
    pub max_lag: Option<u64>,
    /// How long after the load stopped every accepted event was stored.
    pub visible_after: Option<Duration>,
}

/// Runs every step and prints the table and the SLO verdicts.
pub async fn run(
    p: &Pipeline,
    keys: &Keys,
    o: &CaptureOptions,
) -> Result<CaptureReport, StressError> {
    let url = format!("{}/batch", p.capture);
    println!(
        "Capture stress: /batch requests of {} events, {} s per step, loopback",
        o.batch,
        o.step.as_secs()
    );
    println!(
        "  {:>10} {:>13} {:>8} {:>8} {:>8} {:>7} {:>6} {:>8} {:>8}",
        "target/s",
        "achieved/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "errors",
        "shed",
        "lag max",
        "rows +"
    );
    // Warm-up, unmeasured: connections, the producer's metadata, the
    // consumer group's first assignment.
    let mut accepted: u64 = 0;
    for n in 0..20u64 {
        let warm = p
            .http()
            .post(&url)
            .header("content-type", "application/json")
            .body(body(&keys.capture, 1_000_000 + n, o.batch))
            .send()
            .await;
        if warm.is_ok_and(|r| r.status().is_success()) {
            accepted += o.batch as u64;
        }
    }
    let mut results = Vec::new();
    let mut max_lag = Some(0);
    let mut request = 0u64;
    for &rate in &o.steps {
        let before = p.stored().await;
        // Smaller requests below one batch per second, so the rate holds.
        let batch = o.batch.min(rate.max(1) as usize);
        let period = Duration::from_secs_f64(batch as f64 / rate.max(1) as f64);
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let permits = Arc::new(Semaphore::new(IN_FLIGHT));
        let mut tasks = JoinSet::new();
        let mut shed = 0u64;
        let started = Instant::now();
        while started.elapsed() < o.step {
            // When the request was due: a late send counts against latency
            // (no coordinated omission).
            let due = ticks.tick().await.into_std();
            let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                shed += 1;
                continue;
            };
            request += 1;
            let payload = body(&keys.capture, request, batch);
            let (http, url) = (p.http().clone(), url.clone());
            tasks.spawn(async move {
                let sent = due;
                let answer = http
                    .post(url)
                    .header("content-type", "application/json")
                    .body(payload)
                    .send()
                    .await;
                drop(permit);
                match answer {
                    Ok(r) if r.status().is_success() => Ok(sent.elapsed()),
                    _ => Err(()),
                }
            });
        }
        let mut latencies = Vec::new();
        let mut failed = 0;
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Ok(latency)) => latencies.push(latency),
                _ => failed += 1,
            }
        }
        let elapsed = started.elapsed();
        let events = latencies.len() as u64 * batch as u64;
        accepted += events;
        let summary = Summary::of(latencies, failed, events, elapsed);
        let lag = p.max_lag().await;
        max_lag = max_lag.zip(lag).map(|(a, b)| a.max(b));
        let lag = lag.map_or("?".to_owned(), |l| l.to_string());
        let grown = p.stored().await.saturating_sub(before);
        println!(
            "  {rate:>10} {:>13.1} {:>8} {:>8} {:>8} {:>6.1}% {shed:>6} {lag:>8} {grown:>8}",
            summary.rate,
            ms(summary.p50),
            ms(summary.p95),
            ms(summary.p99),
            summary.error_rate * 100.0
        );
        results.push(Step {
            target: rate,
            summary,
            shed,
        });
    }
    let stopped = Instant::now();
    let visible = p.until_stored(accepted, Duration::from_secs(60)).await;
    let stored = p.stored().await;
    println!();
    println!("SLOs (seed 001):");
    let limit = Duration::from_millis(200);
    let tried = o.steps.iter().max().copied().unwrap_or(0);
    let capacity = capture_capacity(&results, limit);
    println!(
        "  capture p99 < 200 ms, errors < 1%:   {}",
        match capacity {
            Some(n) if n == tried => format!("holds up to {n} events/s (the highest step tried)"),
            Some(n) => format!("holds up to {n} events/s; fails above"),
            None => verdict(false, "not met at the first step"),
        }
    );
    println!(
        "  consumer lag < 10k per partition:   {}",
        match max_lag {
            Some(lag) => verdict(lag < 10_000, &format!("max {lag} at step ends")),
            None => verdict(false, "the consumer's lag could not be read"),
        }
    );
    println!(
        "  events queryable within ~30 s:      {}",
        match visible {
            Some(after) => verdict(
                after <= Duration::from_secs(30),
                &format!(
                    "all {accepted} accepted events stored {:.1} s after the load stopped",
                    after.as_secs_f64()
                )
            ),
            None => verdict(
                false,
                &format!(
                    "{stored} of {accepted} stored {:.0} s after the load stopped",
                    stopped.elapsed().as_secs_f64()
                )
            ),
        }
    );
    Ok(CaptureReport {
        steps: results,
        accepted,
        max_lag,
        visible_after: visible,
    })
}
