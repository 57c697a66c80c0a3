//! The consumer's `GET /health/detailed` (on `CONSUMER_METRICS_PORT`):
//! ClickHouse checked now, and what the consumer holds: its partitions,
//! their lag, whether fetching is paused and a write is retried through an
//! outage.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use prometheus_client::registry::Registry;
use serde_json::json;

use crate::metrics::ConsumerMetrics;

struct Detailed {
    clickhouse: clickhouse::Client,
    metrics: ConsumerMetrics,
    registry: Arc<Registry>,
}

pub fn router(
    clickhouse: clickhouse::Client,
    metrics: ConsumerMetrics,
    registry: Arc<Registry>,
) -> Router {
    Router::new()
        .route("/health/detailed", get(detailed))
        .with_state(Arc::new(Detailed {
            clickhouse,
            metrics,
            registry,
        }))
}

/// `consumer_lag{partition="N"} V` lines of the exposition, by partition.
pub fn lag_by_partition(exposition: &str) -> BTreeMap<i32, i64> {
    exposition
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("consumer_lag{partition=\"")?;
            let (partition, value) = rest.split_once("\"} ")?;
            Some((
                partition.parse().ok()?,
                value.trim().parse::<f64>().ok()? as i64,
            ))
        })
        .collect()
}

async fn detailed(State(state): State<Arc<Detailed>>) -> Response {
    let clickhouse = tributary_core::health::probe(
        "clickhouse",
        Duration::from_secs(3),
        state.clickhouse.query("SELECT 1").execute(),
        |_| "unreachable or failing: batches are kept and retried, offsets wait".to_owned(),
    )
    .await;
    let exposition = tributary_core::metrics::render(&state.registry).unwrap_or_default();
    tributary_core::health::answer(
        "consumer",
        &[clickhouse],
        json!({
            "assigned_partitions": state.metrics.assigned_partitions.get(),
            "lag": lag_by_partition(&exposition),
            "fetch_paused": state.metrics.fetch_paused.get() == 1,
            "writing_through_outage": state.metrics.outage.get() == 1,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_lines_are_read_by_partition() {
        let text = "# HELP consumer_lag x\nconsumer_lag{partition=\"0\"} 12\nconsumer_lag{partition=\"3\"} 0\nconsumer_lag_other 5\n";
        assert_eq!(lag_by_partition(text), BTreeMap::from([(0, 12), (3, 0)]));
    }
}
