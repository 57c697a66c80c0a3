//! Capture metrics, named as in the seed runbook (`capture_*`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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
pub struct ReasonLabels {
    pub reason: String,
}

/// Every capture metric; cheap to clone (handles share the values).
#[derive(Clone)]
pub struct CaptureMetrics {
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Family<RouteLabels, Histogram>,
    pub produced: Counter,
    pub produce_errors: Family<ReasonLabels, Counter>,
    pub produce_duration: Histogram,
    pub events_received: Counter,
    pub events_rejected: Family<ReasonLabels, Counter>,
    pub kafka_ready: Gauge,
    pub producer_replacements: Counter,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl CaptureMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            produced: Counter::default(),
            produce_errors: Family::default(),
            produce_duration: latency_histogram(),
            events_received: Counter::default(),
            events_rejected: Family::default(),
            kafka_ready: Gauge::default(),
            producer_replacements: Counter::default(),
        };
        registry.register(
            "capture_requests",
            "HTTP requests by route and status",
            m.requests.clone(),
        );
        registry.register(
            "capture_request_duration_seconds",
            "HTTP request duration by route",
            m.request_duration.clone(),
        );
        registry.register(
            "capture_kafka_produce",
            "Events acknowledged by Kafka",
            m.produced.clone(),
        );
        registry.register(
            "capture_kafka_produce_errors",
            "Events Kafka did not acknowledge, by reason",
            m.produce_errors.clone(),
        );
        registry.register(
            "capture_kafka_produce_duration_seconds",
            "Time from producing a request's events to the last acknowledgement",
            m.produce_duration.clone(),
        );
        registry.register(
            "capture_events_received",
            "Events accepted into Kafka",
            m.events_received.clone(),
        );
        registry.register(
            "capture_events_rejected",
            "Events refused, by reason (bad input, key, size, Kafka)",
            m.events_rejected.clone(),
        );
        registry.register(
            "capture_kafka_ready",
            "1 while the producer reaches the brokers and the topic exists",
            m.kafka_ready.clone(),
        );
        registry.register(
            "capture_kafka_producer_replacements",
            "Times the Kafka producer was replaced after a fatal error or a stall",
            m.producer_replacements.clone(),
        );
        m
    }

    pub fn reject(&self, reason: &str, events: u64) {
        self.events_rejected
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc_by(events.max(1));
    }
}
