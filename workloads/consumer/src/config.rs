//! Consumer settings, read from `CONSUMER_*` environment variables.

use std::time::Duration;

use tributary_core::clickhouse::ClickHouseSettings;
use tributary_core::config::{ConfigError, Env};

#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerConfig {
    /// `CONSUMER_KAFKA_BOOTSTRAP_SERVERS` (`localhost:9092`).
    pub bootstrap_servers: String,
    /// `CONSUMER_KAFKA_TOPIC` (`events`).
    pub topic: String,
    /// `CONSUMER_KAFKA_GROUP_ID` (`event-consumers`).
    pub group_id: String,
    /// `CONSUMER_DLQ_TOPIC` (`events-dlq`).
    pub dlq_topic: String,
    /// `CONSUMER_BATCH_SIZE` (`10000`): flush after this many messages.
    pub batch_size: usize,
    /// `CONSUMER_BATCH_MAX_BYTES` (`16777216`, 16 MiB): flush once the
    /// messages of a batch add up to this many bytes, so large events
    /// cannot push the consumer past its memory limit (about four times this
    /// is held at most: two batches, each as read and as rows).
    pub batch_max_bytes: usize,
    /// `CONSUMER_FLUSH_INTERVAL_MS` (`1000`): flush at the latest this long
    /// after the first message of a batch arrived.
    pub flush_interval: Duration,
    /// `CONSUMER_SESSION_TIMEOUT_MS` (`10000`): group session timeout.
    pub session_timeout: Duration,
    /// `CONSUMER_INSERT_TIMEOUT_MS` (`30000`): one ClickHouse insert's limit;
    /// past it the insert counts as an outage and is retried.
    pub insert_timeout: Duration,
    /// `CONSUMER_BACKOFF_MAX_MS` (`30000`): longest wait between retries while
    /// ClickHouse or the DLQ is unavailable (starts at 200 ms, doubles).
    pub backoff_max: Duration,
    /// `CONSUMER_METRICS_PORT` (`9090`): `/metrics` and `/health`.
    pub metrics_port: u16,
    /// `CONSUMER_LEAVE_GROUP_ON_STOP` (`true`): on shutdown, after its
    /// last commit, the consumer tells the group it leaves, so its
    /// partitions move at once. `false`: the process exits without a
    /// word and the group moves them after `CONSUMER_SESSION_TIMEOUT_MS`.
    /// For brokers whose coordinator mishandles a leave in the middle of a
    /// rebalance (tansu 0.6 keeps a departed leader and assigns nothing
    /// again). The client is left running (it heartbeats until the process
    /// ends): the process must exit after [`crate::run`] returns, so never
    /// set it for a consumer inside a process that goes on.
    pub leave_group_on_stop: bool,
    /// `CONSUMER_CLICKHOUSE_*`: HOST, PORT, DATABASE, USER, PASSWORD,
    /// VALIDATION, COMPRESSION, SECURE.
    pub clickhouse: ClickHouseSettings,
}

impl ConsumerConfig {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            bootstrap_servers: env.string("CONSUMER_KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")?,
            topic: env.string("CONSUMER_KAFKA_TOPIC", "events")?,
            group_id: env.string("CONSUMER_KAFKA_GROUP_ID", "event-consumers")?,
            dlq_topic: env.string("CONSUMER_DLQ_TOPIC", "events-dlq")?,
            batch_size: env.int_in("CONSUMER_BATCH_SIZE", 10_000usize, 1, 1_000_000)?,
            batch_max_bytes: env.int_in(
                "CONSUMER_BATCH_MAX_BYTES",
                16 * 1024 * 1024usize,
                64 * 1024,
                1024 * 1024 * 1024,
            )?,
            flush_interval: env.duration_ms("CONSUMER_FLUSH_INTERVAL_MS", 1_000, 10)?,
            session_timeout: env.duration_ms("CONSUMER_SESSION_TIMEOUT_MS", 10_000, 1_000)?,
            insert_timeout: env.duration_ms("CONSUMER_INSERT_TIMEOUT_MS", 30_000, 100)?,
            backoff_max: env.duration_ms("CONSUMER_BACKOFF_MAX_MS", 30_000, 200)?,
            metrics_port: env.port("CONSUMER_METRICS_PORT", 9090)?,
            leave_group_on_stop: env.bool("CONSUMER_LEAVE_GROUP_ON_STOP", true)?,
            clickhouse: ClickHouseSettings::from_env(env, "CONSUMER")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_seeds() {
        let src: [(&str, &str); 0] = [];
        let c = ConsumerConfig::from_env(&Env::new(&src)).unwrap();
        assert_eq!(c.group_id, "event-consumers");
        assert_eq!(c.dlq_topic, "events-dlq");
        assert_eq!(c.topic, "events");
        assert_eq!(c.metrics_port, 9090);
        assert!(c.leave_group_on_stop);
        assert_eq!(c.clickhouse.url(), "http://localhost:8123");
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("CONSUMER_BATCH_SIZE", "0"),
            ("CONSUMER_FLUSH_INTERVAL_MS", "soon"),
            ("CONSUMER_METRICS_PORT", "99999"),
            ("CONSUMER_CLICKHOUSE_COMPRESSION", "zstd"),
            ("CONSUMER_LEAVE_GROUP_ON_STOP", "maybe"),
        ] {
            let src = [(var, value)];
            assert_eq!(
                ConsumerConfig::from_env(&Env::new(&src)).unwrap_err().var(),
                var
            );
        }
    }
}
