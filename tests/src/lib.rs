//! Helpers for tests that run against the real local stack
//! (`infrastructure/local-stack.sh up`).
//!
//! Settings come from the process environment (as printed by `local-stack.sh
//! up`) or, when absent, from the `env` file the script writes into its stack
//! directory. A missing stack is a test failure with instructions, never a skip.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub mod chdb;
pub mod clickhouse;
pub mod cpu;
pub mod faults;
pub mod kafka;
pub mod kafka_tap;
pub mod kubelet;
pub mod perf;
pub mod process;
pub mod sample;
pub mod stress;
pub mod tcp_proxy;

/// Connection settings of the running local stack.
#[derive(Debug, Clone)]
pub struct Stack {
    pub kafka_bootstrap: String,
    pub clickhouse_url: String,
    pub postgres_dsn: String,
    pub redis_url: String,
    /// The stack's Python (with tansu, confluent-kafka, ...), when known.
    pub python: Option<PathBuf>,
    /// The tansu broker binary, for tests that run a private broker.
    pub tansu_bin: Option<PathBuf>,
    /// The two-shard cluster: its name and one node's URL, when the stack
    /// runs one (see [`Stack::cluster`]).
    pub clickhouse_cluster: Option<(String, String)>,
    /// The replica pair (one shard, two replicas): name and a node's URL.
    pub clickhouse_replicated: Option<(String, String)>,
    /// The ZooKeeper the replicas use, `host:port`.
    pub zookeeper: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error(
        "local stack settings not found ({0}); start it with `infrastructure/local-stack.sh up` or run `make test`"
    )]
    NotFound(String),
    #[error("local stack setting {0} is missing from the environment and {1}")]
    Missing(&'static str, String),
}

/// `bytes` gzipped, as SDKs and hostile clients send bodies.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).expect("writing to a Vec cannot fail");
    enc.finish().expect("writing to a Vec cannot fail")
}

/// The repository root (the workspace directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn stack_env_file() -> PathBuf {
    std::env::var_os("TRIBUTARY_STACK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".stack"))
        .join("env")
}

/// Parses `KEY=VALUE` lines; blank lines and `#` comments are skipped.
pub fn parse_env_lines(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

impl Stack {
    /// Reads the settings; see the module docs.
    pub fn load() -> Result<Self, StackError> {
        let file = stack_env_file();
        let from_file = std::fs::read_to_string(&file)
            .map(|t| parse_env_lines(&t))
            .unwrap_or_default();
        let origin = format!("{} does not set it", file.display());
        let get = |key: &'static str| -> Result<String, StackError> {
            std::env::var(key)
                .ok()
                .filter(|v| !v.is_empty())
                .or_else(|| from_file.get(key).cloned())
                .ok_or_else(|| {
                    if from_file.is_empty() {
                        StackError::NotFound(format!("{key} unset and no {}", file.display()))
                    } else {
                        StackError::Missing(key, origin.clone())
                    }
                })
        };
        Ok(Self {
            kafka_bootstrap: get("KAFKA_BOOTSTRAP_SERVERS")?,
            clickhouse_url: get("CLICKHOUSE_URL")?,
            postgres_dsn: get("POSTGRES_DSN")?,
            redis_url: get("REDIS_URL")?,
            python: get("TRIBUTARY_PYTHON").ok().map(PathBuf::from),
            tansu_bin: get("TANSU_BIN").ok().map(PathBuf::from),
            clickhouse_cluster: get("CLICKHOUSE_CLUSTER")
                .ok()
                .zip(get("CLICKHOUSE_CLUSTER_URL").ok()),
            clickhouse_replicated: get("CLICKHOUSE_REPLICATED_CLUSTER")
                .ok()
                .zip(get("CLICKHOUSE_REPLICATED_URL").ok()),
            zookeeper: get("ZOOKEEPER").ok(),
        })
    }

    /// The stack's ClickHouse cluster: (name, a node's URL).
    pub fn cluster(&self) -> (String, String) {
        self.clickhouse_cluster.clone().unwrap_or_else(|| {
            panic!(
                "the local stack runs no ClickHouse cluster (CLICKHOUSE_CLUSTER unset); \
                 restart it with `infrastructure/local-stack.sh down && infrastructure/local-stack.sh up`"
            )
        })
    }

    /// The stack's replica pair: (name, a node's URL).
    pub fn replicated(&self) -> (String, String) {
        self.clickhouse_replicated.clone().unwrap_or_else(|| {
            panic!(
                "the local stack runs no ClickHouse replica pair (CLICKHOUSE_REPLICATED_CLUSTER unset); \
                 restart it with `infrastructure/local-stack.sh down && infrastructure/local-stack.sh up`"
            )
        })
    }

    /// Like [`Stack::load`], panicking with the instructions on failure.
    pub fn require() -> Self {
        match Self::load() {
            Ok(stack) => stack,
            Err(e) => panic!("{e}"),
        }
    }

    /// The `host:port` of the Postgres server the DSN names.
    pub fn postgres_address(&self) -> (String, u16) {
        let hostport = self
            .postgres_dsn
            .rsplit_once('@')
            .map(|(_, rest)| rest.split('/').next().unwrap_or_default())
            .unwrap_or_else(|| panic!("no host in POSTGRES_DSN {}", self.postgres_dsn));
        let (host, port) = hostport
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("no port in POSTGRES_DSN {}", self.postgres_dsn));
        let port = port
            .parse()
            .unwrap_or_else(|e| panic!("POSTGRES_DSN port {port:?}: {e}"));
        (host.to_owned(), port)
    }

    /// The DSN with its server replaced by `address` (a proxy's, a
    /// Service's `host:port`): same user, password and database.
    pub fn postgres_dsn_via(&self, address: &str) -> String {
        let (host, port) = self.postgres_address();
        self.postgres_dsn
            .replacen(&format!("@{host}:{port}"), &format!("@{address}"), 1)
    }

    /// The port of the stack's Redis.
    pub fn redis_port(&self) -> u16 {
        self.redis_url
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse().ok())
            .unwrap_or_else(|| panic!("no port in REDIS_URL {}", self.redis_url))
    }
}

/// Waits until something listens on `addr`, panicking after `timeout`
/// with `what` (a server a test started).
pub fn wait_listening(addr: std::net::SocketAddr, what: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {addr} within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A name no other test run uses: `prefix_` plus 12 random hex digits.
pub fn unique_name(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &id[..12])
}

/// Polls `probe` until it yields `Some`, or fails after `timeout` naming `what`.
pub async fn poll_until<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `GET url` answers 200 (a server up, or ready), panicking
/// after `timeout` with `what`.
pub async fn wait_for_ok(what: &str, url: &str, timeout: Duration) {
    let http = reqwest::Client::new();
    poll_until(what, timeout, || {
        let request = http.get(url).send();
        async move { request.await.ok().filter(|r| r.status() == 200).map(|_| ()) }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_env_lines() {
        let m = parse_env_lines("# c\nA=1\n\nB = x=y \nnot a line\n");
        assert_eq!(m.get("A").map(String::as_str), Some("1"));
        assert_eq!(m.get("B").map(String::as_str), Some("x=y"));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique_name("t"), unique_name("t"));
        assert!(unique_name("topic").starts_with("topic_"));
    }

    #[tokio::test]
    async fn poll_until_returns_the_first_value() {
        let mut n = 0;
        let v = poll_until("n to reach 3", Duration::from_secs(5), || {
            n += 1;
            let v = n;
            async move { (v >= 3).then_some(v) }
        })
        .await;
        assert_eq!(v, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "timed out")]
    async fn poll_until_fails_after_the_deadline() {
        poll_until("never", Duration::from_millis(100), || async { None::<()> }).await;
    }
}
