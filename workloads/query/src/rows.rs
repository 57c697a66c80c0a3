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

/// One breakdown value of a funnel matched inside ClickHouse
/// ([`crate::funnel_in_clickhouse`]): users per step, and per step `k >= 1`
/// (at index `k - 1`) the milliseconds each user reaching it took from
/// step `k - 1`; and how many users whose paths were too long to match
/// there it left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunnelGroupRow {
    pub label: String,
    pub users: Vec<u64>,
    pub durations: Vec<Vec<u64>>,
    pub long_users: u64,
}

impl FunnelGroupRow {
    /// Reads a `JSONCompact` row `[label, users, durations, long_users]`;
    /// `None` when it is not one.
    pub fn from_json(row: &[Value]) -> Option<Self> {
        let [label, users, durations, long_users] = row else {
            return None;
        };
        let integer = |n: &Value| match n {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        };
        let integers =
            |v: &Value| -> Option<Vec<u64>> { v.as_array()?.iter().map(integer).collect() };
        Some(Self {
            long_users: integer(long_users)?,
            label: label.as_str()?.to_owned(),
            users: integers(users)?,
            durations: durations
                .as_array()?
                .iter()
                .map(integers)
                .collect::<Option<_>>()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn funnel_groups_are_read_with_quoted_or_plain_integers() {
        let row = FunnelGroupRow::from_json(&[
            json!("Chrome"),
            json!(["3", 2, "0"]),
            json!([["10", 20], []]),
            json!("2"),
        ]);
        assert_eq!(
            row,
            Some(FunnelGroupRow {
                label: "Chrome".into(),
                users: vec![3, 2, 0],
                durations: vec![vec![10, 20], vec![]],
                long_users: 2,
            })
        );
        for bad in [
            vec![json!("x"), json!([1])],
            vec![json!(1), json!([1]), json!([]), json!(0)],
            vec![json!("x"), json!(["-1"]), json!([]), json!(0)],
            vec![json!("x"), json!([1]), json!([["a"]]), json!(0)],
            vec![json!("x"), json!([1]), json!([]), json!("many")],
        ] {
            assert_eq!(FunnelGroupRow::from_json(&bad), None, "{bad:?}");
        }
    }
}
