//! Real broker + real ClickHouse fixtures for consumer tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use prometheus_client::registry::Registry;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;
use tributary_consumer::metrics::ConsumerMetrics;
use tributary_consumer::{ConsumerConfig, EventConsumer};
use tributary_core::Event;
use tributary_core::clickhouse::ClickHouseSettings;
use tributary_core::config::Env;
use tributary_tests::clickhouse::host_port;
use tributary_tests::kafka::{client_config, create_topic};
use tributary_tests::{poll_until, unique_name};

pub struct Fixture {
    pub bootstrap: String,
    pub clickhouse_url: String,
    pub topic: String,
    pub dlq_topic: String,
    pub group: String,
    pub database: String,
}

impl Fixture {
    /// Fresh topics, group and database (migrated) for one test.
    pub async fn new(bootstrap: &str, clickhouse_url: &str, partitions: i32) -> Self {
        let f = Self {
            bootstrap: bootstrap.to_owned(),
            clickhouse_url: clickhouse_url.to_owned(),
            topic: unique_name("events"),
            dlq_topic: unique_name("events_dlq"),
            group: unique_name("consumers"),
            database: unique_name("tributary"),
        };
        create_topic(bootstrap, &f.topic, partitions).await;
        create_topic(bootstrap, &f.dlq_topic, 1).await;
        tributary_core::schema::migrate_clickhouse(&f.settings())
            .await
            .unwrap();
        f
    }

    pub fn settings(&self) -> ClickHouseSettings {
        tributary_tests::clickhouse::settings(&self.clickhouse_url, &self.database)
    }

    pub fn config(&self, extra: &[(&str, &str)]) -> ConsumerConfig {
        let (host, port) = host_port(&self.clickhouse_url);
        let mut vars: HashMap<String, String> = [
            ("CONSUMER_KAFKA_BOOTSTRAP_SERVERS", self.bootstrap.clone()),
            ("CONSUMER_KAFKA_TOPIC", self.topic.clone()),
            ("CONSUMER_DLQ_TOPIC", self.dlq_topic.clone()),
            ("CONSUMER_KAFKA_GROUP_ID", self.group.clone()),
            ("CONSUMER_CLICKHOUSE_HOST", host),
            ("CONSUMER_CLICKHOUSE_PORT", port.to_string()),
            ("CONSUMER_CLICKHOUSE_DATABASE", self.database.clone()),
            ("CONSUMER_BATCH_SIZE", "500".into()),
            ("CONSUMER_FLUSH_INTERVAL_MS", "200".into()),
            ("CONSUMER_SESSION_TIMEOUT_MS", "6000".into()),
            ("CONSUMER_BACKOFF_MAX_MS", "2000".into()),
            ("CONSUMER_INSERT_TIMEOUT_MS", "5000".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (k, v) in extra {
            vars.insert((*k).to_owned(), (*v).to_owned());
        }
        ConsumerConfig::from_env(&Env::new(&vars)).unwrap()
    }

    pub fn clickhouse(&self) -> clickhouse::Client {
        tributary_tests::clickhouse::client(&self.clickhouse_url)
    }

    /// Rows in the table (duplicates included).
    pub async fn rows(&self) -> u64 {
        self.clickhouse()
            .query(&format!("SELECT count() FROM {}.events", self.database))
            .fetch_one()
            .await
            .unwrap_or(0)
    }

    /// Events as the query API counts them: distinct uuids.
    pub async fn distinct_events(&self) -> u64 {
        self.clickhouse()
            .query(&format!(
                "SELECT uniqExact(uuid) FROM {}.events",
                self.database
            ))
            .fetch_one()
            .await
            .unwrap_or(0)
    }

    /// Waits until `n` distinct events are stored.
    pub async fn wait_for_events(&self, n: u64, timeout: Duration) {
        poll_until(
            &format!("{n} events in ClickHouse"),
            timeout,
            || async move { (self.distinct_events().await >= n).then_some(()) },
        )
        .await;
        assert_eq!(self.distinct_events().await, n, "more events than produced");
    }

    /// Merges duplicates away and returns the row count.
    pub async fn rows_after_merge(&self) -> u64 {
        self.clickhouse()
            .query(&format!("OPTIMIZE TABLE {}.events FINAL", self.database))
            .execute()
            .await
            .unwrap();
        self.rows().await
    }
}

pub fn events(n: usize, project_id: u64) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let mut e = Event::new(
                project_id,
                "$pageview",
                format!("user-{}", i % 50),
                chrono::Utc::now(),
            );
            e.properties.insert(
                "$current_url".into(),
                format!("https://example.com/{i}").into(),
            );
            e.properties.insert("$browser".into(), "Firefox".into());
            e
        })
        .collect()
}

pub async fn produce_raw(
    bootstrap: &str,
    topic: &str,
    messages: &[(Option<Vec<u8>>, Vec<u8>)],
) -> Vec<(i32, i64)> {
    let producer: FutureProducer = client_config(bootstrap)
        .set("acks", "all")
        .create()
        .unwrap();
    let mut out = Vec::new();
    for (key, payload) in messages {
        let mut record = FutureRecord::to(topic).payload(payload.as_slice());
        if let Some(k) = key {
            record = record.key(k.as_slice());
        }
        let d = producer
            .send(record, Duration::from_secs(30))
            .await
            .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
        out.push((d.partition, d.offset));
    }
    out
}

pub async fn produce(bootstrap: &str, topic: &str, events: &[Event]) {
    let messages: Vec<_> = events
        .iter()
        .map(|e| (Some(e.kafka_key().to_vec()), e.to_kafka_payload().unwrap()))
        .collect();
    produce_raw(bootstrap, topic, &messages).await;
}

pub struct Running {
    pub shutdown: CancellationToken,
    pub handle: tokio::task::JoinHandle<()>,
    pub metrics: ConsumerMetrics,
    pub registry: std::sync::Arc<Registry>,
}

impl Running {
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(60), self.handle)
            .await
            .expect("consumer did not stop within 60 s")
            .unwrap();
    }

    /// Ends the consumer's task where it stands, as a crash would: no
    /// flush, no commit (its client closes as the process would on exit).
    pub async fn crash(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }

    pub fn metrics_text(&self) -> String {
        tributary_core::metrics::render(&self.registry).unwrap()
    }

    /// Waits until an insert of this consumer failed as an outage (it met
    /// the outage, was not merely idle through it).
    pub async fn until_outage_met(&self) {
        poll_until(
            "an insert to fail during the outage",
            Duration::from_secs(30),
            || async {
                self.metrics_text()
                    .contains(r#"consumer_insert_errors_total{kind="outage"}"#)
                    .then_some(())
            },
        )
        .await;
    }
}

pub fn start(config: ConsumerConfig) -> Running {
    let mut registry = Registry::default();
    let metrics = ConsumerMetrics::register(&mut registry);
    let consumer = EventConsumer::new(config, metrics.clone()).unwrap();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let handle = tokio::spawn(async move { consumer.run(token).await.unwrap() });
    Running {
        shutdown,
        handle,
        metrics,
        registry: std::sync::Arc::new(registry),
    }
}
