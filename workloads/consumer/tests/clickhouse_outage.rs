//! ClickHouse stopped for 30 s mid-stream: the consumer backs off, keeps its
//! offsets, dead-letters nothing, and stores every event once after ClickHouse
//! returns.
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
    poll_until(
        "an insert to fail during the outage",
        Duration::from_secs(30),
        || async {
            consumer
                .metrics_text()
                .contains(r#"consumer_insert_errors_total{kind="outage"}"#)
                .then_some(())
        },
    )
    .await;
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
