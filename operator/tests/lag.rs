//! The operator's lag reader against the stack's real broker: produce N
//! messages, commit M in a group, and it reports N − M, per partition too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tributary_operator::kafka::{Bootstrap, Brokers, Kafka, SystemDns};
use tributary_operator::lag::{GroupLag, LagReader};
use tributary_tests::kafka::{client_config, create_topic};
use tributary_tests::kafka_tap::TappedBroker;
use tributary_tests::{Stack, unique_name};

const TIMEOUT: Duration = Duration::from_secs(20);

/// Sends `counts[p]` messages to partition `p` of `topic`.
async fn produce(bootstrap: &str, topic: &str, counts: &[i64]) {
    let producer: FutureProducer = client_config(bootstrap)
        .set("acks", "all")
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap();
    for (partition, &n) in counts.iter().enumerate() {
        let partition = i32::try_from(partition).unwrap();
        for i in 0..n {
            let payload = format!("message {i}");
            producer
                .send(
                    FutureRecord::<str, str>::to(topic)
                        .partition(partition)
                        .payload(&payload),
                    TIMEOUT,
                )
                .await
                .unwrap_or_else(|(e, _)| panic!("produce to {topic}/{partition}: {e}"));
        }
    }
}

/// Commits `offsets` (partition, next offset to read) for `group`, as a
/// consumer that read that far would.
fn commit(bootstrap: &str, group: &str, topic: &str, offsets: &[(i32, i64)]) {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for &(partition, offset) in offsets {
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
            .unwrap();
    }
    consumer.commit(&tpl, CommitMode::Sync).unwrap();
}

fn per_partition(lag: &GroupLag) -> Vec<i64> {
    lag.partitions.iter().map(|p| p.lag).collect()
}

/// Reads with `read` until the lag is `expected` per partition (commits
/// and watermarks may take a moment to show), failing with the last
/// reading.
async fn await_lag<F, R>(read: F, expected: &[i64]) -> GroupLag
where
    F: Fn() -> R,
    R: Future<Output = GroupLag>,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let lag = read().await;
        if per_partition(&lag) == expected {
            return lag;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "lag per partition stayed {:?}, expected {expected:?}",
            per_partition(&lag)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// [`await_lag`] through a `LagReader` of the topic's `expected.len()`
/// partitions.
async fn await_reader(reader: &LagReader, topic: &str, expected: &[i64]) -> GroupLag {
    let partitions = i32::try_from(expected.len()).unwrap();
    await_lag(
        || async { reader.read(topic, partitions).await.unwrap() },
        expected,
    )
    .await
}

#[tokio::test]
async fn lag_is_produced_minus_committed_per_partition() {
    let stack = Stack::require();
    let bootstrap = &stack.kafka_bootstrap;
    let topic = unique_name("operator_lag");
    let group = unique_name("operator_lag_group");
    create_topic(bootstrap, &topic, 3).await;
    let produced = [10, 7, 5];
    produce(bootstrap, &topic, &produced).await;
    let reader = LagReader::new(bootstrap, &group, TIMEOUT).unwrap();

    // Nothing committed yet: the consumer would start at the earliest
    // offset, so everything kept counts.
    let lag = await_reader(&reader, &topic, &produced).await;
    assert_eq!(lag.total(), 22);
    assert!(lag.partitions.iter().all(|p| p.committed.is_none()));

    // Committed 4 of 10 on partition 0 and all 7 on partition 1;
    // partition 2 never committed.
    commit(bootstrap, &group, &topic, &[(0, 4), (1, 7)]);
    let lag = await_reader(&reader, &topic, &[6, 0, 5]).await;
    assert_eq!(lag.total(), 11);
    assert_eq!(lag.max_partition(), 6);
    let committed: Vec<Option<i64>> = lag.partitions.iter().map(|p| p.committed).collect();
    assert_eq!(committed, [Some(4), Some(7), None]);
    let high: Vec<i64> = lag.partitions.iter().map(|p| p.high).collect();
    assert_eq!(high, produced);

    // More messages arrive: lag grows by exactly as many.
    produce(bootstrap, &topic, &[0, 3, 0]).await;
    await_reader(&reader, &topic, &[6, 3, 5]).await;

    // Another group's commits are its own.
    let other = LagReader::new(bootstrap, &unique_name("operator_lag_other"), TIMEOUT).unwrap();
    await_reader(&other, &topic, &[10, 10, 5]).await;
}

/// What reconcile calls: `Brokers`, one reader per bootstrap list and group.
#[tokio::test]
async fn reconcile_reads_lag_through_brokers() {
    let stack = Stack::require();
    let bootstrap = &stack.kafka_bootstrap;
    let topic = unique_name("operator_lag_brokers");
    let group = unique_name("operator_lag_brokers_group");
    create_topic(bootstrap, &topic, 2).await;
    produce(bootstrap, &topic, &[4, 2]).await;
    commit(bootstrap, &group, &topic, &[(0, 1)]);
    let brokers = Brokers::new(
        TIMEOUT,
        "cluster.local",
        Box::new(SystemDns {
            timeout: Duration::from_secs(2),
        }),
    );
    let bootstrap = Bootstrap::new(bootstrap, "analytics");
    let read = || async { brokers.lag(&bootstrap, &group, &topic, 2).await.unwrap() };
    await_lag(read, &[3, 2]).await;
}

#[tokio::test]
async fn an_unreachable_broker_is_an_error_naming_the_group_or_topic() {
    let brokers = Brokers::new(
        Duration::from_secs(2),
        "cluster.local",
        Box::new(SystemDns {
            timeout: Duration::from_secs(2),
        }),
    );
    let e = brokers
        .lag(
            &Bootstrap::new("127.0.0.1:1", "analytics"),
            "event-consumers",
            "events",
            2,
        )
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("event-consumers") || text.contains("events"),
        "{text}"
    );
}

/// Every request the lag reader sends, seen by a proxy in front of a
/// broker of the test's own: the offsets of a 12-partition topic cost one
/// OffsetFetch and one ListOffsets per position asked (the ends, the
/// beginnings) per broker, not requests per partition.
#[tokio::test]
async fn the_lag_of_many_partitions_is_read_in_one_request_per_broker() {
    let stack = Stack::require();
    let tansu = stack.tansu_bin.expect("TANSU_BIN set by local-stack.sh");
    let broker = TappedBroker::start(&tansu);
    let bootstrap = broker.bootstrap();
    let topic = unique_name("operator_lag_requests");
    let group = unique_name("operator_lag_requests_group");
    create_topic(&bootstrap, &topic, 12).await;
    let produced: Vec<i64> = (1..=12).collect();
    produce(&bootstrap, &topic, &produced).await;
    let reader = LagReader::new(&bootstrap, &group, TIMEOUT).unwrap();
    // A first read connects and learns the leaders.
    await_reader(&reader, &topic, &produced).await;

    broker.take();
    let lag = reader.read(&topic, 12).await.unwrap();
    assert_eq!(per_partition(&lag), produced);
    let seen = broker.take();
    let list_offsets = TappedBroker::count(&seen, ApiKey::ListOffsets);
    assert!(
        (1..=2).contains(&list_offsets),
        "{list_offsets} ListOffsets requests for 12 partitions on one broker: {seen:?}"
    );
    assert_eq!(
        TappedBroker::count(&seen, ApiKey::OffsetFetch),
        1,
        "{seen:?}"
    );
}
