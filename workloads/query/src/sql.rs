//! SQL pieces shared by every query: literals, property access, filters and
//! bucket keys. User text only ever enters SQL through [`string`] (a quoted,
//! escaped literal) or as a validated number; identifiers are our own.
//!
//! Every shape runs on ClickHouse 18.16 and on current ClickHouse, so JSON
//! properties are read with `visitParamExtract*` (18.16 has no JSONExtract):
//! the first `"key":` in the JSON text, at any depth. Properties are written
//! by capture as compact JSON, which the key's escaping follows.

use chrono_tz::Tz;
use serde_json::Value;

use crate::range::TimeRange;
use crate::request::{Interval, Operator, PropertyFilter, RequestError};

/// Longest property key or value accepted.
pub const MAX_TEXT: usize = 1024;
/// Most values in one `exact`/`is_not` list.
pub const MAX_LIST: usize = 100;

/// A ClickHouse string literal holding `text`.
pub fn string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The key as it appears between quotes in compact JSON.
fn json_key(key: &str) -> String {
    let quoted = serde_json::to_string(key).unwrap_or_default();
    quoted[1..quoted.len().saturating_sub(1)].to_owned()
}

/// A property of the `properties` JSON column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    /// Materialized column holding the string value, when one exists.
    column: Option<&'static str>,
    /// The escaped key literal for `visitParam*`.
    key: String,
}

impl Property {
    pub fn new(key: &str, field: &str) -> Result<Self, RequestError> {
        if key.is_empty() || key.len() > MAX_TEXT {
            return Err(RequestError::new(
                field,
                format!("property names have 1 to {MAX_TEXT} bytes"),
            ));
        }
        let column = tributary_core::schema::EXTRACTED_PROPERTIES
            .iter()
            .find(|(_, k)| *k == key)
            .map(|(c, _)| *c);
        Ok(Self {
            column,
            key: string(&json_key(key)),
        })
    }

    /// Whether the event has the property (any value).
    pub fn has(&self) -> String {
        format!("visitParamHas(properties, {})", self.key)
    }

    /// The string value ('' when absent or not a string).
    pub fn text(&self) -> String {
        match self.column {
            Some(c) => c.to_owned(),
            None => format!("visitParamExtractString(properties, {})", self.key),
        }
    }

    /// The numeric value (0 when absent).
    pub fn number(&self) -> String {
        format!("visitParamExtractFloat(properties, {})", self.key)
    }

    /// The JSON text of the value (`"a"`, `3`, `true`; '' when absent).
    pub fn raw(&self) -> String {
        format!("visitParamExtractRaw(properties, {})", self.key)
    }

    /// A label for breakdowns: the string itself for strings, the JSON text
    /// of other values, '' when absent. A materialized property is read from
    /// its column, which holds string values only: a number or boolean there
    /// reads as '' (no value), the price of not parsing JSON on every row.
    pub fn label(&self) -> String {
        if let Some(c) = self.column {
            return c.to_owned();
        }
        let raw = self.raw();
        let key = &self.key;
        format!("if(startsWith({raw}, '\"'), visitParamExtractString(properties, {key}), {raw})")
    }
}

/// A finite number as a SQL literal.
fn number(value: f64, field: &str) -> Result<String, RequestError> {
    if !value.is_finite() {
        return Err(RequestError::new(field, "numbers must be finite"));
    }
    Ok(format!("{value:?}"))
}

/// One scalar of an `exact` comparison, as a condition on the property.
fn equals(p: &Property, value: &Value, field: &str) -> Result<String, RequestError> {
    match value {
        Value::String(s) => {
            check_len(s, field)?;
            Ok(format!("{} = {}", p.text(), string(s)))
        }
        Value::Number(n) => {
            let n = n
                .as_f64()
                .ok_or_else(|| RequestError::new(field, "not a number"))?;
            Ok(format!(
                "({} AND {} = {})",
                p.has(),
                p.number(),
                number(n, field)?
            ))
        }
        Value::Bool(b) => Ok(format!("{} = '{b}'", p.raw())),
        _ => Err(RequestError::new(
            field,
            "must be a string, a number, a boolean or a list of them",
        )),
    }
}

fn check_len(s: &str, field: &str) -> Result<(), RequestError> {
    if s.len() > MAX_TEXT {
        return Err(RequestError::new(
            field,
            format!("values have at most {MAX_TEXT} bytes"),
        ));
    }
    Ok(())
}

/// The condition of one property filter. `field` names it in errors
/// (`filters[0]`).
pub fn filter(f: &PropertyFilter, field: &str) -> Result<String, RequestError> {
    let p = Property::new(&f.key, &format!("{field}.key"))?;
    let value_field = format!("{field}.value");
    let need_value = || {
        f.value
            .as_ref()
            .filter(|v| !v.is_null())
            .ok_or_else(|| RequestError::new(&value_field, "required by this operator"))
    };
    let need_number = || -> Result<String, RequestError> {
        match need_value()? {
            Value::Number(n) => number(n.as_f64().unwrap_or(f64::NAN), &value_field),
            _ => Err(RequestError::new(
                &value_field,
                "must be a number for this operator",
            )),
        }
    };
    let need_string = || -> Result<&str, RequestError> {
        match need_value()? {
            Value::String(s) => {
                check_len(s, &value_field)?;
                Ok(s.as_str())
            }
            _ => Err(RequestError::new(
                &value_field,
                "must be a string for this operator",
            )),
        }
    };
    let exact = || -> Result<String, RequestError> {
        match need_value()? {
            Value::Array(items) => {
                if items.is_empty() || items.len() > MAX_LIST {
                    return Err(RequestError::new(
                        &value_field,
                        format!("lists hold 1 to {MAX_LIST} values"),
                    ));
                }
                let parts = items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| equals(&p, v, &format!("{value_field}[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(format!("({})", parts.join(" OR ")))
            }
            v => equals(&p, v, &value_field),
        }
    };
    let no_value = || -> Result<(), RequestError> {
        match &f.value {
            None | Some(Value::Null) => Ok(()),
            Some(_) => Err(RequestError::new(
                &value_field,
                "is_set and is_not_set take no value",
            )),
        }
    };
    let compare = |op: &str| -> Result<String, RequestError> {
        Ok(format!(
            "({} AND {} {op} {})",
            p.has(),
            p.number(),
            need_number()?
        ))
    };
    Ok(match f.operator {
        Operator::Exact => exact()?,
        Operator::IsNot => format!("NOT {}", exact()?),
        Operator::Contains => format!(
            "positionCaseInsensitiveUTF8({}, {}) > 0",
            p.text(),
            string(need_string()?)
        ),
        Operator::NotContains => format!(
            "positionCaseInsensitiveUTF8({}, {}) = 0",
            p.text(),
            string(need_string()?)
        ),
        Operator::Gt => compare(">")?,
        Operator::Gte => compare(">=")?,
        Operator::Lt => compare("<")?,
        Operator::Lte => compare("<=")?,
        Operator::IsSet => {
            no_value()?;
            p.has()
        }
        Operator::IsNotSet => {
            no_value()?;
            format!("NOT {}", p.has())
        }
    })
}

/// Most bytes of SQL one statement may have (a funnel's list of users
/// apart, at most 64 KiB more): under ClickHouse's default
/// `max_query_size` (256 KiB) with room to spare. Each limit of a request
/// (steps, series, filters, values, their lengths) is far below it alone;
/// their product is not. Measured (tests/api.rs): a funnel whose statement
/// is 235 KB runs on ClickHouse, one of 299 KB is refused by it.
pub const MAX_SQL_BYTES: usize = 160 * 1024;

/// A request whose statement would be `bytes` of SQL, refused past
/// [`MAX_SQL_BYTES`] with what to do, before ClickHouse is asked.
pub fn check_size(bytes: usize) -> Result<(), RequestError> {
    if bytes > MAX_SQL_BYTES {
        return Err(RequestError::new(
            "body",
            format!(
                "the query would be {bytes} bytes of SQL; the limit is {MAX_SQL_BYTES}: use fewer steps, series, filters or values"
            ),
        ));
    }
    Ok(())
}

/// Most filters on one series or step (plus as many global ones).
pub const MAX_FILTERS: usize = 20;

/// All filters joined with AND (`1` when there are none).
pub fn filters(list: &[PropertyFilter], field: &str) -> Result<String, RequestError> {
    if list.len() > MAX_FILTERS {
        return Err(RequestError::new(
            field,
            format!("at most {MAX_FILTERS} filters"),
        ));
    }
    let parts = list
        .iter()
        .enumerate()
        .map(|(i, f)| filter(f, &format!("{field}[{i}]")).map(|c| format!("({c})")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(if parts.is_empty() {
        "1".to_owned()
    } else {
        parts.join(" AND ")
    })
}

/// An event name as a condition.
pub fn event_is(event: &str, field: &str) -> Result<String, RequestError> {
    if event.is_empty() || event.len() > MAX_TEXT {
        return Err(RequestError::new(
            field,
            format!("event names have 1 to {MAX_TEXT} bytes"),
        ));
    }
    Ok(format!("event = {}", string(event)))
}

/// The key of the bucket of `timestamp`, as [`crate::range::Bucket::key`].
pub fn bucket_key(interval: Interval, tz: Tz) -> String {
    format!("toString({})", bucket_value(interval, tz))
}

/// The bucket of `timestamp` as ClickHouse's own value (a number or a
/// date): cheaper to group by than its text, which [`bucket_key`] gives.
pub fn bucket_value(interval: Interval, tz: Tz) -> String {
    let tz = string(tz.name());
    match interval {
        Interval::Hour => format!("toUInt32(toStartOfHour(timestamp, {tz}))"),
        Interval::Day => format!("toDate(timestamp, {tz})"),
        Interval::Week => format!("toMonday(timestamp, {tz})"),
        Interval::Month => format!("toStartOfMonth(timestamp, {tz})"),
    }
}

/// The conditions keeping events of `[from, to)`: on `timestamp`, and the
/// same range again on `toDate(timestamp)`, the table's sorting key, which
/// ClickHouse (18.16 at least) cannot derive from a condition on
/// `timestamp`: without it a 7-day query reads every day of the project.
/// Both sides of the key's condition are the server's `toDate`, so the
/// days match whatever the server's timezone (on a cluster, its servers
/// must share one, as they must for `toDate` in the sorting key anyway).
pub fn time_range(range: &TimeRange) -> [String; 4] {
    let (from, to) = (range.from_epoch(), range.to_epoch());
    [
        format!("timestamp >= toDateTime({from})"),
        format!("timestamp < toDateTime({to})"),
        format!("toDate(timestamp) >= toDate(toDateTime({from}))"),
        format!(
            "toDate(timestamp) <= toDate(toDateTime({}))",
            to.saturating_sub(1).max(from)
        ),
    ]
}

/// The table, qualified by the configured database (validated at start).
pub fn events_table(database: &str) -> String {
    format!("{database}.events")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(key: &str, operator: Operator, value: Option<Value>) -> PropertyFilter {
        PropertyFilter {
            key: key.into(),
            operator,
            value,
        }
    }

    #[test]
    fn a_time_range_names_the_days_it_needs_and_no_others() {
        use chrono::TimeZone;
        let at = |s: i64, ms: i64| chrono::Utc.timestamp_millis_opt(s * 1000 + ms).unwrap();
        // 2025-01-01T00:00:00Z to 2025-01-08T00:00:00Z: the last day is the
        // 7th, since the end is excluded.
        let week = TimeRange {
            from: at(1_735_689_600, 0),
            to: at(1_736_294_400, 0),
        };
        assert_eq!(
            time_range(&week),
            [
                "timestamp >= toDateTime(1735689600)",
                "timestamp < toDateTime(1736294400)",
                "toDate(timestamp) >= toDate(toDateTime(1735689600))",
                "toDate(timestamp) <= toDate(toDateTime(1736294399))",
            ]
        );
        // A `to` within a second takes that second in, and its day.
        let partial = TimeRange {
            from: at(1_735_689_600, 0),
            to: at(1_736_294_400, 500),
        };
        assert_eq!(
            time_range(&partial)[3],
            "toDate(timestamp) <= toDate(toDateTime(1736294400))"
        );
        // An empty range stays empty (the `timestamp` conditions) and never
        // names a day before its start.
        let empty = TimeRange {
            from: at(1_735_689_600, 0),
            to: at(1_735_689_600, 0),
        };
        assert_eq!(
            time_range(&empty)[3],
            "toDate(timestamp) <= toDate(toDateTime(1735689600))"
        );
    }

    #[test]
    fn literals_escape_quotes_backslashes_and_controls() {
        assert_eq!(string("a'b"), r"'a\'b'");
        assert_eq!(string(r"a\'"), r"'a\\\''");
        assert_eq!(string("x\0y\n"), r"'x\0y\n'");
        assert_eq!(string("?"), "'?'");
    }

    #[test]
    fn keys_follow_json_escaping_then_sql_escaping() {
        let p = Property::new("we'ird\"key\\", "k").unwrap();
        // JSON text: we'ird\"key\\ ; SQL-escaped once more.
        assert_eq!(p.has(), r#"visitParamHas(properties, 'we\'ird\\"key\\\\')"#);
        let m = Property::new("$browser", "k").unwrap();
        assert_eq!(m.text(), "mat_browser");
        assert_eq!(m.label(), "mat_browser");
        assert!(p.label().contains("visitParamExtractRaw"), "{}", p.label());
    }

    #[test]
    fn operators() {
        assert_eq!(
            filter(&f("plan", Operator::Exact, Some(json!("pro"))), "f").unwrap(),
            "visitParamExtractString(properties, 'plan') = 'pro'"
        );
        assert_eq!(
            filter(&f("n", Operator::Gt, Some(json!(3))), "f").unwrap(),
            "(visitParamHas(properties, 'n') AND visitParamExtractFloat(properties, 'n') > 3.0)"
        );
        assert_eq!(
            filter(&f("b", Operator::Exact, Some(json!(true))), "f").unwrap(),
            "visitParamExtractRaw(properties, 'b') = 'true'"
        );
        assert!(
            filter(&f("p", Operator::IsNot, Some(json!(["a", 2]))), "f")
                .unwrap()
                .starts_with("NOT (")
        );
        assert_eq!(
            filter(&f("p", Operator::IsSet, None), "f").unwrap(),
            "visitParamHas(properties, 'p')"
        );
    }

    #[test]
    fn bad_filters_name_their_field() {
        for (filter_, field) in [
            (f("n", Operator::Gt, Some(json!("x"))), "filters[0].value"),
            (f("n", Operator::Exact, None), "filters[0].value"),
            (
                f("n", Operator::Exact, Some(json!({"a": 1}))),
                "filters[0].value",
            ),
            (f("n", Operator::Exact, Some(json!([]))), "filters[0].value"),
            (
                f("n", Operator::Exact, Some(json!(["a", {}]))),
                "filters[0].value[1]",
            ),
            (f("n", Operator::IsSet, Some(json!(1))), "filters[0].value"),
            (f("", Operator::IsSet, None), "filters[0].key"),
            (
                f("n", Operator::Contains, Some(json!(1))),
                "filters[0].value",
            ),
        ] {
            let e = filters(&[filter_], "filters").unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
    }
}
