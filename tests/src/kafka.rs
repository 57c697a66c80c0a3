//! Kafka helpers for tests: topics, reading a topic back, a private broker.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;

use crate::unique_name;

const TIMEOUT: Duration = Duration::from_secs(30);

/// A message read back from a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub partition: i32,
    pub offset: i64,
}

impl Received {
    pub fn key_str(&self) -> Option<&str> {
        self.key
            .as_deref()
            .and_then(|k| std::str::from_utf8(k).ok())
    }
}

pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

/// Creates `topic` with `partitions`, panicking with the broker's reason.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap).create().unwrap();
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
        )
        .await
        .unwrap_or_else(|e| panic!("creating topic {topic} on {bootstrap}: {e}"));
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
    }
}

/// Deletes `topics`, panicking with the broker's reason. The stack's broker
/// keeps every topic's messages in memory: a benchmark that leaves its
/// topics behind makes the broker larger, and slower, for the next run.
pub async fn delete_topics(bootstrap: &str, topics: &[&str]) {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap).create().unwrap();
    let results = admin
        .delete_topics(
            topics,
            &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
        )
        .await
        .unwrap_or_else(|e| panic!("deleting topics {topics:?} on {bootstrap}: {e}"));
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("deleting topic {t}: {e}"));
    }
}

/// The offsets `group` has committed on `topic`'s `partitions` (-1 where
/// none), as the group coordinator answers; the reader does not join the
/// group.
pub fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let reader: BaseConsumer = client_config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let answer = reader
        .committed_offsets(tpl, TIMEOUT)
        .unwrap_or_else(|e| panic!("committed offsets of {group} on {topic}: {e}"));
    answer
        .elements()
        .iter()
        .map(|e| match e.offset() {
            rdkafka::Offset::Offset(o) => o,
            _ => -1,
        })
        .collect()
}

/// Reads `topic` from the beginning with a fresh group until `expected`
/// messages arrived, then keeps reading for `settle` to catch extras.
pub async fn read_topic(
    bootstrap: &str,
    topic: &str,
    expected: usize,
    settle: Duration,
) -> Vec<Received> {
    let consumer: StreamConsumer = client_config(bootstrap)
        .set("group.id", unique_name("reader"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while out.len() < expected {
        let msg = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "only {} of {expected} messages arrived on {topic} within 60 s",
                    out.len()
                )
            })
            .unwrap();
        out.push(Received {
            key: msg.key().map(<[u8]>::to_vec),
            payload: msg.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            partition: msg.partition(),
            offset: msg.offset(),
        });
    }
    let settle_until = tokio::time::Instant::now() + settle;
    while let Ok(Ok(msg)) = tokio::time::timeout_at(settle_until, consumer.recv()).await {
        out.push(Received {
            key: msg.key().map(<[u8]>::to_vec),
            payload: msg.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            partition: msg.partition(),
            offset: msg.offset(),
        });
    }
    out
}

/// Ports handed out by [`free_port`]: below Linux's ephemeral range
/// (32768-60999), so no outgoing connection of another test takes one
/// between the check and the child process binding it (which happened with
/// ports from `bind(:0)`, themselves ephemeral), and above the local
/// stack's.
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A free TCP port on 127.0.0.1 (bound then released), for a child process
/// to listen on.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    // Each process starts somewhere else in the range and walks on, so
    // parallel test processes rarely try the same port. The start is a hash
    // of the pid: nextest starts test processes with consecutive pids, and
    // starts one apart would walk over each other's ports (a port checked
    // free here is bound later by the child, so both could take it).
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let span = TEST_PORTS.end - TEST_PORTS.start;
    let spread = std::process::id().wrapping_mul(2_654_435_761);
    let start = u16::try_from(spread % u32::from(span)).unwrap_or(0);
    for _ in 0..span {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = TEST_PORTS.start + offset;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {TEST_PORTS:?}")
}

/// A tansu broker of the test's own, on its own address, killed on drop.
pub struct PrivateBroker {
    bin: std::path::PathBuf,
    pub port: u16,
    /// Where it listens and what it advertises.
    pub addr: std::net::SocketAddr,
    child: Option<Child>,
}

impl PrivateBroker {
    /// On a free port of 127.0.0.1.
    pub fn start(bin: &Path) -> Self {
        Self::start_on(
            bin,
            std::net::SocketAddr::from(([127, 0, 0, 1], free_port())),
        )
    }

    /// On `addr` (a Service's address, say), advertising it.
    pub fn start_on(bin: &Path, addr: std::net::SocketAddr) -> Self {
        let mut broker = Self {
            bin: bin.to_path_buf(),
            port: addr.port(),
            addr,
            child: None,
        };
        broker.restart();
        broker
    }

    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// Starts the broker (again) on the same address. Memory storage: topics
    /// are gone after a restart, as after a real broker's disk loss.
    pub fn restart(&mut self) {
        let url = format!("tcp://{}", self.addr);
        let child = Command::new(&self.bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.bin.display()));
        self.child = Some(child);
        crate::wait_listening(self.addr, "the private broker", Duration::from_secs(30));
    }

    /// Kills the broker (SIGKILL) and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.kill();
    }
}
