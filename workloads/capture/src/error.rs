//! Everything that can go wrong with a capture request, as an answer: a
//! status, a JSON body naming the problem and the request's id, and
//! `Retry-After` where coming back later helps.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::budget::Refused;
use crate::decode::DecodeError;
use crate::layers;
use crate::normalize::PayloadError;
use crate::sink::ProduceError;
use tributary_core::keys::KeyRefusal;

#[derive(Debug)]
pub enum ApiError {
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
    pub fn status(&self) -> StatusCode {
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

    /// The `error` of the body and the `reason` of `capture_events_rejected`.
    pub fn kind(&self) -> &'static str {
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
    pub fn detail(&self) -> String {
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

    /// Logs the refusal: a warning when the fault is ours.
    pub fn log(&self) {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self.detail(), kind = self.kind(), status = status.as_u16(), "request refused");
        } else {
            tracing::info!(error = %self.detail(), kind = self.kind(), status = status.as_u16(), "request refused");
        }
    }

    /// How long a client should wait before sending again, if that helps.
    fn retry_after(&self) -> Option<HeaderValue> {
        match self {
            Self::RateLimited(wait) => Some(HeaderValue::from(
                tributary_core::rate::retry_after_secs(*wait),
            )),
            // A full byte budget clears as requests end: come back soon.
            Self::Budget(Refused::Busy) | Self::Decode(DecodeError::Budget(Refused::Busy)) => {
                Some(HeaderValue::from_static("1"))
            }
            _ if self.status() == StatusCode::SERVICE_UNAVAILABLE => {
                Some(HeaderValue::from_static("5"))
            }
            _ => None,
        }
    }
}

/// The body carries the id of the request being answered
/// ([`layers::request_id`]), as the `X-Request-Id` header does.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "error": self.kind(),
            "message": self.message(),
            "request_id": layers::request_id(),
        });
        if let Self::Payload(e) = &self
            && let Some(index) = e.index()
        {
            body["index"] = json!(index);
        }
        let mut response = (self.status(), Json(body)).into_response();
        if let Some(wait) = self.retry_after() {
            response.headers_mut().insert(header::RETRY_AFTER, wait);
        }
        response
    }
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

    #[test]
    fn retry_after_where_waiting_helps() {
        let wait = |e: ApiError| {
            e.retry_after()
                .map(|v| v.to_str().unwrap_or("?").to_owned())
        };
        assert_eq!(wait(ApiError::Budget(Refused::Busy)).as_deref(), Some("1"));
        assert_eq!(
            wait(ApiError::Produce(ProduceError::QueueFull)).as_deref(),
            Some("5")
        );
        assert_eq!(
            wait(ApiError::RateLimited(std::time::Duration::from_millis(
                2500
            )))
            .as_deref(),
            Some("3")
        );
        assert_eq!(wait(ApiError::Payload(PayloadError::NoEvents)), None);
    }
}
