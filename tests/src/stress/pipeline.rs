//! The pipeline under load: `tributary dev` ([`crate::process::Dev`]), a
//! project and keys made through auth, and what the load is measured by
//! (consumer lag, stored events).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tributary_cli::demo::api::{Api, Urls};

use super::StressError;
use crate::clickhouse::client;
use crate::process::{Dev, Guarded, lines_until};
use crate::{Stack, unique_name};

/// A running `tributary dev`, stopped when dropped.
pub struct Pipeline {
    _child: Guarded,
    pub capture: String,
    pub query: String,
    pub auth: String,
    metrics: String,
    clickhouse_url: String,
    pub database: String,
    http: reqwest::Client,
}

/// A project's keys.
pub struct Keys {
    pub capture: String,
    pub query: String,
}

impl Pipeline {
    /// Starts `bin dev` against `stack` and waits until it is up.
    pub fn start(bin: &Path, stack: &Stack) -> Result<Self, StressError> {
        let mut dev = Dev::new(bin, stack);
        // The load comes from one key: per-key limits would measure
        // themselves, not the pipeline.
        dev.command
            .env("CAPTURE_RATE_LIMIT_PER_KEY", "0")
            .env("QUERY_RATE_LIMIT_PER_KEY", "0");
        let child = dev
            .command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| StressError::Start(format!("{}: {e}", bin.display())))?;
        let mut child = Guarded(child);
        let stdout = child
            .0
            .stdout
            .take()
            .ok_or_else(|| StressError::Start("no stdout".into()))?;
        let up = |l: &str| l.contains("the pipeline is up");
        if lines_until(stdout, up, Duration::from_secs(90)).is_err() {
            let why = match child.0.try_wait() {
                Ok(Some(status)) => {
                    format!("tributary dev exited with {status} (its errors are above)")
                }
                _ => "tributary dev did not come up within 90 s".to_owned(),
            };
            return Err(StressError::Start(why));
        }
        let url = |port: u16| format!("http://127.0.0.1:{port}");
        Ok(Self {
            _child: child,
            capture: url(dev.capture_port),
            query: url(dev.query_port),
            auth: url(dev.auth_port),
            metrics: format!("{}/metrics", url(dev.metrics_port)),
            clickhouse_url: stack.clickhouse_url.clone(),
            database: dev.database,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(512)
                .build()
                .map_err(|e| StressError::Start(e.to_string()))?,
        })
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A new user's project with a capture and a query key, made through
    /// auth as the demo makes them.
    pub async fn project(&self) -> Result<Keys, StressError> {
        let api = Api::new(Urls {
            auth: self.auth.clone(),
            capture: self.capture.clone(),
            query: self.query.clone(),
        })
        .map_err(|e| StressError::Setup(e.to_string()))?;
        let email = format!("{}@example.test", unique_name("stress"));
        let project = api
            .project(&email, "stress-password-1", "stress")
            .await
            .map_err(|e| StressError::Setup(e.to_string()))?;
        Ok(Keys {
            capture: project.capture_key,
            query: project.query_key,
        })
    }

    /// The largest lag of any partition the consumer reports; `None` when
    /// its metrics cannot be read.
    pub async fn max_lag(&self) -> Option<u64> {
        let response = self.http.get(&self.metrics).send().await.ok()?;
        let text = response.text().await.ok()?;
        let lags = tributary_core::metrics::values(&text, "consumer_lag");
        Some(lags.into_iter().fold(0.0, f64::max) as u64)
    }

    /// Distinct events stored.
    pub async fn stored(&self) -> u64 {
        client(&self.clickhouse_url)
            .query(&format!(
                "SELECT uniqExact(uuid) FROM {}.events",
                self.database
            ))
            .fetch_one::<u64>()
            .await
            .unwrap_or(0)
    }

    /// Waits until `n` events are stored; how long it took, or `None`
    /// after `limit`.
    pub async fn until_stored(&self, n: u64, limit: Duration) -> Option<Duration> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if self.stored().await >= n {
                return Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    }
}
