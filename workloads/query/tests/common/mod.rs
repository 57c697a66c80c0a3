//! A generated dataset, loaded into ClickHouse 18.16 (and as statements for
//! chdb), and plain-Rust evaluation of property filters used by the tests'
//! independent models.
#![allow(dead_code)]

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use tributary_core::schema::{Layout, clickhouse_migrations, render};
use tributary_query::request::{Operator, PropertyFilter};
use tributary_query::warehouse::Warehouse;
use tributary_tests::{Stack, unique_name};

/// The project the tests query; events of project 2 must never show.
pub const PROJECT: u64 = 1;
pub const OTHER_PROJECT: u64 = 2;

#[derive(Debug, Clone)]
pub struct Ev {
    pub uuid: String,
    pub project_id: u64,
    pub event: String,
    pub distinct_id: String,
    pub props: Map<String, Value>,
    pub ts_ms: u64,
}

impl Ev {
    pub fn time(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.ts_ms as i64).unwrap()
    }
    /// Seconds, as the `timestamp` column holds it.
    pub fn secs(&self) -> i64 {
        (self.ts_ms / 1000) as i64
    }
}

/// xorshift64*: deterministic data without a crate.
pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

pub const EVENTS: [&str; 6] = [
    "$pageview",
    "signup",
    "view_item",
    "checkout",
    "purchase",
    "logout",
];
pub const BROWSERS: [&str; 4] = ["Chrome", "Firefox", "Safari", "Edge"];

/// Start of the generated data: 2026-10-20T00:00:00Z; it spans 24 days,
/// across the end of summer time in Europe (10-25) and the US (11-01).
pub const START_MS: u64 = 1_792_454_400_000;
pub const SPAN_MS: u64 = 24 * 86_400_000;

/// `users` users with a few dozen events each, in both projects, with
/// properties of every type; some users' sessions are funnel-shaped.
pub fn generate(seed: u64, users: usize) -> Vec<Ev> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    for u in 0..users {
        let project_id = if u % 10 == 9 { OTHER_PROJECT } else { PROJECT };
        let distinct_id = format!("user-{u}");
        let browser = *rng.pick(&BROWSERS);
        let sessions = 1 + rng.below(4);
        for _ in 0..sessions {
            let mut t = START_MS + rng.below(SPAN_MS);
            let len = 1 + rng.below(8);
            for _ in 0..len {
                // Seconds to hours apart; sometimes the same second.
                t += match rng.below(5) {
                    0 => rng.below(1000),
                    1 => rng.below(60_000),
                    2 => rng.below(3_600_000),
                    _ => rng.below(2 * 86_400_000),
                };
                let event = if rng.below(3) == 0 {
                    *rng.pick(&EVENTS)
                } else {
                    // Mostly in funnel order.
                    EVENTS[((out.len() as u64 + rng.below(2)) % 5) as usize]
                };
                let mut props = Map::new();
                props.insert("$browser".into(), json!(browser));
                props.insert("city".into(), json!(format!("c{}", rng.below(40))));
                if rng.below(4) != 0 {
                    props.insert("amount".into(), json!((rng.below(10_000) as f64) / 100.0));
                }
                props.insert("n".into(), json!(rng.below(5)));
                props.insert("flag".into(), json!(rng.below(2) == 0));
                if rng.below(3) == 0 {
                    props.insert("plan".into(), json!(*rng.pick(&["free", "pro", "Pro Max"])));
                }
                out.push(Ev {
                    uuid: uuid::Uuid::from_u64_pair(rng.next(), rng.next()).to_string(),
                    project_id,
                    event: event.to_owned(),
                    distinct_id: distinct_id.clone(),
                    props,
                    ts_ms: t.min(START_MS + SPAN_MS - 1),
                });
            }
        }
    }
    out
}

/// A ClickHouse string literal (written here, independently of the crate).
pub fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The `events` DDL and inserts: every event once, then every fifth event
/// again in a separate insert (a replay ClickHouse has not merged away).
pub fn statements(db: &str, events: &[Ev]) -> Vec<String> {
    let mut out = vec![format!("CREATE DATABASE IF NOT EXISTS {db}")];
    for m in clickhouse_migrations(&Layout::Single) {
        out.extend(m.steps.iter().map(|s| render(s, db)));
    }
    let values = |evs: &mut dyn Iterator<Item = &Ev>| {
        evs.map(|e| {
            format!(
                "({}, {}, {}, {}, {}, {}, {}, {}, '', 'test', '1')",
                lit(&e.uuid),
                e.project_id,
                lit(&e.event),
                lit(&e.distinct_id),
                lit(&serde_json::to_string(&e.props).unwrap()),
                e.secs(),
                e.ts_ms,
                e.secs(),
            )
        })
        .collect::<Vec<_>>()
    };
    let insert = format!(
        "INSERT INTO {db}.events (uuid, project_id, event, distinct_id, properties, timestamp, timestamp_ms, received_at, ip, lib, lib_version) VALUES "
    );
    for chunk in values(&mut events.iter()).chunks(2000) {
        out.push(format!("{insert}{}", chunk.join(", ")));
    }
    let dups = values(&mut events.iter().step_by(5));
    out.push(format!("{insert}{}", dups.join(", ")));
    out
}

/// Loads `events` into a new database on the stack's ClickHouse 18.16, with
/// merges stopped so the duplicates stay visible to queries.
pub async fn load(stack: &Stack, events: &[Ev]) -> (Warehouse, String) {
    let db = unique_name("query_test");
    let client = tributary_tests::clickhouse::client(&stack.clickhouse_url);
    let all = statements(&db, events);
    let (ddl, inserts): (Vec<_>, Vec<_>) = all.iter().partition(|s| !s.starts_with("INSERT"));
    for sql in ddl {
        client
            .query_raw(sql)
            .execute()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    client
        .query_raw(&format!("SYSTEM STOP MERGES {db}.events"))
        .execute()
        .await
        .unwrap();
    for sql in inserts {
        client.query_raw(sql).execute().await.unwrap();
    }
    let settings = tributary_tests::clickhouse::settings(&stack.clickhouse_url, &db);
    (Warehouse::new(&settings, Duration::from_secs(30)), db)
}

/// The query service, configured by `vars`, serving on a free port: its
/// base URL, and the token that stops it.
pub async fn serve(
    vars: &std::collections::HashMap<String, String>,
) -> (String, tokio_util::sync::CancellationToken) {
    let env = tributary_core::config::Env::new(vars);
    let mut config = tributary_query::QueryConfig::from_env(&env).unwrap();
    config.listen.set_port(0);
    let server = tributary_query::QueryServer::bind(&config).await.unwrap();
    let base = format!("http://{}", server.local_addr().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(server.serve(stop.clone()));
    (base, stop)
}

/// The sum of series `i`'s points in a trend answer.
pub fn series_total(answer: &Value, i: usize) -> u64 {
    answer["results"][i]["data"]
        .as_array()
        .map_or(0, |d| d.iter().filter_map(Value::as_u64).sum())
}

pub async fn drop_db(stack: &Stack, db: &str) {
    let client = tributary_tests::clickhouse::client(&stack.clickhouse_url);
    let _ = client
        .query_raw(&format!("DROP DATABASE IF EXISTS {db}"))
        .execute()
        .await;
}

/// Events of the project with duplicates removed (the model's input).
pub fn unique_in_project(events: &[Ev], project: u64) -> Vec<&Ev> {
    let mut seen = std::collections::HashSet::new();
    events
        .iter()
        .filter(|e| e.project_id == project && seen.insert(e.uuid.clone()))
        .collect()
}

fn equals(p: &Value, v: &Value) -> bool {
    match (p, v) {
        (Value::String(a), Value::String(b)) => a == b,
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Bool(a), Value::Bool(b)) => a == b,
        _ => false,
    }
}

/// A property filter evaluated in Rust, by its documented meaning.
pub fn matches(props: &Map<String, Value>, f: &PropertyFilter) -> bool {
    let p = props.get(&f.key);
    let v = f.value.clone().unwrap_or(Value::Null);
    let exact = || match (&p, &v) {
        (Some(p), Value::Array(items)) => items.iter().any(|i| equals(p, i)),
        (Some(p), v) => equals(p, v),
        (None, _) => false,
    };
    let text = || p.and_then(Value::as_str).unwrap_or("").to_lowercase();
    let num = || p.and_then(Value::as_f64);
    let bound = v.as_f64().unwrap_or(f64::NAN);
    match f.operator {
        Operator::Exact => exact(),
        Operator::IsNot => !exact(),
        Operator::Contains => text().contains(&v.as_str().unwrap_or("").to_lowercase()),
        Operator::NotContains => !text().contains(&v.as_str().unwrap_or("").to_lowercase()),
        Operator::Gt => num().is_some_and(|n| n > bound),
        Operator::Gte => num().is_some_and(|n| n >= bound),
        Operator::Lt => num().is_some_and(|n| n < bound),
        Operator::Lte => num().is_some_and(|n| n <= bound),
        Operator::IsSet => p.is_some(),
        Operator::IsNotSet => p.is_none(),
    }
}

pub fn all_match(props: &Map<String, Value>, filters: &[PropertyFilter]) -> bool {
    filters.iter().all(|f| matches(props, f))
}

/// A breakdown label: the string, the JSON text of other values, '' if absent
/// (and for non-strings of a materialized property).
pub fn label(props: &Map<String, Value>, key: &str) -> String {
    let materialized = tributary_core::schema::EXTRACTED_PROPERTIES
        .iter()
        .any(|(_, k)| *k == key);
    match props.get(key) {
        Some(Value::String(s)) => s.clone(),
        // A materialized column holds strings only.
        _ if materialized => String::new(),
        None => String::new(),
        Some(v) => v.to_string(),
    }
}

/// "Now" for every test: after all generated data.
pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_millis((START_MS + SPAN_MS + 86_400_000) as i64).unwrap()
}

/// A new user of the auth service at `auth`, signed up and logged in: its
/// bearer token.
pub async fn user_token(http: &reqwest::Client, auth: &str, name: &str) -> String {
    let email = format!("{}@example.test", tributary_tests::unique_name(name));
    let creds = json!({"email": email, "password": "long-password"});
    tributary_auth::testing::post(http, format!("{auth}/api/signup"), None, creds.clone()).await;
    tributary_auth::testing::post(http, format!("{auth}/api/login"), None, creds).await["token"]
        .as_str()
        .expect("a token")
        .to_owned()
}

/// A new project of the user with bearer `token`, and a key of it of each
/// of `scopes`, in order.
pub async fn project_keys(
    http: &reqwest::Client,
    auth: &str,
    token: &str,
    name: &str,
    scopes: &[&str],
) -> (u64, Vec<String>) {
    let post = tributary_auth::testing::post;
    let id = post(
        http,
        format!("{auth}/api/projects"),
        Some(token),
        json!({ "name": name }),
    )
    .await["id"]
        .as_u64()
        .expect("a project id");
    let mut keys = Vec::new();
    for scope in scopes {
        let key = post(
            http,
            format!("{auth}/api/projects/{id}/api-keys"),
            Some(token),
            json!({"name": scope, "scope": scope}),
        )
        .await;
        keys.push(key["api_key"].as_str().expect("a key").to_owned());
    }
    (id, keys)
}
