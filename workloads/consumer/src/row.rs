//! Event → ClickHouse row (pure).

use serde::Serialize;
use tributary_core::Event;
use uuid::Uuid;

/// One row of `events`, in the column order RowBinary expects.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize)]
pub struct EventRow {
    #[serde(with = "clickhouse::serde::uuid")]
    pub uuid: Uuid,
    pub project_id: u64,
    pub event: String,
    pub distinct_id: String,
    pub properties: String,
    /// DateTime: seconds since the epoch.
    pub timestamp: u32,
    pub timestamp_ms: u64,
    pub received_at: u32,
    pub ip: String,
    pub lib: String,
    pub lib_version: String,
}

/// An event that cannot be stored as a row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    #[error("{field} {value} is outside ClickHouse DateTime's range (1970-01-01 to 2106-02-07)")]
    TimeOutOfRange { field: &'static str, value: String },
}

fn seconds(field: &'static str, ts: &chrono::DateTime<chrono::Utc>) -> Result<u32, RowError> {
    u32::try_from(ts.timestamp()).map_err(|_| RowError::TimeOutOfRange {
        field,
        value: ts.to_rfc3339(),
    })
}

impl EventRow {
    /// Builds the row, moving the event's strings into it.
    pub fn from_event(e: Event) -> Result<Self, RowError> {
        Ok(Self {
            uuid: e.uuid,
            project_id: e.project_id,
            // Serialising a map of JSON values cannot fail.
            properties: serde_json::to_string(&e.properties).unwrap_or_else(|_| "{}".to_owned()),
            timestamp: seconds("timestamp", &e.timestamp)?,
            timestamp_ms: e.timestamp.timestamp_millis() as u64,
            received_at: seconds("received_at", &e.received_at)?,
            event: e.event,
            distinct_id: e.distinct_id,
            ip: e.ip.unwrap_or_default(),
            lib: e.lib.name.unwrap_or_default(),
            lib_version: e.lib.version.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    #[test]
    fn converts_an_event() {
        let t = Utc
            .timestamp_millis_opt(1_700_000_000_123)
            .single()
            .unwrap();
        let mut e = Event::new(3, "$pageview", "u", t);
        e.properties.insert("$browser".into(), "Firefox".into());
        let uuid = e.uuid;
        let row = EventRow::from_event(e).unwrap();
        assert_eq!(row.timestamp, 1_700_000_000);
        assert_eq!(row.timestamp_ms, 1_700_000_000_123);
        assert_eq!(row.properties, r#"{"$browser":"Firefox"}"#);
        assert_eq!(row.uuid, uuid);
    }

    #[test]
    fn refuses_times_before_1970() {
        let t = Utc
            .with_ymd_and_hms(1969, 12, 31, 0, 0, 0)
            .single()
            .unwrap();
        let e = Event::new(3, "a", "u", t);
        assert!(matches!(
            EventRow::from_event(e),
            Err(RowError::TimeOutOfRange {
                field: "timestamp",
                ..
            })
        ));
    }
}
