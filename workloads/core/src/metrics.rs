//! Prometheus metrics: a registry every service fills and one `/metrics` route.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

/// Content type of the OpenMetrics text format that Prometheus scrapes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Renders the registry in the OpenMetrics text format.
pub fn render(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    encode(&mut out, registry)?;
    Ok(out)
}

/// A router serving `GET /metrics` from `registry`.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .with_state(registry)
}

async fn metrics_handler(State(registry): State<Arc<Registry>>) -> Response {
    match render(&registry) {
        Ok(body) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "failed to encode metrics\n",
        )
            .into_response(),
    }
}

/// The values of metric `name` (every label set) in Prometheus text, as a
/// `/metrics` scrape reads them.
pub fn values(text: &str, name: &str) -> Vec<f64> {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use prometheus_client::metrics::counter::Counter;
    use tower::ServiceExt;

    #[tokio::test]
    async fn serves_registered_metrics_in_openmetrics_format() {
        let mut registry = Registry::default();
        let consumed: Counter = Counter::default();
        registry.register(
            "consumer_messages_consumed",
            "Messages read from Kafka",
            consumed.clone(),
        );
        consumed.inc_by(5);

        let response = router(Arc::new(registry))
            .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            text.contains("consumer_messages_consumed_total 5"),
            "{text}"
        );
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }

    #[test]
    fn values_read_every_label_set_and_only_that_metric() {
        let text = "# TYPE consumer_lag gauge\nconsumer_lag{partition=\"0\"} 3\nconsumer_lag{partition=\"1\"} 12\nconsumer_lag_other 9\nconsumer_messages_consumed_total 40\n";
        assert_eq!(values(text, "consumer_lag"), [3.0, 12.0]);
        assert_eq!(values(text, "consumer_messages_consumed_total"), [40.0]);
        assert!(values(text, "absent").is_empty());
    }
}
