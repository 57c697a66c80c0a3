//! Trends: SQL per series, and the answer with every bucket zero-filled.
//!
//! Each series is one statement grouped by bucket (and breakdown value).
//! Where events written twice before ClickHouse merged them would change the
//! answer (total count, sum, average), rows are first reduced to one per
//! `uuid` (`LIMIT 1 BY uuid`); unique users, minimum and maximum are the same
//! with or without the copies, so they skip that costly step.
//!
//! With a breakdown, the statement returns every value's points; the 25
//! values with the largest total (the sum of their points; ties by value)
//! keep their own line and the rest become one "other" line. "Other" is
//! folded from the rows for every math but unique users, where a user seen
//! under two values must count once: that takes a follow-up statement
//! ([`SeriesPlan::follow_up`]) over the values outside the top 25.
//!
//! On a cluster (events sharded by user), every series is computed on each
//! shard and only the shards' points combined ([`ShardPlan`]): a user's
//! events, and every copy of an event, are on one shard, so unique users,
//! distinct uuids and sums over distinct `(uuid, value)` pairs add up
//! across shards.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};

use crate::range::{self, Bucket, TimeRange};
use crate::request::{Interval, Math, RequestError, TrendRequest};
use crate::rows::number;
use crate::sql::{self, Property};

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
    /// Rows of `[bucket, label, value, count, sum]`.
    pub sql: String,
    /// The rows before grouping (`distinct_id, bucket, bv, v`).
    inner: String,
    breakdown: bool,
    /// The same series computed on each shard of a cluster.
    pub per_shard: ShardPlan,
}

/// A series computed on each shard of a cluster, run with
/// `distributed_group_by_no_merge` so that each shard answers its own
/// points and the node asked only combines them.
#[derive(Debug, Clone)]
pub struct ShardPlan {
    /// Rows of `[bucket, label, value, count, sum]`, as [`SeriesPlan::sql`].
    pub sql: String,
    /// `FROM ... WHERE ...` of the series' rows on a shard.
    from_where: String,
    bucket: String,
    label: String,
    v: String,
}

impl ShardPlan {
    /// `inner`, a statement each shard answers, grouped by `keys`, its
    /// points combined by `combine` (e.g. `sum(value)`, or `sum(s) / sum(c)`
    /// for averages). The outer sums of `c` and `s` have names of their own:
    /// ClickHouse's aliases are visible in the whole statement, and
    /// `sum(s) AS s` would make `combine`'s `s` an aggregate of itself.
    fn combined(inner: &str, combine: &str, keys: &str) -> String {
        format!(
            "SELECT {keys}, {combine} AS value, sum(c) AS c_all, sum(s) AS s_all FROM ({inner}) GROUP BY {keys} ORDER BY {keys}"
        )
    }

    /// The "other" line of a unique-users breakdown, on each shard.
    fn follow_up(&self, top: &str) -> String {
        let inner = format!(
            "SELECT {bucket} AS bucket, '' AS label, toFloat64(uniqExact(distinct_id)) AS value, toFloat64(count()) AS c, toFloat64(sum({v})) AS s {from_where} AND {label} NOT IN ({top}) GROUP BY bucket",
            bucket = self.bucket,
            v = self.v,
            from_where = self.from_where,
            label = self.label,
        );
        Self::combined(&inner, "sum(value)", "bucket, label")
    }
}

impl SeriesPlan {
    /// The aggregate giving a point's value.
    fn value(math: Math) -> &'static str {
        match math {
            Math::Total => "toFloat64(count())",
            Math::UniqueUsers => "toFloat64(uniqExact(distinct_id))",
            Math::Sum => "sum(v)",
            Math::Avg => "avg(v)",
            Math::Min => "min(v)",
            Math::Max => "max(v)",
        }
    }

    /// The statement for the "other" line, when the math cannot be folded
    /// from the rows (unique users) and more than [`BREAKDOWN_LIMIT`] values
    /// appear in `rows`.
    pub fn follow_up(&self, rows: &[Vec<Value>]) -> Option<String> {
        let top = self.outside_top(rows)?;
        Some(format!(
            "SELECT toString(b) AS bucket, '' AS label, value, c, s FROM (SELECT b, {value} AS value, toFloat64(count()) AS c, toFloat64(sum(v)) AS s FROM ({inner}) WHERE bv NOT IN ({top}) GROUP BY b) ORDER BY bucket",
            value = Self::value(self.math),
            inner = self.inner,
        ))
    }

    /// [`Self::follow_up`] computed on each shard.
    pub fn follow_up_per_shard(&self, rows: &[Vec<Value>]) -> Option<String> {
        let top = self.outside_top(rows)?;
        Some(self.per_shard.follow_up(&top))
    }

    /// The top values as a SQL list, when a unique-users breakdown has
    /// values beyond them.
    fn outside_top(&self, rows: &[Vec<Value>]) -> Option<String> {
        if !self.breakdown || self.math != Math::UniqueUsers {
            return None;
        }
        let ranked = rank(rows).ok()?;
        if ranked.len() <= BREAKDOWN_LIMIT {
            return None;
        }
        let top: Vec<String> = ranked[..BREAKDOWN_LIMIT]
            .iter()
            .map(|l| sql::string(l))
            .collect();
        Some(top.join(", "))
    }
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
            let mut conditions = vec![format!("project_id = {project_id}")];
            conditions.extend(sql::time_range(&range));
            conditions.extend([event, own, global.clone()]);
            if let Some(p) = &value {
                conditions.push(p.has());
            }
            // Copies of an event only change counts and sums.
            let dedup = match s.math {
                Math::Total | Math::Sum | Math::Avg => " LIMIT 1 BY uuid",
                Math::UniqueUsers | Math::Min | Math::Max => "",
            };
            let bucket = sql::bucket_key(req.interval, tz);
            let label = breakdown.as_ref().map_or("''".to_owned(), Property::label);
            let v = value.as_ref().map_or("0".to_owned(), Property::number);
            let from_where = format!(
                "FROM {table} WHERE {cond}",
                table = sql::events_table(database),
                cond = conditions.join(" AND "),
            );
            // The rows carry the bucket as ClickHouse's value (`b`), and
            // only the points become text: grouping by the text cost a
            // tenth of a 7-day breakdown's time.
            let inner = format!(
                "SELECT uuid, distinct_id, {b} AS b, {label} AS bv, {v} AS v {from_where}{dedup}",
                b = sql::bucket_value(req.interval, tz),
            );
            // Each copy of an event is on its user's shard: distinct uuids
            // per shard add up to the total.
            // Per shard: (value, count, sum), and how the node asked
            // combines the shards' rows into the point.
            let distinct = "toFloat64(uniqExact(uuid))";
            // The sum over distinct (uuid, value) pairs: each event once,
            // as `LIMIT 1 BY uuid` keeps it, in one aggregate.
            let distinct_sum = format!(
                "toFloat64(arraySum(arrayMap(t -> tupleElement(t, 2), groupUniqArray((uuid, {v})))))"
            );
            let rows_sum = format!("toFloat64(sum({v}))");
            let (value, count, sum, combine) = match s.math {
                Math::Total => (distinct.to_owned(), distinct, rows_sum, "sum(value)"),
                Math::UniqueUsers => (
                    "toFloat64(uniqExact(distinct_id))".to_owned(),
                    "toFloat64(count())",
                    rows_sum,
                    "sum(value)",
                ),
                Math::Min => (format!("toFloat64(min({v}))"), "toFloat64(count())", rows_sum, "min(value)"),
                Math::Max => (format!("toFloat64(max({v}))"), "toFloat64(count())", rows_sum, "max(value)"),
                Math::Sum => (distinct_sum.clone(), distinct, distinct_sum, "sum(value)"),
                Math::Avg => (distinct_sum.clone(), distinct, distinct_sum, "sum(s) / sum(c)"),
            };
            let shard = format!(
                "SELECT {bucket} AS bucket, {label} AS label, {value} AS value, {count} AS c, {sum} AS s {from_where} GROUP BY bucket, label"
            );
            let per_shard = ShardPlan {
                sql: ShardPlan::combined(&shard, combine, "bucket, label"),
                from_where: from_where.clone(),
                bucket: bucket.clone(),
                label: label.clone(),
                v: v.clone(),
            };
            let sql = format!(
                "SELECT toString(b) AS bucket, label, value, c, s FROM (SELECT b, bv AS label, {agg} AS value, toFloat64(count()) AS c, toFloat64(sum(v)) AS s FROM ({inner}) GROUP BY b, label) ORDER BY bucket, label",
                agg = SeriesPlan::value(s.math),
            );
            Ok(SeriesPlan {
                event: s.event.clone(),
                math: s.math,
                sql,
                inner,
                breakdown: breakdown.is_some(),
                per_shard,
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
    #[error("the \"other\" line of a unique-users breakdown was not computed")]
    MissingOther,
}

/// One series' rows and, when [`SeriesPlan::follow_up`] gave a statement,
/// that statement's rows (the "other" line).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesRows {
    pub rows: Vec<Vec<Value>>,
    pub other: Option<Vec<Vec<Value>>>,
}

/// One row: `[bucket, label, value, count, sum]`.
struct Row<'a> {
    bucket: &'a str,
    label: &'a str,
    value: f64,
    count: f64,
    sum: f64,
}

fn parse_row(row: &[Value]) -> Result<Row<'_>, AssembleError> {
    match (
        row.first().and_then(Value::as_str),
        row.get(1).and_then(Value::as_str),
        row.get(2).and_then(number),
        row.get(3).and_then(number),
        row.get(4).and_then(number),
    ) {
        (Some(bucket), Some(label), Some(value), Some(count), Some(sum)) => Ok(Row {
            bucket,
            label,
            value,
            count,
            sum,
        }),
        _ => Err(AssembleError::Shape(format!("{row:?}"))),
    }
}

/// Breakdown values, largest total (sum of points) first, ties by value.
fn rank(rows: &[Vec<Value>]) -> Result<Vec<String>, AssembleError> {
    let mut totals: HashMap<&str, f64> = HashMap::new();
    for row in rows {
        let r = parse_row(row)?;
        *totals.entry(r.label).or_default() += r.value;
    }
    let mut ranked: Vec<(&str, f64)> = totals.into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    Ok(ranked.into_iter().map(|(l, _)| l.to_owned()).collect())
}

/// Per bucket: the rows folded into one point.
#[derive(Debug, Clone, Copy, Default)]
struct Fold {
    /// Total, sum or unique users added up; min or max kept.
    value: Option<f64>,
    count: f64,
    sum: f64,
}

impl Fold {
    fn add(&mut self, math: Math, r: &Row) {
        self.value = Some(match (self.value, math) {
            (None, _) => r.value,
            (Some(v), Math::Min) => v.min(r.value),
            (Some(v), Math::Max) => v.max(r.value),
            (Some(v), _) => v + r.value,
        });
        self.count += r.count;
        self.sum += r.sum;
    }

    /// The point: averages from the sums and counts behind them.
    fn point(&self, math: Math) -> f64 {
        match math {
            Math::Avg if self.count > 0.0 => self.sum / self.count,
            Math::Avg => 0.0,
            _ => self.value.unwrap_or(0.0),
        }
    }
}

/// Builds the answer from each series' rows.
pub fn assemble(plan: &TrendPlan, results: &[SeriesRows]) -> Result<Value, AssembleError> {
    let index: HashMap<&str, usize> = plan
        .buckets
        .iter()
        .enumerate()
        .map(|(i, b)| (b.key.as_str(), i))
        .collect();
    let n = plan.buckets.len();
    let bucket = |key: &str| {
        index
            .get(key)
            .copied()
            .ok_or_else(|| AssembleError::UnknownBucket(key.to_owned()))
    };
    let mut series_out = Vec::new();
    for (i, (series, result)) in plan.series.iter().zip(results).enumerate() {
        // (label, other, points)
        let mut lines: Vec<(Option<String>, bool, Vec<f64>)> = Vec::new();
        if !plan.breakdown {
            let mut data = vec![0.0; n];
            for row in &result.rows {
                let r = parse_row(row)?;
                data[bucket(r.bucket)?] = r.value;
            }
            lines.push((None, false, data));
        } else {
            let ranked = rank(&result.rows)?;
            let top: HashMap<&str, usize> = ranked
                .iter()
                .take(BREAKDOWN_LIMIT)
                .enumerate()
                .map(|(i, l)| (l.as_str(), i))
                .collect();
            lines.extend(
                ranked
                    .iter()
                    .take(BREAKDOWN_LIMIT)
                    .map(|l| ((!l.is_empty()).then(|| l.clone()), false, vec![0.0; n])),
            );
            let mut other = vec![Fold::default(); n];
            for row in &result.rows {
                let r = parse_row(row)?;
                let b = bucket(r.bucket)?;
                match top.get(r.label) {
                    Some(&line) => lines[line].2[b] = r.value,
                    None => other[b].add(series.math, &r),
                }
            }
            if ranked.len() > BREAKDOWN_LIMIT {
                if series.math == Math::UniqueUsers {
                    let rows = result.other.as_ref().ok_or(AssembleError::MissingOther)?;
                    other = vec![Fold::default(); n];
                    for row in rows {
                        let r = parse_row(row)?;
                        other[bucket(r.bucket)?].add(series.math, &r);
                    }
                }
                let points = other.iter().map(|f| f.point(series.math)).collect();
                lines.push((None, true, points));
            }
        }
        for (label, other, points) in lines {
            let data: Vec<Value> = points
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
                out["breakdown_value"] = json!(label);
                out["other"] = json!(other);
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

    use crate::range::test_now as now;

    fn plan_of(body: &str) -> Result<TrendPlan, RequestError> {
        plan(&parse(body.as_bytes()).unwrap(), 7, "tributary", now())
    }

    #[test]
    fn series_are_scoped_and_deduplicated_where_copies_count() {
        for (math, dedup) in [
            ("total", true),
            ("unique_users", false),
            ("sum", true),
            ("avg", true),
            ("min", false),
            ("max", false),
        ] {
            let prop = if math == "total" || math == "unique_users" {
                String::new()
            } else {
                r#","math_property":"amount""#.to_owned()
            };
            let p = plan_of(&format!(
                r#"{{"series":[{{"event":"$pageview","math":"{math}"{prop}}}],"date_from":"-7d"}}"#
            ))
            .unwrap();
            let sql = &p.series[0].sql;
            assert!(sql.contains("project_id = 7"), "{sql}");
            assert!(sql.contains("FROM tributary.events"), "{sql}");
            assert_eq!(sql.contains("LIMIT 1 BY uuid"), dedup, "{math}: {sql}");
            assert_eq!(p.buckets.len(), 8);
        }
    }

    #[test]
    fn on_a_cluster_every_series_is_computed_per_shard() {
        for (math, per_shard, combine) in [
            ("total", "uniqExact(uuid)", "sum(value)"),
            ("unique_users", "uniqExact(distinct_id)", "sum(value)"),
            ("min", "min(visitParamExtractFloat", "min(value)"),
            ("max", "max(visitParamExtractFloat", "max(value)"),
            (
                "sum",
                "groupUniqArray((uuid, visitParamExtractFloat",
                "sum(value)",
            ),
            (
                "avg",
                "groupUniqArray((uuid, visitParamExtractFloat",
                "sum(s) / sum(c)",
            ),
        ] {
            let prop = if math == "total" || math == "unique_users" {
                String::new()
            } else {
                r#","math_property":"amount""#.to_owned()
            };
            let p = plan_of(&format!(
                r#"{{"series":[{{"event":"a","math":"{math}"{prop}}}],"date_from":"-7d","breakdown":"b"}}"#
            ))
            .unwrap();
            let sql = &p.series[0].per_shard.sql;
            // Grouped where the Distributed table is read, combined outside.
            let (outer, inner) = sql.split_once("FROM (").unwrap();
            assert!(outer.contains(combine), "{math}: {sql}");
            assert!(inner.contains(per_shard), "{math}: {sql}");
            assert!(
                inner.contains("FROM tributary.events WHERE")
                    && inner.contains("GROUP BY bucket, label"),
                "{math}: {sql}"
            );
            assert!(!sql.contains("LIMIT 1 BY"), "{math}: {sql}");
        }
        // The "other" line of a unique-users breakdown, per shard too.
        let p = plan_of(
            r#"{"series":[{"event":"a","math":"unique_users"}],"date_from":"-1d","breakdown":"b"}"#,
        )
        .unwrap();
        let wide: Vec<Vec<Value>> = (0..=BREAKDOWN_LIMIT)
            .map(|k| {
                vec![
                    json!(p.buckets[0].key),
                    json!(format!("v{k:02}")),
                    json!(1.0),
                    json!(1.0),
                    json!(0.0),
                ]
            })
            .collect();
        let other = p.series[0].follow_up_per_shard(&wide).unwrap();
        assert!(other.contains("NOT IN ('v00'"), "{other}");
        assert!(
            other.starts_with("SELECT bucket, label, sum(value)"),
            "{other}"
        );
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

    fn row(bucket: &str, label: &str, value: f64, count: f64, sum: f64) -> Vec<Value> {
        vec![
            json!(bucket),
            json!(label),
            json!(value),
            json!(count),
            json!(sum),
        ]
    }

    fn rows(rows: Vec<Vec<Value>>) -> Vec<SeriesRows> {
        vec![SeriesRows { rows, other: None }]
    }

    #[test]
    fn answers_are_zero_filled_and_breakdowns_sorted() {
        let p = plan_of(r#"{"series":[{"event":"a"}],"date_from":"2026-11-20","date_to":"2026-11-22","breakdown":"b"}"#).unwrap();
        let out = assemble(
            &p,
            &rows(vec![
                row("2026-11-21", "x", 2.0, 2.0, 0.0),
                row("2026-11-20", "y", 5.0, 5.0, 0.0),
                row("2026-11-22", "", 1.0, 1.0, 0.0),
            ]),
        )
        .unwrap();
        let r = out["results"].as_array().unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0]["breakdown_value"], "y");
        assert_eq!(r[0]["data"], json!([5, 0, 0]));
        assert_eq!(r[1]["data"], json!([0, 2, 0]));
        assert_eq!(r[2]["breakdown_value"], Value::Null, "no value");
        assert_eq!(r[2]["other"], false);
        assert_eq!(out["buckets"].as_array().unwrap().len(), 3);

        let bad = rows(vec![row("2030-01-01", "", 1.0, 1.0, 0.0)]);
        assert!(matches!(
            assemble(&p, &bad),
            Err(AssembleError::UnknownBucket(_))
        ));
        let short = rows(vec![vec![json!("2026-11-20"), json!("x")]]);
        assert!(matches!(assemble(&p, &short), Err(AssembleError::Shape(_))));
    }

    /// 30 values, value `k` with `k + 1` events on the first day (so `v29`
    /// ranks first), the same amount as its sum, and `k` users.
    fn many(day: &str) -> Vec<Vec<Value>> {
        (0..30)
            .map(|k| {
                let n = f64::from(k + 1);
                row(day, &format!("v{k:02}"), n, n, n * 10.0)
            })
            .collect()
    }

    #[test]
    fn other_folds_values_beyond_the_top_25_per_math() {
        // v00..v04 fall outside the top 25.
        for (math, want) in [
            ("total", json!(15)),
            ("sum", json!(15.0)),
            ("min", json!(1.0)),
            ("max", json!(5.0)),
            // (10 + 20 + 30 + 40 + 50) / (1 + 2 + 3 + 4 + 5)
            ("avg", json!(10.0)),
        ] {
            let prop = if math == "total" {
                ""
            } else {
                r#","math_property":"m""#
            };
            let p = plan_of(&format!(r#"{{"series":[{{"event":"a","math":"{math}"{prop}}}],"date_from":"2026-11-20","date_to":"2026-11-20","breakdown":"b"}}"#)).unwrap();
            let rows_ = many("2026-11-20");
            assert_eq!(p.series[0].follow_up(&rows_), None, "{math} folds in Rust");
            let out = assemble(&p, &rows(rows_)).unwrap();
            let r = out["results"].as_array().unwrap();
            assert_eq!(r.len(), BREAKDOWN_LIMIT + 1, "{math}");
            assert_eq!(r[0]["breakdown_value"], "v29", "{math}");
            assert_eq!(r[BREAKDOWN_LIMIT - 1]["breakdown_value"], "v05", "{math}");
            assert_eq!(r[BREAKDOWN_LIMIT]["other"], true, "{math}");
            assert_eq!(r[BREAKDOWN_LIMIT]["data"][0], want, "{math}");
        }
    }

    #[test]
    fn unique_users_other_comes_from_a_follow_up_statement() {
        let p = plan_of(r#"{"series":[{"event":"a","math":"unique_users"}],"date_from":"2026-11-20","date_to":"2026-11-21","breakdown":"b"}"#).unwrap();
        let s = &p.series[0];
        // 25 values or fewer: no "other", no follow-up.
        let few: Vec<_> = many("2026-11-20").into_iter().take(25).collect();
        assert_eq!(s.follow_up(&few), None);
        let all = many("2026-11-20");
        let sql = s.follow_up(&all).expect("a follow-up for the other line");
        assert!(
            sql.contains("NOT IN ('v29', 'v28'") && sql.contains("'v05')"),
            "{sql}"
        );
        assert!(!sql.contains("'v04'"), "{sql}");
        assert!(sql.contains("uniqExact(distinct_id)"), "{sql}");
        // The days of the range on the sorting key, or every day is read.
        for sql in [&sql, &s.sql, &s.per_shard.sql] {
            assert!(
                sql.contains("toDate(timestamp) >= toDate(toDateTime(")
                    && sql.contains("toDate(timestamp) <= toDate(toDateTime("),
                "{sql}"
            );
        }
        // Without its rows the answer is refused rather than guessed.
        assert_eq!(
            assemble(&p, &rows(all.clone())),
            Err(AssembleError::MissingOther)
        );
        let other = vec![row("2026-11-21", "", 4.0, 9.0, 0.0)];
        let out = assemble(
            &p,
            &[SeriesRows {
                rows: all,
                other: Some(other),
            }],
        )
        .unwrap();
        let r = out["results"].as_array().unwrap();
        assert_eq!(r[BREAKDOWN_LIMIT]["data"], json!([0, 4]));
    }

    #[test]
    fn ties_rank_by_value() {
        let p = plan_of(r#"{"series":[{"event":"a"}],"date_from":"2026-11-20","date_to":"2026-11-20","breakdown":"b"}"#).unwrap();
        let out = assemble(
            &p,
            &rows(vec![
                row("2026-11-20", "b", 2.0, 2.0, 0.0),
                row("2026-11-20", "a", 2.0, 2.0, 0.0),
            ]),
        )
        .unwrap();
        assert_eq!(out["results"][0]["breakdown_value"], "a");
    }
}
