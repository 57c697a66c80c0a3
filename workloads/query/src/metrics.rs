//! Query metrics, named as in the seed runbook (`query_*`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub outcome: String,
}

#[derive(Clone)]
pub struct QueryMetrics {
    pub requests: Family<RequestLabels, Counter>,
    /// Time to compute an answer on ClickHouse (cache hits not included).
    pub trend_duration: Histogram,
    pub funnel_duration: Histogram,
    pub retention_duration: Histogram,
    pub errors: Family<ErrorLabels, Counter>,
    pub cache: Family<CacheLabels, Counter>,
}

fn histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

impl QueryMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            requests: Family::default(),
            trend_duration: histogram(),
            funnel_duration: histogram(),
            retention_duration: histogram(),
            errors: Family::default(),
            cache: Family::default(),
        };
        registry.register(
            "query_requests",
            "HTTP requests by route and status",
            m.requests.clone(),
        );
        registry.register(
            "query_trend_duration_seconds",
            "Time to compute a trend",
            m.trend_duration.clone(),
        );
        registry.register(
            "query_funnel_duration_seconds",
            "Time to compute a funnel",
            m.funnel_duration.clone(),
        );
        registry.register(
            "query_retention_duration_seconds",
            "Time to compute a retention table",
            m.retention_duration.clone(),
        );
        registry.register(
            "query_errors",
            "Failed queries by kind (invalid_request, clickhouse_error, timeout, ...)",
            m.errors.clone(),
        );
        registry.register(
            "query_cache",
            "Result cache lookups by outcome (hit, miss, error)",
            m.cache.clone(),
        );
        m
    }

    pub fn error(&self, kind: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                kind: kind.to_owned(),
            })
            .inc();
    }

    pub fn cache(&self, outcome: &str) {
        self.cache
            .get_or_create(&CacheLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }
}
