//! Funnels: one statement returns, per user, the events that match a step
//! or an exclusion (every event in strict mode), with a bitmask of the steps
//! each matches. [`crate::funnel_match`] decides per user how far they got;
//! [`FunnelTally`] adds users up.
//!
//! Events written twice before ClickHouse merged them must count once, but
//! de-duplicating every row by `uuid` costs more than the rest of the query
//! (the column is random and wide). Copies of an event carry the same time,
//! masks and label, so a user whose path has no two such events cannot hold
//! a copy: their path is matched as it comes. The few others are read again,
//! de-duplicated by `uuid` ([`FunnelPlan::copies_sql`]).
//!
//! Events use `timestamp_ms`, so steps in the same second keep their order.
//! All events, later steps included, must fall in `[date_from, date_to)`.
//! With a breakdown, a user counts under the value of the event that started
//! their chosen attempt; the 25 values with the most users keep a row of
//! their own and the rest are added up as "other".

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};

use crate::funnel_match::{
    Exclusion, FunnelOrder, FunnelSpec, match_user, mean_seconds, median_seconds,
};
use crate::native::{EventShape, UserKey};
use crate::path_sort::PathSorter;
use crate::range::{self, TimeRange};
use crate::request::{FunnelOrderRequest, FunnelRequest, Interval, RequestError};
use crate::rowbinary::Widths;
use crate::rows::{FunnelGroupRow, PathRow};
use crate::sql::{self, Property};

pub const MIN_STEPS: usize = 2;
pub const MAX_STEPS: usize = 10;
pub const MAX_EXCLUSIONS: usize = 10;
pub const BREAKDOWN_LIMIT: usize = 25;
const DEFAULT_WINDOW: &str = "14d";

/// A validated funnel and its statement.
#[derive(Debug, Clone)]
pub struct FunnelPlan {
    pub range: TimeRange,
    pub tz: Tz,
    pub events: Vec<String>,
    pub order: FunnelOrder,
    pub window_ms: u64,
    pub exclusions: Vec<Exclusion>,
    pub breakdown: bool,
    /// `SELECT` list of the rows before grouping, after the user.
    pub(crate) columns: String,
    /// The arrays of each user's row.
    arrays: String,
    /// `FROM ... WHERE ...` of the rows before grouping.
    pub(crate) source: String,
    /// Which users can enter the funnel.
    pub(crate) having: String,
}

/// Most users [`FunnelPlan::event_copies_sql`] names in its statement
/// (about 22 bytes each); more are read with every other user and filtered.
pub const MAX_LISTED_KEYS: usize = 1_000;

/// Longest list of users [`FunnelPlan::copies_sql`] names in its statement
/// (bytes of their ids); more are read with every other user and filtered.
pub const MAX_LISTED_USER_BYTES: usize = 64 * 1024;

impl FunnelPlan {
    /// Bytes of SQL of its largest statement but for the users it may
    /// name (at most [`MAX_LISTED_USER_BYTES`] more).
    pub fn sql_bytes(&self) -> usize {
        self.columns.len() + self.arrays.len() + self.source.len() + self.having.len() + 512
    }

    fn statement(&self, extra: &str, dedup: bool) -> String {
        format!(
            "SELECT distinct_id, {arrays} FROM (SELECT {uuid}distinct_id, {columns} FROM {source}{extra}{limit}) GROUP BY distinct_id HAVING {having}",
            arrays = self.arrays,
            uuid = if dedup { "uuid, " } else { "" },
            columns = self.columns,
            source = self.source,
            limit = if dedup { " LIMIT 1 BY uuid" } else { "" },
            having = self.having,
        )
    }

    /// The paths of `users`, de-duplicated by `uuid`; `None` when the list
    /// is too long to name (then read [`Self::all_copies_sql`] and keep the
    /// users wanted).
    pub fn copies_sql(&self, users: &[String]) -> Option<String> {
        if users.iter().map(|u| u.len() + 4).sum::<usize>() > MAX_LISTED_USER_BYTES {
            return None;
        }
        let list: Vec<String> = users.iter().map(|u| sql::string(u)).collect();
        Some(self.statement(&format!(" AND distinct_id IN ({})", list.join(", ")), true))
    }

    /// Every user's path, de-duplicated by `uuid`.
    pub fn all_copies_sql(&self) -> String {
        self.statement("", true)
    }

    /// Every user's path, without de-duplication.
    pub fn sql(&self) -> String {
        self.statement("", false)
    }

    /// The same funnel over one shard's own table, `events_local`: on a
    /// cluster whose users each live on one shard, each shard's funnel is
    /// whole, and the shards' counts add up.
    pub fn on_shard(&self) -> Self {
        let mut plan = self.clone();
        if let Some((table, rest)) = self.source.split_once(" WHERE ") {
            plan.source = format!("{table}_local WHERE {rest}");
        }
        plan
    }

    fn events_statement(&self, extra: &str, dedup: bool) -> String {
        format!(
            "SELECT cityHash64(distinct_id), murmurHash2_32(distinct_id), {columns} FROM {source}{extra}{limit}",
            columns = self.columns,
            source = self.source,
            limit = if dedup { " LIMIT 1 BY uuid" } else { "" },
        )
    }

    /// Every event of the funnel as a row of its own, in no particular
    /// order, its user named by [`UserKey`], without de-duplication;
    /// [`Self::event_shape`] describes a row.
    pub fn events_sql(&self) -> String {
        self.events_statement("", false)
    }

    /// The events of `users` (and of any user sharing their `cityHash64`),
    /// de-duplicated by `uuid`; `None` when the list is too long to name
    /// (then read [`Self::all_event_copies_sql`]).
    pub fn event_copies_sql(&self, users: &[UserKey]) -> Option<String> {
        if users.len() > MAX_LISTED_KEYS {
            return None;
        }
        let mut cities: Vec<u64> = users.iter().map(|u| u.city).collect();
        cities.sort_unstable();
        cities.dedup();
        let list: Vec<String> = cities.iter().map(u64::to_string).collect();
        Some(self.events_statement(
            &format!(" AND cityHash64(distinct_id) IN ({})", list.join(", ")),
            true,
        ))
    }

    /// Every event of the funnel, de-duplicated by `uuid`.
    pub fn all_event_copies_sql(&self) -> String {
        self.events_statement("", true)
    }

    /// The columns of the event statements.
    pub fn event_shape(&self) -> EventShape {
        EventShape {
            widths: self.widths(),
            exclusions: !self.exclusions.is_empty(),
            labels: self.breakdown,
        }
    }

    /// Integer widths of times and step masks in the answers.
    pub fn widths(&self) -> Widths {
        Widths {
            narrow_times: narrow(&self.range),
            narrow_steps: self.events.len() <= 8,
        }
    }

    pub fn spec(&self) -> FunnelSpec<'_> {
        FunnelSpec {
            steps: self.events.len(),
            window_ms: self.window_ms,
            order: self.order,
            exclusions: &self.exclusions,
        }
    }
}

/// Whether every millisecond of the range fits `u32` counted from its start.
fn narrow(range: &TimeRange) -> bool {
    let ms = range.to_epoch().saturating_sub(range.from_epoch()) * 1000;
    ms <= i64::from(u32::MAX)
}

/// `c0 + c1 * 2 + c2 * 4 ...` as a UInt16 mask.
fn mask(conditions: &[String]) -> String {
    if conditions.is_empty() {
        return "toUInt16(0)".to_owned();
    }
    let terms: Vec<String> = conditions
        .iter()
        .enumerate()
        .map(|(i, c)| format!("toUInt16({c}) * {}", 1u32 << i))
        .collect();
    format!("toUInt16({})", terms.join(" + "))
}

pub fn plan(
    req: &FunnelRequest,
    project_id: u64,
    database: &str,
    now: DateTime<Utc>,
) -> Result<FunnelPlan, RequestError> {
    if req.steps.len() < MIN_STEPS || req.steps.len() > MAX_STEPS {
        return Err(RequestError::new(
            "steps",
            format!("give {MIN_STEPS} to {MAX_STEPS} steps"),
        ));
    }
    if req.exclusions.len() > MAX_EXCLUSIONS {
        return Err(RequestError::new(
            "exclusions",
            format!("at most {MAX_EXCLUSIONS} exclusions"),
        ));
    }
    let order = match req.order {
        FunnelOrderRequest::Ordered => FunnelOrder::Ordered,
        FunnelOrderRequest::Strict => FunnelOrder::Strict,
        FunnelOrderRequest::Unordered => FunnelOrder::Unordered,
    };
    if order == FunnelOrder::Unordered && !req.exclusions.is_empty() {
        return Err(RequestError::new(
            "exclusions",
            "exclusions need an ordered or strict funnel",
        ));
    }
    let tz = range::parse_timezone(req.timezone.as_deref())?;
    let range = range::resolve(
        &req.date_from,
        req.date_to.as_deref(),
        Interval::Day,
        tz,
        now,
    )?;
    let window_ms = range::parse_window(
        req.conversion_window.as_deref().unwrap_or(DEFAULT_WINDOW),
        "conversion_window",
    )?;
    let global = sql::filters(&req.filters, "filters")?;
    let mut names = Vec::new();
    let steps = req
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let field = format!("steps[{i}]");
            names.push(s.event.clone());
            Ok(format!(
                "({} AND {} AND {global})",
                sql::event_is(&s.event, &format!("{field}.event"))?,
                sql::filters(&s.filters, &format!("{field}.filters"))?
            ))
        })
        .collect::<Result<Vec<_>, RequestError>>()?;
    let last = req.steps.len() - 1;
    let mut exclusions = Vec::new();
    let excluded = req
        .exclusions
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let field = format!("exclusions[{i}]");
            let to_step = x.to_step.unwrap_or(last);
            if to_step > last || x.from_step >= to_step {
                return Err(RequestError::new(
                    format!("{field}.to_step"),
                    format!("need from_step < to_step <= {last}"),
                ));
            }
            exclusions.push(Exclusion {
                from_step: x.from_step,
                to_step,
            });
            Ok(format!(
                "({} AND {})",
                sql::event_is(&x.event, &format!("{field}.event"))?,
                sql::filters(&x.filters, &format!("{field}.filters"))?
            ))
        })
        .collect::<Result<Vec<_>, RequestError>>()?;
    let label = req
        .breakdown
        .as_deref()
        .map(|key| Property::new(key, "breakdown"))
        .transpose()?;
    let mut conditions = vec![format!("project_id = {project_id}")];
    conditions.extend(sql::time_range(&range));
    if order != FunnelOrder::Strict {
        // Only events that can matter; strict funnels need every event to
        // see what comes between two steps.
        let mut events: Vec<String> = req
            .steps
            .iter()
            .map(|s| s.event.as_str())
            .chain(req.exclusions.iter().map(|x| x.event.as_str()))
            .map(sql::string)
            .collect();
        events.sort();
        events.dedup();
        conditions.push(format!("event IN ({})", events.join(", ")));
    }
    let first = match order {
        FunnelOrder::Unordered => "max(s) > 0",
        _ => "max(bitAnd(s, 1)) = 1",
    };
    // Arrays nobody reads are sent empty: building them costs as much as
    // the rest of the statement.
    let time = if narrow(&range) {
        // Never below the start: `timestamp` is `timestamp_ms` in seconds.
        format!(
            "toUInt32(timestamp_ms - {}) AS t",
            range.from_epoch() * 1000
        )
    } else {
        "timestamp_ms AS t".to_owned()
    };
    let mut columns = vec![
        time,
        if steps.len() <= 8 {
            format!("toUInt8({}) AS s", mask(&steps))
        } else {
            format!("{} AS s", mask(&steps))
        },
    ];
    let exclusion_array = if excluded.is_empty() {
        "emptyArrayUInt16()"
    } else {
        columns.push(format!("{} AS x", mask(&excluded)));
        "groupArray(x)"
    };
    let label_array = match &label {
        None => "emptyArrayString()",
        Some(p) => {
            columns.push(format!("if(s != 0, {}, '') AS bv", p.label()));
            "groupArray(bv)"
        }
    };
    let arrays = format!(
        "groupArray(t) AS times, groupArray(s) AS steps, {exclusion_array} AS exclusions, {label_array} AS labels"
    );
    let source = format!(
        "{table} WHERE {cond}",
        table = sql::events_table(database),
        cond = conditions.join(" AND "),
    );
    Ok(FunnelPlan {
        range,
        tz,
        events: names,
        order,
        window_ms,
        exclusions,
        breakdown: req.breakdown.is_some(),
        columns: columns.join(", "),
        arrays,
        source,
        having: first.to_owned(),
    })
}

/// Users per step and conversion times of one group of users.
#[derive(Debug, Clone, Default, PartialEq)]
struct Counts {
    users: Vec<u64>,
    /// Per step k >= 1: ms from step k-1 to step k.
    times: Vec<Vec<u64>>,
}

impl Counts {
    fn new(steps: usize) -> Self {
        Self {
            users: vec![0; steps],
            times: vec![Vec::new(); steps],
        }
    }

    fn add(&mut self, step_times: &[u64]) {
        for (k, t) in step_times.iter().enumerate() {
            if let Some(u) = self.users.get_mut(k) {
                *u += 1;
            }
            if k > 0
                && let Some(v) = self.times.get_mut(k)
            {
                v.push(t.saturating_sub(step_times[k - 1]));
            }
        }
    }

    fn merge(&mut self, other: Counts) {
        for (a, b) in self.users.iter_mut().zip(other.users) {
            *a += b;
        }
        for (a, b) in self.times.iter_mut().zip(other.times) {
            a.extend(b);
        }
    }

    fn answer(mut self, events: &[String]) -> Value {
        let first = self.users.first().copied().unwrap_or(0);
        let ratio = |n: u64, d: u64| if d == 0 { 0.0 } else { n as f64 / d as f64 };
        let mut out = Vec::new();
        for (k, event) in events.iter().enumerate() {
            let n = self.users[k];
            let previous = if k == 0 { n } else { self.users[k - 1] };
            let times = &mut self.times[k];
            out.push(json!({
                "step": k,
                "event": event,
                "count": n,
                "conversion_from_first": ratio(n, first),
                "conversion_from_previous": ratio(n, previous),
                "median_time_to_convert_seconds": median_seconds(times),
                "average_time_to_convert_seconds": mean_seconds(times),
            }));
        }
        Value::Array(out)
    }
}

/// Adds up users as their paths stream in.
#[derive(Debug)]
pub struct FunnelTally {
    plan: FunnelPlan,
    groups: HashMap<String, Counts>,
    sorter: PathSorter,
}

impl FunnelTally {
    pub fn new(plan: &FunnelPlan) -> Self {
        Self {
            plan: plan.clone(),
            groups: HashMap::new(),
            sorter: PathSorter::default(),
        }
    }

    /// Adds the users `other` counted (none of them counted here).
    pub fn merge(&mut self, other: FunnelTally) {
        let steps = self.plan.events.len();
        for (key, counts) in other.groups {
            self.groups
                .entry(key)
                .or_insert_with(|| Counts::new(steps))
                .merge(counts);
        }
    }

    /// Adds the users of one breakdown value matched inside ClickHouse
    /// (none of them counted here).
    pub fn add_group(&mut self, row: FunnelGroupRow) {
        // A value only users left out for their long paths have: no users.
        if row.users.first().copied().unwrap_or(0) == 0 {
            return;
        }
        let steps = self.plan.events.len();
        let mut counts = Counts::new(steps);
        for (k, n) in row.users.into_iter().enumerate().take(steps) {
            counts.users[k] = n;
        }
        for (k, times) in row.durations.into_iter().enumerate() {
            if let Some(slot) = counts.times.get_mut(k + 1) {
                *slot = times;
            }
        }
        self.groups
            .entry(row.label)
            .or_insert_with(|| Counts::new(steps))
            .merge(counts);
    }

    /// Matches one user's path as read without de-duplication. Counts
    /// nothing and answers `false` when two of its events cannot be told
    /// apart (same time, masks and label): they may be copies of one event,
    /// so the path must be read again by `uuid` and given to [`Self::add_unique`].
    #[must_use]
    pub fn add(&mut self, row: &PathRow) -> bool {
        self.add_path(row, false)
    }

    /// Matches one user's path read de-duplicated by `uuid`.
    pub fn add_unique(&mut self, row: &PathRow) {
        self.add_path(row, true);
    }

    fn add_path(&mut self, row: &PathRow, unique: bool) -> bool {
        // Users who cannot enter count nothing, copies or not (the grouped
        // statement's HAVING leaves them out; event rows bring them).
        let enters = match self.plan.order {
            FunnelOrder::Unordered => row.steps.iter().any(|&s| s != 0),
            _ => row.steps.iter().any(|&s| s & 1 != 0),
        };
        if !enters {
            return true;
        }
        let twins = self.sorter.sort(row);
        if twins && !unique {
            return false;
        }
        let Some(user) = match_user(self.sorter.events(), &self.plan.spec()) else {
            return true;
        };
        // The starting event's label; ties were broken by label, so it does
        // not depend on how rows arrived.
        let key = if self.plan.breakdown {
            self.sorter.label(row, user.start).to_owned()
        } else {
            String::new()
        };
        let steps = self.plan.events.len();
        self.groups
            .entry(key)
            .or_insert_with(|| Counts::new(steps))
            .add(&user.step_times);
        true
    }

    pub fn answer(mut self) -> Value {
        let plan = &self.plan;
        let steps = plan.events.len();
        let mut out = json!({
            "order": match plan.order {
                FunnelOrder::Ordered => "ordered",
                FunnelOrder::Strict => "strict",
                FunnelOrder::Unordered => "unordered",
            },
            "conversion_window_seconds": plan.window_ms / 1000,
            "timezone": plan.tz.name(),
            "date_from": plan.range.from.with_timezone(&plan.tz).to_rfc3339(),
            "date_to": plan.range.to.with_timezone(&plan.tz).to_rfc3339(),
        });
        let mut total = Counts::new(steps);
        for c in self.groups.values() {
            total.merge(c.clone());
        }
        out["steps"] = total.answer(&plan.events);
        if plan.breakdown {
            let mut groups: Vec<(String, Counts)> = self.groups.drain().collect();
            groups.sort_by(|(la, a), (lb, b)| b.users[0].cmp(&a.users[0]).then(la.cmp(lb)));
            let mut rows = Vec::new();
            let mut other = Counts::new(steps);
            let mut any_other = false;
            for (i, (label, counts)) in groups.into_iter().enumerate() {
                if i < BREAKDOWN_LIMIT {
                    rows.push(json!({
                        "breakdown_value": (!label.is_empty()).then_some(label),
                        "other": false,
                        "steps": counts.answer(&plan.events),
                    }));
                } else {
                    any_other = true;
                    other.merge(counts);
                }
            }
            if any_other {
                rows.push(json!({
                    "breakdown_value": null,
                    "other": true,
                    "steps": other.answer(&plan.events),
                }));
            }
            out["breakdown"] = Value::Array(rows);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::parse;

    use crate::range::test_now as now;

    fn plan_of(body: &str) -> Result<FunnelPlan, RequestError> {
        plan(&parse(body.as_bytes()).unwrap(), 3, "db", now())
    }

    #[test]
    fn on_a_shard_the_funnel_reads_its_own_table_with_the_same_conditions() {
        let p = plan_of(r#"{"steps":[{"event":"a"},{"event":"b"}],"date_from":"-30d"}"#).unwrap();
        let shard = p.on_shard();
        for (whole, local) in [(p.sql(), shard.sql()), (p.events_sql(), shard.events_sql())] {
            assert!(whole.contains("FROM db.events WHERE"), "{whole}");
            assert_eq!(
                local,
                whole.replace("FROM db.events WHERE", "FROM db.events_local WHERE")
            );
        }
    }

    #[test]
    fn statements_are_scoped_and_only_strict_reads_every_event() {
        let p = plan_of(r#"{"steps":[{"event":"a"},{"event":"b"}],"date_from":"-30d"}"#).unwrap();
        assert!(p.sql().contains("project_id = 3"));
        // The days of the range on the sorting key, or every day is read.
        for sql in [p.sql(), p.events_sql()] {
            assert!(
                sql.contains("toDate(timestamp) >= toDate(toDateTime(")
                    && sql.contains("toDate(timestamp) <= toDate(toDateTime("),
                "{sql}"
            );
        }
        assert!(p.sql().contains("event IN ('a', 'b')"), "{}", p.sql());
        assert!(!p.sql().contains("uuid"), "no uuid read: {}", p.sql());
        assert!(
            p.sql().contains("emptyArrayUInt16() AS exclusions"),
            "{}",
            p.sql()
        );
        assert!(
            p.sql().contains("emptyArrayString() AS labels"),
            "{}",
            p.sql()
        );
        let full = plan_of(r#"{"steps":[{"event":"a"},{"event":"b"}],"date_from":"-30d","breakdown":"k","exclusions":[{"event":"x"}]}"#).unwrap();
        assert!(
            full.sql().contains("groupArray(x) AS exclusions"),
            "{}",
            full.sql()
        );
        assert!(
            full.sql().contains("groupArray(bv) AS labels"),
            "{}",
            full.sql()
        );
        let again = p.copies_sql(&["u'1".to_owned()]).unwrap();
        assert!(again.contains("LIMIT 1 BY uuid"), "{again}");
        assert!(again.contains("distinct_id IN ('u\\'1')"), "{again}");
        assert!(again.contains("project_id = 3"), "{again}");
        let long: Vec<String> = (0..10_000).map(|i| format!("user-{i}")).collect();
        assert_eq!(p.copies_sql(&long), None, "too long to list");
        let every = p.all_copies_sql();
        assert!(every.contains("LIMIT 1 BY uuid") && !every.contains("distinct_id IN"));
        assert_eq!(p.window_ms, 14 * 86_400_000);
        let p = plan_of(
            r#"{"steps":[{"event":"a"},{"event":"b"}],"date_from":"-30d","order":"strict"}"#,
        )
        .unwrap();
        assert!(!p.sql().contains("event IN"), "{}", p.sql());
    }

    #[test]
    fn bad_funnels_name_their_field() {
        for (body, field) in [
            (r#"{"steps":[{"event":"a"}],"date_from":"-7d"}"#, "steps"),
            (
                r#"{"steps":[{"event":"a"},{"event":""}],"date_from":"-7d"}"#,
                "steps[1].event",
            ),
            (
                r#"{"steps":[{"event":"a"},{"event":"b"}],"date_from":"-7d","conversion_window":"5y"}"#,
                "conversion_window",
            ),
            (
                r#"{"steps":[{"event":"a"},{"event":"b"}],"date_from":"-7d","exclusions":[{"event":"x","from_step":1}]}"#,
                "exclusions[0].to_step",
            ),
            (
                r#"{"steps":[{"event":"a"},{"event":"b"}],"date_from":"-7d","order":"unordered","exclusions":[{"event":"x"}]}"#,
                "exclusions",
            ),
        ] {
            let e = plan_of(body).unwrap_err();
            assert_eq!(e.field, field, "{body}: {e}");
        }
        let eleven: Vec<String> = (0..11).map(|i| format!(r#"{{"event":"e{i}"}}"#)).collect();
        let e = plan_of(&format!(
            r#"{{"steps":[{}],"date_from":"-7d"}}"#,
            eleven.join(",")
        ))
        .unwrap_err();
        assert_eq!(e.field, "steps");
    }

    #[test]
    fn tally_counts_users_per_step_with_times() {
        let p = plan_of(r#"{"steps":[{"event":"a"},{"event":"b"}],"date_from":"-30d"}"#).unwrap();
        let mut t = FunnelTally::new(&p);
        let row = |times: Vec<u64>, steps: Vec<u16>| PathRow {
            distinct_id: "u".into(),
            exclusions: vec![0; times.len()],
            labels: vec![String::new(); times.len()],
            times,
            steps,
        };
        assert!(t.add(&row(vec![5_000, 1_000], vec![2, 1]))); // converts in 4 s
        assert!(t.add(&row(vec![1_000, 3_000], vec![1, 2]))); // 2 s
        assert!(t.add(&row(vec![1_000], vec![1])));
        let out = t.answer();
        assert_eq!(out["steps"][0]["count"], 3);
        assert_eq!(out["steps"][1]["count"], 2);
        assert_eq!(out["steps"][1]["median_time_to_convert_seconds"], 3.0);
        assert!(out["steps"][0]["median_time_to_convert_seconds"].is_null());
        let r = out["steps"][1]["conversion_from_first"].as_f64().unwrap();
        assert!((r - 2.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn paths_with_indistinguishable_events_are_read_again() {
        let p = plan_of(r#"{"steps":[{"event":"a"},{"event":"a"}],"date_from":"-30d"}"#).unwrap();
        let row = |times: Vec<u64>, labels: Vec<&str>| PathRow {
            distinct_id: "u".into(),
            steps: vec![3u16; times.len()],
            exclusions: vec![0; times.len()],
            labels: labels.into_iter().map(String::from).collect(),
            times,
        };
        let mut t = FunnelTally::new(&p);
        // Same time, masks and label: maybe one event written twice.
        assert!(!t.add(&row(vec![1_000, 1_000], vec!["", ""])));
        assert!(
            !t.add(&row(vec![1_000, 1_000], vec![])),
            "without labels too"
        );
        // Told apart by the time or by the label: matched at once.
        assert!(t.add(&row(vec![1_000, 1_001], vec!["", ""])));
        assert!(t.add(&row(vec![1_000, 1_000], vec!["x", "y"])));
        let out = t.answer();
        assert_eq!(
            out["steps"][0]["count"], 2,
            "the deferred user is not counted"
        );
        assert_eq!(out["steps"][1]["count"], 2);
        // Read again by uuid, the same path counts: two distinct events.
        let mut t = FunnelTally::new(&p);
        t.add_unique(&row(vec![1_000, 1_000], vec!["", ""]));
        assert_eq!(t.answer()["steps"][1]["count"], 1);
    }

    #[test]
    fn copies_that_cannot_change_the_answer_are_not_read_again() {
        let p = plan_of(
            r#"{"steps":[{"event":"a"},{"event":"b"}],"order":"strict","date_from":"-30d"}"#,
        )
        .unwrap();
        let row = |times: Vec<u64>, steps: Vec<u16>| PathRow {
            distinct_id: "u".into(),
            exclusions: vec![],
            labels: vec![],
            times,
            steps,
        };
        let mut t = FunnelTally::new(&p);
        // Copies of an event matching no step: a strict attempt stops at the
        // first of them as it would at the only one.
        assert!(t.add(&row(vec![1_000, 2_000, 2_000], vec![1, 0, 0])));
        // A user who never does step 1 enters nothing, with copies or not.
        assert!(t.add(&row(vec![1_000, 1_000], vec![2, 2])));
        // Copies of a step event still are.
        assert!(!t.add(&row(vec![1_000, 1_000], vec![1, 1])));
        assert_eq!(t.answer()["steps"][0]["count"], 1);
    }
}
