//! Capture's OpenAPI document, served at `GET /openapi.json`. Payloads are
//! read by the outline and the normaliser, not by derived types, so their
//! shape is written down here; `workloads/cli/tests/schemathesis.rs` checks
//! the running service against it. Only JSON bodies are described: gzip,
//! base64 and form `data=` bodies carry the same payloads (docs/api.md).

use serde::Serialize;
use serde_json::Value;
use tributary_core::openapi::{ErrorBody, SecuritySchemes};
use utoipa::{OpenApi, ToSchema};

/// One event, as PostHog SDKs send it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Event {
    /// 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub event: String,
    /// A string or a number, 1 to 200 characters (or in `properties`).
    #[schema(value_type = Option<String>, min_length = 1, max_length = 200)]
    pub distinct_id: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub properties: Option<Value>,
    /// ISO-8601, or epoch milliseconds.
    pub timestamp: Option<String>,
    /// When the client sent it, to correct its clock.
    pub sent_at: Option<String>,
    /// A UUID of the client's; one is derived from the content if absent.
    pub uuid: Option<String>,
    /// The project key, when not in `X-API-Key`.
    pub api_key: Option<String>,
}

/// Many events, with the key and send time once.
#[derive(Debug, Serialize, ToSchema)]
pub struct Batch {
    pub api_key: Option<String>,
    pub sent_at: Option<String>,
    #[schema(min_items = 1, max_items = 10000)]
    pub batch: Vec<Event>,
}

/// A payload: one event, an array of events, or a batch.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Payload {
    One(Event),
    Many(Vec<Event>),
    Batch(Batch),
}

/// `POST /capture`'s answer: every event was acknowledged by Kafka.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub accepted: u64,
}

/// The PostHog routes' answer: every event was acknowledged by Kafka.
#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    /// Always 1.
    pub status: u8,
}

/// `/ready`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// `ready` or `not_ready`.
    pub status: String,
    /// Why not, when not.
    pub kafka: Option<String>,
}

macro_rules! capture_path {
    ($name:ident, $method:ident, $path:literal, $ok:literal, $answer:ty, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path($method, path = $path, tag = "capture", security(("api_key" = []), ()),
            request_body = Payload,
            responses(
                (status = $ok, description = "every event acknowledged by Kafka", body = $answer),
                (status = 400, description = "bad input, naming it (and the event's index)", body = ErrorBody),
                (status = 401, description = "no valid key", body = ErrorBody),
                (status = 408, description = "the body did not arrive in time", body = ErrorBody),
                (status = 413, description = "too large: body, events, or one event", body = ErrorBody),
                (status = 429, description = "past the key's rate", body = ErrorBody),
                (status = 503, description = "Kafka, auth or memory unavailable; see Retry-After", body = ErrorBody),
            ))]
        pub fn $name() {}
    };
}

capture_path!(
    native,
    post,
    "/capture",
    202,
    Accepted,
    "Events, keyed by `X-API-Key` (native)."
);
capture_path!(
    e,
    post,
    "/e",
    200,
    Status,
    "Events (PostHog SDKs); also `/i/v0/e`, `/track`."
);
capture_path!(
    batch,
    post,
    "/batch",
    200,
    Status,
    "A batch (PostHog SDKs)."
);

/// Events in the `data` query parameter (old SDKs, pixels).
#[utoipa::path(get, path = "/e", tag = "capture", security(("api_key" = []), ()),
    params(("data" = String, Query, description = "the payload: JSON, or base64 of it")),
    responses(
        (status = 200, description = "every event acknowledged by Kafka", body = Status),
        (status = 400, description = "bad input, naming it", body = ErrorBody),
        (status = 401, description = "no valid key", body = ErrorBody),
        (status = 413, description = "too large", body = ErrorBody),
        (status = 429, description = "past the key's rate", body = ErrorBody),
        (status = 503, description = "Kafka, auth or memory unavailable", body = ErrorBody),
    ))]
pub fn e_get() {}

/// Whether the brokers answer and the topic exists.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "ready", body = Ready),
        (status = 503, description = "not ready, naming why", body = Ready),
    ))]
pub fn ready() {}

#[derive(OpenApi)]
#[openapi(
    info(title = "Tributary capture", description = "Events in, PostHog-compatible; answered only once Kafka acknowledged them."),
    paths(native, e, batch, e_get, ready,
        tributary_core::openapi::health, tributary_core::openapi::metrics),
    modifiers(&SecuritySchemes)
)]
pub struct CaptureApi;

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    CaptureApi::openapi()
}
