//! Decoded JSON → core [`Event`]s. Pure: the clock and the project come in
//! through [`Context`].
//!
//! A payload is one event object, an array of events, or
//! `{"api_key"|"token": ..., "batch": [...], "sent_at": ...}`. One bad event
//! refuses the whole request with its index (`event 3: distinct_id is
//! missing`): SDKs retry whole requests, so accepting part of one would make the
//! retry ambiguous. Nothing is dropped silently.
//!
//! The payload's outline ([`crate::outline`]) finds the events without
//! parsing them; a [`Normalizer`] then takes one event's JSON object at a
//! time, so only one event's tree is in memory at once.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde_json::{Map, Value};
use tributary_core::event::{Event, Lib, WIRE_VERSION, truncate_ms};
use uuid::Uuid;

/// Longest accepted `distinct_id` and event name, in characters.
pub const MAX_DISTINCT_ID_CHARS: usize = 200;
pub const MAX_EVENT_NAME_CHARS: usize = 200;

/// Keys that carry the API key; they are never stored with the event.
const KEY_FIELDS: [&str; 3] = ["api_key", "token", "$token"];

/// A payload split into its events, before any event is validated (for
/// tests: the service goes through [`crate::outline`] and [`Normalizer`]).
#[cfg(test)]
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    /// The key found in the payload (batch level first, then the first event).
    pub api_key: Option<String>,
    /// Batch-level `sent_at`, if any.
    pub sent_at: Option<Value>,
    pub events: Vec<Map<String, Value>>,
}

/// Why a payload or one of its events was refused. Shown to clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("payload must be an event object, an array of events, or {{\"batch\": [...]}}")]
    Shape,
    #[error("`batch` must be an array of events")]
    BatchNotArray,
    #[error("payload holds no events")]
    NoEvents,
    #[error(
        "payload holds more than {max} events (CAPTURE_MAX_EVENTS_PER_REQUEST): send them in smaller batches"
    )]
    TooManyEvents { max: usize },
    #[error("event {index} is {size} bytes of JSON, more than an event may be ({limit})")]
    EventTooLarge {
        index: usize,
        size: usize,
        limit: usize,
    },
    #[error("event {index} is not a JSON object")]
    NotAnObject { index: usize },
    /// Events of one request name different project keys: each would
    /// belong to another project, and one key cannot vouch for the others.
    #[error(
        "event {index} carries another project key than the request's: send each project's events in a request of their own"
    )]
    MixedKeys { index: usize },
    #[error(
        "the request names two different project keys (in X-API-Key, the payload or ?token=): send one"
    )]
    KeysDisagree,
    #[error("event {index}: {field} {problem}")]
    Field {
        index: usize,
        field: &'static str,
        problem: String,
    },
}

impl PayloadError {
    /// Short machine-readable kind, used as a metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Shape | Self::BatchNotArray | Self::NotAnObject { .. } => "invalid_shape",
            Self::NoEvents => "no_events",
            Self::TooManyEvents { .. } => "too_many_events",
            Self::EventTooLarge { .. } => "event_too_large",
            Self::MixedKeys { .. } | Self::KeysDisagree => "mixed_keys",
            Self::Field { field, .. } => match *field {
                "event" => "invalid_event_name",
                "distinct_id" => "invalid_distinct_id",
                "properties" => "invalid_properties",
                "timestamp" | "sent_at" | "offset" => "invalid_timestamp",
                _ => "invalid_field",
            },
        }
    }

    /// Index of the offending event, when one event is at fault.
    pub fn index(&self) -> Option<usize> {
        match self {
            Self::NotAnObject { index }
            | Self::Field { index, .. }
            | Self::MixedKeys { index }
            | Self::EventTooLarge { index, .. } => Some(*index),
            _ => None,
        }
    }
}

/// The key a JSON tree's object names (the outline finds it without a
/// tree; the tests check the two agree).
#[cfg(test)]
fn string_key(obj: &Map<String, Value>) -> Option<String> {
    KEY_FIELDS
        .iter()
        .find_map(|k| obj.get(*k).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
fn event_key(obj: &Map<String, Value>) -> Option<String> {
    string_key(obj).or_else(|| {
        obj.get("properties")
            .and_then(Value::as_object)
            .and_then(string_key)
    })
}

/// Splits a decoded payload into events, as the service does through
/// [`crate::outline`].
#[cfg(test)]
pub fn split(payload: Value) -> Result<Payload, PayloadError> {
    let text = payload.to_string();
    let outline = crate::outline::outline(&text, usize::MAX)?;
    let api_key = crate::outline::request_key(&outline)?;
    let events = outline
        .events
        .iter()
        .enumerate()
        .map(|(index, raw)| {
            serde_json::from_str(raw.get()).map_err(|_| PayloadError::NotAnObject { index })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let sent_at = outline
        .sent_at
        .map(|raw| serde_json::from_str(raw.get()).unwrap_or(Value::Null));
    Ok(Payload {
        api_key,
        sent_at,
        events,
    })
}

/// What normalisation needs from the request.
#[derive(Debug, Clone)]
pub struct Context {
    pub project_id: u64,
    pub received_at: DateTime<Utc>,
    pub ip: Option<String>,
}

/// Normalises every event of `payload`, or refuses it naming the first bad one.
#[cfg(test)]
pub fn normalize(payload: Payload, ctx: &Context) -> Result<Vec<Event>, PayloadError> {
    let mut n = Normalizer::new(payload.sent_at.as_ref(), ctx)?;
    payload
        .events
        .into_iter()
        .enumerate()
        .map(|(index, obj)| n.event(obj, index))
        .collect()
}

/// Longest batch-level `sent_at` read, in bytes of JSON: a time is short,
/// and anything longer is not parsed into a tree.
const MAX_SENT_AT_JSON: usize = 256;

/// Normalises the events of one request, one at a time.
#[derive(Debug)]
pub struct Normalizer<'c> {
    batch_sent_at: Option<DateTime<Utc>>,
    ctx: &'c Context,
    /// How often each content was seen so far in this request: identical
    /// events in one request are told apart by their occurrence.
    seen: std::collections::HashMap<Uuid, u32>,
}

impl<'c> Normalizer<'c> {
    /// For a request whose batch-level `sent_at` is `sent_at`.
    pub fn new(sent_at: Option<&Value>, ctx: &'c Context) -> Result<Self, PayloadError> {
        let batch_sent_at = match sent_at {
            None | Some(Value::Null) => None,
            Some(v) => Some(parse_time(v).map_err(|problem| PayloadError::Field {
                index: 0,
                field: "sent_at",
                problem,
            })?),
        };
        Ok(Self {
            batch_sent_at,
            ctx,
            seen: std::collections::HashMap::new(),
        })
    }

    /// Like [`Normalizer::new`], from the JSON text of an outline's
    /// `sent_at`.
    pub fn from_raw(sent_at: Option<&str>, ctx: &'c Context) -> Result<Self, PayloadError> {
        let value = match sent_at {
            None => None,
            Some(raw) if raw.len() > MAX_SENT_AT_JSON => {
                return Err(field_err(0, "sent_at", "is not a time"));
            }
            Some(raw) => Some(
                serde_json::from_str::<Value>(raw)
                    .map_err(|_| field_err(0, "sent_at", "is not a time"))?,
            ),
        };
        Self::new(value.as_ref(), ctx)
    }

    /// The event at `index` of the request.
    pub fn event(&mut self, obj: Map<String, Value>, index: usize) -> Result<Event, PayloadError> {
        normalize_event(obj, index, self.batch_sent_at, self.ctx, &mut self.seen)
    }
}

fn field_err(index: usize, field: &'static str, problem: impl Into<String>) -> PayloadError {
    PayloadError::Field {
        index,
        field,
        problem: problem.into(),
    }
}

fn normalize_event(
    mut obj: Map<String, Value>,
    index: usize,
    batch_sent_at: Option<DateTime<Utc>>,
    ctx: &Context,
    seen: &mut std::collections::HashMap<Uuid, u32>,
) -> Result<Event, PayloadError> {
    let event = match obj.remove("event") {
        Some(Value::String(s)) if s.trim().is_empty() => {
            return Err(field_err(index, "event", "is empty"));
        }
        Some(Value::String(s)) if s.chars().count() > MAX_EVENT_NAME_CHARS => {
            return Err(field_err(
                index,
                "event",
                format!("is longer than {MAX_EVENT_NAME_CHARS} characters"),
            ));
        }
        Some(Value::String(s)) => s,
        None | Some(Value::Null) => return Err(field_err(index, "event", "is missing")),
        Some(other) => {
            return Err(field_err(
                index,
                "event",
                format!("must be a string, not {}", type_name(&other)),
            ));
        }
    };

    let mut properties = match obj.remove("properties") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p,
        Some(other) => {
            return Err(field_err(
                index,
                "properties",
                format!("must be an object, not {}", type_name(&other)),
            ));
        }
    };
    for key in ["$set", "$set_once"] {
        if let Some(v @ Value::Object(_)) = obj.remove(key) {
            properties.entry(key).or_insert(v);
        }
    }

    let distinct_id = obj
        .remove("distinct_id")
        .filter(|v| !v.is_null())
        .or_else(|| obj.remove("$distinct_id").filter(|v| !v.is_null()))
        .or_else(|| {
            properties
                .get("distinct_id")
                .filter(|v| !v.is_null())
                .cloned()
        });
    let distinct_id = match distinct_id {
        None => return Err(field_err(index, "distinct_id", "is missing")),
        Some(Value::String(s)) if s.trim().is_empty() => {
            return Err(field_err(index, "distinct_id", "is empty"));
        }
        Some(Value::String(s)) => s,
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => {
            return Err(field_err(
                index,
                "distinct_id",
                format!("must be a string or a number, not {}", type_name(&other)),
            ));
        }
    };
    if distinct_id.chars().count() > MAX_DISTINCT_ID_CHARS {
        return Err(field_err(
            index,
            "distinct_id",
            format!("is longer than {MAX_DISTINCT_ID_CHARS} characters"),
        ));
    }

    let client_uuid = obj
        .get("uuid")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
        .filter(|u| !u.is_nil());

    let sent_at = match obj.get("sent_at") {
        None | Some(Value::Null) => batch_sent_at,
        Some(v) => Some(parse_time(v).map_err(|p| field_err(index, "sent_at", p))?),
    };
    let timestamp = match obj.get("timestamp") {
        None | Some(Value::Null) => None,
        Some(v) => Some(parse_time(v).map_err(|p| field_err(index, "timestamp", p))?),
    };
    let offset_ms = match obj.get("offset") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_i64().filter(|o| *o >= 0).ok_or_else(|| {
            field_err(
                index,
                "offset",
                "must be a non-negative whole number of milliseconds",
            )
        })?),
    };
    let client_timestamp = timestamp;
    let timestamp = corrected_timestamp(timestamp, sent_at, offset_ms, ctx.received_at);
    if timestamp < min_time() || timestamp >= max_time() {
        return Err(field_err(
            index,
            "timestamp",
            format!(
                "{} is outside the supported range (1970-01-01 to 2106-02-07)",
                timestamp.to_rfc3339()
            ),
        ));
    }

    for key in KEY_FIELDS {
        properties.remove(key);
    }
    let uuid = client_uuid.unwrap_or_else(|| {
        let content = content_digest(
            ctx.project_id,
            &event,
            &distinct_id,
            client_timestamp,
            &properties,
        );
        let occurrence = seen.entry(content).or_insert(0);
        *occurrence += 1;
        derived_uuid(content, *occurrence, client_timestamp)
    });
    let lib = Lib {
        name: properties
            .get("$lib")
            .and_then(Value::as_str)
            .map(str::to_owned),
        version: properties
            .get("$lib_version")
            .and_then(Value::as_str)
            .map(str::to_owned),
    };

    Ok(Event {
        v: WIRE_VERSION,
        uuid,
        project_id: ctx.project_id,
        event,
        distinct_id,
        properties,
        timestamp: truncate_ms(timestamp),
        sent_at: sent_at.map(truncate_ms),
        received_at: truncate_ms(ctx.received_at),
        ip: ctx.ip.clone(),
        lib,
    })
}

fn min_time() -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH
}

/// ClickHouse `DateTime` (seconds in a UInt32) ends here.
fn max_time() -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::seconds(i64::from(u32::MAX))
}

/// A digest of what the client sent for an event (the project its key
/// names, event, distinct_id, its own timestamp if any, properties), the
/// same however often the request is sent: the UUIDv5 (in the OID
/// namespace) of `{project_id}␟{event}␟{distinct_id}␟{ms or -}␟{properties
/// as JSON}`, hashed as it is written rather than joined first.
pub fn content_digest(
    project_id: u64,
    event: &str,
    distinct_id: &str,
    client_timestamp: Option<DateTime<Utc>>,
    properties: &Map<String, Value>,
) -> Uuid {
    use std::io::Write;
    let mut hash = Sha1Writer(sha1_smol::Sha1::new());
    hash.0.update(Uuid::NAMESPACE_OID.as_bytes());
    // Writes into a hasher cannot fail.
    let _ = write!(hash, "{project_id}\u{1f}{event}\u{1f}{distinct_id}\u{1f}");
    let _ = match client_timestamp {
        Some(t) => write!(hash, "{}\u{1f}", t.timestamp_millis()),
        None => hash.write_all("-\u{1f}".as_bytes()),
    };
    // The text `Value::Object(properties)` displays, written without
    // copying the tree (a copy would double an event's memory). A map with
    // string keys always serialises.
    let _ = serde_json::to_writer(&mut hash, properties);
    let digest = hash.0.digest().bytes();
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    uuid::Builder::from_sha1_bytes(first).into_uuid()
}

/// SHA-1 as an `io::Write`.
struct Sha1Writer(sha1_smol::Sha1);

impl std::io::Write for Sha1Writer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The uuid of an event sent without one: derived from its content and its
/// occurrence among identical events of the request, so a retried request
/// (however the SDK batches it again) yields the same uuids and readers,
/// which count distinct uuids, never show a copy, while identical events of
/// one request stay distinct. With a client timestamp it is a UUIDv7 on
/// that time (the "random" bits digest the content); without one, a UUIDv5
/// of the content. Consequence: an event sent twice, in two requests, with
/// the same content, no uuid and no timestamp, is one event; SDKs send a
/// uuid (posthog-js) or a timestamp, and plain HTTP clients that mean two
/// should too.
pub fn derived_uuid(
    content: Uuid,
    occurrence: u32,
    client_timestamp: Option<DateTime<Utc>>,
) -> Uuid {
    let mut bytes = content.as_bytes().to_vec();
    bytes.extend_from_slice(&occurrence.to_be_bytes());
    let digest = Uuid::new_v5(&Uuid::NAMESPACE_OID, &bytes);
    match client_timestamp {
        Some(ts) => {
            let ms = ts.timestamp_millis().max(0) as u64;
            let mut random = [0u8; 10];
            random.copy_from_slice(&digest.as_bytes()[6..16]);
            uuid::Builder::from_unix_timestamp_millis(ms, &random).into_uuid()
        }
        None => digest,
    }
}

/// The event time on the server's clock.
///
/// - `timestamp` and `sent_at`: the client clock is off by
///   `received_at - sent_at`, so `timestamp + (received_at - sent_at)`;
/// - `offset` alone (older SDKs: how long ago it happened): `received_at - offset`;
/// - `timestamp` alone is trusted; nothing at all means `received_at`.
pub fn corrected_timestamp(
    timestamp: Option<DateTime<Utc>>,
    sent_at: Option<DateTime<Utc>>,
    offset_ms: Option<i64>,
    received_at: DateTime<Utc>,
) -> DateTime<Utc> {
    match (timestamp, sent_at, offset_ms) {
        (Some(ts), Some(sent), _) => ts.checked_add_signed(received_at - sent).unwrap_or(ts),
        (Some(ts), None, _) => ts,
        (None, _, Some(offset)) => received_at
            .checked_sub_signed(chrono::Duration::milliseconds(offset))
            .unwrap_or(received_at),
        (None, _, None) => received_at,
    }
}

/// ISO-8601 (with or without zone; no zone means UTC) or epoch milliseconds.
pub fn parse_time(v: &Value) -> Result<DateTime<Utc>, String> {
    match v {
        Value::String(s) => {
            let s = s.trim();
            if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                return Ok(t.with_timezone(&Utc));
            }
            for fmt in [
                "%Y-%m-%dT%H:%M:%S%.f",
                "%Y-%m-%d %H:%M:%S%.f",
                "%Y-%m-%dT%H:%M:%S%.f%#z",
                "%Y-%m-%d %H:%M:%S%.f%#z",
            ] {
                if let Ok(t) = DateTime::parse_from_str(s, fmt) {
                    return Ok(t.with_timezone(&Utc));
                }
                if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
                    return Ok(Utc.from_utc_datetime(&t));
                }
            }
            Err(format!("{s:?} is neither ISO-8601 nor epoch milliseconds"))
        }
        Value::Number(n) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && f.abs() < 9.0e15)
                    .map(|f| f as i64)
            })
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
            .ok_or_else(|| format!("{n} is not a valid epoch milliseconds value")),
        other => Err(format!(
            "must be an ISO-8601 string or epoch milliseconds, not {}",
            type_name(other)
        )),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Context {
        Context {
            project_id: 7,
            received_at: Utc
                .timestamp_millis_opt(1_700_000_010_000)
                .single()
                .unwrap(),
            ip: Some("198.51.100.4".into()),
        }
    }

    fn one(v: Value) -> Result<Event, PayloadError> {
        normalize(split(v)?, &ctx()).map(|mut e| e.remove(0))
    }

    #[test]
    fn the_three_shapes_split() {
        let e = json!({"event": "a", "distinct_id": "d"});
        assert_eq!(split(e.clone()).unwrap().events.len(), 1);
        assert_eq!(split(json!([e, e, e])).unwrap().events.len(), 3);
        let batch =
            split(json!({"api_key": "phc_k", "batch": [e, e], "sent_at": "2023-11-14T22:13:30Z"}))
                .unwrap();
        assert_eq!(batch.events.len(), 2);
        assert_eq!(batch.api_key.as_deref(), Some("phc_k"));
        assert!(batch.sent_at.is_some());
    }

    #[test]
    fn bad_shapes_are_refused() {
        assert_eq!(split(json!("x")).unwrap_err(), PayloadError::Shape);
        assert_eq!(split(json!(3)).unwrap_err(), PayloadError::Shape);
        assert_eq!(split(json!([])).unwrap_err(), PayloadError::NoEvents);
        assert_eq!(
            split(json!({"batch": []})).unwrap_err(),
            PayloadError::NoEvents
        );
        assert_eq!(
            split(json!({"batch": {"event": "a"}})).unwrap_err(),
            PayloadError::BatchNotArray
        );
        assert_eq!(
            split(json!([{"event": "a"}, 5])).unwrap_err(),
            PayloadError::NotAnObject { index: 1 }
        );
    }

    #[test]
    fn the_key_is_found_where_sdks_put_it() {
        for (payload, key) in [
            (json!({"token": "t1", "batch": [{"event": "a"}]}), "t1"),
            (json!({"event": "a", "api_key": "t2"}), "t2"),
            (json!({"event": "a", "$token": "t3"}), "t3"),
            (json!({"event": "a", "properties": {"token": "t4"}}), "t4"),
            (
                json!([{"event": "a"}, {"event": "b", "properties": {"$token": "t5"}}]),
                "t5",
            ),
        ] {
            assert_eq!(split(payload).unwrap().api_key.as_deref(), Some(key));
        }
        assert_eq!(split(json!({"event": "a"})).unwrap().api_key, None);
    }

    #[test]
    fn a_full_event_is_normalised() {
        let e = one(json!({
            "event": "$pageview",
            "distinct_id": "user-1",
            "uuid": "01890a5d-ac96-774b-bcce-b302099a8057",
            "properties": {"$current_url": "https://x.test/", "$lib": "posthog-js", "$lib_version": "1.2.3", "token": "phc_secret"},
            "$set": {"email": "a@b.test"},
            "timestamp": "2023-11-14T22:13:20.123Z",
        }))
        .unwrap();
        assert_eq!(e.project_id, 7);
        assert_eq!(e.event, "$pageview");
        assert_eq!(e.distinct_id, "user-1");
        assert_eq!(e.uuid.to_string(), "01890a5d-ac96-774b-bcce-b302099a8057");
        assert_eq!(e.properties["$current_url"], "https://x.test/");
        assert_eq!(e.properties["$set"]["email"], "a@b.test");
        assert!(
            !e.properties.contains_key("token"),
            "the key must not be stored"
        );
        assert_eq!(e.lib.name.as_deref(), Some("posthog-js"));
        assert_eq!(e.lib.version.as_deref(), Some("1.2.3"));
        assert_eq!(e.ip.as_deref(), Some("198.51.100.4"));
        assert_eq!(e.timestamp.timestamp_millis(), 1_700_000_000_123);
        assert_eq!(e.received_at, ctx().received_at);
    }

    #[test]
    fn distinct_id_sources_and_types() {
        assert_eq!(
            one(json!({"event": "a", "$distinct_id": "x"}))
                .unwrap()
                .distinct_id,
            "x"
        );
        assert_eq!(
            one(json!({"event": "a", "properties": {"distinct_id": "p"}}))
                .unwrap()
                .distinct_id,
            "p"
        );
        assert_eq!(
            one(json!({"event": "a", "distinct_id": 42}))
                .unwrap()
                .distinct_id,
            "42"
        );
        assert_eq!(
            one(json!({"event": "a", "distinct_id": 4.5}))
                .unwrap()
                .distinct_id,
            "4.5"
        );
        assert_eq!(
            one(json!({"event": "a", "distinct_id": "top", "properties": {"distinct_id": "p"}}))
                .unwrap()
                .distinct_id,
            "top"
        );
        let max = "é".repeat(MAX_DISTINCT_ID_CHARS);
        assert_eq!(
            one(json!({"event": "a", "distinct_id": max}))
                .unwrap()
                .distinct_id
                .chars()
                .count(),
            200
        );
    }

    #[test]
    fn bad_events_are_named_by_index_and_field() {
        let cases = [
            (json!({"distinct_id": "d"}), "event 0: event is missing"),
            (
                json!({"event": "", "distinct_id": "d"}),
                "event 0: event is empty",
            ),
            (
                json!({"event": 5, "distinct_id": "d"}),
                "event 0: event must be a string, not a number",
            ),
            (json!({"event": "a"}), "event 0: distinct_id is missing"),
            (
                json!({"event": "a", "distinct_id": " "}),
                "event 0: distinct_id is empty",
            ),
            (
                json!({"event": "a", "distinct_id": true}),
                "event 0: distinct_id must be a string or a number, not a boolean",
            ),
            (
                json!({"event": "a", "distinct_id": "x".repeat(201)}),
                "event 0: distinct_id is longer than 200 characters",
            ),
            (
                json!({"event": "e".repeat(201), "distinct_id": "d"}),
                "event 0: event is longer than 200 characters",
            ),
            (
                json!({"event": "a", "distinct_id": "d", "properties": [1]}),
                "event 0: properties must be an object, not an array",
            ),
            (
                json!({"event": "a", "distinct_id": "d", "timestamp": "soon"}),
                "event 0: timestamp \"soon\" is neither ISO-8601 nor epoch milliseconds",
            ),
            (
                json!({"event": "a", "distinct_id": "d", "offset": -5}),
                "event 0: offset must be a non-negative whole number of milliseconds",
            ),
        ];
        for (payload, message) in cases {
            assert_eq!(
                one(payload.clone()).unwrap_err().to_string(),
                message,
                "{payload}"
            );
        }
    }

    #[test]
    fn one_bad_event_refuses_the_batch_naming_its_index() {
        let ok = json!({"event": "a", "distinct_id": "d"});
        let err = normalize(
            split(json!({"batch": [ok, ok, {"event": "a"}, ok]})).unwrap(),
            &ctx(),
        )
        .unwrap_err();
        assert_eq!(err.index(), Some(2));
        assert_eq!(err.kind(), "invalid_distinct_id");
    }

    #[test]
    fn invalid_or_missing_uuids_are_replaced_by_derived_ones() {
        let plain = one(json!({"event": "a", "distinct_id": "d"})).unwrap().uuid;
        for payload in [
            json!({"event": "a", "distinct_id": "d", "uuid": "not-a-uuid"}),
            json!({"event": "a", "distinct_id": "d", "uuid": "00000000-0000-0000-0000-000000000000"}),
        ] {
            assert_eq!(one(payload).unwrap().uuid, plain);
        }
        assert_eq!(plain.get_version_num(), 5);
        let timed =
            one(json!({"event": "a", "distinct_id": "d", "timestamp": "2023-11-14T22:13:20Z"}));
        assert_eq!(timed.unwrap().uuid.get_version_num(), 7);
    }

    #[test]
    fn the_content_digest_is_the_v5_uuid_of_the_joined_content() {
        // How digests were made before they were hashed piece by piece: a
        // change would give a request retried across an upgrade new uuids.
        let joined = |project: u64, event: &str, id: &str, ms: &str, props: &Value| {
            let text = format!("{project}\u{1f}{event}\u{1f}{id}\u{1f}{ms}\u{1f}{props}");
            Uuid::new_v5(&Uuid::NAMESPACE_OID, text.as_bytes())
        };
        let t = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.678Z")
            .unwrap()
            .with_timezone(&Utc);
        let props = json!({"plan": "pro", "n": [1, 2.5, null], "é\"": {"x": true}});
        let Value::Object(map) = props.clone() else {
            unreachable!()
        };
        assert_eq!(
            content_digest(7, "paid", "user-1", Some(t), &map),
            joined(
                7,
                "paid",
                "user-1",
                &t.timestamp_millis().to_string(),
                &props
            )
        );
        assert_eq!(
            content_digest(0, "x", "", None, &Map::new()),
            joined(0, "x", "", "-", &json!({}))
        );
    }

    /// A request whose events were partly acknowledged before it failed is
    /// sent again by the SDK: every event without a uuid gets the same one
    /// again, however the SDK batches the retry, so readers (distinct
    /// uuids) never show a copy; identical events of one request stay
    /// distinct.
    #[test]
    fn a_retried_request_yields_the_same_uuids_and_identical_events_stay_distinct() {
        let uuids = |events: Value, secs: i64| -> Vec<Uuid> {
            normalize(
                split(events).unwrap(),
                &Context {
                    received_at: ctx().received_at + chrono::Duration::seconds(secs),
                    ..ctx()
                },
            )
            .unwrap()
            .into_iter()
            .map(|e| e.uuid)
            .collect()
        };
        let click = json!({"event": "click", "distinct_id": "d", "properties": {"button": "buy"}});
        let view = json!({"event": "view", "distinct_id": "d"});
        let first = uuids(json!([click, click, view]), 0);
        assert_eq!(first.len(), 3);
        assert_ne!(first[0], first[1], "two clicks in one request are two");
        assert_eq!(uuids(json!([click, click, view]), 60), first, "the retry");
        let mut rebatched = uuids(json!([view, click, click]), 90);
        rebatched.sort();
        let mut sorted = first.clone();
        sorted.sort();
        assert_eq!(rebatched, sorted, "batched again in another order");
        let another_project = normalize(
            split(json!([click])).unwrap(),
            &Context {
                project_id: 99,
                ..ctx()
            },
        )
        .unwrap()[0]
            .uuid;
        assert_ne!(another_project, first[0]);
    }

    #[test]
    fn events_without_uuid_get_the_same_v7_on_retry_when_they_carry_a_timestamp() {
        let payload = json!({"event": "a", "distinct_id": "d", "timestamp": "2023-11-14T22:13:20.123Z", "properties": {"x": 1}});
        let first = one(payload.clone()).unwrap().uuid;
        let retry = normalize(
            split(payload).unwrap(),
            &Context {
                received_at: ctx().received_at + chrono::Duration::seconds(5),
                ..ctx()
            },
        )
        .unwrap()
        .remove(0)
        .uuid;
        assert_eq!(first, retry);
        assert_eq!(first.get_version_num(), 7);
        let other = one(json!({"event": "a", "distinct_id": "d", "timestamp": "2023-11-14T22:13:20.123Z", "properties": {"x": 2}})).unwrap().uuid;
        assert_ne!(first, other);
        // Without a timestamp the content alone identifies a retry.
        let a = one(json!({"event": "a", "distinct_id": "d"})).unwrap().uuid;
        let b = one(json!({"event": "a", "distinct_id": "d"})).unwrap().uuid;
        assert_eq!(a, b);
    }

    #[test]
    fn timestamps_outside_clickhouse_range_are_refused() {
        for ts in ["1969-12-31T23:59:59Z", "2200-01-01T00:00:00Z"] {
            let err = one(json!({"event": "a", "distinct_id": "d", "timestamp": ts})).unwrap_err();
            assert!(
                err.to_string().contains("outside the supported range"),
                "{err}"
            );
        }
    }

    #[test]
    fn clock_skew_is_corrected_with_sent_at() {
        // The client clock is 1 hour fast: it says it sent at 11:00 while the
        // server received at 10:00, so an event it stamped 10:59:50 happened
        // at 09:59:50 server time.
        let received = ctx().received_at;
        let sent = received + chrono::Duration::hours(1);
        let ts = sent - chrono::Duration::seconds(10);
        let e = normalize(
            split(json!({"sent_at": sent.to_rfc3339(), "batch": [{"event": "a", "distinct_id": "d", "timestamp": ts.to_rfc3339()}]})).unwrap(),
            &ctx(),
        )
        .unwrap()
        .remove(0);
        assert_eq!(e.timestamp, received - chrono::Duration::seconds(10));
        assert_eq!(e.sent_at, Some(sent));
    }

    #[test]
    fn timestamp_rules() {
        let r = ctx().received_at;
        let t = Utc
            .timestamp_millis_opt(1_600_000_000_000)
            .single()
            .unwrap();
        assert_eq!(corrected_timestamp(Some(t), None, None, r), t);
        assert_eq!(
            corrected_timestamp(None, None, Some(1500), r),
            r - chrono::Duration::milliseconds(1500)
        );
        assert_eq!(corrected_timestamp(None, None, None, r), r);
        assert_eq!(corrected_timestamp(Some(t), Some(r), Some(99), r), t);
    }

    #[test]
    fn timestamp_formats() {
        let ms = 1_700_000_000_123;
        for v in [
            json!("2023-11-14T22:13:20.123Z"),
            json!("2023-11-14T23:13:20.123+01:00"),
            json!("2023-11-14T22:13:20.123"),
            json!("2023-11-14 22:13:20.123"),
            json!(1_700_000_000_123i64),
            json!(1_700_000_000_123.0f64),
        ] {
            assert_eq!(parse_time(&v).unwrap().timestamp_millis(), ms, "{v}");
        }
        assert!(
            parse_time(&json!(true))
                .unwrap_err()
                .contains("not a boolean")
        );
        assert!(parse_time(&json!(1e300)).is_err());
    }

    #[test]
    fn timestamps_are_kept_to_the_millisecond() {
        let e = one(json!({"event": "a", "distinct_id": "d", "timestamp": "2023-11-14T22:13:20.123456789Z"})).unwrap();
        assert_eq!(e.timestamp.timestamp_subsec_nanos(), 123_000_000);
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        fn arb_json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<f64>()
                    .prop_filter("finite", |f| f.is_finite())
                    .prop_map(Value::from),
                "\\PC{0,20}".prop_map(Value::from),
                prop_oneof![
                    Just("event"),
                    Just("distinct_id"),
                    Just("timestamp"),
                    Just("batch")
                ]
                .prop_map(Value::from),
            ];
            leaf.prop_recursive(3, 32, 6, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                    proptest::collection::btree_map(
                        prop_oneof![
                            Just("event".to_owned()),
                            Just("distinct_id".to_owned()),
                            Just("properties".to_owned()),
                            Just("timestamp".to_owned()),
                            Just("sent_at".to_owned()),
                            Just("offset".to_owned()),
                            Just("batch".to_owned()),
                            Just("uuid".to_owned()),
                            "[a-z$]{1,8}",
                        ],
                        inner,
                        0..6,
                    )
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// The split of a whole JSON tree, as capture did before outlines:
        /// the oracle the outline is checked against.
        fn tree_split(payload: Value) -> Result<(Option<String>, usize), PayloadError> {
            let (api_key, items) = match payload {
                Value::Object(obj) if obj.contains_key("batch") => {
                    let key = string_key(&obj);
                    match obj.get("batch") {
                        Some(Value::Array(items)) => (key, items.clone()),
                        _ => return Err(PayloadError::BatchNotArray),
                    }
                }
                Value::Object(obj) => (None, vec![Value::Object(obj)]),
                Value::Array(items) => (None, items),
                _ => return Err(PayloadError::Shape),
            };
            if items.is_empty() {
                return Err(PayloadError::NoEvents);
            }
            let events = items
                .into_iter()
                .enumerate()
                .map(|(index, v)| match v {
                    Value::Object(obj) => Ok(obj),
                    _ => Err(PayloadError::NotAnObject { index }),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let api_key = api_key.or_else(|| events.iter().find_map(event_key));
            if let Some(key) = &api_key
                && let Some(index) = events
                    .iter()
                    .position(|e| event_key(e).is_some_and(|k| &k != key))
            {
                return Err(PayloadError::MixedKeys { index });
            }
            Ok((api_key, events.len()))
        }

        fn arb_payload() -> impl Strategy<Value = Value> {
            let key = prop_oneof![
                Just(Value::Null),
                Just(json!("")),
                Just(json!("k1")),
                Just(json!("k2")),
                Just(json!(5)),
            ];
            let field = prop_oneof![
                Just("api_key"),
                Just("token"),
                Just("$token"),
                Just("event")
            ];
            let event = (
                proptest::collection::vec((field.clone(), key.clone()), 0..3),
                proptest::option::of(proptest::collection::vec((field, key.clone()), 0..3)),
            )
                .prop_map(|(own, props)| {
                    let mut m: Map<String, Value> =
                        own.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                    if let Some(p) = props {
                        m.insert(
                            "properties".into(),
                            Value::Object(p.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()),
                        );
                    }
                    Value::Object(m)
                });
            let item = prop_oneof![4 => event.clone(), 1 => arb_json()];
            prop_oneof![
                event.clone(),
                proptest::collection::vec(item.clone(), 0..4).prop_map(Value::Array),
                (proptest::collection::vec(item, 0..4), key)
                    .prop_map(|(batch, k)| json!({"batch": batch, "token": k})),
                arb_json(),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]
            #[test]
            fn arbitrary_json_never_panics(v in arb_json()) {
                if let Ok(p) = split(v) {
                    let _ = normalize(p, &ctx());
                }
            }

            /// The outline finds the same events, key and errors as a
            /// whole tree does.
            #[test]
            fn the_outline_agrees_with_the_tree(v in arb_payload()) {
                let outlined = split(v.clone()).map(|p| (p.api_key, p.events.len()));
                prop_assert_eq!(outlined, tree_split(v));
            }

            /// Derived uuids stay what they were before the digest stopped
            /// copying the properties: the text hashed is the same.
            #[test]
            fn the_digest_hashes_the_text_a_tree_displays(v in arb_json()) {
                let properties = match v {
                    Value::Object(m) => m,
                    other => Map::from_iter([("p".to_owned(), other)]),
                };
                prop_assert_eq!(
                    serde_json::to_string(&properties).unwrap(),
                    Value::Object(properties.clone()).to_string()
                );
            }
        }
    }
}
