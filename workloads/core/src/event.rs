//! The event model carried on the `events` topic.
//!
//! Capture normalises every accepted payload into an [`Event`] and produces it
//! as JSON keyed by `distinct_id`; the consumer decodes it back and writes it to
//! ClickHouse. The wire format is JSON so that the dead-letter queue, `kcat`-like
//! tools and humans can read it; unknown fields are ignored on decode so that a
//! newer capture can roll out before an older consumer.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::timestamp;

/// Truncates a timestamp to the milliseconds Tributary keeps.
pub fn truncate_ms(ts: DateTime<Utc>) -> DateTime<Utc> {
    timestamp::truncate_ms(ts)
}

/// Formats a timestamp as Tributary writes them: RFC 3339, milliseconds, `Z`.
pub fn format_timestamp(ts: &DateTime<Utc>) -> String {
    timestamp::format_ms(ts)
}

/// Version of the wire format written into every message (`v`).
pub const WIRE_VERSION: u8 = 1;

/// One analytics event, as it travels from capture to the consumer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Wire format version; see [`WIRE_VERSION`].
    #[serde(default = "wire_version")]
    pub v: u8,
    /// Client-supplied when valid, otherwise a UUIDv7 assigned by capture.
    /// It identifies the event across retries and replays.
    pub uuid: Uuid,
    /// Project that owns the event, resolved from the API key.
    pub project_id: u64,
    /// Event name, e.g. `$pageview`.
    pub event: String,
    /// The user (or anonymous device) the event belongs to; also the Kafka key.
    pub distinct_id: String,
    /// Free-form event properties (always a JSON object).
    #[serde(default)]
    pub properties: Map<String, Value>,
    /// When the event happened, corrected for client clock skew, in ms precision.
    #[serde(with = "timestamp::ms")]
    pub timestamp: DateTime<Utc>,
    /// When the client says it sent the request, if it said so.
    #[serde(
        default,
        with = "timestamp::ms_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub sent_at: Option<DateTime<Utc>>,
    /// When capture received the request (server clock).
    #[serde(with = "timestamp::ms")]
    pub received_at: DateTime<Utc>,
    /// Client address as seen by capture, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// SDK name and version that sent the event (`$lib`, `$lib_version`).
    #[serde(default, skip_serializing_if = "Lib::is_empty")]
    pub lib: Lib,
}

/// The SDK that produced an event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lib {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl Lib {
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.version.is_none()
    }
}

fn wire_version() -> u8 {
    WIRE_VERSION
}

/// Why a Kafka message could not be decoded into an [`Event`].
#[derive(Debug, thiserror::Error)]
pub enum EventDecodeError {
    #[error("message is not valid UTF-8 at byte {valid_up_to}")]
    NotUtf8 { valid_up_to: usize },
    #[error("message is not a valid event: {0}")]
    Invalid(#[from] serde_json::Error),
    #[error("unsupported event wire version {0} (this build reads up to {WIRE_VERSION})")]
    UnsupportedVersion(u8),
    #[error("event field {field} is empty")]
    EmptyField { field: &'static str },
}

impl Event {
    /// Builds an event with a fresh UUIDv7, empty properties and all timestamps
    /// set to `now` (truncated to milliseconds).
    pub fn new(
        project_id: u64,
        event: impl Into<String>,
        distinct_id: impl Into<String>,
        now: DateTime<Utc>,
    ) -> Self {
        let now = timestamp::truncate_ms(now);
        Self {
            v: WIRE_VERSION,
            uuid: Uuid::now_v7(),
            project_id,
            event: event.into(),
            distinct_id: distinct_id.into(),
            properties: Map::new(),
            timestamp: now,
            sent_at: None,
            received_at: now,
            ip: None,
            lib: Lib::default(),
        }
    }

    /// The Kafka message key: `distinct_id` as UTF-8, so one user's events stay
    /// on one partition and in order.
    pub fn kafka_key(&self) -> &[u8] {
        self.distinct_id.as_bytes()
    }

    /// Serialises the event as the JSON message value.
    pub fn to_kafka_payload(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// Decodes a message value, checking what serde alone cannot.
    pub fn from_kafka_payload(bytes: &[u8]) -> Result<Self, EventDecodeError> {
        let text = std::str::from_utf8(bytes).map_err(|e| EventDecodeError::NotUtf8 {
            valid_up_to: e.valid_up_to(),
        })?;
        let event: Event = serde_json::from_str(text)?;
        if event.v > WIRE_VERSION {
            return Err(EventDecodeError::UnsupportedVersion(event.v));
        }
        if event.event.is_empty() {
            return Err(EventDecodeError::EmptyField { field: "event" });
        }
        if event.distinct_id.is_empty() {
            return Err(EventDecodeError::EmptyField {
                field: "distinct_id",
            });
        }
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn sample() -> Event {
        let now = Utc.timestamp_nanos(1_763_892_000_123_999_999);
        let mut e = Event::new(42, "$pageview", "user-1", now);
        e.properties =
            json!({"$current_url": "https://example.com/a?b=1", "n": 3, "nested": {"x": [1, 2]}})
                .as_object()
                .cloned()
                .unwrap();
        e.sent_at = Some(
            Utc.timestamp_millis_opt(1_763_892_000_500)
                .single()
                .unwrap(),
        );
        e.ip = Some("203.0.113.7".into());
        e.lib = Lib {
            name: Some("posthog-js".into()),
            version: Some("1.200.0".into()),
        };
        e
    }

    #[test]
    fn round_trips_through_the_wire_format() {
        let e = sample();
        let back = Event::from_kafka_payload(&e.to_kafka_payload().unwrap()).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn minimal_event_round_trips_without_optional_fields() {
        let e = Event::new(
            1,
            "signup",
            "d",
            Utc.timestamp_millis_opt(0).single().unwrap(),
        );
        let text = String::from_utf8(e.to_kafka_payload().unwrap()).unwrap();
        assert!(!text.contains("sent_at"), "{text}");
        assert!(!text.contains("\"ip\""), "{text}");
        assert!(!text.contains("\"lib\""), "{text}");
        assert_eq!(Event::from_kafka_payload(text.as_bytes()).unwrap(), e);
    }

    #[test]
    fn timestamps_keep_exactly_milliseconds() {
        let e = sample();
        let v: Value = serde_json::from_slice(&e.to_kafka_payload().unwrap()).unwrap();
        assert_eq!(v["timestamp"], "2025-11-23T10:00:00.123Z");
        assert_eq!(v["received_at"], "2025-11-23T10:00:00.123Z");
        assert_eq!(v["sent_at"], "2025-11-23T10:00:00.500Z");
    }

    #[test]
    fn key_is_the_distinct_id() {
        assert_eq!(sample().kafka_key(), b"user-1");
    }

    #[test]
    fn new_assigns_version_7_uuids() {
        let e = sample();
        assert_eq!(e.uuid.get_version_num(), 7);
        assert_ne!(e.uuid, sample().uuid);
    }

    #[test]
    fn unknown_fields_are_ignored_for_forward_compatibility() {
        let mut v: Value = serde_json::from_slice(&sample().to_kafka_payload().unwrap()).unwrap();
        v["added_later"] = json!({"x": 1});
        let back = Event::from_kafka_payload(v.to_string().as_bytes()).unwrap();
        assert_eq!(back, sample_with_uuid(back.uuid));
    }

    fn sample_with_uuid(uuid: Uuid) -> Event {
        Event { uuid, ..sample() }
    }

    #[test]
    fn missing_version_reads_as_current() {
        let mut v: Value = serde_json::from_slice(&sample().to_kafka_payload().unwrap()).unwrap();
        v.as_object_mut().unwrap().remove("v");
        assert_eq!(
            Event::from_kafka_payload(v.to_string().as_bytes())
                .unwrap()
                .v,
            WIRE_VERSION
        );
    }

    #[test]
    fn decode_errors_say_what_is_wrong() {
        let not_utf8 = Event::from_kafka_payload(b"{\"a\xff").unwrap_err();
        assert!(matches!(
            not_utf8,
            EventDecodeError::NotUtf8 { valid_up_to: 3 }
        ));

        let not_json = Event::from_kafka_payload(b"not json").unwrap_err();
        assert!(matches!(not_json, EventDecodeError::Invalid(_)));

        let mut v: Value = serde_json::from_slice(&sample().to_kafka_payload().unwrap()).unwrap();
        v.as_object_mut().unwrap().remove("distinct_id");
        let missing = Event::from_kafka_payload(v.to_string().as_bytes()).unwrap_err();
        assert!(missing.to_string().contains("distinct_id"), "{missing}");

        v["distinct_id"] = json!("");
        let empty = Event::from_kafka_payload(v.to_string().as_bytes()).unwrap_err();
        assert_eq!(empty.to_string(), "event field distinct_id is empty");

        v["distinct_id"] = json!("u");
        v["v"] = json!(9);
        let future = Event::from_kafka_payload(v.to_string().as_bytes()).unwrap_err();
        assert!(matches!(future, EventDecodeError::UnsupportedVersion(9)));

        v["v"] = json!(1);
        v["properties"] = json!([1, 2]);
        let props = Event::from_kafka_payload(v.to_string().as_bytes()).unwrap_err();
        assert!(props.to_string().contains("map"), "{props}");
    }
}
