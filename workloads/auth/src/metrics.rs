//! Auth metrics, named as in the seed runbook (`auth_*`).

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
pub struct RouteLabels {
    pub route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ValidationLabels {
    pub valid: bool,
}

#[derive(Clone)]
pub struct AuthMetrics {
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<RouteLabels, Histogram>,
    pub login_failures: Counter,
    pub validations: Family<ValidationLabels, Counter>,
}

impl AuthMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            }),
            login_failures: Counter::default(),
            validations: Family::default(),
        };
        registry.register(
            "auth_requests",
            "HTTP requests by route and status",
            m.requests.clone(),
        );
        registry.register(
            "auth_request_duration_seconds",
            "HTTP request duration by route",
            m.duration.clone(),
        );
        registry.register(
            "auth_login_failures",
            "Failed logins",
            m.login_failures.clone(),
        );
        registry.register(
            "auth_key_validations",
            "API key validations by outcome",
            m.validations.clone(),
        );
        m
    }
}
