//! ClickHouse stopped mid-stream: the consumer backs off, keeps its offsets,
//! dead-letters nothing, and stores every event once after ClickHouse
//! returns; meanwhile the group goes on rebalancing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use tributary_tests::clickhouse::PrivateClickHouse;
use tributary_tests::kafka::read_topic;
use tributary_tests::{Stack, poll_until};

#[tokio::test]
async fn an_outage_is_waited_out_not_dead_lettered() {
    let stack = Stack::require();
    let mut clickhouse = PrivateClickHouse::start();
    let f = common::Fixture::new(&stack.kafka_bootstrap, &clickhouse.url(), 3).await;
    let consumer = common::start(f.config(&[]));

    common::produce(&f.bootstrap, &f.topic, &common::events(500, 21)).await;
    f.wait_for_events(500, Duration::from_secs(60)).await;

    clickhouse.kill();
    let down_since = Instant::now();
    common::produce(&f.bootstrap, &f.topic, &common::events(700, 21)).await;
    // The consumer must have hit the outage (not merely been idle).
    consumer.until_outage_met().await;
    // Keep ClickHouse down for the scenario's 30 seconds.
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(down_since.elapsed())).await;
    clickhouse.restart();

    f.wait_for_events(1200, Duration::from_secs(90)).await;
    consumer.stop().await;
    assert_eq!(f.rows_after_merge().await, 1200);
    let dlq = read_topic(&f.bootstrap, &f.dlq_topic, 0, Duration::from_secs(2)).await;
    assert!(
        dlq.is_empty(),
        "{} messages dead-lettered during an outage",
        dlq.len()
    );
}

fn assigned(consumer: &common::Running) -> i64 {
    consumer
        .metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix("consumer_assigned_partitions "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// During a ClickHouse outage the group goes on: a consumer added in the
/// outage gets its partitions and one restarted in it rejoins (before, a
/// member with a full batch waiting stopped polling Kafka, so every
/// rebalance waited for it: the whole group stalled until ClickHouse came
/// back). Offsets do not move until rows are written, nothing is
/// dead-lettered, and every event is stored once afterwards.
#[tokio::test]
async fn the_group_rebalances_during_an_outage_and_offsets_wait_for_the_rows() {
    let stack = Stack::require();
    let mut clickhouse = PrivateClickHouse::start();
    let partitions = 4;
    let f = common::Fixture::new(&stack.kafka_bootstrap, &clickhouse.url(), partitions).await;
    // Small batches: the one being retried and the next fill at once.
    let small = [("CONSUMER_BATCH_SIZE", "50")];
    let first = common::start(f.config(&small));
    common::produce(&f.bootstrap, &f.topic, &common::events(200, 31)).await;
    f.wait_for_events(200, Duration::from_secs(60)).await;
    poll_until(
        "the first batches' offsets to be committed",
        Duration::from_secs(30),
        || async {
            let sum: i64 =
                tributary_tests::kafka::committed(&f.bootstrap, &f.group, &f.topic, partitions)
                    .iter()
                    .map(|o| o.max(&0))
                    .sum();
            (sum == 200).then_some(())
        },
    )
    .await;

    clickhouse.kill();
    common::produce(&f.bootstrap, &f.topic, &common::events(1000, 31)).await;
    first.until_outage_met().await;

    // Its next batch is full and waits: it pauses fetching, and polls on.
    poll_until(
        "the consumer to pause fetching while its batch waits",
        Duration::from_secs(30),
        || async {
            first
                .metrics_text()
                .contains("consumer_fetch_paused 1")
                .then_some(())
        },
    )
    .await;
    // A consumer added in the outage gets partitions within a few
    // session timeouts.
    let second = common::start(f.config(&small));
    poll_until(
        "the consumer added during the outage to be assigned partitions",
        Duration::from_secs(45),
        || async {
            (assigned(&second) > 0 && assigned(&first) < i64::from(partitions)).then_some(())
        },
    )
    .await;
    // One restarted in the outage rejoins and the group settles again.
    first.stop().await;
    let restarted = common::start(f.config(&small));
    poll_until(
        "the restarted consumer to rejoin",
        Duration::from_secs(45),
        || async {
            (assigned(&restarted) > 0
                && assigned(&restarted) + assigned(&second) == i64::from(partitions))
            .then_some(())
        },
    )
    .await;
    let during: i64 =
        tributary_tests::kafka::committed(&f.bootstrap, &f.group, &f.topic, partitions)
            .iter()
            .map(|o| o.max(&0))
            .sum();
    assert_eq!(during, 200, "offsets moved while no row could be written");

    clickhouse.restart();
    f.wait_for_events(1200, Duration::from_secs(120)).await;
    restarted.stop().await;
    second.stop().await;
    assert_eq!(f.rows_after_merge().await, 1200);
    let dlq = read_topic(&f.bootstrap, &f.dlq_topic, 0, Duration::from_secs(2)).await;
    assert!(
        dlq.is_empty(),
        "{} messages dead-lettered during an outage",
        dlq.len()
    );
}
