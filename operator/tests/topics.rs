//! The operator's topic management (`tributary_core::topics`, fed from the
//! resource's `TopicSpec`) against the stack's real broker
//! (tansu, which cannot add partitions: that must come back as a report,
//! not an error).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use tributary_operator::crd::TopicSpec;
use tributary_operator::kafka::{Bootstrap, Brokers, Kafka, SystemDns};
use tributary_operator::topics::{KafkaAdmin, Retention, TopicChange};
use tributary_tests::kafka_tap::{Seen, TappedBroker};
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
    assert!(again.as_specified(), "{again:?}");

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
    let brokers = Brokers::new(
        Duration::from_secs(20),
        "cluster.local",
        Box::new(SystemDns {
            timeout: Duration::from_secs(2),
        }),
    );
    let name = unique_name("operator_brokers");
    let first = brokers
        .ensure(
            &Bootstrap::new(&stack.kafka_bootstrap, "analytics"),
            &spec(&name, 2),
        )
        .await
        .unwrap();
    assert_eq!(first.change, TopicChange::Created);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let again = brokers
            .ensure(
                &Bootstrap::new(&stack.kafka_bootstrap, "analytics"),
                &spec(&name, 2),
            )
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

/// The topic's `retention.ms` as librdkafka's DescribeConfigs reads it: a
/// client apart from the operator's own wire code.
async fn retention_seen_by_librdkafka(bootstrap: &str, topic: &str) -> Option<String> {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = tributary_tests::kafka::client_config(bootstrap)
        .create()
        .unwrap();
    let results = admin
        .describe_configs(
            &[ResourceSpecifier::Topic(topic)],
            &AdminOptions::new().request_timeout(Some(Duration::from_secs(20))),
        )
        .await
        .unwrap();
    let resource = results.into_iter().next().unwrap().unwrap();
    resource.get("retention.ms").and_then(|e| e.value.clone())
}

#[tokio::test]
async fn a_changed_retention_reaches_the_existing_topic_and_only_that_setting_changes() {
    let stack = Stack::require();
    let bootstrap = &stack.kafka_bootstrap;
    let admin = KafkaAdmin::new(bootstrap, Duration::from_secs(20)).unwrap();
    let name = unique_name("operator_retention");
    let created = admin.ensure(&spec(&name, 2).topic()).await.unwrap();
    assert_eq!(created.change, TopicChange::Created);
    assert_eq!(
        retention_seen_by_librdkafka(bootstrap, &name)
            .await
            .as_deref(),
        Some("86400000"),
        "created with the spec's 24 h"
    );

    let mut longer = spec(&name, 2);
    longer.retention_hours = 72;
    let changed = admin.ensure(&longer.topic()).await.unwrap();
    assert_eq!(
        changed.retention,
        Retention::Changed {
            from_ms: Some(86_400_000),
            to_ms: 259_200_000
        },
        "{changed:?}"
    );
    assert!(changed.as_specified());
    assert_eq!(changed.change, TopicChange::Unchanged);
    assert!(
        changed
            .retention_message()
            .is_some_and(|m| m.contains("from 24 h to 72 h")),
        "{:?}",
        changed.retention_message()
    );
    // Brokers serve configs from metadata that may catch up a moment after
    // the change is committed.
    tributary_tests::poll_until(
        "librdkafka reading the new retention",
        Duration::from_secs(20),
        || async {
            (retention_seen_by_librdkafka(bootstrap, &name)
                .await
                .as_deref()
                == Some("259200000"))
            .then_some(())
        },
    )
    .await;
    let again = admin.ensure(&longer.topic()).await.unwrap();
    assert_eq!(again.retention, Retention::AsSpecified, "once");
}

/// Every request the admin client sends, seen by a proxy in front of a
/// broker of the test's own: metadata is asked for the pipeline's topic
/// only, never for every topic of the cluster.
#[tokio::test]
async fn metadata_is_asked_for_the_pipelines_topics_only() {
    let stack = Stack::require();
    let tansu = stack.tansu_bin.expect("TANSU_BIN set by local-stack.sh");
    let broker = TappedBroker::start(&tansu);
    let bootstrap = broker.bootstrap();
    // Someone else's topic on the same cluster.
    tributary_tests::kafka::create_topic(&bootstrap, "someone-elses", 1).await;
    broker.take();

    let admin = KafkaAdmin::new(&bootstrap, Duration::from_secs(20)).unwrap();
    let outcome = admin.ensure(&spec("events", 3).topic()).await.unwrap();
    assert_eq!(outcome.change, TopicChange::Created);
    admin.ensure(&spec("events", 3).topic()).await.unwrap();
    let seen = broker.take();
    let asked = |seen: &[Seen]| {
        let metadata: Vec<Seen> = seen
            .iter()
            .filter(|s| s.api == Some(ApiKey::Metadata))
            .cloned()
            .collect();
        for request in &metadata {
            let topics = request
                .topics
                .as_ref()
                .unwrap_or_else(|| panic!("a Metadata request for every topic: {seen:?}"));
            if !topics.is_empty() {
                assert_eq!(
                    request.auto_create,
                    Some(false),
                    "a request by name that lets the broker create the topic: {request:?}"
                );
            }
        }
        metadata
    };
    let metadata = asked(&seen);
    assert!(!metadata.is_empty(), "{seen:?}");
    for request in &metadata {
        let topics = request.topics.as_ref().unwrap();
        assert!(topics.iter().all(|t| t == "events"), "asked for {topics:?}");
    }
    assert_eq!(admin.partitions("no-such-topic").await.unwrap(), None);
    assert!(
        asked(&broker.take())
            .iter()
            .any(|r| r.topics.as_deref() == Some(&["no-such-topic".to_owned()][..])),
        "asked by name"
    );
    assert_eq!(
        admin.partitions("no-such-topic").await.unwrap(),
        None,
        "and not created"
    );
}
