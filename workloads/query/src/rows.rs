//! What ClickHouse's answers are read into, apart from the I/O that reads
//! them (`crate::warehouse`), so the plans that build and read them do not
//! depend on the client. Pure.

use serde_json::Value;

/// One user's events for funnel matching: times, step masks, exclusion
/// masks and the breakdown label of each event. Times are milliseconds:
/// since the epoch, or since the range's start for ranges shorter than 49
/// days (sent as `u32`, half the bytes to group and send). See
/// [`crate::rowbinary`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRow {
    pub distinct_id: String,
    pub times: Vec<u64>,
    pub steps: Vec<u16>,
    pub exclusions: Vec<u16>,
    pub labels: Vec<String>,
}

/// A JSON number, or a number in a string (ClickHouse quotes 64-bit integers).
pub fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}
