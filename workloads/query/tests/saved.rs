//! Saved insights and dashboards over HTTP, with keys from the real auth
//! service, insights in the stack's Postgres and answers from ClickHouse
//! 18.16 and Redis: scopes, projects, validation on save, dashboard results
//! equal to the query routes' answers, cached and refreshed, and one broken
//! insight failing alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tributary_auth::testing::start_auth;
use tributary_tests::{Stack, poll_until};

/// Keys of two projects of one user: A's `query` and `dashboards` keys,
/// B's `dashboards` key.
struct Keys {
    a: u64,
    b: u64,
    read_a: String,
    write_a: String,
    write_b: String,
}

async fn keys(http: &reqwest::Client, auth: &str) -> Keys {
    let token = user_token(http, auth, "saver").await;
    let (a, a_keys) = project_keys(http, auth, &token, "A", &["query", "dashboards"]).await;
    let (b, b_keys) = project_keys(http, auth, &token, "B", &["dashboards"]).await;
    Keys {
        a,
        b,
        read_a: a_keys[0].clone(),
        write_a: a_keys[1].clone(),
        write_b: b_keys[0].clone(),
    }
}

/// `n` users of `project` who view a page and then sign up (every second
/// one), on 2026-10-21.
fn events(project: u64, n: u64) -> Vec<Ev> {
    let mut out = Vec::new();
    for i in 0..n {
        for (k, event) in ["$pageview", "signup"].iter().enumerate() {
            if k == 1 && i % 2 == 1 {
                continue;
            }
            out.push(Ev {
                uuid: uuid::Uuid::from_u64_pair(project, i * 2 + k as u64 + 1).to_string(),
                project_id: project,
                event: (*event).into(),
                distinct_id: format!("p{project}-u{i}"),
                props: serde_json::Map::new(),
                ts_ms: START_MS + 86_400_000 + i * 1000 + k as u64 * 60_000,
            });
        }
    }
    out
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

fn query_vars(stack: &Stack, db: &str, auth: &str) -> HashMap<String, String> {
    let (host, port) = tributary_tests::clickhouse::host_port(&stack.clickhouse_url);
    [
        ("QUERY_HOST", "127.0.0.1"),
        ("QUERY_CLICKHOUSE_HOST", host.as_str()),
        ("QUERY_CLICKHOUSE_PORT", port.to_string().as_str()),
        ("QUERY_CLICKHOUSE_DATABASE", db),
        ("REDIS_URL", stack.redis_url.as_str()),
        ("QUERY_AUTH_URL", auth),
        ("QUERY_TIMEOUT_SECS", "10"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

fn trend() -> Value {
    json!({"series":[{"event":"$pageview"},{"event":"signup","math":"unique_users"}],
           "date_from":"2026-10-20","date_to":"2026-10-23"})
}

fn funnel() -> Value {
    json!({"steps":[{"event":"$pageview"},{"event":"signup"}],"date_from":"2026-10-20","date_to":"2026-10-23"})
}

/// The answer without what differs between two computations of it.
fn bare(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("cached");
        o.remove("computed_at");
    }
    v
}

/// Auth, the keys of two projects, `events_of` them loaded into
/// ClickHouse, and query serving them with `extra` settings, with Postgres
/// (its tables made, as by default, at start) or without.
struct Setup {
    stack: Stack,
    c: std::sync::Arc<Client>,
    k: Keys,
    db: String,
    stops: [tokio_util::sync::CancellationToken; 2],
}

async fn setup(
    events_of: impl FnOnce(&Keys) -> Vec<Ev>,
    postgres: bool,
    extra: &[(&str, &str)],
) -> Setup {
    let stack = Stack::require();
    let (auth, auth_stop) = start_auth(&stack.postgres_dsn).await;
    let http = reqwest::Client::new();
    let k = keys(&http, &auth).await;
    let (_, db) = load(&stack, &events_of(&k)).await;
    let mut vars = query_vars(&stack, &db, &auth);
    if postgres {
        vars.insert("POSTGRES_DSN".into(), stack.postgres_dsn.clone());
    }
    for (name, value) in extra {
        vars.insert((*name).into(), (*value).into());
    }
    let (base, stop) = serve(&vars).await;
    let c = std::sync::Arc::new(Client { http, base });
    if postgres {
        // Tables are made at start (QUERY_MIGRATE_ON_START, the default).
        poll_until("saved insights ready", Duration::from_secs(30), || async {
            (c.call("GET", "/api/insights", Some(&k.read_a), None)
                .await
                .0
                == 200)
                .then_some(())
        })
        .await;
    }
    Setup {
        stack,
        c,
        k,
        db,
        stops: [stop, auth_stop],
    }
}

impl Setup {
    async fn finish(self) {
        for stop in &self.stops {
            stop.cancel();
        }
        drop_db(&self.stack, &self.db).await;
    }
}

#[tokio::test]
async fn insights_and_dashboards_are_saved_per_project_and_answer_as_queries_do() {
    let set = setup(|k| [events(k.a, 6), events(k.b, 4)].concat(), true, &[]).await;
    let (c, k, stack) = (&set.c, &set.k, &set.stack);

    // Saving needs a key of scope `dashboards`.
    let new = json!({"name": " Views and signups ", "kind": "trend", "query": trend()});
    let (s, e) = c
        .call("POST", "/api/insights", Some(&k.read_a), Some(new.clone()))
        .await;
    assert_eq!(
        (s, e["error"].as_str()),
        (403, Some("insufficient_scope")),
        "{e}"
    );
    assert_eq!(
        c.call("POST", "/api/insights", None, Some(new.clone()))
            .await
            .0,
        401
    );
    let (s, trend_insight) = c
        .call("POST", "/api/insights", Some(&k.write_a), Some(new))
        .await;
    assert_eq!(s, 201, "{trend_insight}");
    assert_eq!(trend_insight["name"], "Views and signups", "trimmed");
    assert_eq!(trend_insight["kind"], "trend");
    assert_eq!(trend_insight["query"], trend());
    let trend_id = trend_insight["id"].as_i64().unwrap();

    // Checked on save as the query route checks it, the field named.
    for (body, field) in [
        (
            json!({"name": "f", "kind": "funnel", "query": {"steps":[{"event":"a"}],"date_from":"-7d"}}),
            "query.steps",
        ),
        (
            json!({"name": "t", "kind": "trend", "query": {"series":[{"event":"a","math":"median"}],"date_from":"-7d"}}),
            "query.series[0].math",
        ),
        (
            json!({"name": "t", "kind": "trend", "query": funnel()}),
            "query.steps",
        ),
        (
            json!({"name": "", "kind": "trend", "query": trend()}),
            "name",
        ),
        (
            json!({"name": "t", "kind": "pie", "query": trend()}),
            "kind",
        ),
    ] {
        let (s, e) = c
            .call(
                "POST",
                "/api/insights",
                Some(&k.write_a),
                Some(body.clone()),
            )
            .await;
        assert_eq!((s, e["field"].as_str()), (400, Some(field)), "{body}: {e}");
    }
    let (s, funnel_insight) = c
        .call(
            "POST",
            "/api/insights",
            Some(&k.write_a),
            Some(json!({"name": "Signup funnel", "description": "view, then sign up", "kind": "funnel", "query": funnel()})),
        )
        .await;
    assert_eq!(s, 201, "{funnel_insight}");
    let funnel_id = funnel_insight["id"].as_i64().unwrap();

    // Each project sees its own; another project's insight is 404.
    let (_, list) = c.call("GET", "/api/insights", Some(&k.read_a), None).await;
    let ids: Vec<i64> = list["insights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![trend_id, funnel_id]);
    let (_, list_b) = c.call("GET", "/api/insights", Some(&k.write_b), None).await;
    assert_eq!(list_b["insights"], json!([]));
    let path = format!("/api/insights/{trend_id}");
    assert_eq!(c.call("GET", &path, Some(&k.write_b), None).await.0, 404);
    assert_eq!(c.call("DELETE", &path, Some(&k.write_b), None).await.0, 404);
    assert_eq!(c.call("GET", &path, Some(&k.read_a), None).await.0, 200);

    // A change is checked too; a refused one changes nothing.
    let (s, e) = c
        .call(
            "PATCH",
            &path,
            Some(&k.write_a),
            Some(json!({"query": {"series": []}})),
        )
        .await;
    assert_eq!(s, 400, "{e}");
    let (s, renamed) = c
        .call(
            "PATCH",
            &path,
            Some(&k.write_a),
            Some(json!({"name": "Views"})),
        )
        .await;
    assert_eq!(s, 200, "{renamed}");
    assert_eq!(
        (renamed["name"].as_str(), &renamed["query"]),
        (Some("Views"), &trend())
    );
    assert_ne!(renamed["updated_at"], trend_insight["updated_at"]);

    // A dashboard of both; B cannot put A's insight on its dashboard.
    let tiles = json!([{"insight_id": trend_id, "width": 12}, {"insight_id": funnel_id}]);
    let (s, e) = c
        .call(
            "POST",
            "/api/dashboards",
            Some(&k.write_b),
            Some(json!({"name": "x", "tiles": tiles})),
        )
        .await;
    assert_eq!(
        (s, e["field"].as_str()),
        (400, Some("tiles[0].insight_id")),
        "{e}"
    );
    let (s, dash) = c
        .call(
            "POST",
            "/api/dashboards",
            Some(&k.write_a),
            Some(json!({"name": "Growth", "tiles": tiles})),
        )
        .await;
    assert_eq!(s, 201, "{dash}");
    assert_eq!(
        dash["tiles"],
        json!([{"insight_id": trend_id, "width": 12, "height": 4}, {"insight_id": funnel_id, "width": 6, "height": 4}])
    );
    let dash_id = dash["id"].as_i64().unwrap();
    let results = format!("/api/dashboards/{dash_id}/results");
    assert_eq!(c.call("GET", &results, Some(&k.write_b), None).await.0, 404);

    // Results equal the query routes' answers; then cached, then refreshed.
    let (s, first) = c
        .call(
            "GET",
            &format!("{results}?refresh=true"),
            Some(&k.read_a),
            None,
        )
        .await;
    assert_eq!(s, 200, "{first}");
    let (_, direct_trend) = c
        .call(
            "POST",
            "/api/query/trend?refresh=true",
            Some(&k.read_a),
            Some(trend()),
        )
        .await;
    let (_, direct_funnel) = c
        .call(
            "POST",
            "/api/query/funnel?refresh=true",
            Some(&k.read_a),
            Some(funnel()),
        )
        .await;
    let got = first["results"].as_array().unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(bare(got[0]["result"].clone()), bare(direct_trend.clone()));
    assert_eq!(bare(got[1]["result"].clone()), bare(direct_funnel));
    assert_eq!(series_total(&direct_trend, 0), 6, "A's views only");
    assert_eq!(got[0]["insight"]["name"], "Views");
    assert_eq!(got[1]["tile"]["insight_id"], funnel_id);
    assert_eq!(got[0]["result"]["cached"], false);
    let (_, second) = c.call("GET", &results, Some(&k.read_a), None).await;
    let again = &second["results"][0]["result"];
    assert_eq!(again["cached"], true);
    assert!(
        again["computed_at"].is_string(),
        "a cached answer says when it was computed"
    );
    let (_, third) = c
        .call(
            "GET",
            &format!("{results}?refresh=true"),
            Some(&k.read_a),
            None,
        )
        .await;
    assert_eq!(third["results"][0]["result"]["cached"], false);

    // An insight that no longer runs (saved before a rule changed: written
    // here past the checks) fails alone.
    let pg = sqlx::PgPool::connect(&stack.postgres_dsn).await.unwrap();
    let broken: i64 = sqlx::query_scalar(
        "INSERT INTO tributary_query.insights (project_id, name, kind, query) VALUES ($1, 'old', 'funnel', $2) RETURNING id",
    )
    .bind(k.a as i64)
    .bind(json!({"steps": [{"event": "a"}], "date_from": "-7d"}))
    .fetch_one(&pg)
    .await
    .unwrap();
    let (s, d) = c
        .call(
            "PATCH",
            &format!("/api/dashboards/{dash_id}"),
            Some(&k.write_a),
            Some(json!({"tiles": [{"insight_id": broken}, {"insight_id": trend_id}]})),
        )
        .await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["name"], "Growth", "unchanged");
    let (s, mixed) = c.call("GET", &results, Some(&k.read_a), None).await;
    assert_eq!(s, 200, "{mixed}");
    assert_eq!(
        mixed["results"][0]["error"]["field"], "query.steps",
        "{mixed}"
    );
    assert!(mixed["results"][0]["result"].is_null());
    assert_eq!(
        bare(mixed["results"][1]["result"].clone()),
        bare(direct_trend)
    );

    // Deleting an insight takes it off the dashboard; a deleted dashboard
    // is gone.
    assert_eq!(
        c.call(
            "DELETE",
            &format!("/api/insights/{broken}"),
            Some(&k.write_a),
            None
        )
        .await
        .0,
        204
    );
    let (_, d) = c
        .call(
            "GET",
            &format!("/api/dashboards/{dash_id}"),
            Some(&k.read_a),
            None,
        )
        .await;
    assert_eq!(
        d["tiles"],
        json!([{"insight_id": trend_id, "width": 6, "height": 4}])
    );
    assert_eq!(
        c.call(
            "DELETE",
            &format!("/api/dashboards/{dash_id}"),
            Some(&k.read_a),
            None
        )
        .await
        .0,
        403
    );
    assert_eq!(
        c.call(
            "DELETE",
            &format!("/api/dashboards/{dash_id}"),
            Some(&k.write_a),
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(
        c.call(
            "GET",
            &format!("/api/dashboards/{dash_id}"),
            Some(&k.read_a),
            None
        )
        .await
        .0,
        404
    );
    let (_, dashboards) = c
        .call("GET", "/api/dashboards", Some(&k.read_a), None)
        .await;
    assert_eq!(dashboards["dashboards"], json!([]));

    // Counted by route like every request.
    let metrics = c
        .http
        .get(format!("{}/metrics", c.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("query_requests_total{")
                && l.contains("route=\"/api/insights\"")
                && l.contains("status=\"201\"")),
        "{metrics}"
    );

    set.finish().await;
}

/// Without `POSTGRES_DSN` queries work and the saved routes say what is
/// missing.
#[tokio::test]
async fn without_postgres_saved_routes_say_so_and_queries_still_answer() {
    let set = setup(|k| events(k.a, 2), false, &[]).await;
    let (c, k) = (&set.c, &set.k);
    let (s, e) = c
        .call("GET", "/api/dashboards", Some(&k.read_a), None)
        .await;
    assert_eq!(
        (s, e["error"].as_str()),
        (503, Some("saved_insights_unavailable")),
        "{e}"
    );
    assert!(
        e["message"].as_str().unwrap().contains("POSTGRES_DSN"),
        "{e}"
    );
    let (s, _) = c
        .call("POST", "/api/query/trend", Some(&k.read_a), Some(trend()))
        .await;
    assert_eq!(s, 200);
    set.finish().await;
}

/// A project keeps at most `QUERY_MAX_INSIGHTS_PER_PROJECT` insights and
/// `QUERY_MAX_DASHBOARDS_PER_PROJECT` dashboards, however many creations
/// race for the last places; another project is not held back.
#[tokio::test]
async fn a_project_keeps_no_more_than_its_limits_even_when_creations_race() {
    let set = setup(
        |k| events(k.a, 2),
        true,
        &[
            ("QUERY_MAX_INSIGHTS_PER_PROJECT", "5"),
            ("QUERY_MAX_DASHBOARDS_PER_PROJECT", "2"),
            ("QUERY_RATE_LIMIT_PER_KEY", "0"),
        ],
    )
    .await;
    let (c, k) = (&set.c, &set.k);

    let races = (0..20).map(|i| {
        let (c, key) = (std::sync::Arc::clone(c), k.write_a.clone());
        tokio::spawn(async move {
            let body = json!({"name": format!("race {i}"), "kind": "trend", "query": trend()});
            c.call("POST", "/api/insights", Some(&key), Some(body))
                .await
        })
    });
    let mut statuses: Vec<u16> = Vec::new();
    for r in futures::future::join_all(races).await {
        let (s, body) = r.unwrap();
        if s == 409 {
            assert_eq!(body["error"], "limit_reached", "{body}");
            assert!(
                body["message"]
                    .as_str()
                    .unwrap()
                    .contains("QUERY_MAX_INSIGHTS_PER_PROJECT"),
                "{body}"
            );
        }
        statuses.push(s);
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [vec![201; 5], vec![409; 15]].concat());
    let (_, list) = c.call("GET", "/api/insights", Some(&k.read_a), None).await;
    assert_eq!(list["insights"].as_array().unwrap().len(), 5);
    // Another project has its own places.
    let (s, _) = c
        .call(
            "POST",
            "/api/insights",
            Some(&k.write_b),
            Some(json!({"name": "b", "kind": "trend", "query": trend()})),
        )
        .await;
    assert_eq!(s, 201);
    // Deleting one frees a place.
    let first = list["insights"][0]["id"].as_i64().unwrap();
    assert_eq!(
        c.call(
            "DELETE",
            &format!("/api/insights/{first}"),
            Some(&k.write_a),
            None
        )
        .await
        .0,
        204
    );
    let again = json!({"name": "again", "kind": "trend", "query": trend()});
    assert_eq!(
        c.call("POST", "/api/insights", Some(&k.write_a), Some(again))
            .await
            .0,
        201
    );

    for i in 0..3 {
        let (s, _) = c
            .call(
                "POST",
                "/api/dashboards",
                Some(&k.write_a),
                Some(json!({"name": format!("d{i}")})),
            )
            .await;
        assert_eq!(s, if i < 2 { 201 } else { 409 }, "dashboard {i}");
    }
    set.finish().await;
}
