//! The pipeline under load: `tributary dev` started on free loopback ports
//! with its own topic, consumer group and database, a project and keys made
//! through auth, and what the load is measured by (consumer lag, stored
//! rows).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::StressError;
use crate::clickhouse::{client, host_port};
use crate::kafka::free_port;
use crate::{Stack, unique_name};

/// A running `tributary dev`; stopped (SIGTERM) when dropped.
pub struct Pipeline {
    child: Child,
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
        let (host, port) = host_port(&stack.clickhouse_url);
        let ports = [free_port(), free_port(), free_port(), free_port()];
        let database = unique_name("stress");
        let mut child = Command::new(bin)
            .arg("dev")
            .env("KAFKA_BOOTSTRAP_SERVERS", &stack.kafka_bootstrap)
            .env("CAPTURE_KAFKA_BOOTSTRAP_SERVERS", &stack.kafka_bootstrap)
            .env("CONSUMER_KAFKA_BOOTSTRAP_SERVERS", &stack.kafka_bootstrap)
            .env("POSTGRES_DSN", &stack.postgres_dsn)
            .env("REDIS_URL", &stack.redis_url)
            .env("CONSUMER_CLICKHOUSE_HOST", host)
            .env("CONSUMER_CLICKHOUSE_PORT", port.to_string())
            .env("CONSUMER_CLICKHOUSE_DATABASE", &database)
            .env("CAPTURE_KAFKA_TOPIC", unique_name("stress_events"))
            .env("CONSUMER_DLQ_TOPIC", unique_name("stress_dlq"))
            .env("CONSUMER_KAFKA_GROUP_ID", unique_name("stress_consumers"))
            .env("CAPTURE_PORT", ports[0].to_string())
            .env("QUERY_PORT", ports[1].to_string())
            .env("AUTH_PORT", ports[2].to_string())
            .env("CONSUMER_METRICS_PORT", ports[3].to_string())
            .env("LOG_LEVEL", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| StressError::Start(format!("{}: {e}", bin.display())))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| StressError::Start("no stdout".into()))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("the pipeline is up") => break,
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill();
                    return Err(StressError::Start(
                        "tributary dev did not come up within 90 s".into(),
                    ));
                }
            }
        }
        let url = |port: u16| format!("http://127.0.0.1:{port}");
        Ok(Self {
            child,
            capture: url(ports[0]),
            query: url(ports[1]),
            auth: url(ports[2]),
            metrics: format!("{}/metrics", url(ports[3])),
            clickhouse_url: stack.clickhouse_url.clone(),
            database,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(512)
                .build()
                .map_err(|e| StressError::Start(e.to_string()))?,
        })
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    async fn post(
        &self,
        url: String,
        bearer: Option<&str>,
        body: Value,
    ) -> Result<Value, StressError> {
        let mut request = self.http.post(&url).json(&body);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let failed = |e: reqwest::Error| StressError::Setup(format!("{url}: {e}"));
        let response = request.send().await.map_err(failed)?;
        let status = response.status();
        let answer: Value = response.json().await.map_err(failed)?;
        if !status.is_success() {
            return Err(StressError::Setup(format!("{url}: {status} {answer}")));
        }
        Ok(answer)
    }

    /// A new user's project with a capture and a query key.
    pub async fn project(&self) -> Result<Keys, StressError> {
        let user = json!({"email": format!("{}@example.test", unique_name("stress")), "password": "stress-password-1"});
        self.post(format!("{}/api/signup", self.auth), None, user.clone())
            .await?;
        let login = self
            .post(format!("{}/api/login", self.auth), None, user)
            .await?;
        let token = login["token"].as_str().unwrap_or_default().to_owned();
        let project = self
            .post(
                format!("{}/api/projects", self.auth),
                Some(&token),
                json!({"name": "stress"}),
            )
            .await?;
        let keys = format!("{}/api/projects/{}/api-keys", self.auth, project["id"]);
        let key = |scope: &str| {
            self.post(
                keys.clone(),
                Some(&token),
                json!({"name": scope, "scope": scope}),
            )
        };
        let capture = key("capture").await?;
        let query = key("query").await?;
        Ok(Keys {
            capture: capture["api_key"].as_str().unwrap_or_default().to_owned(),
            query: query["api_key"].as_str().unwrap_or_default().to_owned(),
        })
    }

    /// The largest lag of any partition the consumer reports.
    pub async fn max_lag(&self) -> u64 {
        let Ok(response) = self.http.get(&self.metrics).send().await else {
            return 0;
        };
        let text = response.text().await.unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with("consumer_lag{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .fold(0.0, f64::max) as u64
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

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}
