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

use crate::bigbuf::BigBuf;
use crate::budget::{ByteBudget, Charge, Refused};
use crate::decode::{
    BodyHints, DecodeError, Text, checked_json, decode_query_text, decode_text, strict_pairs,
};
use crate::kafka::{EventProducer, ProduceError, Record};
use crate::metrics::{CaptureMetrics, RequestLabels, RouteLabels};
use crate::normalize::{Context, Normalizer, PayloadError};
use crate::outline::{Outline, outline, request_key};
use crate::tree_cost;
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
    /// The bytes all requests in flight may hold.
    pub budget: Arc<ByteBudget>,
    /// Most events in one request.
    pub max_events_per_request: usize,
    /// Places for heavy decoding and normalising, one per core.
    pub heavy: tokio::sync::Semaphore,
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
    /// The byte budget cannot give what the request needs.
    Budget(Refused),
    /// A failure of capture itself (a panic in heavy work): the log has it.
    Internal(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::Decode(DecodeError::TooLarge { .. })
            | Self::Decode(DecodeError::Budget(Refused::TooLarge(_)))
            | Self::Budget(Refused::TooLarge(_))
            | Self::Payload(PayloadError::TooManyEvents { .. })
            | Self::Payload(PayloadError::EventTooLarge { .. })
            | Self::Produce(ProduceError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Decode(DecodeError::Budget(Refused::Busy)) | Self::Budget(Refused::Busy) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Decode(_) | Self::Payload(_) => StatusCode::BAD_REQUEST,
            Self::Key(_) => StatusCode::UNAUTHORIZED,
            Self::KeyUnavailable(_) | Self::Produce(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
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
            Self::Budget(Refused::Busy) => "overloaded",
            Self::Budget(Refused::TooLarge(_)) => "too_large",
            Self::Internal(_) => "internal",
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
            Self::Internal(_) => "capture failed on this request; its log has why".into(),
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
            Self::Budget(e) => e.to_string(),
            Self::Internal(e) => e.clone(),
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
            // A full byte budget clears as requests end: come back soon.
            let busy = matches!(
                self,
                Self::Budget(Refused::Busy) | Self::Decode(DecodeError::Budget(Refused::Busy))
            );
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(if busy { "1" } else { "5" }),
            );
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
    state: &Arc<AppState>,
    peer: SocketAddr,
    headers: &HeaderMap,
    method: &Method,
    query: &HashMap<String, String>,
    body: Body,
    flavor: Flavor,
    limit: usize,
) -> Result<usize, (ApiError, usize)> {
    let received_at = chrono::Utc::now();
    // Every buffer of this request is taken from the byte budget first and
    // given back when the request ends.
    let mut charge = state.budget.charge();
    let input = if method == Method::GET {
        let data = query
            .get("data")
            .ok_or((ApiError::Decode(DecodeError::Empty), 0))?;
        Input {
            raw: Bytes::copy_from_slice(data.as_bytes()),
            from_query: true,
            hints: BodyHints::default(),
        }
    } else {
        let raw = tokio::time::timeout(
            state.body_timeout,
            read_body(headers, body, limit, &mut charge),
        )
        .await
        .map_err(|_| (ApiError::BodyTimeout(state.body_timeout), 0))?
        .map_err(|e| (ApiError::Decode(e), 0))?;
        Input {
            raw,
            from_query: false,
            hints: BodyHints {
                form: headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded")),
            },
        }
    };
    let max_events = state.max_events_per_request;
    let (text, count, payload_key) = decoded(state, input, limit, max_events, &mut charge)
        .await
        .map_err(|e| (e, 0))?;

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
    let named: Vec<&String> = [&header_key, &payload_key, &query_key]
        .into_iter()
        .flatten()
        .collect();
    if named.iter().any(|k| *k != named[0]) {
        return Err((ApiError::Payload(PayloadError::KeysDisagree), count));
    }
    let key = match flavor {
        Flavor::Native => header_key.or(payload_key).or(query_key),
        _ => payload_key.or(header_key).or(query_key),
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
    let heavy = text.len() > HEAVY_TEXT_BYTES;
    let normalise = {
        let state = Arc::clone(state);
        move |charge: &mut Charge| {
            // Outlined again: an outline borrows its text, so it cannot wait
            // for the key check beside it. (A pass without allocation.)
            let (outline, _) = outlined(&text, max_events)?;
            records(&state, &outline, &ctx, charge)
        }
    };
    let records = if heavy {
        off_the_runtime(state, &mut charge, normalise).await
    } else {
        normalise(&mut charge)
    }
    .map_err(|e| (e, count))?;
    state
        .producer
        .send_all(&records)
        .await
        .map_err(|e| (ApiError::Produce(e), count))?;
    Ok(count)
}

/// What a request carries, owned: its body, or its `data` parameter.
struct Input {
    raw: Bytes,
    from_query: bool,
    hints: BodyHints,
}

impl Input {
    /// The decoded JSON text, checked (`limit` bytes at most).
    fn text(&self, limit: usize, charge: &mut Charge) -> Result<Bytes, ApiError> {
        let text = if self.from_query {
            decode_query_text(&self.raw, limit, charge)
        } else {
            decode_text(&self.raw, &self.hints, limit, charge)
        }
        .map_err(ApiError::Decode)?;
        checked_json(&text).map_err(ApiError::Decode)?;
        Ok(match text {
            Text::Borrowed(b) => self.raw.slice_ref(b),
            Text::Owned(b) => b,
        })
    }
}

/// Text longer than this takes long enough to check and normalise that
/// the work leaves the async workers ([`off_the_runtime`]).
const HEAVY_TEXT_BYTES: usize = 64 * 1024;

/// The outline of checked JSON text and the key its events name.
fn outlined(text: &[u8], max_events: usize) -> Result<(Outline<'_>, Option<String>), ApiError> {
    let json = std::str::from_utf8(text).map_err(|e| {
        ApiError::Decode(DecodeError::Utf8 {
            offset: e.valid_up_to(),
        })
    })?;
    let outline = outline(json, max_events).map_err(ApiError::Payload)?;
    let key = request_key(&outline).map_err(ApiError::Payload)?;
    Ok((outline, key))
}

/// Decodes, checks and outlines the request: the text, its number of
/// events and the key they name. Light work (a short body that inflates
/// to little) runs here, heavy work off the runtime. Base64 or a gzip
/// trailer may hide how much a short body inflates to: those are tried
/// light, with a light limit, and decoded again heavy past it.
async fn decoded(
    state: &AppState,
    input: Input,
    limit: usize,
    max_events: usize,
    charge: &mut Charge,
) -> Result<(Bytes, usize, Option<String>), ApiError> {
    let light = input.raw.len() <= HEAVY_TEXT_BYTES
        && crate::decode::stated_gzip_size(&input.raw).unwrap_or(0) <= HEAVY_TEXT_BYTES;
    if light {
        match first_stage(&input, limit.min(HEAVY_TEXT_BYTES), max_events, charge) {
            Err(ApiError::Decode(DecodeError::TooLarge { .. })) if limit > HEAVY_TEXT_BYTES => {}
            done => return done,
        }
    }
    off_the_runtime(state, charge, move |charge| {
        first_stage(&input, limit, max_events, charge)
    })
    .await
}

fn first_stage(
    input: &Input,
    limit: usize,
    max_events: usize,
    charge: &mut Charge,
) -> Result<(Bytes, usize, Option<String>), ApiError> {
    let text = input.text(limit, charge)?;
    let (count, key) = {
        let (outline, key) = outlined(&text, max_events)?;
        (outline.events.len(), key)
    };
    Ok((text, count, key))
}

/// How long a request waits for a place for heavy work before it is told
/// to come back (503): a flood of heavy requests cannot queue without end.
const HEAVY_PLACE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs heavy work (decoding, checking, normalising a large payload) on a
/// blocking thread, holding one of [`AppState::heavy`]'s places: the async
/// workers go on serving other requests, small ordinary batches among
/// them, and heavy work never runs on more threads than there are cores.
/// (`block_in_place` was tried first: every call moved a worker to a new
/// thread, dozens of threads each kept allocator caches of their own, and
/// capture stayed resident at three times its byte budget.) The request's
/// charge goes with the work and comes back; if the request is dropped
/// meanwhile, the charge is given back when the work ends.
async fn off_the_runtime<R: Send + 'static>(
    state: &AppState,
    charge: &mut Charge,
    work: impl FnOnce(&mut Charge) -> Result<R, ApiError> + Send + 'static,
) -> Result<R, ApiError> {
    let _place = match tokio::time::timeout(HEAVY_PLACE_WAIT, state.heavy.acquire()).await {
        Ok(Ok(place)) => place,
        _ => return Err(ApiError::Budget(Refused::Busy)),
    };
    let mut moved = std::mem::replace(charge, state.budget.charge());
    let (result, moved) = tokio::task::spawn_blocking(move || {
        let result = work(&mut moved);
        (result, moved)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    *charge = moved;
    result
}

/// Normalises the request's events one at a time and serialises each for
/// Kafka: one event's tree is in memory at once (its worst case taken from
/// the budget while it lives), and the records are charged until the
/// request ends.
fn records(
    state: &AppState,
    outline: &Outline<'_>,
    ctx: &Context,
    charge: &mut Charge,
) -> Result<Vec<Record>, ApiError> {
    let limit = state.producer.max_message_bytes();
    let mut normalizer = Normalizer::from_raw(outline.sent_at, ctx).map_err(ApiError::Payload)?;
    let mut records = Vec::with_capacity(outline.events.len());
    charge
        .take(outline.events.len() * std::mem::size_of::<Record>())
        .map_err(ApiError::Budget)?;
    for (index, raw) in outline.events.iter().enumerate() {
        let size = raw.get().len();
        if size > limit {
            return Err(ApiError::Payload(PayloadError::EventTooLarge {
                index,
                size,
                limit,
            }));
        }
        let tree = tree_cost::tree_bytes(raw.get().as_bytes());
        charge.take(tree).map_err(ApiError::Budget)?;
        let parsed = serde_json::from_str(raw.get()).map_err(|e| {
            ApiError::Payload(PayloadError::Field {
                index,
                field: "event",
                problem: format!("is not a JSON object ({e})"),
            })
        });
        let record = parsed
            .and_then(|obj| normalizer.event(obj, index).map_err(ApiError::Payload))
            .and_then(|event| {
                state
                    .producer
                    .record(&event, index)
                    .map_err(ApiError::Produce)
            });
        charge.give_back(tree);
        let record = record?;
        charge
            .take(record.payload.len() + record.key.len())
            .map_err(ApiError::Budget)?;
        records.push(record);
    }
    Ok(records)
}

/// Memory for a body could not be mapped: as a full budget, retry later.
fn no_memory(e: std::io::Error) -> DecodeError {
    tracing::warn!(error = %e, "could not map memory for a request body");
    DecodeError::Budget(Refused::Busy)
}

/// Reads the body, refusing it (413) past `limit` bytes without buffering
/// more, and taking each piece from the byte budget as it arrives.
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    charge: &mut Charge,
) -> Result<Bytes, DecodeError> {
    use http_body_util::BodyExt;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(DecodeError::TooLarge { limit });
    }
    let unreadable =
        |e: axum::Error| DecodeError::Form(format!("could not read the request body: {e}"));
    // Each piece is copied out at once: a piece is a slice of hyper's read
    // buffer and would keep all of it alive (a trickling client's 1 KiB
    // pieces each held an 8 KiB buffer). With a declared length the buffer
    // is made once at that size; a large one is mapped on its own
    // ([`BigBuf`]) and charged as it fills, its pages resident only as they
    // are written and given back to the system when it is dropped. Without
    // a length it grows by doubling, each growth charged before it is made.
    let mut body = body;
    let mut buf = BigBuf::with_capacity(declared.unwrap_or(0)).map_err(no_memory)?;
    let mut charged = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(unreadable)?.into_data() else {
            continue;
        };
        let needed = buf.len() + data.len();
        if needed > limit {
            return Err(DecodeError::TooLarge { limit });
        }
        if needed > buf.capacity() {
            let grown = needed.max(buf.capacity() * 2).max(8 * 1024).min(limit);
            let resident = BigBuf::resident_of(grown, buf.len());
            charge.take(resident)?;
            buf = buf.grown(grown).map_err(no_memory)?;
            charge.give_back(charged);
            charged = resident;
        }
        let resident = buf.resident_with(data.len());
        if resident > charged {
            charge.take(resident - charged)?;
            charged = resident;
        }
        buf.extend_from_slice(&data);
    }
    Ok(buf.freeze())
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
