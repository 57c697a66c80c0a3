//! Operator metrics (`tributary_operator_*`): reconciles, their errors and
//! duration, and whether this replica leads.

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

#[derive(Clone)]
pub struct Metrics {
    pub reconciles: Counter,
    pub errors: Family<ErrorLabels, Counter>,
    pub duration: Histogram,
    /// 1 while this replica holds the leader Lease.
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            reconciles: Counter::default(),
            errors: Family::default(),
            duration: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            leader: Gauge::default(),
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
        m
    }
}
