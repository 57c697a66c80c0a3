//! HTTP routes: the native `POST /capture` and the PostHog-compatible
//! routes. A handler reads, authorises and produces a request's events and
//! answers [`Accepted`] or an [`ApiError`]; the request's id, span and
//! per-route metrics come from [`layers`], the bytes-to-records work from
//! [`intake`](crate::intake).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, get, on, post};
use chrono::{DateTime, Utc};
use serde_json::json;

use crate::budget::Charge;
use crate::decode::{DecodeError, strict_pairs};
use crate::error::ApiError;
use crate::intake::{Decoded, Input, decoded, normalised, read_body};
use crate::layers;
use crate::normalize::{Context, PayloadError};
use crate::sink::Readiness;
pub use crate::state::AppState;
use tributary_core::health::Dependency;
use tributary_core::http::client_ip;
use tributary_core::keys::project_for;

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

impl Flavor {
    fn body_limit(self, state: &AppState) -> usize {
        match self {
            Self::PostHogBatch => state.max_batch_body_bytes,
            Self::Native | Self::PostHogEvent => state.max_event_body_bytes,
        }
    }
}

/// A request all of whose `count` events Kafka acknowledged.
#[derive(Debug)]
struct Accepted {
    flavor: Flavor,
    count: usize,
}

impl IntoResponse for Accepted {
    fn into_response(self) -> Response {
        let json = [(header::CONTENT_TYPE, "application/json")];
        match self.flavor {
            Flavor::Native => (
                StatusCode::ACCEPTED,
                json,
                format!("{{\"accepted\":{}}}", self.count),
            )
                .into_response(),
            Flavor::PostHogEvent | Flavor::PostHogBatch => {
                (StatusCode::OK, json, r#"{"status":1}"#).into_response()
            }
        }
    }
}

/// The capture routes (CORS is added by the caller).
pub fn routes(state: Arc<AppState>) -> Router {
    let posthog = MethodFilter::POST.or(MethodFilter::GET);
    let mut router = Router::new().route("/capture", post(native));
    for path in ["/e", "/e/", "/i/v0/e", "/i/v0/e/", "/track", "/track/"] {
        router = router.route(path, on(posthog, event));
    }
    for path in ["/batch", "/batch/"] {
        router = router.route(path, on(posthog, batch));
    }
    router
        .route_layer(from_fn_with_state(state.metrics.clone(), layers::observe))
        .route("/ready", get(ready))
        .route("/health/detailed", get(detailed))
        .with_state(state)
}

async fn ready(State(state): State<Arc<AppState>>) -> Response {
    match state.sink.readiness() {
        Readiness::Ready => (StatusCode::OK, Json(json!({"status": "ready"}))).into_response(),
        // Unauthenticated: what is wrong, not where (the log has it).
        Readiness::NotReady(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "kafka": reason})),
        )
            .into_response(),
    }
}

/// Kafka as the broker watcher last saw it, the producer's queue and the
/// bytes requests hold (`tributary_core::health`).
async fn detailed(State(state): State<Arc<AppState>>) -> Response {
    let kafka = match state.sink.readiness() {
        Readiness::Ready => Dependency::known("kafka", None),
        Readiness::NotReady(why) => Dependency::known("kafka", Some(why.to_owned())),
    };
    tributary_core::health::answer(
        "capture",
        &[kafka],
        json!({
            "producer_queue": state.sink.queued(),
            "bytes_in_flight": state.budget.used(),
            "max_bytes_in_flight": state.budget.total(),
        }),
    )
}

async fn native(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Result<Accepted, ApiError> {
    capture(&state, peer, request, Flavor::Native).await
}

async fn event(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Result<Accepted, ApiError> {
    capture(&state, peer, request, Flavor::PostHogEvent).await
}

async fn batch(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Result<Accepted, ApiError> {
    capture(&state, peer, request, Flavor::PostHogBatch).await
}

/// Reads a request's events and delivers them; a refusal is counted by
/// reason for every event it concerns (`capture_events_rejected`) and
/// logged.
async fn capture(
    state: &Arc<AppState>,
    peer: SocketAddr,
    request: Request,
    flavor: Flavor,
) -> Result<Accepted, ApiError> {
    let refused = |error: &ApiError, events: usize| {
        state.metrics.reject(error.kind(), events as u64);
        error.log();
    };
    let (parts, body) = request.into_parts();
    let read = read(state, &parts, body, flavor)
        .await
        .inspect_err(|e| refused(e, 0))?;
    let count = read.decoded.events.len();
    deliver(state, peer, &parts.headers, read, flavor)
        .await
        .inspect_err(|e| refused(e, count))?;
    state.metrics.events_received.inc_by(count as u64);
    tracing::debug!(events = count, "accepted");
    Ok(Accepted { flavor, count })
}

/// A request read and decoded, still holding its share of the byte budget.
struct Read {
    received_at: DateTime<Utc>,
    query: HashMap<String, String>,
    decoded: Decoded,
    /// Every buffer of the request is taken from the byte budget first and
    /// given back when the request ends.
    charge: Charge,
}

/// Reads the request's payload (its body, or a GET's `data` parameter),
/// decodes, checks and outlines it.
async fn read(
    state: &AppState,
    parts: &Parts,
    body: Body,
    flavor: Flavor,
) -> Result<Read, ApiError> {
    let received_at = Utc::now();
    // The query string decoded strictly: bytes that are not UTF-8 are
    // refused, not turned into U+FFFD.
    let query: HashMap<String, String> =
        strict_pairs(parts.uri.query().unwrap_or_default().as_bytes())
            .map_err(ApiError::Decode)?
            .into_iter()
            .collect();
    let limit = flavor.body_limit(state);
    let mut charge = state.budget.charge();
    let input = if parts.method == Method::GET {
        let data = query
            .get("data")
            .ok_or(ApiError::Decode(DecodeError::Empty))?;
        Input::query(data)
    } else {
        let raw = tokio::time::timeout(
            state.body_timeout,
            read_body(&parts.headers, body, limit, &mut charge),
        )
        .await
        .map_err(|_| ApiError::BodyTimeout(state.body_timeout))?
        .map_err(ApiError::Decode)?;
        Input::body(raw, &parts.headers)
    };
    let decoded = decoded(state, input, limit, &mut charge).await?;
    Ok(Read {
        received_at,
        query,
        decoded,
        charge,
    })
}

/// Finds the request's project, spends its key's rate, normalises its
/// events and produces them; returns once Kafka acknowledged every one.
async fn deliver(
    state: &Arc<AppState>,
    peer: SocketAddr,
    headers: &HeaderMap,
    read: Read,
    flavor: Flavor,
) -> Result<(), ApiError> {
    let Read {
        received_at,
        query,
        mut decoded,
        mut charge,
    } = read;
    let key = named_key(headers, &query, decoded.key.take(), flavor)?;
    let check = match &key {
        Some(k) => Some(
            state
                .keys
                .check(k)
                .await
                .map_err(|e| ApiError::KeyUnavailable(e.to_string()))?,
        ),
        None => None,
    };
    let project_id = project_for(state.keyless, check).map_err(ApiError::Key)?;
    // Valid keys only: an unknown one was refused above and costs no
    // bucket.
    if let (Some(limiter), Some(k)) = (&state.per_key, &key)
        && let Err(wait) = limiter.take(k, Instant::now())
    {
        return Err(ApiError::RateLimited(wait));
    }
    tracing::Span::current().record("project_id", project_id);
    let ctx = Context {
        project_id,
        received_at,
        ip: Some(client_ip(headers, peer, state.trusted_proxy_hops)),
    };
    let records = normalised(state, decoded, ctx, &mut charge).await?;
    state.sink.send(&records).await.map_err(ApiError::Produce)
}

/// The one key a request names: in `X-API-Key`, in its payload, or as
/// `token`/`api_key` in its query. Two different ones leave it unclear
/// whose events these are. The native route prefers the header, the
/// PostHog routes the payload (where their SDKs put it).
fn named_key(
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    payload_key: Option<String>,
    flavor: Flavor,
) -> Result<Option<String>, ApiError> {
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
    let named: Vec<&String> = [&header_key, &payload_key, &query_key]
        .into_iter()
        .flatten()
        .collect();
    if named.iter().any(|k| *k != named[0]) {
        return Err(ApiError::Payload(PayloadError::KeysDisagree));
    }
    Ok(match flavor {
        Flavor::Native => header_key.or(payload_key).or(query_key),
        Flavor::PostHogEvent | Flavor::PostHogBatch => payload_key.or(header_key).or(query_key),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(key: Option<&'static str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(k) = key {
            h.insert("x-api-key", HeaderValue::from_static(k));
        }
        h
    }

    #[test]
    fn one_key_per_request() {
        let query: HashMap<String, String> = [("token".to_owned(), "b".to_owned())].into();
        let none = HashMap::new();
        let named = |h, q, p: Option<&str>, f| named_key(&headers(h), q, p.map(str::to_owned), f);
        assert!(matches!(
            named(Some("a"), &query, None, Flavor::Native),
            Err(ApiError::Payload(PayloadError::KeysDisagree))
        ));
        assert!(matches!(
            named(Some("a"), &none, Some("b"), Flavor::PostHogBatch),
            Err(ApiError::Payload(PayloadError::KeysDisagree))
        ));
        assert_eq!(
            named(Some("a"), &none, Some("a"), Flavor::PostHogEvent)
                .ok()
                .flatten()
                .as_deref(),
            Some("a")
        );
        assert_eq!(
            named(None, &query, None, Flavor::Native)
                .ok()
                .flatten()
                .as_deref(),
            Some("b")
        );
        assert!(matches!(named(None, &none, None, Flavor::Native), Ok(None)));
    }
}
