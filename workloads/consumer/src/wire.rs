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

/// Days since 1970-01-01 of a date of the proleptic Gregorian calendar
/// (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => 31,
    }
}

/// Milliseconds since the epoch of `YYYY-MM-DDTHH:MM:SS.mmmZ`, the one
/// shape capture writes; `None` for any other text or an impossible date
/// or time (chrono then decides, and names what is wrong). Parsing with
/// chrono took a tenth of the decoding's instructions.
fn capture_time_ms(raw: &str) -> Option<i64> {
    let b: &[u8; 24] = raw.as_bytes().try_into().ok()?;
    if b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'.'
        || b[23] != b'Z'
    {
        return None;
    }
    let d = |i: usize| {
        let v = b[i].wrapping_sub(b'0');
        (v < 10).then_some(i64::from(v))
    };
    let year = d(0)? * 1000 + d(1)? * 100 + d(2)? * 10 + d(3)?;
    let (month, day) = (d(5)? * 10 + d(6)?, d(8)? * 10 + d(9)?);
    let (hour, minute, second) = (
        d(11)? * 10 + d(12)?,
        d(14)? * 10 + d(15)?,
        d(17)? * 10 + d(18)?,
    );
    let ms = d(20)? * 100 + d(21)? * 10 + d(22)?;
    if !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some((((days * 24 + hour) * 60 + minute) * 60 + second) * 1000 + ms)
}

fn time(field: &'static str, raw: &str) -> Result<(u32, i64), (&'static str, String)> {
    if let Some(ms) = capture_time_ms(raw)
        && let Ok(secs) = u32::try_from(ms.div_euclid(1000))
    {
        return Ok((secs, ms));
    }
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

    /// The fast path reads every instant as chrono does, and leaves to
    /// chrono everything but capture's own shape.
    #[test]
    fn capture_times_read_as_chrono_reads_them() {
        let mut checked = 0;
        // Every day from 1899 to 2107 (leap years, 1900, 2000, 2100), at a
        // time that moves through the day.
        let start = Utc.with_ymd_and_hms(1899, 1, 1, 0, 0, 0).unwrap();
        for d in 0..76_000i64 {
            let t = start
                + chrono::Duration::days(d)
                + chrono::Duration::milliseconds((d * 7_919_993) % 86_400_000);
            let text = t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
            assert_eq!(capture_time_ms(&text), Some(t.timestamp_millis()), "{text}");
            checked += 1;
        }
        assert_eq!(checked, 76_000);
        for other in [
            "2025-02-29T00:00:00.000Z",
            "2100-02-29T00:00:00.000Z",
            "2025-04-31T00:00:00.000Z",
            "2025-13-01T00:00:00.000Z",
            "2025-00-01T00:00:00.000Z",
            "2025-01-00T00:00:00.000Z",
            "2025-01-01T24:00:00.000Z",
            "2025-01-01T23:60:00.000Z",
            "2016-12-31T23:59:60.000Z",
            "2025-01-01T00:00:00.000+00:00",
            "2025-01-01T00:00:00Z",
            "2025-01-01 00:00:00.000Z",
            "2025-01-01T00:00:00.00xZ",
            "+025-01-01T00:00:00.000Z",
        ] {
            assert_eq!(capture_time_ms(other), None, "{other}");
        }
        // What it leaves aside still decodes as before (or is refused).
        assert_eq!(
            time("timestamp", "2025-01-01T01:00:00+01:00").unwrap(),
            (1_735_689_600, 1_735_689_600_000)
        );
        assert_eq!(
            time("timestamp", "2025-02-29T00:00:00.000Z").unwrap_err().0,
            "invalid_event"
        );
        assert_eq!(
            time("timestamp", "1969-12-31T23:59:59.999Z").unwrap_err().0,
            "invalid_timestamp"
        );
        assert_eq!(
            time("timestamp", "2106-02-07T06:28:16.000Z").unwrap_err().0,
            "invalid_timestamp",
            "one second past DateTime's range"
        );
        assert_eq!(
            time("timestamp", "2106-02-07T06:28:15.999Z").unwrap(),
            (u32::MAX, 4_294_967_295_999)
        );
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
