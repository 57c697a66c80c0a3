//! Dead-letter records: what goes to `CONSUMER_DLQ_TOPIC`.
//!
//! Value: JSON `{raw, raw_encoding, error_kind, error_message, dlq_ts, topic,
//! partition, offset}`. `raw` is the original message value as text when it is
//! UTF-8 (`raw_encoding: "utf8"`), otherwise base64 (`"base64"`), so nothing
//! is lost. The key is the original key (the distinct_id).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::batch::Poison;

/// The fields every record carries besides `raw`.
fn envelope(p: &Poison, topic: &str, now: DateTime<Utc>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("error_kind".into(), json!(p.kind));
    m.insert("error_message".into(), json!(p.message));
    m.insert(
        "dlq_ts".into(),
        json!(tributary_core::event::format_timestamp(&now)),
    );
    m.insert("topic".into(), json!(topic));
    m.insert("partition".into(), json!(p.partition));
    m.insert("offset".into(), json!(p.offset));
    m
}

/// Builds a DLQ record for a message read from `topic`.
pub fn record(p: &Poison, topic: &str, now: DateTime<Utc>) -> Value {
    let (raw, encoding) = match std::str::from_utf8(&p.raw) {
        Ok(text) => (text.to_owned(), "utf8"),
        Err(_) => (STANDARD.encode(&p.raw), "base64"),
    };
    let mut m = envelope(p, topic, now);
    m.insert("raw".into(), json!(raw));
    m.insert("raw_encoding".into(), json!(encoding));
    Value::Object(m)
}

/// Bytes of `raw` kept by a truncated record.
pub const TRUNCATED_PREFIX_BYTES: usize = 64 * 1024;

/// A record for a message too large for the DLQ topic: the first
/// [`TRUNCATED_PREFIX_BYTES`] as base64, with the full size and a SHA-1
/// digest so the original can still be identified (it stays in the source
/// topic until retention removes it).
pub fn truncated_record(p: &Poison, topic: &str, now: DateTime<Utc>) -> Value {
    let prefix = &p.raw[..p.raw.len().min(TRUNCATED_PREFIX_BYTES)];
    let mut m = envelope(p, topic, now);
    m.insert("raw".into(), json!(STANDARD.encode(prefix)));
    m.insert("raw_encoding".into(), json!("base64"));
    m.insert("raw_truncated".into(), json!(true));
    m.insert("raw_size".into(), json!(p.raw.len()));
    m.insert(
        "raw_digest".into(),
        json!(uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, &p.raw).to_string()),
    );
    Value::Object(m)
}

/// A dead-letter record read back: the inverse of [`record`] and
/// [`truncated_record`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The original message value (only its first bytes when `truncated`).
    pub raw: Vec<u8>,
    pub truncated: bool,
    pub error_kind: String,
    pub error_message: String,
    pub dlq_ts: DateTime<Utc>,
    /// Where the original message was read.
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Why a DLQ message is not a record this consumer wrote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a dead-letter record: {0}")]
pub struct NotARecord(String);

/// Reads a DLQ message value back into a [`DeadLetter`].
pub fn parse(value: &[u8]) -> Result<DeadLetter, NotARecord> {
    let v: Value = serde_json::from_slice(value).map_err(|e| NotARecord(e.to_string()))?;
    let text = |field: &str| {
        v[field]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| NotARecord(format!("{field} is missing or not a string")))
    };
    let number = |field: &str| {
        v[field]
            .as_i64()
            .ok_or_else(|| NotARecord(format!("{field} is missing or not a number")))
    };
    let raw = text("raw")?;
    let raw = match v["raw_encoding"].as_str() {
        Some("utf8") => raw.into_bytes(),
        Some("base64") => STANDARD
            .decode(raw.as_bytes())
            .map_err(|e| NotARecord(format!("raw is not base64: {e}")))?,
        other => return Err(NotARecord(format!("unknown raw_encoding {other:?}"))),
    };
    let dlq_ts = text("dlq_ts")?;
    let dlq_ts = DateTime::parse_from_rfc3339(&dlq_ts)
        .map_err(|e| NotARecord(format!("dlq_ts {dlq_ts:?}: {e}")))?
        .with_timezone(&Utc);
    Ok(DeadLetter {
        raw,
        truncated: v["raw_truncated"].as_bool().unwrap_or(false),
        error_kind: text("error_kind")?,
        error_message: text("error_message")?,
        dlq_ts,
        topic: text("topic")?,
        partition: i32::try_from(number("partition")?)
            .map_err(|e| NotARecord(format!("partition: {e}")))?,
        offset: number("offset")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn poison(
        raw: &[u8],
        kind: &'static str,
        message: &str,
        partition: i32,
        offset: i64,
    ) -> Poison {
        Poison {
            partition,
            offset,
            key: None,
            raw: raw.to_vec(),
            kind,
            message: message.to_owned(),
        }
    }

    #[test]
    fn carries_every_field() {
        let now = Utc
            .timestamp_millis_opt(1_700_000_000_000)
            .single()
            .unwrap();
        let r = record(
            &poison(b"{bad", "invalid_event", "EOF", 3, 42),
            "events",
            now,
        );
        assert_eq!(
            r,
            json!({"raw": "{bad", "raw_encoding": "utf8", "error_kind": "invalid_event", "error_message": "EOF",
                   "dlq_ts": "2023-11-14T22:13:20.000Z", "topic": "events", "partition": 3, "offset": 42})
        );
    }

    #[test]
    fn truncated_records_stay_small_and_say_so() {
        let raw = vec![b'x'; 3_000_000];
        let r = truncated_record(
            &poison(&raw, "clickhouse_rejected", "too big", 1, 2),
            "events",
            Utc::now(),
        );
        assert!(r.to_string().len() < 100_000);
        assert_eq!(r["raw_size"], 3_000_000);
        assert_eq!(r["raw_truncated"], true);
    }

    #[test]
    fn records_read_back_as_written() {
        let now = Utc
            .timestamp_millis_opt(1_700_000_000_123)
            .single()
            .unwrap();
        for raw in [&b"{bad"[..], &[0xff, 0x00, 0x01][..]] {
            let back = parse(
                record(&poison(raw, "invalid_event", "EOF", 3, 42), "events", now)
                    .to_string()
                    .as_bytes(),
            )
            .unwrap();
            assert_eq!(back.raw, raw);
            assert!(!back.truncated);
            assert_eq!(back.error_kind, "invalid_event");
            assert_eq!(back.error_message, "EOF");
            assert_eq!(back.dlq_ts, now);
            assert_eq!(
                (back.topic.as_str(), back.partition, back.offset),
                ("events", 3, 42)
            );
        }
        let big = vec![b'x'; 100_000];
        let r = truncated_record(
            &poison(&big, "clickhouse_rejected", "big", 1, 2),
            "events",
            now,
        );
        let back = parse(r.to_string().as_bytes()).unwrap();
        assert!(back.truncated);
        assert_eq!(back.raw.len(), TRUNCATED_PREFIX_BYTES);
    }

    #[test]
    fn what_is_not_a_record_says_why() {
        assert!(parse(b"not json").is_err());
        let e = parse(br#"{"raw":"x","raw_encoding":"utf8"}"#).unwrap_err();
        assert!(e.to_string().contains("is missing"), "{e}");
        let e = parse(br#"{"raw":"x","raw_encoding":"rot13"}"#).unwrap_err();
        assert!(e.to_string().contains("rot13"), "{e}");
    }

    #[test]
    fn binary_payloads_are_kept_as_base64() {
        let r = record(
            &poison(&[0xff, 0x00, 0x01], "not_utf8", "x", 0, 0),
            "events",
            Utc::now(),
        );
        assert_eq!(r["raw_encoding"], "base64");
        assert_eq!(r["raw"], "/wAB");
    }
}
