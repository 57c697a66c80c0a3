//! Decoding the wire event straight into a row, without building the
//! properties map: the properties' JSON text is kept as sent (capture writes
//! compact JSON, which is what `visitParamExtract*` reads). Validation is the
//! same as `tributary_core::Event::from_kafka_payload`; a test holds the two
//! to each other.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use tributary_core::event::WIRE_VERSION;
use uuid::Uuid;

use crate::row::EventRow;

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(default = "current")]
    v: u8,
    uuid: Uuid,
    project_id: u64,
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow)]
    distinct_id: Cow<'a, str>,
    #[serde(borrow, default)]
    properties: Option<&'a RawValue>,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
    #[serde(borrow)]
    received_at: Cow<'a, str>,
    #[serde(borrow, default)]
    ip: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    lib: Option<WireLib<'a>>,
}

#[derive(Deserialize)]
struct WireLib<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    version: Option<Cow<'a, str>>,
}

fn current() -> u8 {
    WIRE_VERSION
}

fn time(field: &'static str, raw: &str) -> Result<(u32, i64), (&'static str, String)> {
    let t = DateTime::parse_from_rfc3339(raw)
        .map_err(|e| {
            (
                "invalid_event",
                format!("message is not a valid event: {field} {raw:?}: {e}"),
            )
        })?
        .with_timezone(&Utc);
    let secs = u32::try_from(t.timestamp()).map_err(|_| {
        (
            "invalid_timestamp",
            format!(
                "{field} {raw} is outside ClickHouse DateTime's range (1970-01-01 to 2106-02-07)"
            ),
        )
    })?;
    Ok((secs, t.timestamp_millis()))
}

/// Message value → row and `received_at` in ms, or the DLQ kind and message.
pub fn decode(payload: &[u8]) -> Result<(EventRow, i64), (&'static str, String)> {
    let text = std::str::from_utf8(payload).map_err(|e| {
        (
            "not_utf8",
            format!("message is not valid UTF-8 at byte {}", e.valid_up_to()),
        )
    })?;
    let w: Wire<'_> = serde_json::from_str(text).map_err(|e| {
        (
            "invalid_event",
            format!("message is not a valid event: {e}"),
        )
    })?;
    if w.v > WIRE_VERSION {
        return Err((
            "unsupported_version",
            format!(
                "unsupported event wire version {} (this build reads up to {WIRE_VERSION})",
                w.v
            ),
        ));
    }
    if w.event.is_empty() {
        return Err(("invalid_event", "event field event is empty".into()));
    }
    if w.distinct_id.is_empty() {
        return Err(("invalid_event", "event field distinct_id is empty".into()));
    }
    let properties = match w.properties {
        None => "{}".to_owned(),
        Some(raw) if raw.get().starts_with('{') => raw.get().to_owned(),
        Some(raw) if raw.get() == "null" => "{}".to_owned(),
        Some(_) => {
            return Err((
                "invalid_event",
                "message is not a valid event: properties is not a map".into(),
            ));
        }
    };
    let (timestamp, timestamp_ms) = time("timestamp", &w.timestamp)?;
    let (received_at, received_ms) = time("received_at", &w.received_at)?;
    let lib = w.lib.unwrap_or(WireLib {
        name: None,
        version: None,
    });
    Ok((
        EventRow {
            uuid: w.uuid,
            project_id: w.project_id,
            event: w.event.into_owned(),
            distinct_id: w.distinct_id.into_owned(),
            properties,
            timestamp,
            timestamp_ms: timestamp_ms.max(0) as u64,
            received_at,
            ip: w.ip.map(Cow::into_owned).unwrap_or_default(),
            lib: lib.name.map(Cow::into_owned).unwrap_or_default(),
            lib_version: lib.version.map(Cow::into_owned).unwrap_or_default(),
        },
        received_ms,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::{Value, json};
    use tributary_core::Event;
    use tributary_core::event::Lib;

    fn sample() -> Event {
        let t = Utc
            .timestamp_millis_opt(1_700_000_000_123)
            .single()
            .unwrap();
        let mut e = Event::new(5, "$pageview", "user \"1\"", t);
        e.properties =
            json!({"$current_url": "https://x.test/?a=1", "n": [1, {"b": null}], "é": "ü"})
                .as_object()
                .cloned()
                .unwrap();
        e.ip = Some("203.0.113.1".into());
        e.lib = Lib {
            name: Some("web".into()),
            version: Some("1.2".into()),
        };
        e
    }

    /// The fast path gives the row the slow path (core decode + conversion) gives.
    #[test]
    fn agrees_with_the_core_decoder() {
        let e = sample();
        let payload = e.to_kafka_payload().unwrap();
        let (fast, received_ms) = decode(&payload).unwrap();
        let slow = EventRow::from_event(Event::from_kafka_payload(&payload).unwrap()).unwrap();
        assert_eq!(fast, slow);
        assert_eq!(received_ms, e.received_at.timestamp_millis());
    }

    #[test]
    fn refuses_what_the_core_decoder_refuses() {
        let good: Value = serde_json::from_slice(&sample().to_kafka_payload().unwrap()).unwrap();
        let mut cases: Vec<(Vec<u8>, &str)> =
            vec![(vec![0xff], "not_utf8"), (b"{".to_vec(), "invalid_event")];
        for (field, value, kind) in [
            ("v", json!(9), "unsupported_version"),
            ("event", json!(""), "invalid_event"),
            ("distinct_id", json!(""), "invalid_event"),
            ("properties", json!([1]), "invalid_event"),
            (
                "timestamp",
                json!("1960-01-01T00:00:00Z"),
                "invalid_timestamp",
            ),
            ("timestamp", json!("later"), "invalid_event"),
            ("uuid", json!("nope"), "invalid_event"),
        ] {
            let mut v = good.clone();
            v[field] = value;
            cases.push((v.to_string().into_bytes(), kind));
        }
        let mut v = good.clone();
        v.as_object_mut().unwrap().remove("distinct_id");
        cases.push((v.to_string().into_bytes(), "invalid_event"));
        for (payload, kind) in cases {
            let (got, message) = decode(&payload).unwrap_err();
            assert_eq!(
                got,
                kind,
                "{}: {message}",
                String::from_utf8_lossy(&payload)
            );
        }
    }

    #[test]
    fn missing_or_null_properties_are_an_empty_object() {
        let mut v: Value = serde_json::from_slice(&sample().to_kafka_payload().unwrap()).unwrap();
        v.as_object_mut().unwrap().remove("properties");
        assert_eq!(decode(v.to_string().as_bytes()).unwrap().0.properties, "{}");
        v["properties"] = Value::Null;
        assert_eq!(decode(v.to_string().as_bytes()).unwrap().0.properties, "{}");
    }
}
