//! `stress capture | query`: see `tributary_tests::stress`. Settings:
//! `TRIBUTARY_BIN` (the `tributary` binary; default
//! `target/release/tributary`), `STRESS_STEPS` (events/s per step, default
//! `200,500,1000,2000`), `STRESS_STEP_SECS` (10), `STRESS_QUERY_EVENTS`
//! (100000), `STRESS_QUERY_CONCURRENCY` (4). The local stack's settings
//! come from the environment or `.stack/env`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use tributary_tests::stress::capture::{self, CaptureOptions};
use tributary_tests::stress::pipeline::Pipeline;
use tributary_tests::stress::query::{self, QueryOptions};
use tributary_tests::{Stack, repo_root};

fn setting<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("invalid value {v:?} for {name}")),
    }
}

fn steps() -> Result<Vec<u64>, String> {
    let text = std::env::var("STRESS_STEPS").unwrap_or_else(|_| "200,500,1000,2000".into());
    let steps: Vec<u64> = text
        .split(',')
        .map(|s| s.trim().parse::<u64>().ok().filter(|&n| n > 0))
        .collect::<Option<_>>()
        .ok_or_else(|| {
            format!("invalid value {text:?} for STRESS_STEPS: expected events/s like 200,500,1000")
        })?;
    Ok(steps)
}

#[tokio::main]
async fn main() -> ExitCode {
    let which = std::env::args().nth(1).unwrap_or_default();
    if which != "capture" && which != "query" {
        eprintln!("usage: stress capture|query");
        return ExitCode::from(2);
    }
    let settings = (|| -> Result<_, String> {
        let secs = setting("STRESS_STEP_SECS", 10u64)?;
        Ok((
            steps()?,
            Duration::from_secs(secs.max(1)),
            setting("STRESS_QUERY_EVENTS", 100_000u64)?,
            setting("STRESS_QUERY_CONCURRENCY", 4usize)?,
        ))
    })();
    let (steps, step, events, concurrency) = match settings {
        Ok(s) => s,
        Err(e) => {
            eprintln!("stress: {e}");
            return ExitCode::from(78);
        }
    };
    let bin = std::env::var_os("TRIBUTARY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/release/tributary"));
    let stack = match Stack::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("stress: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = async {
        let pipeline = Pipeline::start(&bin, &stack)?;
        let keys = pipeline.project().await?;
        if which == "capture" {
            capture::run(
                &pipeline,
                &keys,
                &CaptureOptions {
                    steps,
                    step,
                    batch: 10,
                },
            )
            .await
            .map(|_| ())
        } else {
            let options = QueryOptions {
                events,
                duration: step,
                concurrency,
            };
            query::run(&pipeline, &keys, &options).await.map(|_| ())
        }
    }
    .await;
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stress: {e}");
            ExitCode::FAILURE
        }
    }
}
