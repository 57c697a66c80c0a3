//! Operator metrics (`tributary_operator_*`): reconciles, their errors and
//! duration, whether this replica leads, and per pipeline the consumer
//! group's lag and the consumer's replicas (desired and running).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// What failed: `kubernetes`, `kafka`.
    pub kind: String,
}

/// One pipeline.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PipelineLabels {
    pub namespace: String,
    pub pipeline: String,
}

#[derive(Clone)]
pub struct Metrics {
    pub reconciles: Counter,
    pub errors: Family<ErrorLabels, Counter>,
    pub duration: Histogram,
    /// 1 while this replica holds the leader Lease.
    pub leader: Gauge,
    /// Total lag of the consumer group at the last read (scaling on).
    pub consumer_lag: Family<PipelineLabels, Gauge>,
    /// Lag reads that failed (scaling on).
    pub lag_read_errors: Family<PipelineLabels, Counter>,
    /// Consumer replicas the Deployment asks for.
    pub consumer_replicas_desired: Family<PipelineLabels, Gauge>,
    /// Consumer pods running (the Deployment's `status.replicas`).
    pub consumer_replicas_current: Family<PipelineLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            reconciles: Counter::default(),
            errors: Family::default(),
            duration: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            leader: Gauge::default(),
            consumer_lag: Family::default(),
            lag_read_errors: Family::default(),
            consumer_replicas_desired: Family::default(),
            consumer_replicas_current: Family::default(),
        }
    }
}

impl Metrics {
    /// New metrics, registered in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "tributary_operator_reconciles",
            "Reconciles of AnalyticsPipelines, successful or not",
            m.reconciles.clone(),
        );
        registry.register(
            "tributary_operator_reconcile_errors",
            "Reconciles that ended in an error, by what failed",
            m.errors.clone(),
        );
        registry.register(
            "tributary_operator_reconcile_duration_seconds",
            "Time one reconcile took",
            m.duration.clone(),
        );
        registry.register(
            "tributary_operator_leader",
            "1 while this replica holds the leader Lease, else 0",
            m.leader.clone(),
        );
        registry.register(
            "tributary_operator_consumer_lag",
            "Messages the pipeline's consumer group has yet to read, at the last read",
            m.consumer_lag.clone(),
        );
        registry.register(
            "tributary_operator_lag_read_errors",
            "Reads of the consumer group's lag that failed",
            m.lag_read_errors.clone(),
        );
        registry.register(
            "tributary_operator_consumer_replicas_desired",
            "Consumer replicas the operator asks for",
            m.consumer_replicas_desired.clone(),
        );
        registry.register(
            "tributary_operator_consumer_replicas_current",
            "Consumer pods running",
            m.consumer_replicas_current.clone(),
        );
        m
    }

    /// Drops `pipeline`'s series (deleted, or scaling turned off: `lag`
    /// only).
    /// The consumer replicas asked for and running (0 when unknown).
    pub fn consumer_replicas(
        &self,
        pipeline: &PipelineLabels,
        desired: Option<i32>,
        running: Option<i32>,
    ) {
        for (gauge, value) in [
            (&self.consumer_replicas_desired, desired),
            (&self.consumer_replicas_current, running),
        ] {
            gauge
                .get_or_create(pipeline)
                .set(i64::from(value.unwrap_or(0)));
        }
    }

    pub fn forget(&self, pipeline: &PipelineLabels, lag_only: bool) {
        self.consumer_lag.remove(pipeline);
        self.lag_read_errors.remove(pipeline);
        if !lag_only {
            self.consumer_replicas_desired.remove(pipeline);
            self.consumer_replicas_current.remove(pipeline);
        }
    }
}
