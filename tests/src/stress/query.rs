//! `make stress-query`: a month of events loaded through capture, then
//! trend (7 days) and funnel (3 steps, 30 days) queries repeated by a few
//! concurrent clients, uncached, against the seed's p95 targets.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::StressError;
use super::pipeline::{Keys, Pipeline};
use super::stats::{Summary, ms, verdict};

pub struct QueryOptions {
    pub events: u64,
    pub duration: Duration,
    pub concurrency: usize,
}

/// `events` events over the last 30 days: every user views pages, a third
/// sign up after, a sixth buy after that.
fn dataset(events: u64) -> Vec<Value> {
    let now = chrono::Utc::now();
    let users = (events / 10).max(1);
    let mut out = Vec::with_capacity(events as usize);
    let mut user = 0;
    while (out.len() as u64) < events {
        let u = user % users;
        let start = now - chrono::Duration::minutes(((u * 7919) % (29 * 24 * 60)) as i64 + 60);
        let at = |minutes: i64| {
            (start + chrono::Duration::minutes(minutes))
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        };
        let id = format!("q-user-{user}");
        let mut push = |event: &str, minutes: i64| {
            out.push(json!({
                "uuid": uuid::Uuid::now_v7().to_string(),
                "event": event,
                "distinct_id": id,
                "timestamp": at(minutes),
                "properties": {"$browser": "Chrome"},
            }))
        };
        for m in 0..7 {
            push("$pageview", m);
        }
        if u.is_multiple_of(3) {
            push("sign_up", 10);
        }
        if u.is_multiple_of(6) {
            push("purchase", 20);
        }
        user += 1;
    }
    out.truncate(events as usize);
    out
}

/// What a query run measured.
#[derive(Debug, Clone)]
pub struct QueryReport {
    pub trend: Summary,
    pub funnel: Summary,
}

/// Loads the dataset, runs the queries, prints the verdicts.
pub async fn run(p: &Pipeline, keys: &Keys, o: &QueryOptions) -> Result<QueryReport, StressError> {
    let events = dataset(o.events);
    let load = Instant::now();
    let mut sends = JoinSet::new();
    for chunk in events.chunks(1000) {
        let body = json!({"api_key": keys.capture, "batch": chunk});
        let (http, url) = (p.http().clone(), format!("{}/batch", p.capture));
        sends.spawn(async move { http.post(url).json(&body).send().await.map(|r| r.status()) });
        if sends.len() >= 8 {
            check(sends.join_next().await)?;
        }
    }
    while let Some(done) = sends.join_next().await {
        check(Some(done))?;
    }
    let total = events.len() as u64;
    p.until_stored(total, Duration::from_secs(180))
        .await
        .ok_or_else(|| {
            StressError::Setup(format!(
                "the {total} events were not all stored within 180 s"
            ))
        })?;
    println!(
        "Query stress: {total} events loaded and stored in {:.1} s; {} clients for {} s, uncached (?refresh=true)",
        load.elapsed().as_secs_f64(),
        o.concurrency,
        o.duration.as_secs()
    );

    let trend = json!({"series": [{"event": "$pageview", "math": "unique_users"}, {"event": "purchase"}], "date_from": "-7d", "interval": "day"});
    let funnel = json!({"steps": [{"event": "$pageview"}, {"event": "sign_up"}, {"event": "purchase"}], "date_from": "-30d"});
    let mut clients = JoinSet::new();
    let started = Instant::now();
    for c in 0..o.concurrency {
        let (http, base, key) = (p.http().clone(), p.query.clone(), keys.query.clone());
        let (trend, funnel, duration) = (trend.clone(), funnel.clone(), o.duration);
        clients.spawn(async move {
            let mut seen: [(Vec<Duration>, u64); 2] = [(Vec::new(), 0), (Vec::new(), 0)];
            let mut i = c;
            while started.elapsed() < duration {
                let (kind, body) = if i % 2 == 0 {
                    (0, &trend)
                } else {
                    (1, &funnel)
                };
                let path = ["trend", "funnel"][kind];
                let sent = Instant::now();
                let answer = http
                    .post(format!("{base}/api/query/{path}?refresh=true"))
                    .header("X-API-Key", &key)
                    .json(body)
                    .send()
                    .await;
                match answer {
                    Ok(r) if r.status().is_success() => seen[kind].0.push(sent.elapsed()),
                    _ => seen[kind].1 += 1,
                }
                i += 1;
            }
            seen
        });
    }
    let mut all: [(Vec<Duration>, u64); 2] = [(Vec::new(), 0), (Vec::new(), 0)];
    while let Some(done) = clients.join_next().await {
        let seen = done.map_err(|e| StressError::Setup(e.to_string()))?;
        for (k, (latencies, failed)) in seen.into_iter().enumerate() {
            all[k].0.extend(latencies);
            all[k].1 += failed;
        }
    }
    let elapsed = started.elapsed();
    println!(
        "  {:<8} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "query", "per s", "p50 ms", "p95 ms", "p99 ms", "errors"
    );
    let mut p95 = [Duration::ZERO; 2];
    let mut errors = [0.0; 2];
    let mut summaries = Vec::new();
    for (k, (latencies, failed)) in all.into_iter().enumerate() {
        let n = latencies.len() as u64;
        let s = Summary::of(latencies, failed, n, elapsed);
        summaries.push(s.clone());
        println!(
            "  {:<8} {:>9.1} {:>9} {:>9} {:>9} {:>6.1}%",
            ["trend", "funnel"][k],
            s.rate,
            ms(s.p50),
            ms(s.p95),
            ms(s.p99),
            s.error_rate * 100.0
        );
        p95[k] = s.p95;
        errors[k] = s.error_rate;
    }
    println!();
    println!("SLOs (seed 001):");
    println!(
        "  trend (7 days) p95 < 2 s, no errors:      {}",
        verdict(
            p95[0] < Duration::from_secs(2) && errors[0] == 0.0,
            &format!("p95 {} ms", ms(p95[0]))
        )
    );
    println!(
        "  funnel (3 steps, 30 days) p95 < 10 s:     {}",
        verdict(
            p95[1] < Duration::from_secs(10) && errors[1] == 0.0,
            &format!("p95 {} ms", ms(p95[1]))
        )
    );
    let funnel = summaries
        .pop()
        .ok_or_else(|| StressError::Setup("no funnel results".into()))?;
    let trend = summaries
        .pop()
        .ok_or_else(|| StressError::Setup("no trend results".into()))?;
    Ok(QueryReport { trend, funnel })
}

fn check(
    done: Option<Result<Result<reqwest::StatusCode, reqwest::Error>, tokio::task::JoinError>>,
) -> Result<(), StressError> {
    match done {
        Some(Ok(Ok(status))) if status.is_success() => Ok(()),
        Some(Ok(Ok(status))) => Err(StressError::Setup(format!(
            "loading the dataset: capture answered {status}"
        ))),
        Some(Ok(Err(e))) => Err(StressError::Setup(format!("loading the dataset: {e}"))),
        Some(Err(e)) => Err(StressError::Setup(e.to_string())),
        None => Ok(()),
    }
}
