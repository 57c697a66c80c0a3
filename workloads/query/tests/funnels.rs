//! Funnels on ClickHouse 18.16 against answers computed here, in plain Rust,
//! from the same generated events: ordered, strict and unordered funnels,
//! conversion windows, filters, exclusions, breakdowns, replayed events and
//! events that share a second.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;

use common::*;
use serde_json::{Value, json};
use tributary_query::funnel::{self, BREAKDOWN_LIMIT};
use tributary_query::funnel_in_clickhouse::{
    MAX_MATCHED_PATH, PROBE_SQL, long_paths_sql, matched_sql,
};
use tributary_query::request::{FunnelOrderRequest, FunnelRequest, parse};
use tributary_query::warehouse::{DEFAULT_FUNNEL_EVENTS, GroupingLabels, Warehouse};
use tributary_tests::Stack;
use tributary_tests::chdb::{self, Outcome};

#[derive(Debug, Clone, Copy)]
struct E {
    ts: u64,
    steps: u16,
    excl: u16,
}

/// Step times of the user's chosen attempt, by the documented rules.
fn user_result(
    path: &[E],
    n: usize,
    window: u64,
    order: FunnelOrderRequest,
    rules: &[(usize, usize)],
) -> Option<(usize, Vec<u64>)> {
    let mut best: Option<(usize, Vec<u64>)> = None;
    for s in 0..path.len() {
        let end = path[s].ts + window;
        let attempt: Option<Vec<u64>> = match order {
            FunnelOrderRequest::Unordered => {
                if path[s].steps & ((1 << n) - 1) == 0 {
                    continue;
                }
                let mut times: Vec<u64> = (0..n)
                    .filter_map(|j| {
                        path[s..]
                            .iter()
                            .find(|e| e.ts <= end && e.steps & (1 << j) != 0)
                            .map(|e| e.ts)
                    })
                    .collect();
                times.sort();
                Some(times)
            }
            _ => {
                if path[s].steps & 1 == 0 {
                    continue;
                }
                let mut idx = vec![s];
                for k in 1..n {
                    let last = *idx.last().unwrap();
                    let next = if order == FunnelOrderRequest::Strict {
                        Some(last + 1).filter(|&j| {
                            j < path.len() && path[j].ts <= end && path[j].steps & (1 << k) != 0
                        })
                    } else {
                        (last + 1..path.len())
                            .find(|&j| path[j].ts <= end && path[j].steps & (1 << k) != 0)
                    };
                    match next {
                        Some(j) => idx.push(j),
                        None => break,
                    }
                }
                let excluded = rules.iter().enumerate().any(|(r, &(f, t))| {
                    t < idx.len() && (idx[f] + 1..idx[t]).any(|i| path[i].excl & (1 << r) != 0)
                });
                (!excluded).then(|| idx.iter().map(|&i| path[i].ts).collect())
            }
        };
        if let Some(times) = attempt
            && best.as_ref().is_none_or(|(_, b)| times.len() > b.len())
        {
            best = Some((s, times));
        }
    }
    best
}

#[derive(Debug, Default, Clone)]
struct Group {
    users: Vec<u64>,
    times: Vec<Vec<u64>>,
}

fn model(
    events: &[Ev],
    req: &FunnelRequest,
    from: i64,
    to: i64,
    window: u64,
) -> HashMap<String, Group> {
    let n = req.steps.len();
    let rules: Vec<(usize, usize)> = req
        .exclusions
        .iter()
        .map(|x| (x.from_step, x.to_step.unwrap_or(n - 1)))
        .collect();
    let mut by_user: HashMap<&str, Vec<(E, String)>> = HashMap::new();
    for e in unique_in_project(events, PROJECT) {
        if e.secs() < from || e.secs() >= to {
            continue;
        }
        let mut steps = 0u16;
        for (k, s) in req.steps.iter().enumerate() {
            if e.event == s.event
                && all_match(&e.props, &s.filters)
                && all_match(&e.props, &req.filters)
            {
                steps |= 1 << k;
            }
        }
        let mut excl = 0u16;
        for (r, x) in req.exclusions.iter().enumerate() {
            if e.event == x.event && all_match(&e.props, &x.filters) {
                excl |= 1 << r;
            }
        }
        if steps == 0 && excl == 0 && req.order != FunnelOrderRequest::Strict {
            continue;
        }
        let l = match (&req.breakdown, steps) {
            (Some(k), s) if s != 0 => label(&e.props, k),
            _ => String::new(),
        };
        by_user.entry(&e.distinct_id).or_default().push((
            E {
                ts: e.ts_ms,
                steps,
                excl,
            },
            l,
        ));
    }
    let mut groups: HashMap<String, Group> = HashMap::new();
    for (_, mut path) in by_user {
        path.sort_by(|(a, la), (b, lb)| {
            (a.ts, a.steps, a.excl, la).cmp(&(b.ts, b.steps, b.excl, lb))
        });
        let plain: Vec<E> = path.iter().map(|(e, _)| *e).collect();
        let Some((start, times)) = user_result(&plain, n, window, req.order, &rules) else {
            continue;
        };
        let g = groups
            .entry(path[start].1.clone())
            .or_insert_with(|| Group {
                users: vec![0; n],
                times: vec![Vec::new(); n],
            });
        for k in 0..times.len() {
            g.users[k] += 1;
            if k > 0 {
                g.times[k].push(times[k] - times[k - 1]);
            }
        }
    }
    groups
}

fn median(v: &[u64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort();
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2] as f64 / 1000.0),
        n => Some((v[n / 2 - 1] + v[n / 2]) as f64 / 2000.0),
    }
}

fn assert_steps(got: &Value, want: &Group, what: &str) {
    let steps = got.as_array().unwrap();
    for (k, s) in steps.iter().enumerate() {
        assert_eq!(s["count"], want.users[k], "{what}: step {k} count");
        let first = want.users[0].max(1) as f64;
        let r = s["conversion_from_first"].as_f64().unwrap();
        assert!(
            (r - want.users[k] as f64 / first).abs() < 1e-9,
            "{what}: step {k} conversion"
        );
        let m = s["median_time_to_convert_seconds"].as_f64();
        let w = if k == 0 { None } else { median(&want.times[k]) };
        assert_eq!(
            m.map(|x| (x * 1000.0).round()),
            w.map(|x| (x * 1000.0).round()),
            "{what}: step {k} median"
        );
        let avg = s["average_time_to_convert_seconds"].as_f64();
        let wa = (k > 0 && !want.times[k].is_empty()).then(|| {
            want.times[k].iter().sum::<u64>() as f64 / want.times[k].len() as f64 / 1000.0
        });
        assert_eq!(
            avg.map(|x| (x * 1000.0).round()),
            wa.map(|x| (x * 1000.0).round()),
            "{what}: step {k} average"
        );
    }
}

/// Budget small enough that most funnels here run out of it mid-stream.
const SMALL_BUDGET: usize = 50;

/// The funnel's answer, which must not depend on where its events are
/// grouped into paths: here, by ClickHouse (no budget), or here until a
/// small budget runs out mid-stream and then by ClickHouse.
async fn run(wh: &Warehouse, db: &str, req: &FunnelRequest) -> (Value, funnel::FunnelPlan) {
    let plan = funnel::plan(req, PROJECT, db, now()).unwrap();
    let count = &wh
        .rows(&format!("SELECT count() FROM ({})", plan.events_sql()))
        .await
        .unwrap()[0][0];
    let events: usize = count
        .as_str()
        .map_or(count.to_string(), str::to_owned)
        .parse()
        .unwrap();
    let mut answers = Vec::new();
    for (budget, grouped_by) in [
        (DEFAULT_FUNNEL_EVENTS, "service"),
        (0, "clickhouse"),
        (
            SMALL_BUDGET,
            if events > SMALL_BUDGET {
                "clickhouse"
            } else {
                "service"
            },
        ),
    ] {
        let wh = wh.clone().with_funnel_budget(budget);
        let before = grouped(&wh, grouped_by);
        let answer = wh
            .funnel(&plan)
            .await
            .unwrap_or_else(|e| panic!("budget {budget}: {e}\n{}", plan.sql()));
        assert_eq!(
            grouped(&wh, grouped_by),
            before + 1,
            "budget {budget}, {events} events"
        );
        answers.push(answer);
    }
    assert_eq!(answers[0], answers[1], "grouped here vs by ClickHouse");
    assert_eq!(answers[0], answers[2], "grouped here vs budget run out");
    (answers.swap_remove(0), plan)
}

/// How many funnels `wh` had grouped by `grouped_by`.
fn grouped(wh: &Warehouse, grouped_by: &'static str) -> u64 {
    wh.funnel_grouping()
        .get_or_create(&GroupingLabels { grouped_by })
        .get()
}

/// Funnels of every kind: orders, windows, filters, exclusions,
/// breakdowns, nine steps, and a range with no events.
fn requests() -> Vec<Value> {
    vec![
        json!({"steps":[{"event":"$pageview"},{"event":"signup"},{"event":"view_item"}],
               "date_from":"2026-10-20","date_to":"2026-11-13","conversion_window":"1d"}),
        json!({"steps":[{"event":"signup"},{"event":"view_item"}],"order":"strict",
               "date_from":"2026-10-20","date_to":"2026-11-13","conversion_window":"7d"}),
        json!({"steps":[{"event":"checkout"},{"event":"purchase"},{"event":"signup"}],"order":"unordered",
               "date_from":"2026-10-20","date_to":"2026-11-13","conversion_window":"2h"}),
        json!({"steps":[{"event":"$pageview"},{"event":"view_item","filters":[{"key":"amount","operator":"gt","value":30}]},{"event":"checkout"}],
               "breakdown":"$browser","timezone":"Europe/Berlin","filters":[{"key":"plan","operator":"is_not","value":"free"}],
               "date_from":"2026-10-22","date_to":"2026-11-08","conversion_window":"3d"}),
        json!({"steps":[{"event":"$pageview"},{"event":"signup"},{"event":"view_item"},{"event":"checkout"}],
               "exclusions":[{"event":"logout","from_step":1,"to_step":3}],
               "date_from":"2026-10-20","date_to":"2026-11-13","conversion_window":"14d"}),
        json!({"steps":[{"event":"signup"},{"event":"purchase"}],"breakdown":"city",
               "date_from":"2026-10-20","date_to":"2026-11-13"}),
        json!({"steps":[{"event":"signup"},{"event":"signup"}],"order":"strict",
               "date_from":"2026-10-20","date_to":"2026-11-13","conversion_window":"30m"}),
        json!({"steps":[{"event":"signup"},{"event":"purchase"}],"date_from":"2025-01-01","date_to":"2025-02-01"}),
        // Nine steps: masks travel as u16.
        json!({"steps":[{"event":"$pageview"},{"event":"view_item"},{"event":"$pageview"},{"event":"view_item"},{"event":"$pageview"},
                        {"event":"view_item"},{"event":"$pageview"},{"event":"view_item"},{"event":"checkout"}],
               "date_from":"2026-10-20","date_to":"2026-11-13","conversion_window":"14d"}),
        // Exclusions in a strict funnel, two rules with different spans,
        // and an unordered funnel naming one event twice, with breakdowns.
        json!({"steps":[{"event":"$pageview"},{"event":"signup"},{"event":"view_item"}],"order":"strict",
               "exclusions":[{"event":"signup","from_step":0,"to_step":2}],"breakdown":"city",
               "date_from":"2026-10-20","date_to":"2026-11-13","conversion_window":"3d"}),
        json!({"steps":[{"event":"$pageview"},{"event":"signup"},{"event":"purchase"}],
               "exclusions":[{"event":"logout","from_step":0,"to_step":1},{"event":"checkout","from_step":1,"to_step":2}],
               "breakdown":"$browser","date_from":"2026-10-20","date_to":"2026-11-13","conversion_window":"5d"}),
        json!({"steps":[{"event":"view_item"},{"event":"checkout"},{"event":"view_item"}],"order":"unordered",
               "breakdown":"n","date_from":"2026-10-20","date_to":"2026-11-13","conversion_window":"12h"}),
        // The step that ends an exclusion's span matches the exclusion too.
        json!({"steps":[{"event":"$pageview"},{"event":"signup"},{"event":"view_item"}],
               "exclusions":[{"event":"view_item","from_step":0,"to_step":2}],
               "date_from":"2026-10-20","date_to":"2026-11-13","conversion_window":"4d"}),
        // Longer than 49 days: times travel as u64 since the epoch.
        json!({"steps":[{"event":"$pageview"},{"event":"view_item"},{"event":"checkout"}],"breakdown":"$browser",
               "date_from":"2026-09-01","date_to":"2026-12-01","conversion_window":"2d"}),
    ]
}

#[tokio::test]
async fn funnels_match_an_independent_computation() {
    let stack = Stack::require();
    let events = generate(11, 500);
    let (wh, db) = load(&stack, &events).await;
    let requests = requests();
    let mut widths = std::collections::HashSet::new();
    for body in requests {
        let req: FunnelRequest = parse(body.to_string().as_bytes()).unwrap();
        let (answer, plan) = run(&wh, &db, &req).await;
        let w = plan.widths();
        widths.insert((w.narrow_times, w.narrow_steps));
        let groups = model(
            &events,
            &req,
            plan.range.from_epoch(),
            plan.range.to_epoch(),
            plan.window_ms,
        );
        let mut total = Group {
            users: vec![0; req.steps.len()],
            times: vec![Vec::new(); req.steps.len()],
        };
        for g in groups.values() {
            for k in 0..req.steps.len() {
                total.users[k] += g.users[k];
                total.times[k].extend(&g.times[k]);
            }
        }
        assert_steps(&answer["steps"], &total, &body.to_string());
        if body["date_from"] != "2025-01-01" {
            assert!(
                total.users[1] > 0,
                "{body}: the data should convert somebody"
            );
        }
        if req.breakdown.is_some() {
            let mut ranked: Vec<(&String, &Group)> = groups.iter().collect();
            ranked.sort_by(|a, b| b.1.users[0].cmp(&a.1.users[0]).then(a.0.cmp(b.0)));
            let rows = answer["breakdown"].as_array().unwrap();
            assert_eq!(
                rows.len(),
                ranked.len().min(BREAKDOWN_LIMIT) + usize::from(ranked.len() > BREAKDOWN_LIMIT)
            );
            for (row, (label, g)) in rows.iter().zip(&ranked) {
                if row["other"] == true {
                    break;
                }
                assert_eq!(
                    row["breakdown_value"].as_str().unwrap_or(""),
                    label.as_str()
                );
                assert_steps(&row["steps"], g, &format!("{body} / {label}"));
            }
        }
    }
    assert_eq!(widths.len(), 3, "narrow and wide times and masks exercised");
    drop_db(&stack, &db).await;
}

#[tokio::test]
async fn steps_in_the_same_second_keep_their_millisecond_order() {
    let stack = Stack::require();
    let ev = |n: u64, event: &str, user: &str, ms: u64| Ev {
        uuid: uuid::Uuid::from_u64_pair(9, n).to_string(),
        project_id: PROJECT,
        event: event.into(),
        distinct_id: user.into(),
        props: serde_json::Map::new(),
        ts_ms: START_MS + ms,
    };
    // u1: a at .100, b at .900 of the same second → converts.
    // u2: b at .100, a at .900 → does not (b came first).
    let events = vec![
        ev(1, "b", "u1", 900),
        ev(2, "a", "u1", 100),
        ev(3, "b", "u2", 100),
        ev(4, "a", "u2", 900),
    ];
    let (wh, db) = load(&stack, &events).await;
    let req: FunnelRequest = parse(br#"{"steps":[{"event":"a"},{"event":"b"}],"date_from":"2026-10-20","date_to":"2026-10-21"}"#).unwrap();
    let (answer, _) = run(&wh, &db, &req).await;
    assert_eq!(answer["steps"][0]["count"], 2);
    assert_eq!(answer["steps"][1]["count"], 1);
    assert_eq!(answer["steps"][1]["median_time_to_convert_seconds"], 0.8);
    drop_db(&stack, &db).await;
}

/// Copies of an event must not pass as two steps, while two distinct events
/// at the same millisecond may; with more such users than fit in one
/// statement's list, they are all read again and filtered.
#[tokio::test]
async fn copies_count_once_and_twins_twice_however_many_users_hold_them() {
    let stack = Stack::require();
    let mut events = Vec::new();
    let users = 5_000u64;
    for u in 0..users {
        // Long ids, so the users to read again overflow the listed form.
        let user = format!("user-{u:05}-{}", "x".repeat(60));
        let ts_ms = START_MS + u * 1_000;
        let copies = if u % 7 == 0 { 2 } else { 1 };
        for k in 0..copies {
            events.push(Ev {
                uuid: uuid::Uuid::from_u64_pair(11 + k, u).to_string(),
                project_id: PROJECT,
                event: "a".into(),
                distinct_id: user.clone(),
                props: serde_json::Map::new(),
                ts_ms,
            });
        }
    }
    // `load` writes every fifth event a second time: over 1 000 users hold a
    // copy, more than `MAX_LISTED_USER_BYTES` of ids.
    let replayed: usize = events
        .iter()
        .step_by(5)
        .map(|e| e.distinct_id.len() + 4)
        .sum();
    assert!(replayed > funnel::MAX_LISTED_USER_BYTES, "{replayed}");
    // Users holding copies or twins outnumber what the event rows' list
    // names, too.
    let mut per_user: HashMap<&str, usize> = HashMap::new();
    for e in &events {
        *per_user.entry(e.distinct_id.as_str()).or_default() += 1;
    }
    let flagged: std::collections::HashSet<&str> = events
        .iter()
        .step_by(5)
        .map(|e| e.distinct_id.as_str())
        .chain(per_user.iter().filter(|(_, n)| **n > 1).map(|(u, _)| *u))
        .collect();
    assert!(flagged.len() > funnel::MAX_LISTED_KEYS, "{}", flagged.len());
    let (wh, db) = load(&stack, &events).await;
    let twins = (0..users).filter(|u| u % 7 == 0).count();
    let req: FunnelRequest = parse(br#"{"steps":[{"event":"a"},{"event":"a"}],"date_from":"2026-10-20","date_to":"2026-11-20"}"#).unwrap();
    let (answer, _) = run(&wh, &db, &req).await;
    assert_eq!(answer["steps"][0]["count"], users);
    assert_eq!(answer["steps"][1]["count"], twins as u64);
    drop_db(&stack, &db).await;
    // A handful of users with copies: read again by name.
    let few = &events[..40];
    let mut per_user: HashMap<&str, usize> = HashMap::new();
    for e in few {
        *per_user.entry(e.distinct_id.as_str()).or_default() += 1;
    }
    let (wh, db) = load(&stack, few).await;
    let (answer, _) = run(&wh, &db, &req).await;
    assert_eq!(answer["steps"][0]["count"], per_user.len() as u64);
    let twins = per_user.values().filter(|&&n| n == 2).count() as u64;
    assert!(twins > 0);
    assert_eq!(answer["steps"][1]["count"], twins);
    drop_db(&stack, &db).await;
}

/// Each funnel of `bodies` matched inside a current ClickHouse (chdb) and
/// here on 18.16, over `events` loaded into both; answers whether one of
/// them converted anybody.
async fn agree_inside_and_here(stack: &Stack, events: &[Ev], bodies: &[Value]) -> usize {
    let python = stack
        .python
        .clone()
        .expect("TRIBUTARY_PYTHON not set by local-stack.sh");
    let (wh, db) = load(stack, events).await;
    let mut statements = statements(&db, events);
    // What the service asks to decide where funnels are matched.
    statements.push(PROBE_SQL.to_owned());
    let setup = statements.len();
    let mut plans = Vec::new();
    for body in bodies {
        let req: FunnelRequest = parse(body.to_string().as_bytes()).unwrap();
        let plan = funnel::plan(&req, PROJECT, &db, now()).unwrap();
        statements.push(matched_sql(&plan));
        statements.push(long_paths_sql(&plan));
        plans.push((body, plan));
    }
    let outcomes = chdb::run(&python, &statements);
    for (sql, o) in statements.iter().zip(&outcomes).take(setup - 1) {
        assert!(
            matches!(o, Outcome::Ok(_)),
            "chdb setup failed: {o:?}\n{}",
            &sql[..sql.len().min(300)]
        );
    }
    assert_eq!(
        outcomes[setup - 1],
        Outcome::Ok(Some(vec![vec![json!(3)]])),
        "the probe says yes"
    );
    let mut converted = 0;
    for ((body, plan), outcomes) in plans.iter().zip(outcomes[setup..].chunks(2)) {
        // The paths left to query run on a current server too, and name
        // the users they name on 18.16.
        let long = match &outcomes[1] {
            Outcome::Ok(Some(rows)) => rows.len(),
            other => panic!(
                "current ClickHouse: {body}: {other:?}\n{}",
                long_paths_sql(plan)
            ),
        };
        assert_eq!(
            long,
            wh.rows(&long_paths_sql(plan)).await.unwrap().len(),
            "{body}: long paths"
        );
        let rows = match &outcomes[0] {
            Outcome::Ok(Some(rows)) => rows,
            other => panic!(
                "current ClickHouse: {body}: {other:?}\n{}",
                matched_sql(plan)
            ),
        };
        // Paths too long for ClickHouse to match are read from 18.16.
        let inside = wh
            .funnel_of_groups(plan, rows.clone())
            .await
            .unwrap_or_else(|e| panic!("{body}: {e}"))
            .answer();
        let here = wh.funnel(plan).await.unwrap();
        assert_eq!(inside, here, "{body}\n{}", matched_sql(plan));
        if here["steps"][1]["count"].as_u64() > Some(0) {
            converted += 1;
        }
    }
    drop_db(stack, &db).await;
    converted
}

/// On a current ClickHouse (chdb), funnels matched inside ClickHouse give
/// the answers matching here gives on 18.16 (which the test above checks
/// against the rules), on the same events, replayed copies included. What
/// it cannot show: the statement reaching a current server over HTTP (no
/// such server runs here); the rows' shape is read by the function the
/// service uses.
#[tokio::test]
async fn funnels_matched_inside_current_clickhouse_agree_with_matching_here() {
    let stack = Stack::require();
    let converted = agree_inside_and_here(&stack, &generate(11, 500), &requests()).await;
    assert!(
        converted >= 10,
        "only {converted} funnels converted anybody"
    );
}

/// The same at the edges the generated data seldom reaches: a step exactly
/// at the window's end and a millisecond past it, two distinct events at
/// one millisecond, an exclusion at the very time of the step it precedes.
#[tokio::test]
async fn funnels_matched_inside_current_clickhouse_agree_at_the_edges() {
    let stack = Stack::require();
    let hour = 3_600_000;
    let mut n = 0;
    let mut events = Vec::new();
    let mut ev = |event: &str, user: &str, ms: u64| {
        n += 1;
        events.push(Ev {
            uuid: uuid::Uuid::from_u64_pair(7, n).to_string(),
            project_id: PROJECT,
            event: event.into(),
            distinct_id: user.into(),
            props: serde_json::Map::new(),
            ts_ms: START_MS + ms,
        });
    };
    // At the window's end, and past it.
    ev("a", "w1", 0);
    ev("b", "w1", hour);
    ev("a", "w2", 0);
    ev("b", "w2", hour + 1);
    // Two distinct `a`s at one millisecond, then `b`.
    ev("a", "t1", 5);
    ev("a", "t1", 5);
    ev("b", "t1", 9);
    // An exclusion at the time of the step after it; another user's
    // exclusion after the step.
    ev("a", "x1", 0);
    ev("x", "x1", 10);
    ev("b", "x1", 10);
    ev("a", "x2", 0);
    ev("b", "x2", 10);
    ev("x", "x2", 11);
    // A later start that gets further than the first.
    ev("a", "s1", 0);
    ev("a", "s1", 2 * hour);
    ev("b", "s1", 2 * hour + 1);
    ev("c", "s1", 2 * hour + 2);
    // Paths of exactly as many events as ClickHouse matches, and one more
    // (matched here): `a` every 10 s, then `b`, `c`.
    for (user, len) in [("long1", MAX_MATCHED_PATH), ("long2", MAX_MATCHED_PATH + 1)] {
        for k in 0..len - 2 {
            ev("a", user, 10_000 * k as u64);
        }
        ev("b", user, 10_000 * len as u64);
        ev("c", user, 10_000 * len as u64 + 1);
    }
    let range = r#""date_from":"2026-10-20","date_to":"2026-10-21","conversion_window":"1h""#;
    let bodies: Vec<Value> = [
        r#"{"steps":[{"event":"a"},{"event":"b"}],RANGE}"#,
        r#"{"steps":[{"event":"a"},{"event":"b"}],"order":"strict",RANGE}"#,
        r#"{"steps":[{"event":"a"},{"event":"b"}],"order":"unordered",RANGE}"#,
        r#"{"steps":[{"event":"a"},{"event":"a"},{"event":"b"}],RANGE}"#,
        r#"{"steps":[{"event":"a"},{"event":"a"},{"event":"b"}],"order":"strict",RANGE}"#,
        r#"{"steps":[{"event":"a"},{"event":"b"},{"event":"c"}],RANGE}"#,
        r#"{"steps":[{"event":"a"},{"event":"b"}],"exclusions":[{"event":"x","from_step":0,"to_step":1}],RANGE}"#,
    ]
    .iter()
    .map(|b| serde_json::from_str(&b.replace("RANGE", range)).unwrap())
    .collect();
    let converted = agree_inside_and_here(&stack, &events, &bodies).await;
    assert_eq!(converted, bodies.len(), "every funnel converts somebody");
}

/// 18.16 cannot match funnels: once asked (at the readiness check), the
/// service matches them, and says so in its metric.
#[tokio::test]
async fn an_old_server_is_asked_once_and_funnels_are_matched_here() {
    let stack = Stack::require();
    let (wh, db) = load(&stack, &generate(3, 20)).await;
    assert_eq!(wh.matches_funnels_in_clickhouse(), None, "not asked yet");
    wh.ping().await.unwrap();
    assert_eq!(wh.matches_funnels_in_clickhouse(), Some(false));
    let req: FunnelRequest = parse(
        br#"{"steps":[{"event":"$pageview"},{"event":"signup"}],"date_from":"2026-10-20","date_to":"2026-11-13"}"#,
    )
    .unwrap();
    let plan = funnel::plan(&req, PROJECT, &db, now()).unwrap();
    wh.funnel(&plan).await.unwrap();
    assert_eq!(grouped(&wh, "service"), 1);
    assert_eq!(grouped(&wh, "matched_in_clickhouse"), 0);
    drop_db(&stack, &db).await;
}

/// The cost of matching inside ClickHouse on chdb, against grouping the
/// same events into paths (what ClickHouse does when the service matches),
/// as paths grow. Prints; run by hand (BENCHMARKS.md).
#[test]
#[ignore = "a benchmark: cargo test -p tributary-query --test funnels -- --ignored --nocapture"]
fn funnel_matching_cost_on_chdb() {
    let stack = Stack::require();
    let python = stack.python.clone().expect("TRIBUTARY_PYTHON");
    let req: FunnelRequest = parse(
        br#"{"steps":[{"event":"$pageview"},{"event":"signup"},{"event":"view_item"}],"date_from":"2026-10-20","date_to":"2026-11-13"}"#,
    )
    .unwrap();
    let plan = funnel::plan(&req, PROJECT, "db", now()).unwrap();
    let spec = json!({
        "statements": {"grouped into paths": plan.sql(), "matched inside": matched_sql(&plan)},
        "shapes": [[20_000, 30], [2_400, 250], [600, 1_000]],
    });
    let mut child = std::process::Command::new(python)
        .arg(tributary_tests::repo_root().join("tests/chdb/funnel_matching_cost.py"))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    serde_json::to_writer(child.stdin.take().unwrap(), &spec).unwrap();
    assert!(child.wait().unwrap().success());
}
