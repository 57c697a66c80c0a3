//! Dead-letter records: what goes to `CONSUMER_DLQ_TOPIC`.
//!
//! Value: JSON `{raw, raw_encoding, error_kind, error_message, dlq_ts, topic,
//! partition, offset}`. `raw` is the original message value as text when it is
//! UTF-8 (`raw_encoding: "utf8"`), otherwise base64 (`"base64"`), so nothing
//! is lost. The key is the original key (the distinct_id).

use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// Builds a DLQ record.
pub fn record(
    raw: &[u8],
    kind: &str,
    message: &str,
    topic: &str,
    partition: i32,
    offset: i64,
    now: DateTime<Utc>,
) -> Value {
    let (raw, encoding) = match std::str::from_utf8(raw) {
        Ok(text) => (text.to_owned(), "utf8"),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(raw),
            "base64",
        ),
    };
    json!({
        "raw": raw,
        "raw_encoding": encoding,
        "error_kind": kind,
        "error_message": message,
        "dlq_ts": tributary_core::event::format_timestamp(&now),
        "topic": topic,
        "partition": partition,
        "offset": offset,
    })
}

/// Bytes of `raw` kept by a truncated record.
pub const TRUNCATED_PREFIX_BYTES: usize = 64 * 1024;

/// A record for a message too large for the DLQ topic: the first
/// [`TRUNCATED_PREFIX_BYTES`] as base64, with the full size and a SHA-1
/// digest so the original can still be identified (it stays in the source
/// topic until retention removes it).
pub fn truncated_record(
    raw: &[u8],
    kind: &str,
    message: &str,
    topic: &str,
    partition: i32,
    offset: i64,
    now: DateTime<Utc>,
) -> Value {
    let prefix = &raw[..raw.len().min(TRUNCATED_PREFIX_BYTES)];
    let digest = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, raw);
    json!({
        "raw": base64::engine::general_purpose::STANDARD.encode(prefix),
        "raw_encoding": "base64",
        "raw_truncated": true,
        "raw_size": raw.len(),
        "raw_digest": digest.to_string(),
        "error_kind": kind,
        "error_message": message,
        "dlq_ts": tributary_core::event::format_timestamp(&now),
        "topic": topic,
        "partition": partition,
        "offset": offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn carries_every_field() {
        let now = Utc
            .timestamp_millis_opt(1_700_000_000_000)
            .single()
            .unwrap();
        let r = record(b"{bad", "invalid_event", "EOF", "events", 3, 42, now);
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
            &raw,
            "clickhouse_rejected",
            "too big",
            "events",
            1,
            2,
            Utc::now(),
        );
        assert!(r.to_string().len() < 100_000);
        assert_eq!(r["raw_size"], 3_000_000);
        assert_eq!(r["raw_truncated"], true);
    }

    #[test]
    fn binary_payloads_are_kept_as_base64() {
        let r = record(
            &[0xff, 0x00, 0x01],
            "not_utf8",
            "x",
            "events",
            0,
            0,
            Utc::now(),
        );
        assert_eq!(r["raw_encoding"], "base64");
        assert_eq!(r["raw"], "/wAB");
    }
}
