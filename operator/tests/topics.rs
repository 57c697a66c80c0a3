//! The operator's topic management (`tributary_core::topics`, fed from the
//! resource's `TopicSpec`) against the stack's real broker
//! (tansu, which cannot add partitions: that must come back as a report,
//! not an error).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tributary_operator::crd::TopicSpec;
use tributary_operator::kafka::{Brokers, Kafka};
use tributary_operator::topics::{KafkaAdmin, TopicChange};
use tributary_tests::{Stack, unique_name};

fn spec(name: &str, partitions: i32) -> TopicSpec {
    TopicSpec {
        name: name.to_owned(),
        partitions,
        replication_factor: 1,
        retention_hours: 24,
    }
}

#[tokio::test]
async fn topics_are_created_kept_never_shrunk_and_growth_is_reported() {
    let stack = Stack::require();
    let admin = KafkaAdmin::new(&stack.kafka_bootstrap, Duration::from_secs(20)).unwrap();
    let name = unique_name("operator_topic");
    assert_eq!(admin.partitions(&name).await.unwrap(), None);

    let created = admin.ensure(&spec(&name, 3).topic()).await.unwrap();
    assert_eq!(
        created.change,
        TopicChange::Created,
        "{}",
        created.message()
    );
    // The broker reports what was created (poll: metadata may lag).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while admin.partitions(&name).await.unwrap() != Some(3) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "topic never showed 3 partitions"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let again = admin.ensure(&spec(&name, 3).topic()).await.unwrap();
    assert_eq!(again.change, TopicChange::Unchanged);
    assert!(again.as_specified());

    let shrink = admin.ensure(&spec(&name, 2).topic()).await.unwrap();
    assert_eq!(shrink.change, TopicChange::ShrinkRefused { wanted: 2 });
    assert_eq!(shrink.partitions, 3);
    assert_eq!(
        admin.partitions(&name).await.unwrap(),
        Some(3),
        "nothing removed"
    );

    // Growing: done where the broker can, reported where it cannot.
    let grow = admin.ensure(&spec(&name, 5).topic()).await.unwrap();
    match &grow.change {
        TopicChange::Grown { from: 3 } => {
            assert_eq!(admin.partitions(&name).await.unwrap(), Some(5));
        }
        TopicChange::GrowUnsupported { wanted: 5, reason } => {
            assert!(!reason.is_empty());
            assert_eq!(grow.partitions, 3);
            assert!(!grow.as_specified());
        }
        other => panic!("growing: {other:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_broker_is_an_error_naming_it() {
    let admin = KafkaAdmin::new("127.0.0.1:1", Duration::from_secs(2)).unwrap();
    let e = admin.ensure(&spec("events", 3).topic()).await.unwrap_err();
    assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
}

/// What reconcile calls: `Brokers`, one admin client per bootstrap list.
#[tokio::test]
async fn reconcile_reaches_the_broker_through_brokers() {
    let stack = Stack::require();
    let brokers = Brokers::new(Duration::from_secs(20));
    let name = unique_name("operator_brokers");
    let first = brokers
        .ensure(&stack.kafka_bootstrap, &spec(&name, 2))
        .await
        .unwrap();
    assert_eq!(first.change, TopicChange::Created);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let again = brokers
            .ensure(&stack.kafka_bootstrap, &spec(&name, 2))
            .await
            .unwrap();
        if again.change == TopicChange::Unchanged {
            assert_eq!(again.partitions, 2);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the created topic never showed: {again:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
