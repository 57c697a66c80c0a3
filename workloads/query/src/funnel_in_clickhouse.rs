//! Funnel matching inside ClickHouse, for servers that have `arrayFold`
//! (ClickHouse 23.10 and later; proven on a current one through chdb). The
//! statement does what [`crate::funnel_match`] does, by the same rules, and
//! answers one row per breakdown value: the users who reached each step and,
//! per step after the first, the time each of them took to get there. The
//! service holds only those counts and times
//! ([`crate::funnel::FunnelTally::add_group`]) and the events of the few
//! users with more than [`MAX_MATCHED_PATH`] of them (matched as on older
//! servers), which it adds up across
//! shards and breakdown values as it does for paths matched here.
//!
//! Per user, the events are de-duplicated by `uuid` (copies of an event are
//! the same tuple, so `groupUniqArray` keeps one) and sorted as
//! [`crate::funnel_match::sort_path`] sorts them, by time, step mask,
//! exclusion mask, then label. Every event that can start an attempt starts
//! one, folded over the events after it ([`ordered_attempt`],
//! [`unordered_attempt`]); the valid attempt reaching the most steps wins,
//! the earliest on a tie.
//!
//! ClickHouse 18.16 has no `arrayFold`, and its `windowFunnel` gives only
//! the level reached (no step times, no start to take a breakdown value
//! from, no strict or unordered modes): there, paths are matched by the
//! service.

use crate::funnel::FunnelPlan;
use crate::funnel_match::FunnelOrder;

/// Longest path (distinct events of one user) matched inside ClickHouse.
/// Each start of an attempt reads the whole path, and ClickHouse copies
/// the arrays a lambda reads for every element it maps, so a path costs
/// memory and time growing with its length squared: 600k events in paths
/// of 32 take 0.23 s on chdb, in paths of 256 0.57 s, of 1024 2.1 s, and
/// one path of 20k events exceeds 20 GiB. Longer paths (bots, mostly) are
/// read by [`long_paths_sql`] and matched by the service.
pub const MAX_MATCHED_PATH: usize = 256;

/// The paths [`matched_sql`] leaves out, de-duplicated by `uuid`, as the
/// service matches them ([`FunnelPlan::all_copies_sql`] with a condition).
pub fn long_paths_sql(plan: &FunnelPlan) -> String {
    format!("{} AND count() > {MAX_MATCHED_PATH}", plan.all_copies_sql())
}

/// A statement that runs only where funnels can be matched inside
/// ClickHouse: `3` there, an unknown-function error on older servers.
pub const PROBE_SQL: &str = "SELECT arrayFold((acc, x) -> acc + x, [toUInt64(2)], toUInt64(1))";

/// Per step `k`, at each index `p` of the path (1-based, as ClickHouse
/// counts), the first index from `p` on whose event matches step `k`, 0
/// when none does: `nexts[k + 1][p]`. One backward fill per step, so an
/// attempt jumps from step to step instead of walking the events between.
fn nexts(steps: usize) -> String {
    format!(
        "arrayMap(k -> arrayReverseFill(p -> p > 0, arrayMap((e, p) -> if(bitTest(e.2, k), p, 0), path, arrayEnumerate(path))), range({steps}))"
    )
}

/// Per exclusion rule `r`, how many events up to each index match it:
/// `inside[r + 1][p]`, so the events between two steps are counted by a
/// subtraction.
fn inside(rules: usize) -> String {
    format!(
        "arrayMap(r -> arrayCumSum(arrayMap(e -> toUInt32(bitTest(e.3, r)), path)), range({rules}))"
    )
}

/// The indices of the steps of the attempt starting at `path[i]` of an
/// ordered or strict funnel: step `k` is the first event after step
/// `k - 1` that matches it (ordered), or the very next event if it matches
/// (strict), inside the window; the attempt stops at the first step not
/// found.
fn ordered_attempt(plan: &FunnelPlan) -> String {
    let steps = plan.events.len();
    let next = if plan.order == FunnelOrder::Strict {
        "if(bitTest(path[acc[k] + 1].2, k), toUInt32(acc[k] + 1), toUInt32(0))"
    } else {
        "nexts[k + 1][acc[k] + 1]"
    };
    format!(
        "arrayFold((acc, k) -> if(length(acc) != k, acc, \
         if({next} > 0 AND path[{next}].1 <= path[i].1 + {window}, arrayPushBack(acc, {next}), acc)), \
         range(1, {steps}), [toUInt32(i)])",
        window = plan.window_ms,
    )
}

/// Whether the attempt whose step indices are `idx` has no event of an
/// exclusion rule strictly between the steps the rule spans (rules whose
/// last step was not reached do nothing).
fn valid(plan: &FunnelPlan, idx: &str) -> String {
    let rules: Vec<String> = plan
        .exclusions
        .iter()
        .enumerate()
        .map(|(r, x)| {
            format!(
                "(length({idx}) <= {to} OR inside[{n}][{idx}[{to} + 1] - 1] = inside[{n}][{idx}[{from} + 1]])",
                n = r + 1,
                from = x.from_step,
                to = x.to_step,
            )
        })
        .collect();
    if rules.is_empty() {
        "1".to_owned()
    } else {
        rules.join(" AND ")
    }
}

/// Every valid attempt of a user as `(level, step times, label of the
/// starting event)`, in the order of their starts. An unordered attempt
/// from `path[i]` takes, for each step, the first event from `path[i]` on
/// that matches it, inside the window (one event may be several steps).
fn attempts(plan: &FunnelPlan) -> String {
    let steps = plan.events.len();
    match plan.order {
        FunnelOrder::Unordered => format!(
            "arrayMap(a -> (toUInt8(length(a.1)), arraySort(arrayMap(p -> path[p].1, a.1)), a.2), \
             arrayMap(i -> (arrayFilter(p -> p > 0 AND path[p].1 <= path[i].1 + {window}, arrayMap(j -> nexts[j + 1][i], range({steps}))), path[i].4), \
             arrayFilter(i -> path[i].2 != 0, {STARTS})))",
            window = plan.window_ms,
        ),
        _ => format!(
            "arrayMap(a -> (toUInt8(length(a.1)), arrayMap(p -> path[p].1, a.1), a.2), arrayFilter(a -> {valid}, \
             arrayMap(i -> ({fold}, path[i].4), arrayFilter(i -> bitTest(path[i].2, 0), {STARTS}))))",
            valid = valid(plan, "a.1"),
            fold = ordered_attempt(plan),
        ),
    }
}

/// Where an attempt may start: every event of a path, none of a path too
/// long to match here (no attempt is then built, so it costs nothing).
const STARTS: &str = "if(long, emptyArrayUInt32(), arrayEnumerate(path))";

/// The statement: per breakdown value (`''` without a breakdown), users
/// per step (`Array(UInt64)`, one per step), at index `k - 1` the times in
/// milliseconds the users reaching step `k` took from step `k - 1`
/// (`Array(Array(UInt64))`, as long as the furthest step reached minus
/// one), and how many users' paths were too long to match here
/// ([`long_paths_sql`] reads them, only when there are some). A value
/// only such users have answers no users.
pub fn matched_sql(plan: &FunnelPlan) -> String {
    let steps = plan.events.len();
    let x = if plan.exclusions.is_empty() {
        "toUInt16(0)"
    } else {
        "x"
    };
    let label = if plan.breakdown { "bv" } else { "''" };
    format!(
        "SELECT label, sumForEachIf(arrayMap(k -> toUInt64(k < level), range({steps})), NOT long) AS users, \
         groupArrayForEachIf(arrayMap(k -> times[k + 2] - times[k + 1], range(greatest(level, 1) - 1)), NOT long) AS durations, \
         countIf(long) AS long_users \
         FROM (SELECT best.1 AS level, best.2 AS times, best.3 AS label, long FROM (\
         SELECT arraySort(groupUniqArray((toUInt64(t), s, {x}, {label}, uuid))) AS path, \
         length(path) > {MAX_MATCHED_PATH} AS long, \
         {nexts}{inside}{attempts} AS attempts, \
         arrayFirst(a -> a.1 = arrayMax(b -> b.1, attempts), attempts) AS best \
         FROM (SELECT distinct_id, uuid, {columns} FROM {source}) \
         GROUP BY distinct_id HAVING {having} AND (long OR notEmpty(attempts)))) \
         GROUP BY label",
        nexts = if plan.order == FunnelOrder::Strict {
            String::new()
        } else {
            format!("{} AS nexts, ", nexts(steps))
        },
        inside = if plan.exclusions.is_empty() {
            String::new()
        } else {
            format!("{} AS inside, ", inside(plan.exclusions.len()))
        },
        attempts = attempts(plan),
        columns = plan.columns,
        source = plan.source,
        having = plan.having,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::range::test_now as now;
    use crate::request::parse;

    fn plan_of(body: &str) -> FunnelPlan {
        crate::funnel::plan(&parse(body.as_bytes()).unwrap(), 3, "db", now()).unwrap()
    }

    #[test]
    fn exclusions_count_events_strictly_between_their_steps() {
        let p = plan_of(
            r#"{"steps":[{"event":"a"},{"event":"b"},{"event":"c"}],"date_from":"-30d",
                "exclusions":[{"event":"x","from_step":0,"to_step":2},{"event":"y","from_step":1,"to_step":2}]}"#,
        );
        assert_eq!(
            valid(&p, "v"),
            "(length(v) <= 2 OR inside[1][v[2 + 1] - 1] = inside[1][v[0 + 1]]) AND \
             (length(v) <= 2 OR inside[2][v[2 + 1] - 1] = inside[2][v[1 + 1]])"
        );
        let none = plan_of(r#"{"steps":[{"event":"a"},{"event":"b"}],"date_from":"-30d"}"#);
        assert_eq!(valid(&none, "v"), "1");
        assert!(!matched_sql(&none).contains("inside"));
    }

    #[test]
    fn the_statement_reads_events_once_each_and_a_shard_its_own_table() {
        let p = plan_of(r#"{"steps":[{"event":"a"},{"event":"b"}],"date_from":"-30d"}"#);
        let sql = matched_sql(&p);
        assert!(
            sql.contains("groupUniqArray((toUInt64(t), s, toUInt16(0), '', uuid))"),
            "{sql}"
        );
        assert!(sql.contains("FROM db.events WHERE project_id = 3"), "{sql}");
        assert!(sql.contains("event IN ('a', 'b')"), "{sql}");
        assert!(
            sql.contains("nexts[k + 1][acc[k] + 1]"),
            "ordered: the next match: {sql}"
        );
        let local = matched_sql(&p.on_shard());
        assert_eq!(
            local,
            sql.replace("FROM db.events WHERE", "FROM db.events_local WHERE")
        );
        let strict = plan_of(
            r#"{"steps":[{"event":"a"},{"event":"b"}],"order":"strict","breakdown":"k","exclusions":[{"event":"x"}],"date_from":"-30d"}"#,
        );
        let sql = matched_sql(&strict);
        assert!(
            sql.contains("bitTest(path[acc[k] + 1].2, k)"),
            "strict: the very next event: {sql}"
        );
        assert!(!sql.contains("AS nexts"), "strict: no jumps: {sql}");
        assert!(sql.contains("(toUInt64(t), s, x, bv, uuid)"), "{sql}");
        let unordered = matched_sql(&plan_of(
            r#"{"steps":[{"event":"a"},{"event":"b"}],"order":"unordered","date_from":"-30d"}"#,
        ));
        assert!(
            unordered.contains("path[i].2 != 0"),
            "any step starts: {unordered}"
        );
    }
}
