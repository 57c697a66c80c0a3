//! Trends on ClickHouse 18.16 against answers computed here, in plain Rust,
//! from the same generated events (with replays, another project's events,
//! several timezones, maths, filters and breakdowns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Datelike, Days, Utc};
use chrono_tz::Tz;
use common::*;
use serde_json::{Value, json};
use tributary_query::request::{Interval, Math, TrendRequest, parse};
use tributary_query::trend::{self, BREAKDOWN_LIMIT};
use tributary_query::warehouse::Warehouse;
use tributary_tests::Stack;

/// The bucket an instant falls in, written the way the answer writes bucket
/// starts (local RFC 3339 for hours, the local first date otherwise).
fn bucket_of(t: DateTime<Utc>, interval: Interval, tz: Tz) -> String {
    let local = t.with_timezone(&tz);
    let date = local.date_naive();
    match interval {
        Interval::Hour => local.format("%Y-%m-%dT%H:00:00%:z").to_string(),
        Interval::Day => date.to_string(),
        Interval::Week => {
            (date - Days::new(date.weekday().num_days_from_monday() as u64)).to_string()
        }
        Interval::Month => date.with_day(1).unwrap().to_string(),
    }
}

fn answer_bucket(start: &str, interval: Interval) -> String {
    match interval {
        Interval::Hour => start[..25].to_owned(),
        _ => start[..10].to_owned(),
    }
}

/// label (None = no breakdown, Some("\u{0}other") = other) → bucket → value.
type Lines = BTreeMap<Option<String>, BTreeMap<String, f64>>;

fn model(events: &[Ev], req: &TrendRequest, series: usize, from: i64, to: i64) -> Lines {
    let tz: Tz = req.timezone.as_deref().unwrap_or("UTC").parse().unwrap();
    let s = &req.series[series];
    let chosen: Vec<&Ev> = unique_in_project(events, PROJECT)
        .into_iter()
        .filter(|e| e.event == s.event && e.secs() >= from && e.secs() < to)
        .filter(|e| all_match(&e.props, &s.filters) && all_match(&e.props, &req.filters))
        .filter(|e| {
            s.math_property
                .as_ref()
                .is_none_or(|k| e.props.contains_key(k))
        })
        .collect();
    let label_of = |e: &Ev| req.breakdown.as_ref().map(|k| label(&e.props, k));
    let value = |evs: &[&Ev]| -> f64 {
        let values: Vec<f64> = evs
            .iter()
            .filter_map(|e| {
                s.math_property
                    .as_ref()
                    .map(|k| e.props[k].as_f64().unwrap())
            })
            .collect();
        match s.math {
            Math::Total => evs.len() as f64,
            Math::UniqueUsers => evs
                .iter()
                .map(|e| &e.distinct_id)
                .collect::<HashSet<_>>()
                .len() as f64,
            Math::Sum => values.iter().sum(),
            Math::Avg => values.iter().sum::<f64>() / values.len() as f64,
            Math::Min => values.iter().cloned().fold(f64::INFINITY, f64::min),
            Math::Max => values.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
        }
    };
    let group = |line_of: &dyn Fn(&Ev) -> Option<String>| {
        let mut groups: BTreeMap<(Option<String>, String), Vec<&Ev>> = BTreeMap::new();
        for e in &chosen {
            groups
                .entry((line_of(e), bucket_of(e.time(), req.interval, tz)))
                .or_default()
                .push(e);
        }
        groups
    };
    // Values rank by their line's total: the sum of its points.
    let top: Option<HashSet<String>> = req.breakdown.as_ref().map(|_| {
        let mut totals: HashMap<String, f64> = HashMap::new();
        for ((line, _), evs) in group(&label_of) {
            *totals.entry(line.unwrap()).or_default() += value(&evs);
        }
        let mut v: Vec<(String, f64)> = totals.into_iter().collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v.into_iter()
            .take(BREAKDOWN_LIMIT)
            .map(|(l, _)| l)
            .collect()
    });
    let line_of = |e: &Ev| match (&top, label_of(e)) {
        (Some(top), Some(l)) if !top.contains(&l) => Some("\u{0}other".to_owned()),
        (_, l) => l,
    };
    let mut out = Lines::new();
    for ((line, bucket), evs) in group(&line_of) {
        out.entry(line).or_default().insert(bucket, value(&evs));
    }
    out
}

/// The service's answer, as the model's lines (zero buckets dropped).
fn lines_of(answer: &Value, series: usize, interval: Interval) -> Lines {
    let buckets: Vec<String> = answer["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| answer_bucket(b.as_str().unwrap(), interval))
        .collect();
    let mut out = Lines::new();
    for r in answer["results"].as_array().unwrap() {
        if r["series"] != series {
            continue;
        }
        let line = if r.get("other") == Some(&json!(true)) {
            Some("\u{0}other".to_owned())
        } else if r.get("breakdown_value").is_some() {
            Some(r["breakdown_value"].as_str().unwrap_or("").to_owned())
        } else {
            None
        };
        let data = r["data"].as_array().unwrap();
        assert_eq!(data.len(), buckets.len(), "every bucket is present");
        for (b, v) in buckets.iter().zip(data) {
            let v = v.as_f64().unwrap();
            if v != 0.0 {
                out.entry(line.clone()).or_default().insert(b.clone(), v);
            }
        }
    }
    out
}

fn assert_close(got: &Lines, want: &Lines, what: &str) {
    let keys = |l: &Lines| {
        l.iter()
            .flat_map(|(k, m)| {
                m.iter()
                    .filter(|(_, v)| **v != 0.0)
                    .map(move |(b, _)| (k.clone(), b.clone()))
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(got), keys(want), "{what}: different non-zero cells");
    for (line, m) in want {
        for (b, w) in m {
            let g = got.get(line).and_then(|m| m.get(b)).copied().unwrap_or(0.0);
            assert!(
                (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                "{what}: {line:?} {b}: got {g}, want {w}"
            );
        }
    }
}

async fn run(wh: &Warehouse, db: &str, req: &TrendRequest) -> Value {
    let plan = trend::plan(req, PROJECT, db, now()).unwrap();
    let results = wh
        .trend(&plan)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{:?}", plan.series));
    trend::assemble(&plan, &results).unwrap()
}

#[tokio::test]
async fn trends_match_an_independent_computation() {
    let stack = Stack::require();
    let events = generate(7, 400);
    let (wh, db) = load(&stack, &events).await;
    let requests = [
        json!({"series":[{"event":"$pageview"},{"event":"purchase","math":"unique_users"}],
               "date_from":"2026-10-20","date_to":"2026-11-12"}),
        json!({"series":[{"event":"checkout","math":"sum","math_property":"amount"},
                         {"event":"checkout","math":"avg","math_property":"amount"},
                         {"event":"checkout","math":"min","math_property":"amount"},
                         {"event":"checkout","math":"max","math_property":"amount"}],
               "date_from":"2026-10-22T06:30:00Z","date_to":"2026-11-05T18:00:00Z","interval":"week","timezone":"Asia/Kolkata"}),
        json!({"series":[{"event":"view_item","filters":[{"key":"plan","operator":"exact","value":["pro","Pro Max"]}]}],
               "date_from":"2026-10-24","date_to":"2026-10-27","interval":"hour","timezone":"Europe/Berlin"}),
        json!({"series":[{"event":"$pageview","math":"unique_users"}],"breakdown":"city",
               "date_from":"2026-10-20","date_to":"2026-11-13","interval":"month","timezone":"America/New_York",
               "filters":[{"key":"$browser","operator":"is_not","value":"Safari"}]}),
        json!({"series":[{"event":"signup"}],"breakdown":"n","interval":"day","timezone":"America/New_York",
               "date_from":"2026-10-28","date_to":"2026-11-03",
               "filters":[{"key":"amount","operator":"gte","value":20},{"key":"flag","operator":"exact","value":true},
                          {"key":"plan","operator":"not_contains","value":"MAX"}]}),
        json!({"series":[{"event":"logout","filters":[{"key":"plan","operator":"is_not_set"},{"key":"$browser","operator":"contains","value":"fire"}]}],
               "date_from":"2026-10-20","date_to":"2026-11-13"}),
        // Nothing in range: every bucket zero.
        json!({"series":[{"event":"purchase"}],"date_from":"2025-01-01","date_to":"2025-01-05"}),
    ];
    for body in requests {
        let req: TrendRequest = parse(body.to_string().as_bytes()).unwrap();
        let plan = trend::plan(&req, PROJECT, &db, now()).unwrap();
        let answer = run(&wh, &db, &req).await;
        for i in 0..req.series.len() {
            let want = model(
                &events,
                &req,
                i,
                plan.range.from_epoch(),
                plan.range.to_epoch(),
            );
            let got = lines_of(&answer, i, req.interval);
            assert_close(&got, &want, &format!("{body} series {i}"));
        }
        if body["date_from"] == "2025-01-01" {
            assert_eq!(answer["results"][0]["data"], json!([0, 0, 0, 0, 0]));
        }
    }
    // The breakdown above had more than 25 cities: the rest is one line.
    let req: TrendRequest = parse(
        br#"{"series":[{"event":"$pageview"}],"breakdown":"city","date_from":"2026-10-20","date_to":"2026-11-13"}"#,
    )
    .unwrap();
    let answer = run(&wh, &db, &req).await;
    let lines = answer["results"].as_array().unwrap();
    assert_eq!(lines.len(), BREAKDOWN_LIMIT + 1);
    assert_eq!(lines.last().unwrap()["other"], true);
    drop_db(&stack, &db).await;
}

#[tokio::test]
async fn hostile_property_names_and_values_are_data_not_sql() {
    let stack = Stack::require();
    let nasty = [
        "x' OR 1=1 --",
        "a\\' ; DROP TABLE events; --",
        "quote\"inside",
        "back\\slash",
        "question ? mark",
        "new\nline\ttab",
        "ünïcødé ☃",
        "')) UNION ALL SELECT 1 --",
    ];
    let mut events = Vec::new();
    for (i, k) in nasty.iter().enumerate() {
        for (j, v) in nasty.iter().enumerate() {
            let mut props = serde_json::Map::new();
            props.insert((*k).to_owned(), json!(v));
            events.push(Ev {
                uuid: uuid::Uuid::from_u64_pair(i as u64 + 1, j as u64 + 1).to_string(),
                project_id: PROJECT,
                event: (*v).to_owned(),
                distinct_id: format!("u{i}-{j}"),
                props,
                ts_ms: START_MS + (i * 10 + j) as u64 * 1000,
            });
        }
    }
    let (wh, db) = load(&stack, &events).await;
    for k in nasty {
        for v in nasty {
            let body = json!({"series":[{"event": v, "filters":[{"key": k, "value": v}]}],
                              "breakdown": k, "date_from":"2026-10-20", "date_to":"2026-10-21"});
            let req: TrendRequest = parse(body.to_string().as_bytes()).unwrap();
            let answer = run(&wh, &db, &req).await;
            let r = answer["results"].as_array().unwrap();
            assert_eq!(r.len(), 1, "{k:?}={v:?}: {answer}");
            assert_eq!(r[0]["breakdown_value"], json!(v), "{k:?}={v:?}");
            assert_eq!(r[0]["data"][0], 1, "{k:?}={v:?}: exactly the one event");
        }
    }
    // The table is still there and whole.
    let rows = wh
        .rows(&format!("SELECT count() FROM {db}.events"))
        .await
        .unwrap();
    // 64 events and the 13 replayed ones (merges are stopped).
    assert_eq!(
        tributary_query::rows::number(&rows[0][0]),
        Some(77.0),
        "{rows:?}"
    );
    drop_db(&stack, &db).await;
}
