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
    Load::start(&rig.capture, 4, Duration::from_millis(40))
}

/// The consumer SIGKILLed `form.kills()` times at pseudo-random points
/// (some right after a batch was written, before its commit could land),
/// a new one started after each.
pub async fn consumer_kills(rig: &mut Rig, form: Form) -> Figures {
    let load = load(rig);
    tokio::time::sleep(CALM).await;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(7, |d| u64::from(d.subsec_nanos()));
    eprintln!("consumer kills: seed {seed}");
    for kill in 0..form.kills() {
        // Every other kill: while the broker's replies are held, so the
        // batch being written cannot commit.
        let hold = kill % 2 == 0;
        if hold {
            rig.broker.hold_replies(true);
        }
        let wait = 300 + (seed.wrapping_mul(kill as u64 + 1) >> 9) % 1500;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        rig.kill_consumer();
        rig.broker.hold_replies(false);
        rig.add_consumer();
        // Let the new one join and write before the next kill.
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    let ended = Instant::now();
    tokio::time::sleep(CALM).await;
    let tally = load.stop().await;
    Figures::measure("consumer SIGKILLed", rig, &tally, ended, DRAIN).await
}

/// ClickHouse killed for `form.outage()`; during it a consumer is
/// restarted and another added (the group must rebalance).
pub async fn clickhouse_outage(rig: &mut Rig, form: Form) -> Figures {
    let load = load(rig);
    tokio::time::sleep(CALM).await;
    rig.clickhouse.kill();
    let started = Instant::now();
    tokio::time::sleep(form.outage() / 3).await;
    // The consumer says what it is going through.
    let started_health = Instant::now();
    loop {
        let health = rig.consumer_health().await;
        if health["writing_through_outage"] == true && health["dependencies"][0]["state"] == "down"
        {
            break;
        }
        assert!(
            started_health.elapsed() < Duration::from_secs(30),
            "the consumer's /health/detailed did not show the outage: {health}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    rig.stop_consumer();
    rig.add_consumer();
    rig.add_consumer();
    tokio::time::sleep(form.outage().saturating_sub(started.elapsed())).await;
    rig.clickhouse.restart();
    let ended = Instant::now();
    tokio::time::sleep(CALM).await;
    let tally = load.stop().await;
    Figures::measure(
        "ClickHouse down, consumers restarted and added",
        rig,
        &tally,
        ended,
        DRAIN,
    )
    .await
}

/// The broker takes requests and its answers are held for `form.outage()`:
/// requests in flight get no acknowledgement.
pub async fn broker_stall(rig: &mut Rig, form: Form) -> Figures {
    let load = load(rig);
    tokio::time::sleep(CALM).await;
    rig.broker.hold_replies(true);
    tokio::time::sleep(form.outage()).await;
    rig.broker.hold_replies(false);
    let ended = Instant::now();
    tokio::time::sleep(CALM * 2).await;
    let tally = load.stop().await;
    Figures::measure("broker acknowledgements held", rig, &tally, ended, DRAIN).await
}

/// Consumers added and removed every few seconds (rebalances with batches
/// in flight) for `form.outage()`. Each change waits until the group has
/// settled from the one before: with tansu, the test broker, a member that
/// joins while a rebalance is under way never gets partitions and the
/// group stalls (seen here; RELIABILITY.md).
pub async fn consumer_churn(rig: &mut Rig, form: Form) -> Figures {
    let load = load(rig);
    tokio::time::sleep(CALM).await;
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
    let ended = Instant::now();
    tokio::time::sleep(CALM).await;
    let tally = load.stop().await;
    Figures::measure("consumers added and removed", rig, &tally, ended, DRAIN).await
}
