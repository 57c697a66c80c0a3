//! The demo `tributary dev --demo` runs once the pipeline is up: a user, a
//! project and its keys made through auth; a synthetic shop's week
//! ([`dataset`]) sent through capture; a wait until query sees all of it;
//! then a trend and a funnel printed ([`report`]) and checked against what
//! was sent, and saved as a dashboard whose page address is printed.

pub mod api;
pub mod dataset;
pub mod report;

use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use serde_json::{Value, json};

use api::{Api, ApiError, Urls};
use dataset::{Expected, FUNNEL, Shape};
use report::Answers;

/// How long the sent events get to become visible to the query API (the
/// seed's target is ~30 s).
const VISIBLE_WITHIN: Duration = Duration::from_secs(60);
/// The demo user's password (a local demo: printed, so you can log in).
const PASSWORD: &str = "demo-password-1";
/// Events per `/batch` request.
const BATCH: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(
        "after {waited:?} the query API sees {seen:?} of {sent:?} events ({names:?}); the pipeline is not delivering"
    )]
    NotVisible {
        waited: Duration,
        seen: [u64; 3],
        sent: [u64; 3],
        names: [&'static str; 3],
    },
    #[error("unexpected {what} answer: {answer}")]
    Answer { what: &'static str, answer: String },
    #[error("the query API disagrees with what was sent:\n  {}", .0.join("\n  "))]
    Mismatch(Vec<String>),
}

/// Runs the demo against `urls`, printing as it goes. `now` fixes the
/// dataset's clock (printed, so a reader can regenerate it).
pub async fn run(urls: Urls, shape: Shape, now: DateTime<Utc>) -> Result<Answers, DemoError> {
    let now = now.trunc_subsecs(0);
    let events = dataset::generate(&shape, now);
    let expected = Expected::of(&events, &shape, now);
    let page = urls.query.clone();
    let api = Api::new(urls)?;
    println!(
        "demo: shop seed {}, {} users, {} days up to {}",
        shape.seed,
        shape.users,
        shape.days,
        now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let email = format!("demo-{}@example.test", uuid::Uuid::new_v4().simple());
    let project = api.project(&email, PASSWORD, "Demo shop").await?;
    println!(
        "demo: auth: user {email} (password {PASSWORD}), project {}, capture key {}, query and dashboards key {}",
        project.id, project.capture_key, project.query_key
    );

    let started = Instant::now();
    for chunk in events.chunks(BATCH) {
        api.capture(
            &project.capture_key,
            chunk.iter().map(|e| e.to_json()).collect(),
        )
        .await?;
    }
    let [views, signups, purchases] = expected.totals;
    println!(
        "demo: capture: {} events sent ({views} page views, {signups} sign-ups, {purchases} purchases) in {:.1} s",
        events.len(),
        started.elapsed().as_secs_f64()
    );

    let first = dataset::first_day(&shape, now);
    let today = now.date_naive();
    let trend = trend_request(first, today);
    let seen = visible(&api, &project.query_key, &trend, expected.totals).await?;
    println!(
        "demo: query: all {} events visible {:.1} s after sending began",
        events.len(),
        started.elapsed().as_secs_f64()
    );
    let days = days(&seen)?;
    let funnel = funnel(&api, &project.query_key, first, today).await?;
    let answers = Answers { days, funnel };
    println!();
    print!("{}", report::render(&answers));
    println!();
    let differences = report::differences(&answers, &expected);
    if !differences.is_empty() {
        return Err(DemoError::Mismatch(differences));
    }
    println!("demo: every number above equals what the demo sent");
    let key = &project.query_key;
    let insights = [
        api.save_insight(
            key,
            "Shop: views, users, sign-ups, purchases",
            "trend",
            &trend,
        )
        .await?,
        api.save_insight(
            key,
            "Shop: view, sign up, purchase",
            "funnel",
            &funnel_request(first, today),
        )
        .await?,
        api.save_insight(
            key,
            "Shop: visitors coming back",
            "retention",
            &json!({
                "target": {"event": FUNNEL[0]},
                "returning": {"event": FUNNEL[0]},
                "date_from": first.to_string(),
                "periods": shape.days,
                "timezone": "UTC",
            }),
        )
        .await?,
    ];
    // The trend a whole row wide, the funnel and retention side by side.
    let [trend_id, funnel_id, retention_id] = insights;
    let dashboard = api
        .save_dashboard(
            key,
            "Demo shop",
            &[(trend_id, 12), (funnel_id, 6), (retention_id, 6)],
        )
        .await?;
    println!("demo: dashboard: open {page}/#dashboard={dashboard} and paste the key {key}");
    Ok(answers)
}

/// Page views (total and users), then sign-ups and purchases, per UTC day.
fn trend_request(first: NaiveDate, last: NaiveDate) -> Value {
    json!({
        "series": [
            {"event": FUNNEL[0], "math": "total"},
            {"event": FUNNEL[0], "math": "unique_users"},
            {"event": FUNNEL[1], "math": "total"},
            {"event": FUNNEL[2], "math": "total"},
        ],
        "date_from": first.to_string(),
        "date_to": last.to_string(),
        "interval": "day",
        "timezone": "UTC",
    })
}

/// The sum of series `i` of a trend answer.
pub fn series_total(answer: &Value, i: usize) -> u64 {
    answer["results"][i]["data"]
        .as_array()
        .map_or(0, |d| d.iter().filter_map(Value::as_u64).sum())
}

/// Polls the trend until it counts every event sent, and returns it.
async fn visible(api: &Api, key: &str, trend: &Value, sent: [u64; 3]) -> Result<Value, DemoError> {
    let started = Instant::now();
    loop {
        let answer = api.query(key, "trend", trend).await?;
        let seen = [0, 2, 3].map(|i| series_total(&answer, i));
        if seen == sent {
            return Ok(answer);
        }
        if started.elapsed() >= VISIBLE_WITHIN {
            return Err(DemoError::NotVisible {
                waited: started.elapsed(),
                seen,
                sent,
                names: FUNNEL,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Per bucket: the day, page views and users.
fn days(trend: &Value) -> Result<Vec<(NaiveDate, u64, u64)>, DemoError> {
    let bad = || DemoError::Answer {
        what: "trend",
        answer: trend.to_string(),
    };
    let buckets = trend["buckets"].as_array().ok_or_else(bad)?;
    let views = trend["results"][0]["data"].as_array().ok_or_else(bad)?;
    let users = trend["results"][1]["data"].as_array().ok_or_else(bad)?;
    buckets
        .iter()
        .zip(views.iter().zip(users))
        .map(|(bucket, (v, u))| {
            let day = bucket
                .as_str()
                .and_then(|b| b.get(..10))
                .and_then(|d| d.parse::<NaiveDate>().ok())
                .ok_or_else(bad)?;
            Ok((
                day,
                v.as_u64().ok_or_else(bad)?,
                u.as_u64().ok_or_else(bad)?,
            ))
        })
        .collect()
}

/// The shop's funnel, view to sign-up to purchase, over the demo's days.
fn funnel_request(first: NaiveDate, last: NaiveDate) -> Value {
    json!({
        "steps": FUNNEL.map(|event| json!({"event": event})),
        "date_from": first.to_string(),
        "date_to": last.to_string(),
        "timezone": "UTC",
    })
}

async fn funnel(
    api: &Api,
    key: &str,
    first: NaiveDate,
    last: NaiveDate,
) -> Result<[u64; 3], DemoError> {
    let answer = api
        .query(key, "funnel", &funnel_request(first, last))
        .await?;
    let count = |i: usize| answer["steps"][i]["count"].as_u64();
    match (count(0), count(1), count(2)) {
        (Some(a), Some(b), Some(c)) => Ok([a, b, c]),
        _ => Err(DemoError::Answer {
            what: "funnel",
            answer: answer.to_string(),
        }),
    }
}
