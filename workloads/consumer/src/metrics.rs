//! Consumer metrics, named as in the seed runbook (`consumer_*`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub partition: i32,
}

#[derive(Clone)]
pub struct ConsumerMetrics {
    pub consumed: Counter,
    pub batches_written: Counter,
    pub rows_written: Counter,
    pub insert_errors: Family<KindLabels, Counter>,
    pub parse_errors: Family<KindLabels, Counter>,
    pub dlq_messages: Family<KindLabels, Counter>,
    pub commit_errors: Counter,
    /// Messages dropped from a waiting batch because their partition was
    /// revoked (its new owner reads them again).
    pub revoked_messages: Counter,
    pub assigned_partitions: Gauge,
    /// 1 while fetching is paused because the next batch waits for a write.
    pub fetch_paused: Gauge,
    /// 1 while a write is retried through an outage.
    pub outage: Gauge,
    pub lag: Family<PartitionLabels, Gauge>,
    pub batch_size: Histogram,
    pub batch_duration: Histogram,
    pub visibility: Histogram,
}

impl ConsumerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            consumed: Counter::default(),
            batches_written: Counter::default(),
            rows_written: Counter::default(),
            insert_errors: Family::default(),
            parse_errors: Family::default(),
            dlq_messages: Family::default(),
            commit_errors: Counter::default(),
            revoked_messages: Counter::default(),
            assigned_partitions: Gauge::default(),
            fetch_paused: Gauge::default(),
            outage: Gauge::default(),
            lag: Family::default(),
            batch_size: Histogram::new(exponential_buckets(1.0, 4.0, 10)),
            batch_duration: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            // Fine buckets (x1.25 from 5 ms to ~6 min): the p95 SLO is read off them.
            visibility: Histogram::new(exponential_buckets(0.005, 1.25, 62)),
        };
        registry.register(
            "consumer_messages_consumed",
            "Messages read from Kafka",
            m.consumed.clone(),
        );
        registry.register(
            "consumer_batches_written",
            "Batches written to ClickHouse and committed",
            m.batches_written.clone(),
        );
        registry.register(
            "consumer_rows_written",
            "Rows written to ClickHouse",
            m.rows_written.clone(),
        );
        registry.register(
            "consumer_insert_errors",
            "Failed ClickHouse inserts, by kind (outage, rejected)",
            m.insert_errors.clone(),
        );
        registry.register(
            "consumer_parse_errors",
            "Messages that could not be decoded, by kind",
            m.parse_errors.clone(),
        );
        registry.register(
            "consumer_dlq_messages",
            "Messages sent to the dead-letter topic, by error kind",
            m.dlq_messages.clone(),
        );
        registry.register(
            "consumer_commit_errors",
            "Failed offset commits",
            m.commit_errors.clone(),
        );
        registry.register(
            "consumer_revoked_messages",
            "Messages dropped from a waiting batch because a rebalance revoked their partition (their new owner reads them again)",
            m.revoked_messages.clone(),
        );
        registry.register(
            "consumer_assigned_partitions",
            "Partitions currently assigned to this consumer",
            m.assigned_partitions.clone(),
        );
        registry.register(
            "consumer_outage",
            "1 while a write is retried because ClickHouse or the DLQ is unreachable (offsets wait, nothing is dead-lettered)",
            m.outage.clone(),
        );
        registry.register(
            "consumer_fetch_paused",
            "1 while fetching is paused: the next batch is full and waits for the one being written (a ClickHouse outage holds it)",
            m.fetch_paused.clone(),
        );
        registry.register(
            "consumer_lag",
            "Messages behind the high watermark, per partition",
            m.lag.clone(),
        );
        registry.register(
            "consumer_batch_size",
            "Messages per written batch",
            m.batch_size.clone(),
        );
        registry.register(
            "consumer_batch_duration_seconds",
            "Time to write a batch (insert, DLQ, commit)",
            m.batch_duration.clone(),
        );
        registry.register(
            "consumer_event_visibility_seconds",
            "Insert time minus capture's received_at",
            m.visibility.clone(),
        );
        m
    }
}
