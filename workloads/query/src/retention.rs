//! Retention: users enter the cohort of the period (day or week, in the
//! query's timezone) of their first `target` event ever, and count as
//! retained in period k >= 1 when they did the `returning` event in their
//! cohort's period + k. Period 0 is the cohort's size.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};

use crate::range::{self, TimeRange};
use crate::request::{Interval, Period, RequestError, RetentionRequest};
use crate::rows::number;
use crate::sql;

pub const DEFAULT_PERIODS: u32 = 7;
pub const MAX_PERIODS: u32 = 90;

#[derive(Debug, Clone)]
pub struct RetentionPlan {
    pub range: TimeRange,
    pub tz: Tz,
    pub period: Period,
    /// First local date of each cohort.
    pub cohorts: Vec<NaiveDate>,
    pub sql: String,
    /// The same over one shard's own `events_local`: on a cluster whose
    /// users each live on one shard, each shard's cohorts are whole, and
    /// the shards' cells add up.
    pub sql_on_shard: String,
}

fn interval(period: Period) -> Interval {
    match period {
        Period::Day => Interval::Day,
        Period::Week => Interval::Week,
    }
}

pub fn plan(
    req: &RetentionRequest,
    project_id: u64,
    database: &str,
    now: DateTime<Utc>,
) -> Result<RetentionPlan, RequestError> {
    let n = req.periods.unwrap_or(DEFAULT_PERIODS);
    if n == 0 || n > MAX_PERIODS {
        return Err(RequestError::new(
            "periods",
            format!("give 1 to {MAX_PERIODS} periods"),
        ));
    }
    let tz = range::parse_timezone(req.timezone.as_deref())?;
    let align = interval(req.period);
    let from = range::resolve_start(&req.date_from, align, tz, now)?;
    let mut cohorts = Vec::new();
    let mut date = range::local_date(from, tz);
    for _ in 0..=n {
        cohorts.push(date);
        date = range::next_date(date, align)
            .ok_or_else(|| RequestError::new("date_from", "too far in the future"))?;
    }
    let end = cohorts.pop().map(|d| range::local_midnight(d, tz));
    let to = end.ok_or_else(|| RequestError::new("periods", "no periods"))?;
    let range = TimeRange { from, to };
    let global = sql::filters(&req.filters, "filters")?;
    let target = format!(
        "{} AND {} AND {global}",
        sql::event_is(&req.target.event, "target.event")?,
        sql::filters(&req.target.filters, "target.filters")?
    );
    let returning = match &req.returning {
        Some(r) => format!(
            "{} AND {} AND {global}",
            sql::event_is(&r.event, "returning.event")?,
            sql::filters(&r.filters, "returning.filters")?
        ),
        None => target.clone(),
    };
    let tzl = sql::string(tz.name());
    let rel = match req.period {
        Period::Day => "toRelativeDayNum",
        Period::Week => "toRelativeWeekNum",
    };
    let base = format!("{rel}(toDateTime({}), {tzl})", range.from_epoch());
    let statement = |table: &str| {
        let first = format!(
            "SELECT distinct_id, toInt64({rel}(min(timestamp), {tzl})) - toInt64({base}) AS cohort FROM {table} WHERE project_id = {project_id} AND timestamp < toDateTime({to}) AND {target} GROUP BY distinct_id HAVING cohort >= 0",
            to = range.to_epoch(),
        );
        let back = format!(
            "SELECT DISTINCT distinct_id, toInt64({rel}(timestamp, {tzl})) - toInt64({base}) AS period FROM {table} WHERE project_id = {project_id} AND {within} AND {returning}",
            within = sql::time_range(&range).join(" AND "),
        );
        format!(
            "SELECT cohort, toInt64(0) AS offset, count() AS users FROM ({first}) GROUP BY cohort UNION ALL SELECT cohort, period - cohort AS offset, count() AS users FROM ({first}) AS first_seen ALL INNER JOIN ({back}) AS came_back USING distinct_id WHERE period > cohort GROUP BY cohort, offset"
        )
    };
    let table = sql::events_table(database);
    let sql = statement(&table);
    let sql_on_shard = statement(&format!("{table}_local"));
    Ok(RetentionPlan {
        range,
        tz,
        period: req.period,
        cohorts,
        sql,
        sql_on_shard,
    })
}

/// A row that does not fit the plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ClickHouse returned a retention row of an unexpected shape: {0}")]
pub struct ShapeError(String);

/// Builds the table from `[cohort, offset, users]` rows.
pub fn assemble(plan: &RetentionPlan, rows: &[Vec<Value>]) -> Result<Value, ShapeError> {
    let n = plan.cohorts.len();
    let mut table: Vec<Vec<u64>> = (0..n).map(|c| vec![0; n - c]).collect();
    for row in rows {
        let (Some(c), Some(o), Some(users)) = (
            row.first().and_then(number),
            row.get(1).and_then(number),
            row.get(2).and_then(number),
        ) else {
            return Err(ShapeError(format!("{row:?}")));
        };
        let (c, o) = (c as usize, o as usize);
        let cell = table
            .get_mut(c)
            .and_then(|r| r.get_mut(o))
            .ok_or_else(|| ShapeError(format!("{row:?}")))?;
        // One row per cell from each server (shards answer their own).
        *cell += users as u64;
    }
    let cohorts: Vec<Value> = plan
        .cohorts
        .iter()
        .zip(table)
        .map(|(date, values)| {
            json!({
                "date": date.format("%Y-%m-%d").to_string(),
                "start": range::local_midnight(*date, plan.tz).with_timezone(&plan.tz).to_rfc3339(),
                "size": values[0],
                "values": values,
            })
        })
        .collect();
    Ok(json!({
        "period": plan.period,
        "timezone": plan.tz.name(),
        "date_from": plan.range.from.with_timezone(&plan.tz).to_rfc3339(),
        "date_to": plan.range.to.with_timezone(&plan.tz).to_rfc3339(),
        "cohorts": cohorts,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::parse;

    use crate::range::test_now as now;

    #[test]
    fn cohorts_follow_the_period() {
        let r = parse(br#"{"target":{"event":"signup"},"date_from":"2026-11-04","period":"week","periods":3}"#).unwrap();
        let p = plan(&r, 2, "db", now()).unwrap();
        let dates: Vec<String> = p.cohorts.iter().map(|d| d.to_string()).collect();
        assert_eq!(dates, ["2026-11-02", "2026-11-09", "2026-11-16"]);
        assert_eq!(p.range.to.to_rfc3339(), "2026-11-23T00:00:00+00:00");
        assert!(p.sql.contains("project_id = 2"));
        // The days of the range on the sorting key, or every day is read.
        assert!(
            p.sql.contains("toDate(timestamp) >= toDate(toDateTime("),
            "{}",
            p.sql
        );
        let out = assemble(
            &p,
            &[
                vec![json!(0), json!(0), json!("10")],
                vec![json!(0), json!(2), json!("4")],
            ],
        )
        .unwrap();
        assert_eq!(out["cohorts"][0]["values"], json!([10, 0, 4]));
        assert_eq!(out["cohorts"][2]["values"], json!([0]));
        assert!(assemble(&p, &[vec![json!(2), json!(1), json!(1)]]).is_err());
    }

    #[test]
    fn on_a_cluster_each_shard_answers_its_cohorts_and_the_cells_add_up() {
        let r = parse(br#"{"target":{"event":"signup"},"date_from":"2026-11-04","periods":2}"#)
            .unwrap();
        let p = plan(&r, 2, "db", now()).unwrap();
        assert_eq!(
            p.sql_on_shard,
            p.sql
                .replace("FROM db.events WHERE", "FROM db.events_local WHERE")
        );
        assert!(!p.sql_on_shard.contains("db.events "), "{}", p.sql_on_shard);
        // Shard 1's rows, then shard 2's.
        let rows = [
            vec![json!(0), json!(0), json!("6")],
            vec![json!(0), json!(1), json!("2")],
            vec![json!(0), json!(0), json!("4")],
            vec![json!(0), json!(1), json!("1")],
        ];
        let out = assemble(&p, &rows).unwrap();
        assert_eq!(out["cohorts"][0]["values"], json!([10, 3]));
    }

    #[test]
    fn bad_requests_name_their_field() {
        for (body, field) in [
            (
                r#"{"target":{"event":"a"},"date_from":"-7d","periods":0}"#,
                "periods",
            ),
            (
                r#"{"target":{"event":"a"},"date_from":"-7d","periods":500}"#,
                "periods",
            ),
            (
                r#"{"target":{"event":""},"date_from":"-7d"}"#,
                "target.event",
            ),
            (
                r#"{"target":{"event":"a"},"returning":{"event":"b","filters":[{"key":"x","operator":"gt","value":"y"}]},"date_from":"-7d"}"#,
                "returning.filters[0].value",
            ),
        ] {
            let e = plan(&parse(body.as_bytes()).unwrap(), 1, "db", now()).unwrap_err();
            assert_eq!(e.field, field, "{body}: {e}");
        }
    }
}
