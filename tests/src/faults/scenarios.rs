//! One fault at a time under the same load. Each returns its figures; the
//! caller checks [`Figures::holds`].

use std::time::{Duration, Instant};

use super::Form;
use super::load::Load;
use super::report::Figures;
use super::rig::Rig;

/// Load before and after the fault, so both sides of it are measured.
const CALM: Duration = Duration::from_secs(3);
/// How long every acknowledged event may take to be stored afterwards.
const DRAIN: Duration = Duration::from_secs(120);

fn load(rig: &Rig) -> Load {
    Load::start(&rig.capture, &rig.capture_key, 4, Duration::from_millis(40))
}

/// The frame of every scenario: the load, a calm, `fault` (it returns
/// when the fault ended, after any check of the recovery), a calm, the load
/// stopped, and the figures measured from the end of the fault.
async fn under_load(
    rig: &mut Rig,
    name: &'static str,
    fault: impl AsyncFnOnce(&mut Rig, &Load) -> Instant,
) -> Figures {
    let load = load(rig);
    tokio::time::sleep(CALM).await;
    let ended = fault(rig, &load).await;
    tokio::time::sleep(CALM).await;
    let tally = load.stop().await;
    Figures::measure(name, rig, &tally, ended, DRAIN).await
}

/// Polls the first consumer's `/health/detailed` until `shows` holds.
async fn until_consumer_health(rig: &Rig, what: &str, shows: impl Fn(&serde_json::Value) -> bool) {
    crate::poll_until(what, Duration::from_secs(30), || async {
        let health = rig.consumer_health().await;
        shows(&health).then_some(())
    })
    .await;
}

/// The consumer SIGKILLed `form.kills()` times at pseudo-random points
/// (some right after a batch was written, before its commit could land),
/// a new one started after each.
pub async fn consumer_kills(rig: &mut Rig, form: Form) -> Figures {
    under_load(rig, "consumer SIGKILLed", async |rig, _| {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(7, |d| u64::from(d.subsec_nanos()));
        eprintln!("consumer kills: seed {seed}");
        for kill in 0..form.kills() {
            // Every other kill: while requests to the broker are held, so the
            // batch being written cannot commit (its commit is dropped with the
            // connections after the kill).
            let hold = kill % 2 == 0;
            if hold {
                rig.broker.hold_requests(true);
            }
            let wait = 300 + (seed.wrapping_mul(kill as u64 + 1) >> 9) % 1500;
            tokio::time::sleep(Duration::from_millis(wait)).await;
            rig.kill_consumer();
            if hold {
                rig.broker.cut(true);
                rig.broker.hold_requests(false);
                rig.broker.cut(false);
            }
            rig.add_consumer();
            // Let the new one join and write before the next kill.
            tokio::time::sleep(Duration::from_secs(4)).await;
        }
        Instant::now()
    })
    .await
}

/// ClickHouse killed for `form.outage()`; during it a consumer is
/// restarted and another added (the group must rebalance).
pub async fn clickhouse_outage(rig: &mut Rig, form: Form) -> Figures {
    under_load(
        rig,
        "ClickHouse down, consumers restarted and added",
        async |rig, _| {
            rig.clickhouse.kill();
            let started = Instant::now();
            tokio::time::sleep(form.outage() / 3).await;
            // The consumer says what it is going through.
            until_consumer_health(
                rig,
                "the consumer's /health/detailed showing the outage",
                |h| h["writing_through_outage"] == true && h["dependencies"][0]["state"] == "down",
            )
            .await;
            rig.stop_consumer();
            rig.add_consumer();
            rig.add_consumer();
            tokio::time::sleep(form.outage().saturating_sub(started.elapsed())).await;
            rig.clickhouse.restart();
            Instant::now()
        },
    )
    .await
}

/// The broker takes requests and its answers are held for `form.outage()`:
/// requests in flight get no acknowledgement.
pub async fn broker_stall(rig: &mut Rig, form: Form) -> Figures {
    under_load(rig, "broker acknowledgements held", async |rig, _| {
        rig.broker.hold_replies(true);
        tokio::time::sleep(form.outage()).await;
        rig.broker.hold_replies(false);
        let ended = Instant::now();
        // A calm of its own before the frame's: twice the others'.
        tokio::time::sleep(CALM).await;
        ended
    })
    .await
}

/// The broker unreachable for `form.outage()` (every connection dropped,
/// new ones refused; its log kept, as a broker that restarts with its
/// disk): capture refuses with 503 what it cannot have acknowledged, and
/// everything acknowledged is stored once the broker is back.
pub async fn broker_unreachable(rig: &mut Rig, form: Form) -> Figures {
    under_load(rig, "broker unreachable", async |rig, load| {
        rig.broker.cut(true);
        tokio::time::sleep(form.outage()).await;
        rig.broker.cut(false);
        let ended = Instant::now();
        load.acknowledged_after(ended, Duration::from_secs(60))
            .await;
        ended
    })
    .await
}

/// Consumers added and removed every few seconds (rebalances with batches
/// in flight) for `form.outage()`. Each change waits until the group has
/// settled from the one before: on tansu, the test broker, a member that
/// joined just before the group's leader left never got partitions (it
/// rejoined every 8 s with an empty assignment; RELIABILITY.md).
pub async fn consumer_churn(rig: &mut Rig, form: Form) -> Figures {
    under_load(rig, "consumers added and removed", async |rig, _| {
        let started = Instant::now();
        let mut n = 0;
        while started.elapsed() < form.outage() {
            n += 1;
            if n % 2 == 1 || rig.consumers.len() < 2 {
                rig.add_consumer();
            } else {
                rig.stop_consumer();
            }
            assert!(
                rig.until_settled(4, Duration::from_secs(60)).await,
                "the group did not settle after change {n}: {:?}",
                rig.assigned().await
            );
        }
        Instant::now()
    })
    .await
}

/// Redis cut from query for `form.outage()`: trends are answered uncached,
/// async jobs refused with 503, and both come back by themselves.
pub async fn redis_down(rig: &mut Rig, form: Form) -> Figures {
    under_load(rig, "Redis down (query)", async |rig, _| {
        rig.redis.cut();
        let http = reqwest::Client::new();
        let (status, answer) = trend(&http, &rig.query, &rig.query_key, false).await;
        assert_eq!(status, 200, "a trend with Redis down: {answer}");
        assert_eq!(answer["cached"], false, "{answer}");
        let (status, answer) = trend(&http, &rig.query, &rig.query_key, true).await;
        assert_eq!(status, 503, "an async job with Redis down: {answer}");
        tokio::time::sleep(form.outage()).await;
        rig.redis.restore();
        let ended = Instant::now();
        crate::poll_until("async jobs back", Duration::from_secs(30), || async {
            (trend(&http, &rig.query, &rig.query_key, true).await.0 == 202).then_some(())
        })
        .await;
        ended
    })
    .await
}

/// ClickHouse takes query's queries and never answers, for
/// `form.outage()`: each is a 504 within `QUERY_TIMEOUT_SECS`, ingestion
/// goes on (the consumer's way to ClickHouse is not stalled).
pub async fn clickhouse_stalls_for_query(rig: &mut Rig, form: Form) -> Figures {
    under_load(rig, "ClickHouse stalled for query", async |rig, _| {
        rig.query_clickhouse.hold_replies(true);
        let http = reqwest::Client::new();
        let started = Instant::now();
        while started.elapsed() < form.outage() {
            let asked = Instant::now();
            let (status, answer) = trend_fresh(&http, &rig.query, &rig.query_key).await;
            assert_eq!(status, 504, "a trend with ClickHouse stalled: {answer}");
            assert!(
                asked.elapsed()
                    < Duration::from_millis(super::rig::QUERY_TIMEOUT_SECS * 1000 + 500),
                "took {:?}",
                asked.elapsed()
            );
        }
        rig.query_clickhouse.hold_replies(false);
        Instant::now()
    })
    .await
}

/// ClickHouse refuses writes (read-only, as a full disk would) for
/// `form.outage()`: an outage to the consumer, not bad data; nothing is
/// dead-lettered and everything is written once it takes writes again.
pub async fn clickhouse_read_only(rig: &mut Rig, form: Form) -> Figures {
    under_load(rig, "ClickHouse read-only", async |rig, _| {
        rig.clickhouse.set_read_only(true);
        let started = Instant::now();
        until_consumer_health(rig, "the consumer meeting the read-only ClickHouse", |h| {
            h["writing_through_outage"] == true
        })
        .await;
        tokio::time::sleep(form.outage().saturating_sub(started.elapsed())).await;
        rig.clickhouse.set_read_only(false);
        Instant::now()
    })
    .await
}

async fn trend_fresh(http: &reqwest::Client, query: &str, key: &str) -> (u16, serde_json::Value) {
    ask(http, &format!("{query}/api/query/trend?refresh=true"), key).await
}

/// A trend of the load's events; `run_async`: as a job.
async fn trend(
    http: &reqwest::Client,
    query: &str,
    key: &str,
    run_async: bool,
) -> (u16, serde_json::Value) {
    let url = if run_async {
        format!("{query}/api/query/trend?async=true&refresh=true")
    } else {
        format!("{query}/api/query/trend?refresh=true")
    };
    ask(http, &url, key).await
}

async fn ask(http: &reqwest::Client, url: &str, key: &str) -> (u16, serde_json::Value) {
    let body = serde_json::json!({"series": [{"event": super::load::EVENT}], "date_from": "-1d"});
    match http
        .post(url)
        .header("x-api-key", key)
        .json(&body)
        .timeout(Duration::from_secs(30))
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or_default())
        }
        Err(e) => (0, serde_json::json!(e.to_string())),
    }
}

/// A capture request with a well-formed key auth has never seen.
async fn unknown_key(http: &reqwest::Client, capture: &str) -> (u16, serde_json::Value) {
    let key = format!("trb_{}", "A".repeat(43));
    let body = serde_json::json!({"event": super::load::EVENT, "distinct_id": "stranger"});
    match http
        .post(format!("{capture}/capture"))
        .header("x-api-key", key)
        .json(&body)
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or_default())
        }
        Err(e) => (0, serde_json::json!(e.to_string())),
    }
}

/// Auth killed for `form.outage()` (longer than capture's and query's 5 s
/// key cache): known keys go on ingesting and querying on their stale
/// answers, an unknown key gets 503, nothing is lost; auth restarted,
/// everything as before.
pub async fn auth_down(rig: &mut Rig, form: Form) -> Figures {
    under_load(rig, "auth down", async |rig, _| {
        // The query key is known (checked) before auth goes; the capture key
        // is, by the load.
        let http = reqwest::Client::new();
        let (status, answer) = trend_fresh(&http, &rig.query, &rig.query_key).await;
        assert_eq!(status, 200, "{answer}");
        if let Some(auth) = rig.auth.as_mut() {
            auth.kill();
        }
        // Past the cache period: the stale answers are what carries the keys.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let (status, body) = unknown_key(&http, &rig.capture).await;
        assert_eq!(status, 503, "an unknown key with auth down: {body}");
        assert_eq!(body["error"], "auth_unavailable", "{body}");
        let (status, answer) = trend_fresh(&http, &rig.query, &rig.query_key).await;
        assert_eq!(status, 200, "a known query key with auth down: {answer}");
        tokio::time::sleep(form.outage().saturating_sub(Duration::from_secs(6))).await;
        rig.restart_auth().await;
        Instant::now()
    })
    .await
}

/// Postgres cut from auth for `form.outage()`: auth is not ready and says
/// so, logins get 503, known keys go on working, unknown ones get 503;
/// all back by themselves when Postgres is.
pub async fn postgres_down_for_auth(rig: &mut Rig, form: Form) -> Figures {
    under_load(rig, "Postgres down for auth", async |rig, _| {
        let Some(auth) = rig.auth.as_ref() else {
            panic!("the rig has no auth service");
        };
        let (url, postgres) = (auth.url.clone(), &auth.postgres);
        postgres.cut();
        let http = reqwest::Client::new();
        tokio::time::sleep(Duration::from_secs(6)).await;
        let ready = http
            .get(format!("{url}/ready"))
            .send()
            .await
            .map(|r| r.status().as_u16());
        assert_eq!(ready.ok(), Some(503), "auth ready without Postgres");
        let login = serde_json::json!({"email": "nobody@example.test", "password": "whatever-123"});
        let status = http
            .post(format!("{url}/api/login"))
            .json(&login)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        assert_eq!(status, 503, "a login without Postgres");
        let (status, body) = unknown_key(&http, &rig.capture).await;
        assert_eq!(status, 503, "an unknown key without Postgres: {body}");
        tokio::time::sleep(form.outage().saturating_sub(Duration::from_secs(6))).await;
        postgres.restore();
        let ended = Instant::now();
        crate::wait_for_ok(
            "auth ready again",
            &format!("{url}/ready"),
            Duration::from_secs(60),
        )
        .await;
        ended
    })
    .await
}
