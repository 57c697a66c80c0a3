//! Child processes of the tests and the stress tool: `tributary dev` set up
//! against the stack on free ports with names of its own, stdout read up to
//! a line, and children stopped with SIGTERM when done or when a test fails.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, ExitStatus};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::clickhouse::host_port;
use crate::kafka::free_port;
use crate::{Stack, unique_name};

/// A child stopped (SIGTERM, then SIGKILL after 15 s) when dropped, so a
/// failing test leaves nothing running.
pub struct Guarded(pub Child);

impl Guarded {
    /// SIGTERM, and the exit status within `within` (SIGKILL after it).
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
        None
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.terminate(Duration::from_secs(15));
        }
    }
}

/// Stdout lines until one satisfies `last` (included): `Ok` with them, or
/// `Err` with what came when the process ended or `timeout` passed first.
pub fn lines_until(
    stdout: ChildStdout,
    last: impl Fn(&str) -> bool,
    timeout: Duration,
) -> Result<Vec<String>, Vec<String>> {
    let (tx, rx) = mpsc::channel();
    // The pipe is read to its end even once nobody wants the lines: closing
    // it early made the child's next write fail (EPIPE), and `println!`
    // panics on that; `tributary dev` died so between the two writes of
    // its banner in one CI run.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + timeout;
    let mut lines = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                let done = last(&line);
                lines.push(line);
                if done {
                    return Ok(lines);
                }
            }
            Err(_) => break,
        }
    }
    Err(lines)
}

/// Reads everything `stream` writes on a thread, so a full pipe never
/// blocks the child; the text once the stream closes.
pub fn drain(mut stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    rx
}

/// `tributary dev` against `stack` with its own topic, dead-letter topic,
/// consumer group and database, on free loopback ports.
pub struct Dev {
    pub command: Command,
    pub capture_port: u16,
    pub query_port: u16,
    pub auth_port: u16,
    pub metrics_port: u16,
    pub database: String,
}

impl Dev {
    pub fn new(bin: &Path, stack: &Stack) -> Self {
        let (host, port) = host_port(&stack.clickhouse_url);
        let (capture_port, query_port, auth_port, metrics_port) =
            (free_port(), free_port(), free_port(), free_port());
        let database = unique_name("dev");
        let mut command = Command::new(bin);
        command
            .arg("dev")
            .env("KAFKA_BOOTSTRAP_SERVERS", &stack.kafka_bootstrap)
            .env("CAPTURE_KAFKA_BOOTSTRAP_SERVERS", &stack.kafka_bootstrap)
            .env("CONSUMER_KAFKA_BOOTSTRAP_SERVERS", &stack.kafka_bootstrap)
            .env("POSTGRES_DSN", &stack.postgres_dsn)
            .env("REDIS_URL", &stack.redis_url)
            .env("CONSUMER_CLICKHOUSE_HOST", host)
            .env("CONSUMER_CLICKHOUSE_PORT", port.to_string())
            .env("CONSUMER_CLICKHOUSE_DATABASE", &database)
            .env("CAPTURE_KAFKA_TOPIC", unique_name("events"))
            .env("CONSUMER_DLQ_TOPIC", unique_name("events_dlq"))
            .env("CONSUMER_KAFKA_GROUP_ID", unique_name("consumers"))
            .env("CAPTURE_PORT", capture_port.to_string())
            .env("QUERY_PORT", query_port.to_string())
            .env("AUTH_PORT", auth_port.to_string())
            .env("CONSUMER_METRICS_PORT", metrics_port.to_string())
            .env("CONSUMER_FLUSH_INTERVAL_MS", "200")
            .env("LOG_LEVEL", "warn");
        // Query reads where the consumer writes (dev's own default), even
        // when the test runs with the stack's settings in its environment.
        for var in ["HOST", "PORT", "DATABASE", "CLUSTER"] {
            command.env_remove(format!("QUERY_CLICKHOUSE_{var}"));
        }
        Self {
            command,
            capture_port,
            query_port,
            auth_port,
            metrics_port,
            database,
        }
    }
}

impl Dev {
    /// Stores the events on the cluster `name` through its node at `url`.
    pub fn on_cluster(mut self, name: &str, url: &str) -> Self {
        let (host, port) = host_port(url);
        self.command
            .env("CONSUMER_CLICKHOUSE_HOST", host)
            .env("CONSUMER_CLICKHOUSE_PORT", port.to_string())
            .env("CONSUMER_CLICKHOUSE_CLUSTER", name);
        self
    }
}

/// Process `pid`'s peak resident memory (`VmHWM`), in bytes.
pub fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    #[test]
    fn the_child_may_write_after_the_line_waited_for() {
        // Two more writes after "up", apart in time: with the pipe closed
        // once the lines were no longer wanted, the second got SIGPIPE.
        let mut child = Command::new("sh")
            .args(["-c", "echo up; sleep 0.3; echo one; sleep 0.3; echo two"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("sh");
        let stdout = child.stdout.take().expect("stdout");
        let lines = lines_until(stdout, |l| l == "up", Duration::from_secs(10));
        assert_eq!(lines, Ok(vec!["up".to_owned()]));
        let status = child.wait().expect("wait");
        assert!(status.success(), "{status}");
    }
}
