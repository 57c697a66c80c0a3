//! Retention on ClickHouse 18.16 against tables computed here, in plain Rust,
//! from the same generated events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};

use chrono::{Datelike, Days, NaiveDate};
use chrono_tz::Tz;
use common::*;
use serde_json::json;
use tributary_query::request::{Period, RetentionRequest, parse};
use tributary_query::retention;
use tributary_tests::Stack;

fn index(date: NaiveDate, first: NaiveDate, period: Period) -> i64 {
    let monday = |d: NaiveDate| d - Days::new(d.weekday().num_days_from_monday() as u64);
    match period {
        Period::Day => (date - first).num_days(),
        Period::Week => (monday(date) - monday(first)).num_days() / 7,
    }
}

fn model(events: &[Ev], req: &RetentionRequest, from: i64, to: i64, n: usize) -> Vec<Vec<u64>> {
    let tz: Tz = req.timezone.as_deref().unwrap_or("UTC").parse().unwrap();
    let first_day = chrono::DateTime::from_timestamp(from, 0)
        .unwrap()
        .with_timezone(&tz)
        .date_naive();
    let returning = req.returning.clone().unwrap_or(req.target.clone());
    let date = |e: &Ev| e.time().with_timezone(&tz).date_naive();
    let mut first: HashMap<&str, &Ev> = HashMap::new();
    let mut back: HashMap<&str, HashSet<i64>> = HashMap::new();
    for e in unique_in_project(events, PROJECT) {
        let target = e.event == req.target.event
            && all_match(&e.props, &req.target.filters)
            && all_match(&e.props, &req.filters);
        if target
            && e.secs() < to
            && first
                .get(e.distinct_id.as_str())
                .is_none_or(|f| f.secs() > e.secs())
        {
            first.insert(&e.distinct_id, e);
        }
        let ret = e.event == returning.event
            && all_match(&e.props, &returning.filters)
            && all_match(&e.props, &req.filters);
        if ret && e.secs() >= from && e.secs() < to {
            back.entry(&e.distinct_id)
                .or_default()
                .insert(index(date(e), first_day, req.period));
        }
    }
    let mut table: Vec<Vec<u64>> = (0..n).map(|c| vec![0; n - c]).collect();
    for (user, e) in first {
        let c = index(date(e), first_day, req.period);
        if c < 0 || c >= n as i64 {
            continue;
        }
        table[c as usize][0] += 1;
        for p in back.get(user).into_iter().flatten() {
            if *p > c {
                table[c as usize][(*p - c) as usize] += 1;
            }
        }
    }
    table
}

#[tokio::test]
async fn retention_matches_an_independent_computation() {
    let stack = Stack::require();
    let events = generate(23, 500);
    let (wh, db) = load(&stack, &events).await;
    let requests = [
        json!({"target":{"event":"signup"},"returning":{"event":"$pageview"},"date_from":"2026-10-24","periods":10}),
        json!({"target":{"event":"$pageview"},"date_from":"2026-10-19","period":"week","periods":4,"timezone":"America/New_York"}),
        json!({"target":{"event":"view_item","filters":[{"key":"amount","operator":"lt","value":60}]},
               "returning":{"event":"purchase"},"filters":[{"key":"$browser","operator":"exact","value":["Chrome","Safari"]}],
               "date_from":"2026-10-22","periods":12,"timezone":"Asia/Kolkata"}),
        json!({"target":{"event":"signup"},"date_from":"2025-03-01","periods":3}),
    ];
    for body in requests {
        let req: RetentionRequest = parse(body.to_string().as_bytes()).unwrap();
        let plan = retention::plan(&req, PROJECT, &db, now()).unwrap();
        let rows = wh
            .rows(&plan.sql)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", plan.sql));
        let answer = retention::assemble(&plan, &rows).unwrap();
        let want = model(
            &events,
            &req,
            plan.range.from_epoch(),
            plan.range.to_epoch(),
            plan.cohorts.len(),
        );
        let got: Vec<Vec<u64>> = answer["cohorts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                c["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap())
                    .collect()
            })
            .collect();
        assert_eq!(got, want, "{body}");
        if body["date_from"] != "2025-03-01" {
            assert!(
                want.iter().any(|r| r.iter().skip(1).any(|v| *v > 0)),
                "{body}: somebody should come back"
            );
        }
    }
    drop_db(&stack, &db).await;
}
