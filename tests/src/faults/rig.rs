//! What a scenario runs and breaks: a private broker behind a proxy, a
//! private ClickHouse, and capture, consumers and query as processes of the
//! `tributary` binary, all on loopback.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::clickhouse::{PrivateClickHouse, host_port, settings};
use crate::kafka::{create_topic, free_port};
use crate::kafka_tap::TappedBroker;
use crate::process::Guarded;
use crate::tcp_proxy::TcpProxy;
use crate::{Stack, unique_name};

/// Query's limit on one query.
pub const QUERY_TIMEOUT_SECS: u64 = 3;

/// The static key of the load's project, and the project, when keys are
/// not checked by auth.
pub const KEY: &str = "phc_faults";
pub const PROJECT: u64 = 4242;

/// Who checks keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// `CAPTURE_API_KEYS` / `QUERY_API_KEYS`.
    Static,
    /// The auth service (on Postgres through a proxy), keys made through
    /// its API, cached by capture and query for 5 s (so an outage longer
    /// than that runs on their stale answers).
    Auth,
}

/// The auth service of a rig, restartable.
pub struct AuthService {
    pub url: String,
    env: Vec<(&'static str, String)>,
    process: Option<Guarded>,
    /// Postgres as auth reaches it.
    pub postgres: TcpProxy,
}

pub struct Rig {
    bin: PathBuf,
    /// Each process's log (`<workload>-<n>.log`), read back on failure.
    logs: PathBuf,
    spawned: usize,
    pub broker: TappedBroker,
    pub clickhouse: PrivateClickHouse,
    redis_url: String,
    pub topic: String,
    dlq: String,
    pub group: String,
    pub database: String,
    pub capture: String,
    pub query: String,
    /// The load's keys and project.
    pub capture_key: String,
    pub query_key: String,
    pub project: u64,
    pub auth: Option<AuthService>,
    /// Query's way to ClickHouse and to Redis (the consumer's goes
    /// straight to ClickHouse): cut or stalled for query alone.
    pub query_clickhouse: TcpProxy,
    pub redis: TcpProxy,
    _capture: Guarded,
    _query: Guarded,
    /// Consumers running, oldest first, with their metrics ports.
    pub consumers: Vec<(Guarded, u16)>,
}

impl Rig {
    /// Starts the servers and processes, with one consumer, and waits until
    /// capture and query answer.
    pub async fn start(bin: &Path, stack: &Stack) -> Self {
        Self::start_with(bin, stack, Keys::Static).await
    }

    /// As [`start`](Self::start), keys checked as `keys` says.
    pub async fn start_with(bin: &Path, stack: &Stack, keys: Keys) -> Self {
        let tansu = stack
            .tansu_bin
            .as_deref()
            .expect("TANSU_BIN not set by local-stack.sh");
        let broker = TappedBroker::start(tansu);
        let topic = unique_name("fault_events");
        let dlq = unique_name("fault_dlq");
        create_topic(&broker.bootstrap(), &topic, 4).await;
        create_topic(&broker.bootstrap(), &dlq, 1).await;
        let clickhouse = PrivateClickHouse::start();
        let database = unique_name("faults");
        tributary_core::schema::migrate_clickhouse(&settings(&clickhouse.url(), &database))
            .await
            .unwrap_or_else(|e| panic!("migrating {database}: {e}"));
        let logs = std::env::temp_dir().join(unique_name("fault_logs"));
        std::fs::create_dir_all(&logs).unwrap_or_else(|e| panic!("{}: {e}", logs.display()));
        let capture_port = free_port();
        let query_port = free_port();
        let (mut auth, capture_key, query_key, project) = match keys {
            Keys::Static => (None, KEY.to_owned(), KEY.to_owned(), PROJECT),
            Keys::Auth => {
                let mut auth = AuthService::start(bin, &logs, stack).await;
                let urls = tributary_cli::demo::api::Urls {
                    auth: auth.url.clone(),
                    capture: format!("http://127.0.0.1:{capture_port}"),
                    query: format!("http://127.0.0.1:{query_port}"),
                };
                let api =
                    tributary_cli::demo::api::Api::new(urls).unwrap_or_else(|e| panic!("{e}"));
                let email = format!("{}@example.test", unique_name("faults"));
                let p = api
                    .project(&email, "fault-password-1", "faults")
                    .await
                    .unwrap_or_else(|e| panic!("making the load's project through auth: {e}"));
                auth.ensure_running(bin, &logs);
                (Some(auth), p.capture_key, p.query_key, p.id)
            }
        };
        let key_env = |prefix: &str| -> Vec<(String, String)> {
            match &auth {
                None => vec![(format!("{prefix}_API_KEYS"), format!("{KEY}={PROJECT}"))],
                Some(a) => vec![
                    (format!("{prefix}_AUTH_URL"), a.url.clone()),
                    (format!("{prefix}_AUTH_CACHE_SECS"), "5".to_owned()),
                ],
            }
        };
        let capture = spawn_with(
            bin,
            &logs.join("capture-0.log"),
            "capture",
            &key_env("CAPTURE"),
            &[
                ("CAPTURE_HOST", "127.0.0.1".into()),
                ("CAPTURE_PORT", capture_port.to_string()),
                ("CAPTURE_KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
                ("CAPTURE_KAFKA_TOPIC", topic.clone()),
                ("CAPTURE_RATE_LIMIT_PER_KEY", "0".into()),
                ("CAPTURE_KAFKA_PRODUCE_TIMEOUT_MS", "3000".into()),
                ("CAPTURE_KAFKA_READY_INTERVAL_MS", "1000".into()),
            ],
        );
        let (ch_host, ch_port) = host_port(&clickhouse.url());
        let query_clickhouse = TcpProxy::start(socket(&ch_host, ch_port), None)
            .unwrap_or_else(|e| panic!("a proxy to ClickHouse: {e}"));
        let redis = TcpProxy::start(socket("127.0.0.1", stack.redis_port()), None)
            .unwrap_or_else(|e| panic!("a proxy to Redis: {e}"));
        let query = spawn_with(
            bin,
            &logs.join("query-0.log"),
            "query",
            &key_env("QUERY"),
            &[
                ("QUERY_HOST", "127.0.0.1".into()),
                ("QUERY_PORT", query_port.to_string()),
                ("QUERY_CLICKHOUSE_HOST", "127.0.0.1".into()),
                (
                    "QUERY_CLICKHOUSE_PORT",
                    query_clickhouse.addr().port().to_string(),
                ),
                ("QUERY_CLICKHOUSE_DATABASE", database.clone()),
                (
                    "REDIS_URL",
                    format!("redis://127.0.0.1:{}", redis.addr().port()),
                ),
                ("QUERY_TIMEOUT_SECS", QUERY_TIMEOUT_SECS.to_string()),
                ("QUERY_RATE_LIMIT_PER_KEY", "0".into()),
            ],
        );
        let mut rig = Self {
            bin: bin.to_path_buf(),
            logs,
            spawned: 0,
            broker,
            clickhouse,
            redis_url: stack.redis_url.clone(),
            topic,
            dlq,
            group: unique_name("fault_consumers"),
            database,
            capture: format!("http://127.0.0.1:{capture_port}"),
            query: format!("http://127.0.0.1:{query_port}"),
            query_clickhouse,
            redis,
            capture_key,
            query_key,
            project,
            auth: auth.take(),
            _capture: capture,
            _query: query,
            consumers: Vec::new(),
        };
        rig.add_consumer();
        for url in [
            format!("{}/ready", rig.capture),
            format!("{}/ready", rig.query),
        ] {
            crate::wait_for_ok(&url, &url, Duration::from_secs(60)).await;
        }
        assert!(
            rig.until_settled(4, Duration::from_secs(60)).await,
            "the first consumer did not get the partitions:\n{}",
            rig.log_tails(10)
        );
        rig
    }

    /// Starts one more consumer in the group.
    pub fn add_consumer(&mut self) {
        let (host, port) = host_port(&self.clickhouse.url());
        self.spawned += 1;
        let metrics = free_port();
        let consumer = spawn(
            &self.bin,
            &self.logs.join(format!("consumer-{}.log", self.spawned)),
            "consumer",
            &[
                ("CONSUMER_KAFKA_BOOTSTRAP_SERVERS", self.broker.bootstrap()),
                ("CONSUMER_KAFKA_TOPIC", self.topic.clone()),
                ("CONSUMER_DLQ_TOPIC", self.dlq.clone()),
                ("CONSUMER_KAFKA_GROUP_ID", self.group.clone()),
                ("CONSUMER_CLICKHOUSE_HOST", host),
                ("CONSUMER_CLICKHOUSE_PORT", port.to_string()),
                ("CONSUMER_CLICKHOUSE_DATABASE", self.database.clone()),
                ("CONSUMER_BATCH_SIZE", "500".into()),
                ("CONSUMER_FLUSH_INTERVAL_MS", "300".into()),
                ("CONSUMER_SESSION_TIMEOUT_MS", "6000".into()),
                ("CONSUMER_BACKOFF_MAX_MS", "2000".into()),
                ("CONSUMER_METRICS_PORT", metrics.to_string()),
            ],
        );
        self.consumers.push((consumer, metrics));
    }

    /// SIGKILLs the oldest consumer (no flush, no commit, no leaving).
    pub fn kill_consumer(&mut self) {
        if !self.consumers.is_empty() {
            let (mut c, _) = self.consumers.remove(0);
            let _ = c.0.kill();
            let _ = c.0.wait();
        }
    }

    /// SIGTERMs the oldest consumer (it flushes, commits and leaves).
    pub fn stop_consumer(&mut self) {
        if !self.consumers.is_empty() {
            let (mut c, _) = self.consumers.remove(0);
            c.terminate(Duration::from_secs(30));
        }
    }

    /// Partitions the running consumers hold, each as its metrics say.
    pub async fn assigned(&self) -> Vec<i64> {
        let http = reqwest::Client::new();
        let mut held = Vec::new();
        for (_, port) in &self.consumers {
            let text = match http
                .get(format!("http://127.0.0.1:{port}/metrics"))
                .send()
                .await
            {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            let n = tributary_core::metrics::values(&text, "consumer_assigned_partitions")
                .first()
                .copied()
                .unwrap_or(0.0);
            held.push(n as i64);
        }
        held
    }

    /// The oldest running consumer's `/health/detailed`.
    pub async fn consumer_health(&self) -> serde_json::Value {
        let Some((_, port)) = self.consumers.first() else {
            return serde_json::Value::Null;
        };
        match reqwest::get(format!("http://127.0.0.1:{port}/health/detailed")).await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        }
    }

    /// Waits until the group is settled: every partition held, by every
    /// consumer when there are enough partitions. `false` after `limit`.
    pub async fn until_settled(&self, partitions: i64, limit: Duration) -> bool {
        let started = std::time::Instant::now();
        while started.elapsed() < limit {
            let held = self.assigned().await;
            let everyone = held.len() as i64 > partitions || held.iter().all(|n| *n > 0);
            if held.iter().sum::<i64>() == partitions && everyone {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        false
    }

    /// Distinct events of the load's project stored, and their uuids.
    pub async fn stored(&self) -> std::collections::HashSet<String> {
        crate::clickhouse::client(&self.clickhouse.url())
            .query(&format!(
                "SELECT DISTINCT toString(uuid) FROM {}.events WHERE project_id = {}",
                self.database, self.project
            ))
            .fetch_all::<String>()
            .await
            .map(|v| v.into_iter().collect())
            .unwrap_or_default()
    }

    /// Messages in the dead-letter topic.
    pub async fn dead_lettered(&self) -> usize {
        crate::kafka::read_topic(
            &self.broker.bootstrap(),
            &self.dlq,
            0,
            Duration::from_secs(1),
        )
        .await
        .len()
    }

    /// Waits until every uuid of `acked` is stored, up to `limit`; how long
    /// it took, or `None`.
    pub async fn until_stored(
        &self,
        acked: &std::collections::HashSet<String>,
        limit: Duration,
    ) -> Option<Duration> {
        let started = std::time::Instant::now();
        while started.elapsed() < limit {
            if acked.is_subset(&self.stored().await) {
                return Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        None
    }

    /// The last `lines` lines of every process's log, for a failure.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.logs)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        names.sort();
        names
            .iter()
            .map(|path| {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                let all: Vec<&str> = text.lines().collect();
                let tail = all[all.len().saturating_sub(lines)..].join("\n");
                format!("== {} ==\n{tail}", path.display())
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn redis_url(&self) -> &str {
        &self.redis_url
    }
}

fn spawn(bin: &Path, log: &Path, workload: &str, env: &[(&str, String)]) -> Guarded {
    spawn_with(bin, log, workload, &[], env)
}

fn spawn_with(
    bin: &Path,
    log: &Path,
    workload: &str,
    owned: &[(String, String)],
    env: &[(&str, String)],
) -> Guarded {
    let file = std::fs::File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    let err = file
        .try_clone()
        .unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    Guarded(
        Command::new(bin)
            .arg(workload)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .envs(owned.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("LOG_LEVEL", "info,rdkafka=warn")
            .env("LOG_FORMAT", "text")
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} {workload}: {e}", bin.display())),
    )
}

fn socket(host: &str, port: u16) -> std::net::SocketAddr {
    use std::net::ToSocketAddrs;
    (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| panic!("cannot resolve {host}:{port}"))
}

impl AuthService {
    /// Auth on the stack's Postgres, reached through a proxy.
    async fn start(bin: &Path, logs: &Path, stack: &Stack) -> Self {
        let (host, port) = stack.postgres_address();
        let postgres = TcpProxy::start(socket(&host, port), None)
            .unwrap_or_else(|e| panic!("a proxy to Postgres: {e}"));
        let dsn = stack.postgres_dsn_via(&postgres.addr().to_string());
        let listen = free_port();
        let mut auth = Self {
            url: format!("http://127.0.0.1:{listen}"),
            env: vec![
                ("AUTH_HOST", "127.0.0.1".to_owned()),
                ("AUTH_PORT", listen.to_string()),
                ("POSTGRES_DSN", dsn),
                (
                    "JWT_SECRET",
                    "fault-suite-secret-0123456789abcdef".to_owned(),
                ),
                ("AUTH_RATE_LIMIT_PER_ADDRESS", "0".to_owned()),
            ],
            process: None,
            postgres,
        };
        auth.ensure_running(bin, logs);
        let ready = format!("{}/ready", auth.url);
        crate::wait_for_ok(&ready, &ready, Duration::from_secs(60)).await;
        auth
    }

    /// Starts auth unless it runs.
    pub fn ensure_running(&mut self, bin: &Path, logs: &Path) {
        if self.process.is_none() {
            let n = std::fs::read_dir(logs).map(|d| d.count()).unwrap_or(0);
            self.process = Some(spawn(
                bin,
                &logs.join(format!("auth-{n}.log")),
                "auth",
                &self.env,
            ));
        }
    }

    /// SIGKILLs auth.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            let _ = p.0.kill();
            let _ = p.0.wait();
        }
    }
}

impl Rig {
    /// Starts auth again (after [`AuthService::kill`]) and waits until it is
    /// ready.
    pub async fn restart_auth(&mut self) {
        let (bin, logs) = (self.bin.clone(), self.logs.clone());
        if let Some(auth) = self.auth.as_mut() {
            auth.ensure_running(&bin, &logs);
            let ready = format!("{}/ready", auth.url);
            crate::wait_for_ok(&ready, &ready, Duration::from_secs(60)).await;
        }
    }
}
