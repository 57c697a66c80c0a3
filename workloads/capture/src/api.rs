//! HTTP routes: the native `POST /capture` and the PostHog-compatible routes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, get, on};
use serde_json::json;
use std::collections::HashMap;
use tracing::Instrument;
use tributary_core::Event;

use crate::decode::{BodyHints, DecodeError, decode_body, decode_query_data, strict_pairs};
use crate::kafka::{EventProducer, ProduceError};
use crate::metrics::{CaptureMetrics, RequestLabels, RouteLabels};
use crate::normalize::{self, Context, PayloadError};
use tributary_core::http::client_ip;
use tributary_core::keys::{KeyRefusal, KeyValidator, Keyless, project_for};

/// Shared state of the handlers.
pub struct AppState {
    pub producer: EventProducer,
    pub keys: Arc<dyn KeyValidator>,
    pub metrics: CaptureMetrics,
    /// What becomes of events without a key.
    pub keyless: Keyless,
    /// Requests per key (`None`: unlimited).
    pub per_key: Option<tributary_core::rate::Limiter>,
    pub max_event_body_bytes: usize,
    pub max_batch_body_bytes: usize,
    /// Proxies in front that append to `X-Forwarded-For`.
    pub trusted_proxy_hops: usize,
    pub body_timeout: std::time::Duration,
}

/// How a route answers and how much it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    /// `/capture`: 202 `{"accepted": n}`.
    Native,
    /// `/e`, `/i/v0/e`, `/track`: 200 `{"status": 1}`, event body limit.
    PostHogEvent,
    /// `/batch`: 200 `{"status": 1}`, batch body limit.
    PostHogBatch,
}

/// Everything that can go wrong with a request, mapped to a status and a
/// JSON body naming the problem.
#[derive(Debug)]
enum ApiError {
    Decode(DecodeError),
    Payload(PayloadError),
    Key(KeyRefusal),
    KeyUnavailable(String),
    Produce(ProduceError),
    BodyTimeout(std::time::Duration),
    /// The key's requests per second are spent; retry after this long.
    RateLimited(std::time::Duration),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::Decode(DecodeError::TooLarge { .. })
            | Self::Produce(ProduceError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Decode(_) | Self::Payload(_) => StatusCode::BAD_REQUEST,
            Self::Key(_) => StatusCode::UNAUTHORIZED,
            Self::KeyUnavailable(_) | Self::Produce(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Decode(e) => e.kind(),
            Self::Payload(e) => e.kind(),
            Self::Key(KeyRefusal::Missing) => "missing_api_key",
            Self::Key(KeyRefusal::Invalid) => "invalid_api_key",
            Self::KeyUnavailable(_) => "auth_unavailable",
            Self::Produce(e) => e.reason(),
            Self::BodyTimeout(_) => "body_timeout",
            Self::RateLimited(_) => "rate_limited",
        }
    }

    /// What the client is told. Failures on our side name what failed,
    /// never an address or a server's own words (Kafka's and the auth
    /// client's errors carry hosts): the log has [`detail`](Self::detail).
    fn message(&self) -> String {
        match self {
            Self::KeyUnavailable(_) => {
                "the auth service cannot check keys now; retry shortly".into()
            }
            Self::Produce(ProduceError::NotReady(_)) => {
                "Kafka is unavailable; retry shortly".into()
            }
            Self::Produce(ProduceError::NotAcknowledged { failed, total, .. }) => format!(
                "{failed} of {total} events were not acknowledged by Kafka; retry the request"
            ),
            Self::Produce(ProduceError::Serialize(_)) => {
                "an event could not be serialised; capture's log has why".into()
            }
            other => other.detail(),
        }
    }

    /// Everything known of the failure, for the log.
    fn detail(&self) -> String {
        match self {
            Self::Decode(e) => e.to_string(),
            Self::Payload(e) => e.to_string(),
            Self::Key(KeyRefusal::Missing) => {
                "API key required: send it in the X-API-Key header or as api_key/token in the payload".into()
            }
            Self::Key(e) => e.to_string(),
            Self::KeyUnavailable(e) => e.clone(),
            Self::Produce(e) => e.to_string(),
            Self::BodyTimeout(t) => format!(
                "the request body did not arrive within {} ms",
                t.as_millis()
            ),
            Self::RateLimited(wait) => format!(
                "too many requests for this key (CAPTURE_RATE_LIMIT_PER_KEY); retry after {} s",
                tributary_core::rate::retry_after_secs(*wait)
            ),
        }
    }

    fn into_response(self, request_id: &str) -> Response {
        let mut body = json!({
            "error": self.kind(),
            "message": self.message(),
            "request_id": request_id,
        });
        if let Self::Payload(e) = &self
            && let Some(index) = e.index()
        {
            body["index"] = json!(index);
        }
        let mut response = (self.status(), Json(body)).into_response();
        if self.status() == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if let Self::RateLimited(wait) = &self {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(tributary_core::rate::retry_after_secs(*wait)),
            );
        }
        response
    }
}

/// The capture routes (CORS is added by the caller).
pub fn routes(state: Arc<AppState>) -> Router {
    let posthog = |flavor: Flavor| -> MethodRouter<Arc<AppState>> {
        on(
            MethodFilter::POST.or(MethodFilter::GET),
            move |state, peer, headers, method, uri, body| {
                handle(state, peer, headers, method, uri, body, flavor)
            },
        )
    };
    let mut router = Router::new().route(
        "/capture",
        axum::routing::post(|state, peer, headers, method, uri, body| {
            handle(state, peer, headers, method, uri, body, Flavor::Native)
        }),
    );
    for path in ["/e", "/e/", "/i/v0/e", "/i/v0/e/", "/track", "/track/"] {
        router = router.route(path, posthog(Flavor::PostHogEvent));
    }
    for path in ["/batch", "/batch/"] {
        router = router.route(path, posthog(Flavor::PostHogBatch));
    }
    router = router.route("/ready", get(ready));
    router.with_state(state)
}

async fn ready(State(state): State<Arc<AppState>>) -> Response {
    if state.producer.is_ready() {
        (StatusCode::OK, Json(json!({"status": "ready"}))).into_response()
    } else {
        // Unauthenticated: what is wrong, not where (the log has it).
        let reason = state.producer.not_ready_summary().await;
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "kafka": reason})),
        )
            .into_response()
    }
}

/// The metric label of a route: its path without the trailing slash.
fn route_label(flavor: Flavor, uri_path: &str) -> &'static str {
    match flavor {
        Flavor::Native => "/capture",
        Flavor::PostHogBatch => "/batch",
        Flavor::PostHogEvent => match uri_path.trim_end_matches('/') {
            "/i/v0/e" => "/i/v0/e",
            "/track" => "/track",
            _ => "/e",
        },
    }
}

#[allow(clippy::too_many_arguments)]
async fn handle(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    method: Method,
    uri: Uri,
    body: Body,
    flavor: Flavor,
) -> Response {
    let started = Instant::now();
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let route = match flavor {
        Flavor::Native => "/capture",
        Flavor::PostHogBatch => "/batch",
        Flavor::PostHogEvent => "event",
    };
    let span = tracing::info_span!("capture", request_id = %request_id, route, project_id = tracing::field::Empty);
    let (response, label) = async {
        let limit = match flavor {
            Flavor::PostHogBatch => state.max_batch_body_bytes,
            _ => state.max_event_body_bytes,
        };
        let label = route_label(flavor, uri.path());
        // The query string decoded strictly: bytes that are not UTF-8 are
        // refused, not turned into U+FFFD.
        let result = match strict_pairs(uri.query().unwrap_or_default().as_bytes()) {
            Ok(pairs) => {
                let query: HashMap<String, String> = pairs.into_iter().collect();
                accept(&state, peer, &headers, &method, &query, body, flavor, limit).await
            }
            Err(e) => Err((ApiError::Decode(e), 0)),
        };
        let response = match result {
            Ok(count) => {
                state.metrics.events_received.inc_by(count as u64);
                tracing::debug!(events = count, "accepted");
                match flavor {
                    Flavor::Native => (
                        StatusCode::ACCEPTED,
                        [(header::CONTENT_TYPE, "application/json")],
                        format!("{{\"accepted\":{count}}}"),
                    )
                        .into_response(),
                    _ => (
                        StatusCode::OK,
                        [(header::CONTENT_TYPE, "application/json")],
                        r#"{"status":1}"#,
                    )
                        .into_response(),
                }
            }
            Err((error, events)) => {
                state.metrics.reject(error.kind(), events as u64);
                let status = error.status();
                if status.is_server_error() {
                    tracing::warn!(error = %error.detail(), kind = error.kind(), status = status.as_u16(), "request refused");
                } else {
                    tracing::info!(error = %error.detail(), kind = error.kind(), status = status.as_u16(), "request refused");
                }
                error.into_response(&request_id)
            }
        };
        (response, label)
    }
    .instrument(span)
    .await;

    let mut response = response;
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            route: label,
            status: response.status().as_u16(),
        })
        .inc();
    state
        .metrics
        .request_duration
        .get_or_create(&RouteLabels { route: label })
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Reads, decodes, authorises, normalises and produces; returns how many
/// events Kafka acknowledged, or the error and how many events it concerns.
#[allow(clippy::too_many_arguments)]
async fn accept(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    method: &Method,
    query: &HashMap<String, String>,
    body: Body,
    flavor: Flavor,
    limit: usize,
) -> Result<usize, (ApiError, usize)> {
    let received_at = chrono::Utc::now();
    let value = if method == Method::GET {
        let data = query
            .get("data")
            .ok_or((ApiError::Decode(DecodeError::Empty), 0))?;
        decode_query_data(data, limit)
    } else {
        let bytes = tokio::time::timeout(state.body_timeout, read_body(headers, body, limit))
            .await
            .map_err(|_| (ApiError::BodyTimeout(state.body_timeout), 0))?
            .map_err(|e| (ApiError::Decode(e), 0))?;
        let hints = BodyHints {
            form: headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded")),
        };
        decode_body(&bytes, &hints, limit)
    }
    .map_err(|e| (ApiError::Decode(e), 0))?;

    let payload = normalize::split(value).map_err(|e| (ApiError::Payload(e), 0))?;
    let count = payload.events.len();

    let header_key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
        .map(str::to_owned);
    let query_key = query
        .get("token")
        .or_else(|| query.get("api_key"))
        .filter(|k| !k.is_empty())
        .cloned();
    // A request names one key; two different ones (the header and the
    // payload, say) leave it unclear whose events these are.
    let named: Vec<&String> = [&header_key, &payload.api_key, &query_key]
        .into_iter()
        .flatten()
        .collect();
    if named.iter().any(|k| *k != named[0]) {
        return Err((ApiError::Payload(PayloadError::KeysDisagree), count));
    }
    let key = match flavor {
        Flavor::Native => header_key.or(payload.api_key.clone()).or(query_key),
        _ => payload.api_key.clone().or(header_key).or(query_key),
    };
    let check = match &key {
        Some(k) => Some(
            state
                .keys
                .check(k)
                .await
                .map_err(|e| (ApiError::KeyUnavailable(e.to_string()), count))?,
        ),
        None => None,
    };
    let project_id = project_for(state.keyless, check).map_err(|e| (ApiError::Key(e), count))?;
    // Valid keys only: an unknown one was refused above and costs no
    // bucket.
    if let (Some(limiter), Some(k)) = (&state.per_key, &key)
        && let Err(wait) = limiter.take(k, Instant::now())
    {
        return Err((ApiError::RateLimited(wait), count));
    }
    tracing::Span::current().record("project_id", project_id);

    let ctx = Context {
        project_id,
        received_at,
        ip: Some(client_ip(headers, peer, state.trusted_proxy_hops)),
    };
    let events: Vec<Event> =
        normalize::normalize(payload, &ctx).map_err(|e| (ApiError::Payload(e), count))?;
    state
        .producer
        .send_all(&events)
        .await
        .map_err(|e| (ApiError::Produce(e), count))?;
    Ok(count)
}

/// Reads the body, refusing it (413) past `limit` bytes without buffering more.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, DecodeError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(DecodeError::TooLarge { limit });
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let inner = e.into_inner();
        if inner
            .downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            DecodeError::TooLarge { limit }
        } else {
            DecodeError::Form(format!("could not read the request body: {inner}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_by_error_class() {
        assert_eq!(
            ApiError::Decode(DecodeError::TooLarge { limit: 1 }).status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            ApiError::Decode(DecodeError::Empty).status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            ApiError::Payload(PayloadError::NoEvents).status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            ApiError::Key(KeyRefusal::Missing).status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            ApiError::Produce(ProduceError::QueueFull).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            ApiError::KeyUnavailable("x".into()).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
