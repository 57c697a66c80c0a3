//! Every query shape the service generates runs on ClickHouse 18.16 (the
//! stack's server) and on a current ClickHouse (chdb), on the same data, with
//! the same results.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{Value, json};
use tributary_query::native::UserKey;
use tributary_query::request::parse;
use tributary_query::trend::BREAKDOWN_LIMIT;
use tributary_query::{funnel, retention, trend};
use tributary_tests::Stack;
use tributary_tests::chdb::{self, Outcome};

/// Every statement shape: each interval, maths, breakdowns, orders,
/// exclusions and both retention periods.
fn shapes(db: &str, keys: &[UserKey]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let trends = [
        json!({"series":[{"event":"$pageview"},{"event":"purchase","math":"unique_users"}],"date_from":"2026-10-20","date_to":"2026-11-13"}),
        json!({"series":[{"event":"checkout","math":"sum","math_property":"amount"},{"event":"checkout","math":"avg","math_property":"amount"},
                         {"event":"checkout","math":"min","math_property":"amount"},{"event":"checkout","math":"max","math_property":"amount"}],
               "date_from":"2026-10-20","date_to":"2026-11-13","interval":"week","timezone":"Asia/Kolkata"}),
        json!({"series":[{"event":"view_item","filters":[{"key":"plan","value":["pro","Pro Max"]},{"key":"n","operator":"gte","value":2}]}],
               "date_from":"2026-10-20","date_to":"2026-11-13","interval":"hour","timezone":"Europe/Berlin"}),
        json!({"series":[{"event":"$pageview","math":"unique_users"}],"breakdown":"city","date_from":"2026-10-20","date_to":"2026-11-13",
               "interval":"month","timezone":"America/New_York","filters":[{"key":"plan","operator":"is_not_set"}]}),
        json!({"series":[{"event":"signup"}],"breakdown":"n","date_from":"2026-10-20","date_to":"2026-11-13",
               "filters":[{"key":"flag","value":false},{"key":"$browser","operator":"contains","value":"R"}]}),
    ];
    for body in trends {
        let plan = trend::plan(
            &parse(body.to_string().as_bytes()).unwrap(),
            PROJECT,
            db,
            now(),
        )
        .unwrap();
        // Rows naming more values than the breakdown keeps, so that series
        // whose "other" line needs its own statement show it too.
        let wide: Vec<Vec<Value>> = (0..=BREAKDOWN_LIMIT)
            .map(|k| {
                let key = &plan.buckets[0].key;
                vec![
                    json!(key),
                    json!(format!("city {k}")),
                    json!(1.0),
                    json!(1.0),
                    json!(0.0),
                ]
            })
            .collect();
        for s in plan.series {
            // The per-shard statements run on one server too (the setting
            // only changes reads of a Distributed table).
            out.push((format!("trend per shard {body}"), s.per_shard.sql.clone()));
            if let Some(sql) = s.follow_up_per_shard(&wide) {
                out.push((format!("trend other per shard {body}"), sql));
            }
            if let Some(sql) = s.follow_up(&wide) {
                out.push((format!("trend other {body}"), sql));
            }
            out.push((format!("trend {body}"), s.sql));
        }
    }
    let funnels = [
        json!({"steps":[{"event":"$pageview"},{"event":"signup"},{"event":"view_item"}],"date_from":"2026-10-20","date_to":"2026-11-13","conversion_window":"1d"}),
        json!({"steps":[{"event":"signup"},{"event":"view_item"}],"order":"strict","date_from":"2026-10-20","date_to":"2026-11-13"}),
        json!({"steps":[{"event":"checkout"},{"event":"purchase"}],"order":"unordered","breakdown":"$browser","date_from":"2026-10-20","date_to":"2026-11-13"}),
        json!({"steps":[{"event":"$pageview"},{"event":"signup","filters":[{"key":"amount","operator":"lt","value":50}]},{"event":"checkout"}],
               "exclusions":[{"event":"logout","from_step":0,"to_step":2}],"breakdown":"city","filters":[{"key":"flag","value":true}],
               "date_from":"2026-10-20","date_to":"2026-11-13","timezone":"Europe/Berlin"}),
        json!({"steps":[{"event":"$pageview"},{"event":"signup"}],"date_from":"2026-09-01","date_to":"2026-12-01"}),
    ];
    for body in funnels {
        let plan = funnel::plan(
            &parse(body.to_string().as_bytes()).unwrap(),
            PROJECT,
            db,
            now(),
        )
        .unwrap();
        // Paths read again by uuid: named users, and every user.
        let users: Vec<String> = (0..40).map(|u| format!("user-{u}")).collect();
        for sql in [plan.copies_sql(&users).unwrap(), plan.all_copies_sql()] {
            out.push((format!("funnel again {body}"), sql));
        }
        out.push((format!("funnel {body}"), plan.sql()));
        // The same as event rows, to group here.
        out.push((format!("funnel events {body}"), plan.events_sql()));
        for sql in [
            plan.event_copies_sql(keys).unwrap(),
            plan.all_event_copies_sql(),
        ] {
            out.push((format!("funnel events again {body}"), sql));
        }
    }
    let retentions = [
        json!({"target":{"event":"signup"},"returning":{"event":"$pageview"},"date_from":"2026-10-24","periods":10}),
        json!({"target":{"event":"$pageview","filters":[{"key":"plan","operator":"exact","value":"pro"}]},"date_from":"2026-10-19","period":"week","periods":4,"timezone":"America/New_York"}),
    ];
    for body in retentions {
        let plan = retention::plan(
            &parse(body.to_string().as_bytes()).unwrap(),
            PROJECT,
            db,
            now(),
        )
        .unwrap();
        out.push((format!("retention {body}"), plan.sql));
    }
    out
}

/// Numbers (quoted or not) rounded to 9 significant digits; arrays of a row
/// (funnel paths come back in any order) zipped and sorted after the row's
/// other values; rows sorted.
fn normalise(rows: &[Vec<Value>]) -> Vec<String> {
    fn scalar(v: &Value) -> String {
        let n = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.parse::<f64>().ok().filter(|_| !s.is_empty()),
            _ => None,
        };
        match n {
            Some(f) => format!("{f:.8e}"),
            None => v.to_string(),
        }
    }
    let mut out: Vec<String> = rows
        .iter()
        .map(|row| {
            let arrays: Vec<&Vec<Value>> = row
                .iter()
                .filter_map(Value::as_array)
                .filter(|a| !a.is_empty())
                .collect();
            if !arrays.is_empty() {
                // Scalars and empty arrays, in order.
                let scalars: Vec<String> = row
                    .iter()
                    .filter(|v| v.as_array().is_none_or(Vec::is_empty))
                    .map(scalar)
                    .collect();
                let mut zipped: Vec<String> = (0..arrays[0].len())
                    .map(|i| {
                        arrays
                            .iter()
                            .map(|a| scalar(&a[i]))
                            .collect::<Vec<_>>()
                            .join("|")
                    })
                    .collect();
                zipped.sort();
                format!("{}:{}", scalars.join("|"), zipped.join(";"))
            } else {
                row.iter().map(scalar).collect::<Vec<_>>().join("|")
            }
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn every_query_shape_gives_the_same_answer_on_18_16_and_current_clickhouse() {
    let stack = Stack::require();
    let python = stack
        .python
        .clone()
        .expect("TRIBUTARY_PYTHON not set by local-stack.sh");
    let events = generate(5, 150);
    let (wh, db) = load(&stack, &events).await;
    // Users as event rows name them (hashes of their ids), from 18.16.
    let everyone = funnel::plan(
        &parse(br#"{"steps":[{"event":"$pageview"},{"event":"signup"}],"date_from":"2026-10-20","date_to":"2026-11-13"}"#).unwrap(),
        PROJECT,
        &db,
        now(),
    )
    .unwrap();
    let keys: Vec<UserKey> = wh
        .rows(&everyone.events_sql())
        .await
        .unwrap()
        .iter()
        .take(40)
        .map(|row| UserKey {
            city: row[0].as_str().unwrap().parse().unwrap(),
            // JSON carries a UInt32 as a number (a UInt64 as text).
            murmur: row[1].as_u64().unwrap(),
        })
        .collect();
    assert!(!keys.is_empty());
    let shapes = shapes(&db, &keys);

    let mut statements = statements(&db, &events);
    let setup = statements.len();
    statements.extend(shapes.iter().map(|(_, sql)| sql.clone()));
    let outcomes = chdb::run(&python, &statements);
    for (sql, o) in statements.iter().zip(&outcomes).take(setup) {
        assert!(
            matches!(o, Outcome::Ok(_)),
            "chdb setup failed: {o:?}\n{}",
            &sql[..sql.len().min(300)]
        );
    }
    for ((what, sql), outcome) in shapes.iter().zip(&outcomes[setup..]) {
        let current = match outcome {
            Outcome::Ok(Some(rows)) => rows,
            other => panic!("current ClickHouse: {what}: {other:?}\n{sql}"),
        };
        let old = wh
            .rows(sql)
            .await
            .unwrap_or_else(|e| panic!("18.16: {what}: {e}\n{sql}"));
        assert!(!old.is_empty(), "{what}: no rows, nothing compared");
        assert_eq!(normalise(&old), normalise(current), "{what}\n{sql}");
    }
    drop_db(&stack, &db).await;
}
