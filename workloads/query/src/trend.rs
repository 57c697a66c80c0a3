//! Trends: SQL per series, and the answer with every bucket zero-filled.
//!
//! Each series is one statement. Rows are first reduced to one per `uuid`
//! (`LIMIT 1 BY uuid`), so events written twice before ClickHouse merged
//! them are counted once. With a breakdown, the 25 values with the most
//! events keep their own line and the rest are summed into an "other" line,
//! computed in SQL so unique users stay exact.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};

use crate::range::{self, Bucket, TimeRange};
use crate::request::{Interval, Math, RequestError, TrendRequest};
use crate::sql::{self, Property};
use crate::warehouse::number;

/// Most series in one trend.
pub const MAX_SERIES: usize = 10;
/// Breakdown values with a line of their own.
pub const BREAKDOWN_LIMIT: usize = 25;

/// A validated trend: its buckets and one statement per series.
#[derive(Debug, Clone)]
pub struct TrendPlan {
    pub range: TimeRange,
    pub tz: Tz,
    pub interval: Interval,
    pub buckets: Vec<Bucket>,
    pub series: Vec<SeriesPlan>,
    pub breakdown: bool,
}

#[derive(Debug, Clone)]
pub struct SeriesPlan {
    pub event: String,
    pub math: Math,
    pub sql: String,
}

pub fn plan(
    req: &TrendRequest,
    project_id: u64,
    database: &str,
    now: DateTime<Utc>,
) -> Result<TrendPlan, RequestError> {
    if req.series.is_empty() || req.series.len() > MAX_SERIES {
        return Err(RequestError::new(
            "series",
            format!("give 1 to {MAX_SERIES} series"),
        ));
    }
    let tz = range::parse_timezone(req.timezone.as_deref())?;
    let range = range::resolve(
        &req.date_from,
        req.date_to.as_deref(),
        req.interval,
        tz,
        now,
    )?;
    let buckets = range::buckets(&range, req.interval, tz, "date_from")?;
    let global = sql::filters(&req.filters, "filters")?;
    let breakdown = req
        .breakdown
        .as_deref()
        .map(|k| Property::new(k, "breakdown"))
        .transpose()?;
    let series = req
        .series
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let field = format!("series[{i}]");
            let event = sql::event_is(&s.event, &format!("{field}.event"))?;
            let own = sql::filters(&s.filters, &format!("{field}.filters"))?;
            let value = match (s.math.needs_property(), &s.math_property) {
                (true, Some(key)) => Some(Property::new(key, &format!("{field}.math_property"))?),
                (true, None) => {
                    return Err(RequestError::new(
                        format!("{field}.math_property"),
                        "required by this math",
                    ));
                }
                (false, Some(_)) => {
                    return Err(RequestError::new(
                        format!("{field}.math_property"),
                        "only sum, avg, min and max take a property",
                    ));
                }
                (false, None) => None,
            };
            let mut conditions = vec![
                format!("project_id = {project_id}"),
                format!("timestamp >= toDateTime({})", range.from_epoch()),
                format!("timestamp < toDateTime({})", range.to_epoch()),
                event,
                own,
                global.clone(),
            ];
            if let Some(p) = &value {
                conditions.push(p.has());
            }
            let inner = format!(
                "SELECT uuid, distinct_id, {bucket} AS bucket, {label} AS bv, {v} AS v FROM {table} WHERE {cond} LIMIT 1 BY uuid",
                bucket = sql::bucket_key(req.interval, tz),
                label = breakdown.as_ref().map_or("''".to_owned(), Property::label),
                v = value.as_ref().map_or("0".to_owned(), Property::number),
                table = sql::events_table(database),
                cond = conditions.join(" AND "),
            );
            let agg = match s.math {
                Math::Total => "toFloat64(count())",
                Math::UniqueUsers => "toFloat64(uniqExact(distinct_id))",
                Math::Sum => "sum(v)",
                Math::Avg => "avg(v)",
                Math::Min => "min(v)",
                Math::Max => "max(v)",
            };
            let sql = if breakdown.is_some() {
                format!(
                    "SELECT bucket, bv IN (SELECT bv FROM ({inner}) GROUP BY bv ORDER BY count() DESC, bv LIMIT {BREAKDOWN_LIMIT}) AS is_top, if(is_top, bv, '') AS label, {agg} AS value FROM ({inner}) GROUP BY bucket, is_top, label ORDER BY bucket, is_top, label"
                )
            } else {
                format!(
                    "SELECT bucket, 1 AS is_top, '' AS label, {agg} AS value FROM ({inner}) GROUP BY bucket ORDER BY bucket"
                )
            };
            Ok(SeriesPlan {
                event: s.event.clone(),
                math: s.math,
                sql,
            })
        })
        .collect::<Result<Vec<_>, RequestError>>()?;
    Ok(TrendPlan {
        range,
        tz,
        interval: req.interval,
        buckets,
        series,
        breakdown: breakdown.is_some(),
    })
}

/// A row that does not fit the plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssembleError {
    #[error(
        "ClickHouse returned bucket {0:?}, which the query service did not expect: the server's timezone rules differ from this service's"
    )]
    UnknownBucket(String),
    #[error("ClickHouse returned a row of an unexpected shape: {0}")]
    Shape(String),
}

/// One line of the answer.
#[derive(Debug, Clone, PartialEq)]
struct Line {
    label: Option<String>,
    other: bool,
    data: Vec<f64>,
}

/// Builds the answer from each series' rows (`[bucket, is_top, label, value]`).
pub fn assemble(plan: &TrendPlan, results: &[Vec<Vec<Value>>]) -> Result<Value, AssembleError> {
    let index: HashMap<&str, usize> = plan
        .buckets
        .iter()
        .enumerate()
        .map(|(i, b)| (b.key.as_str(), i))
        .collect();
    let n = plan.buckets.len();
    let mut series_out = Vec::new();
    for (i, (series, rows)) in plan.series.iter().zip(results).enumerate() {
        let mut lines: Vec<Line> = Vec::new();
        if !plan.breakdown {
            lines.push(Line {
                label: None,
                other: false,
                data: vec![0.0; n],
            });
        }
        for row in rows {
            let (Some(bucket), Some(is_top), Some(label), Some(value)) = (
                row.first().and_then(Value::as_str),
                row.get(1).and_then(number),
                row.get(2).and_then(Value::as_str),
                row.get(3).and_then(number),
            ) else {
                return Err(AssembleError::Shape(format!("{row:?}")));
            };
            let b = *index
                .get(bucket)
                .ok_or_else(|| AssembleError::UnknownBucket(bucket.to_owned()))?;
            let other = plan.breakdown && is_top == 0.0;
            let label = (plan.breakdown && !other && !label.is_empty()).then(|| label.to_owned());
            let line = match lines
                .iter_mut()
                .position(|l| l.other == other && l.label == label)
            {
                Some(p) => &mut lines[p],
                None => {
                    lines.push(Line {
                        label,
                        other,
                        data: vec![0.0; n],
                    });
                    let last = lines.len() - 1;
                    &mut lines[last]
                }
            };
            line.data[b] = value;
        }
        // Biggest lines first; "other" last.
        lines.sort_by(|a, b| {
            let total = |l: &Line| l.data.iter().sum::<f64>();
            a.other
                .cmp(&b.other)
                .then(total(b).total_cmp(&total(a)))
                .then(a.label.cmp(&b.label))
        });
        for line in lines {
            let data: Vec<Value> = line
                .data
                .iter()
                .map(|v| match series.math {
                    Math::Total | Math::UniqueUsers => json!(*v as u64),
                    _ => json!(v),
                })
                .collect();
            let mut out = json!({
                "series": i,
                "event": series.event,
                "math": series.math,
                "data": data,
            });
            if plan.breakdown {
                out["breakdown_value"] = json!(line.label);
                out["other"] = json!(line.other);
            }
            series_out.push(out);
        }
    }
    Ok(json!({
        "interval": plan.interval,
        "timezone": plan.tz.name(),
        "date_from": plan.range.from.with_timezone(&plan.tz).to_rfc3339(),
        "date_to": plan.range.to.with_timezone(&plan.tz).to_rfc3339(),
        "buckets": plan.buckets.iter().map(|b| b.start.with_timezone(&plan.tz).to_rfc3339()).collect::<Vec<_>>(),
        "results": series_out,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::parse;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn plan_of(body: &str) -> Result<TrendPlan, RequestError> {
        plan(&parse(body.as_bytes()).unwrap(), 7, "tributary", now())
    }

    #[test]
    fn series_are_scoped_deduplicated_and_bounded() {
        let p = plan_of(
            r#"{"series":[{"event":"$pageview","math":"unique_users"}],"date_from":"-7d"}"#,
        )
        .unwrap();
        let sql = &p.series[0].sql;
        assert!(sql.contains("project_id = 7"), "{sql}");
        assert!(sql.contains("LIMIT 1 BY uuid"), "{sql}");
        assert!(sql.contains("uniqExact(distinct_id)"), "{sql}");
        assert!(sql.contains("FROM tributary.events"), "{sql}");
        assert_eq!(p.buckets.len(), 8);
    }

    #[test]
    fn bad_series_name_their_field() {
        for (body, field) in [
            (r#"{"series":[],"date_from":"-7d"}"#, "series"),
            (
                r#"{"series":[{"event":"a","math":"sum"}],"date_from":"-7d"}"#,
                "series[0].math_property",
            ),
            (
                r#"{"series":[{"event":"a","math_property":"x"}],"date_from":"-7d"}"#,
                "series[0].math_property",
            ),
            (
                r#"{"series":[{"event":""}],"date_from":"-7d"}"#,
                "series[0].event",
            ),
            (
                r#"{"series":[{"event":"a"}],"date_from":"-7d","breakdown":""}"#,
                "breakdown",
            ),
            (
                r#"{"series":[{"event":"a"}],"date_from":"-2y","interval":"hour"}"#,
                "date_from",
            ),
            (
                r#"{"series":[{"event":"a"}],"date_from":"-7d","timezone":"Nowhere"}"#,
                "timezone",
            ),
        ] {
            let e = plan_of(body).unwrap_err();
            assert_eq!(e.field, field, "{body}: {e}");
        }
    }

    #[test]
    fn answers_are_zero_filled_and_breakdowns_sorted() {
        let p = plan_of(r#"{"series":[{"event":"a"}],"date_from":"2026-11-20","date_to":"2026-11-22","breakdown":"b"}"#).unwrap();
        let rows = vec![vec![
            vec![json!("2026-11-21"), json!(1), json!("x"), json!(2.0)],
            vec![json!("2026-11-20"), json!(1), json!("y"), json!(5.0)],
            vec![json!("2026-11-22"), json!(0), json!(""), json!(1.0)],
        ]];
        let out = assemble(&p, &rows).unwrap();
        let r = out["results"].as_array().unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0]["breakdown_value"], "y");
        assert_eq!(r[0]["data"], json!([5, 0, 0]));
        assert_eq!(r[1]["data"], json!([0, 2, 0]));
        assert_eq!(r[2]["other"], true);
        assert_eq!(out["buckets"].as_array().unwrap().len(), 3);

        let bad = vec![vec![vec![
            json!("2030-01-01"),
            json!(1),
            json!(""),
            json!(1),
        ]]];
        assert!(matches!(
            assemble(&p, &bad),
            Err(AssembleError::UnknownBucket(_))
        ));
    }
}
