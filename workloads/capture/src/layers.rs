//! What every capture route gets around its handler, in one layer
//! ([`observe`]): an id and a span for the request, and counts and times by
//! route. Keyed on the route template axum matched, without its trailing
//! slash (`/e/` counts as `/e`), so labels stay few. (One layer, not two:
//! each `from_fn` layer clones the boxed route and boxes a future per
//! request.)

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::metrics::{CaptureMetrics, RequestLabels, RouteLabels};

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled on this task; `None` outside
/// [`observe`].
pub fn request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// The route a request matched, as labels and spans name it.
fn route(request: &Request) -> String {
    request.extensions().get::<MatchedPath>().map_or_else(
        || "unmatched".to_owned(),
        |p| {
            let path = p.as_str().trim_end_matches('/');
            if path.is_empty() { "/" } else { path }.to_owned()
        },
    )
}

/// The client's `X-Request-Id` if it is usable (1 to 128 visible
/// characters), else a new UUID.
fn id_of(request: &Request) -> String {
    request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

/// Gives the request its id (the client's, or a new one): the handler runs
/// in a span carrying it (and `project_id` once known), error bodies name it
/// ([`request_id`]), and the answer carries it in `X-Request-Id`. Counts
/// (`capture_requests{route,status}`) and times
/// (`capture_request_duration_seconds{route}`) every request.
pub async fn observe(
    State(metrics): State<CaptureMetrics>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = route(&request);
    let id = id_of(&request);
    let span = tracing::info_span!(
        "capture",
        request_id = %id,
        route = %route,
        project_id = tracing::field::Empty,
    );
    let header = HeaderValue::from_str(&id).ok();
    let mut response = REQUEST_ID
        .scope(id, next.run(request))
        .instrument(span)
        .await;
    if let Some(v) = header {
        response.headers_mut().insert("x-request-id", v);
    }
    metrics
        .requests
        .get_or_create(&RequestLabels {
            route: route.clone(),
            status: response.status().as_u16(),
        })
        .inc();
    metrics
        .request_duration
        .get_or_create(&RouteLabels { route })
        .observe(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use axum::routing::get;
    use tower::ServiceExt;

    fn app(metrics: CaptureMetrics) -> Router {
        Router::new()
            .route(
                "/e/",
                get(|| async {
                    (StatusCode::OK, request_id().unwrap_or_default()).into_response()
                }),
            )
            .route_layer(axum::middleware::from_fn_with_state(metrics, observe))
    }

    async fn call(app: Router, id: Option<&str>) -> (String, String) {
        let mut request = Request::get("/e/");
        if let Some(id) = id {
            request = request.header("x-request-id", id);
        }
        let response = app
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("answer");
        let header = response.headers()["x-request-id"]
            .to_str()
            .expect("ascii")
            .to_owned();
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .expect("body");
        (header, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn the_clients_id_is_kept_and_seen_by_the_handler() {
        let metrics = CaptureMetrics::register(&mut Default::default());
        let (header, seen) = call(app(metrics), Some("abc-1")).await;
        assert_eq!(header, "abc-1");
        assert_eq!(seen, "abc-1");
    }

    #[tokio::test]
    async fn an_unusable_id_is_replaced() {
        let metrics = CaptureMetrics::register(&mut Default::default());
        let long = "x".repeat(129);
        for id in [None, Some(""), Some(long.as_str())] {
            let (header, seen) = call(app(metrics.clone()), id).await;
            assert!(uuid::Uuid::parse_str(&header).is_ok(), "{id:?} → {header}");
            assert_eq!(seen, header);
        }
    }

    #[tokio::test]
    async fn requests_are_counted_by_route_without_the_trailing_slash() {
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = CaptureMetrics::register(&mut registry);
        call(app(metrics.clone()), None).await;
        call(app(metrics), None).await;
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        assert!(
            text.contains(r#"capture_requests_total{route="/e",status="200"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"capture_request_duration_seconds_count{route="/e"} 2"#),
            "{text}"
        );
    }
}
