//! Millisecond-precision UTC timestamps and their wire format.
//!
//! Every timestamp Tributary carries is truncated to whole milliseconds (the
//! precision ClickHouse stores and funnels order by) and written as RFC 3339
//! with exactly three fractional digits, e.g. `2026-11-23T10:15:00.042Z`.

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde::{Deserialize, Deserializer, Serializer};

/// Truncates a timestamp to whole milliseconds.
pub fn truncate_ms(ts: DateTime<Utc>) -> DateTime<Utc> {
    ts.trunc_subsecs(3)
}

/// Formats a timestamp as RFC 3339 with millisecond precision and a `Z` suffix.
pub fn format_ms(ts: &DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_ms<E: serde::de::Error>(s: &str) -> Result<DateTime<Utc>, E> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| truncate_ms(t.with_timezone(&Utc)))
        .map_err(|e| E::custom(format!("invalid RFC 3339 timestamp {s:?}: {e}")))
}

pub mod ms {
    //! serde adapter for a required millisecond timestamp.
    use super::*;

    pub fn serialize<S: Serializer>(ts: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_ms(ts))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let raw = String::deserialize(d)?;
        parse_ms(&raw)
    }
}

pub mod ms_opt {
    //! serde adapter for an optional millisecond timestamp.
    use super::*;

    pub fn serialize<S: Serializer>(ts: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match ts {
            Some(ts) => s.serialize_str(&format_ms(ts)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(raw) => parse_ms(&raw).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn truncates_below_a_millisecond() {
        let ts = Utc.timestamp_nanos(1_700_000_000_123_456_789);
        assert_eq!(format_ms(&truncate_ms(ts)), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn formats_whole_seconds_with_three_digits() {
        let ts = Utc
            .timestamp_millis_opt(1_700_000_000_000)
            .single()
            .unwrap();
        assert_eq!(format_ms(&ts), "2023-11-14T22:13:20.000Z");
    }

    #[test]
    fn parses_offsets_into_utc() {
        let parsed: DateTime<Utc> =
            parse_ms::<serde_json::Error>("2023-11-15T00:13:20.5+02:00").unwrap();
        assert_eq!(format_ms(&parsed), "2023-11-14T22:13:20.500Z");
    }

    #[test]
    fn rejects_garbage_naming_the_input() {
        let err = parse_ms::<serde_json::Error>("yesterday").unwrap_err();
        assert!(err.to_string().contains("\"yesterday\""), "{err}");
    }
}
