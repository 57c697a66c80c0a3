//! Proves the local stack is real: every server the pipeline depends on is
//! reached with the same client crate the workloads use.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tributary_tests::kafka::{client_config, create_topic};
use tributary_tests::{Stack, poll_until, unique_name};

const TIMEOUT: Duration = Duration::from_secs(30);

fn kafka_config(stack: &Stack) -> ClientConfig {
    client_config(&stack.kafka_bootstrap)
}

async fn produce(producer: &FutureProducer, topic: &str, key: &str, value: &str) -> i32 {
    producer
        .send(FutureRecord::to(topic).key(key).payload(value), TIMEOUT)
        .await
        .unwrap_or_else(|(e, _)| panic!("produce to {topic}: {e}"))
        .partition
}

/// Lag of `group` on `topic`: per partition, high watermark minus committed
/// offset (a partition without a commit counts from its low watermark).
fn group_lag(consumer: &StreamConsumer, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(tpl, TIMEOUT).unwrap();
    (0..partitions)
        .map(|p| {
            let (low, high) = consumer.fetch_watermarks(topic, p, TIMEOUT).unwrap();
            let position = match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => low,
            };
            (p, high - position)
        })
        .collect()
}

#[tokio::test]
async fn kafka_keyed_messages_go_through_a_consumer_group_with_commits_and_lag() {
    let stack = Stack::require();
    let topic = unique_name("stack_probe");
    let group = unique_name("stack_probe_group");
    const PARTITIONS: i32 = 3;
    create_topic(&stack.kafka_bootstrap, &topic, PARTITIONS).await;

    let producer: FutureProducer = kafka_config(&stack)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap();

    // 10 keys x 3 messages: the same key must always land on the same partition.
    let mut partition_of_key: HashMap<String, i32> = HashMap::new();
    for round in 0..3 {
        for k in 0..10 {
            let key = format!("user-{k}");
            let p = produce(&producer, &topic, &key, &format!("{key}/{round}")).await;
            assert_eq!(
                *partition_of_key.entry(key.clone()).or_insert(p),
                p,
                "key {key} moved partition"
            );
        }
    }
    let used: std::collections::HashSet<_> = partition_of_key.values().collect();
    assert!(
        used.len() > 1,
        "10 keys all hashed to one partition: {partition_of_key:?}"
    );

    let consumer: StreamConsumer = kafka_config(&stack)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();

    let mut received: Vec<(String, String, i32)> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while received.len() < 30 {
        let msg = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .unwrap_or_else(|_| {
                panic!("only {} of 30 messages arrived within 60 s", received.len())
            })
            .unwrap();
        let key = String::from_utf8(msg.key().unwrap().to_vec()).unwrap();
        let value = String::from_utf8(msg.payload().unwrap().to_vec()).unwrap();
        received.push((key, value, msg.partition()));
    }
    for (key, value, partition) in &received {
        assert_eq!(
            partition_of_key[key], *partition,
            "{key} read from another partition"
        );
        assert!(
            value.starts_with(&format!("{key}/")),
            "{key} carried {value}"
        );
    }
    let mut values: Vec<_> = received.iter().map(|(_, v, _)| v.clone()).collect();
    values.sort();
    values.dedup();
    assert_eq!(values.len(), 30, "duplicates or losses: {values:?}");

    consumer.commit_consumer_state(CommitMode::Sync).unwrap();
    let lag = group_lag(&consumer, &topic, PARTITIONS);
    assert_eq!(
        lag.values().sum::<i64>(),
        0,
        "lag after committing everything: {lag:?}"
    );

    // Five more messages for one key, not consumed: lag 5, all on its partition.
    for i in 0..5 {
        produce(&producer, &topic, "user-0", &format!("late/{i}")).await;
    }
    let lag = group_lag(&consumer, &topic, PARTITIONS);
    assert_eq!(lag[&partition_of_key["user-0"]], 5, "{lag:?}");
    assert_eq!(lag.values().sum::<i64>(), 5, "{lag:?}");
}

#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
struct ProbeRow {
    id: u64,
    name: String,
    #[serde(with = "clickhouse::serde::uuid")]
    uuid: uuid::Uuid,
}

#[tokio::test]
async fn clickhouse_mergetree_insert_and_select_with_the_clickhouse_crate() {
    let stack = Stack::require();
    let client = clickhouse::Client::default()
        .with_url(&stack.clickhouse_url)
        .with_validation(false)
        .with_compression(clickhouse::Compression::None);
    let table = unique_name("stack_probe");
    client
        .query(&format!(
            "CREATE TABLE {table} (id UInt64, name String, uuid UUID) ENGINE = MergeTree ORDER BY id"
        ))
        .execute()
        .await
        .unwrap();

    let rows: Vec<ProbeRow> = (0..100u64)
        .map(|id| ProbeRow {
            id,
            name: format!("row \u{e9} {id}"),
            uuid: uuid::Uuid::now_v7(),
        })
        .collect();
    let mut insert = client.insert::<ProbeRow>(&table).await.unwrap();
    for row in &rows {
        insert.write(row).await.unwrap();
    }
    insert.end().await.unwrap();

    let back: Vec<ProbeRow> = client
        .query(&format!(
            "SELECT ?fields FROM {table} WHERE id >= ? ORDER BY id"
        ))
        .bind(50u64)
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(back, rows[50..].to_vec());

    client
        .query(&format!("DROP TABLE {table}"))
        .execute()
        .await
        .unwrap();
}

#[tokio::test]
async fn postgres_answers_sqlx_queries() {
    let stack = Stack::require();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(TIMEOUT)
        .connect(&stack.postgres_dsn)
        .await
        .unwrap();
    let table = unique_name("stack_probe");
    sqlx::query(&format!(
        "CREATE TABLE {table} (id BIGINT PRIMARY KEY, name TEXT NOT NULL)"
    ))
    .execute(&pool)
    .await
    .unwrap();
    for id in 1..=3i64 {
        sqlx::query(&format!("INSERT INTO {table} (id, name) VALUES ($1, $2)"))
            .bind(id)
            .bind(format!("n{id}"))
            .execute(&pool)
            .await
            .unwrap();
    }
    let (count, sum): (i64, i64) =
        sqlx::query_as(&format!("SELECT count(*), sum(id)::BIGINT FROM {table}"))
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((count, sum), (3, 6));
    sqlx::query(&format!("DROP TABLE {table}"))
        .execute(&pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn redis_round_trip() {
    let stack = Stack::require();
    let client = redis::Client::open(stack.redis_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = unique_name("stack_probe");
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("v1")
        .arg("EX")
        .arg(60)
        .query_async(&mut conn)
        .await
        .unwrap();
    let got: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(got.as_deref(), Some("v1"));
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((1..=60).contains(&ttl), "ttl {ttl}");
    let n: i64 = redis::cmd("INCR")
        .arg(format!("{key}:n"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 1);
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .arg(format!("{key}:n"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let gone: Option<String> = poll_until("key deletion to be visible", TIMEOUT, || {
        let mut conn = conn.clone();
        let key = key.clone();
        async move {
            let v: Option<String> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .ok()?;
            Some(v)
        }
    })
    .await;
    assert_eq!(gone, None);
}
