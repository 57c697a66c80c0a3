//! Consumer against the real broker and the real ClickHouse.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use serde_json::{Value, json};
use tributary_tests::Stack;
use tributary_tests::kafka::read_topic;

#[tokio::test]
async fn n_events_produced_are_n_events_counted() {
    let stack = Stack::require();
    let f = common::Fixture::new(&stack.kafka_bootstrap, &stack.clickhouse_url, 4).await;
    let events = common::events(2000, 11);
    common::produce(&f.bootstrap, &f.topic, &events).await;
    let consumer = common::start(f.config(&[]));
    f.wait_for_events(2000, Duration::from_secs(60)).await;
    consumer.stop().await;
    assert_eq!(f.rows_after_merge().await, 2000);

    // The millisecond timestamp and the extracted property survive the trip.
    let (ms, url): (u64, String) = f
        .clickhouse()
        .query(&format!(
            "SELECT timestamp_ms, mat_current_url FROM {}.events WHERE uuid = ?",
            f.database
        ))
        .bind(events[7].uuid.to_string())
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(ms as i64, events[7].timestamp.timestamp_millis());
    assert_eq!(url, "https://example.com/7");

    let dlq = read_topic(&f.bootstrap, &f.dlq_topic, 0, Duration::from_secs(2)).await;
    assert!(dlq.is_empty(), "{} DLQ messages", dlq.len());
}

/// A backlog is read in batches never past `CONSUMER_BATCH_SIZE`: 64,
/// a bound of the batch-size histogram's buckets, so that every batch must
/// fall at or under it. Shown to fail (7 batches instead of 47 or more)
/// with a drain of up to 512 messages a turn that ignored the bound.
#[tokio::test]
async fn a_backlog_is_read_in_batches_no_larger_than_the_batch_size() {
    let stack = Stack::require();
    let f = common::Fixture::new(&stack.kafka_bootstrap, &stack.clickhouse_url, 4).await;
    common::produce(&f.bootstrap, &f.topic, &common::events(3000, 13)).await;
    let consumer = common::start(f.config(&[
        ("CONSUMER_BATCH_SIZE", "64"),
        ("CONSUMER_FLUSH_INTERVAL_MS", "500"),
    ]));
    f.wait_for_events(3000, Duration::from_secs(120)).await;
    let text = consumer.metrics_text();
    consumer.stop().await;
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in:\n{text}"))
    };
    let batches = value("consumer_batch_size_count ");
    let at_most_64 = value("consumer_batch_size_bucket{le=\"64.0\"} ");
    assert_eq!(value("consumer_batch_size_sum "), 3000.0, "{text}");
    assert!(batches >= (3000.0 / 64.0_f64).ceil(), "{batches} batches");
    assert_eq!(
        at_most_64, batches,
        "a batch held more than 64 messages:\n{text}"
    );
    assert_eq!(f.rows_after_merge().await, 3000);
}

#[tokio::test]
async fn poison_messages_go_to_the_dlq_and_the_rest_is_stored() {
    let stack = Stack::require();
    let f = common::Fixture::new(&stack.kafka_bootstrap, &stack.clickhouse_url, 2).await;
    let good = common::events(300, 12);
    let mut old = common::events(1, 12).remove(0);
    old.timestamp = chrono::DateTime::parse_from_rfc3339("1960-01-01T00:00:00Z")
        .unwrap()
        .to_utc();
    let mut future_version: Value =
        serde_json::from_slice(&good[0].to_kafka_payload().unwrap()).unwrap();
    future_version["v"] = json!(9);
    let mut no_distinct_id = future_version.clone();
    no_distinct_id["v"] = json!(1);
    no_distinct_id
        .as_object_mut()
        .unwrap()
        .remove("distinct_id");
    type Case = (Option<Vec<u8>>, Vec<u8>, &'static str);
    let poison: Vec<Case> = vec![
        (
            Some(b"k1".to_vec()),
            b"{this is not json".to_vec(),
            "invalid_event",
        ),
        (None, vec![0xff, 0xfe, 0x00], "not_utf8"),
        (
            Some(b"k3".to_vec()),
            future_version.to_string().into_bytes(),
            "unsupported_version",
        ),
        (
            Some(b"k4".to_vec()),
            no_distinct_id.to_string().into_bytes(),
            "invalid_event",
        ),
        (
            Some(b"k5".to_vec()),
            old.to_kafka_payload().unwrap(),
            "invalid_timestamp",
        ),
    ];
    // Interleave: good, poison, good, ...
    let mut messages = Vec::new();
    let mut poison_at = Vec::new();
    for (i, e) in good.iter().enumerate() {
        messages.push((Some(e.kafka_key().to_vec()), e.to_kafka_payload().unwrap()));
        if i % 60 == 30 {
            let (k, v, kind) = &poison[i / 60];
            poison_at.push((messages.len(), v.clone(), *kind));
            messages.push((k.clone(), v.clone()));
        }
    }
    let positions = common::produce_raw(&f.bootstrap, &f.topic, &messages).await;
    let consumer = common::start(f.config(&[]));
    f.wait_for_events(300, Duration::from_secs(60)).await;

    let dlq = read_topic(&f.bootstrap, &f.dlq_topic, 5, Duration::from_secs(1)).await;
    assert_eq!(dlq.len(), 5);
    for (index, raw, kind) in &poison_at {
        let (partition, offset) = positions[*index];
        let record: Value = dlq
            .iter()
            .map(|m| serde_json::from_slice::<Value>(&m.payload).unwrap())
            .find(|r| r["partition"] == partition && r["offset"] == offset)
            .unwrap_or_else(|| panic!("no DLQ record for {kind} at {partition}/{offset}"));
        assert_eq!(record["error_kind"], *kind, "{record}");
        assert_eq!(record["topic"], f.topic);
        assert!(!record["error_message"].as_str().unwrap().is_empty());
        assert!(record["dlq_ts"].as_str().unwrap().ends_with('Z'));
        let stored = match record["raw_encoding"].as_str().unwrap() {
            "utf8" => record["raw"].as_str().unwrap().as_bytes().to_vec(),
            _ => {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(record["raw"].as_str().unwrap())
                    .unwrap()
            }
        };
        assert_eq!(&stored, raw, "raw payload changed on its way to the DLQ");
    }

    // It keeps going.
    common::produce(&f.bootstrap, &f.topic, &common::events(100, 12)).await;
    f.wait_for_events(400, Duration::from_secs(60)).await;
    let metrics = consumer.metrics_text();
    assert!(
        metrics.contains(r#"consumer_dlq_messages_total{kind="invalid_event"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"consumer_parse_errors_total{kind="not_utf8"} 1"#),
        "{metrics}"
    );
    consumer.stop().await;
}

#[tokio::test]
async fn two_consumers_share_the_partitions_and_store_every_event_once() {
    let stack = Stack::require();
    let f = common::Fixture::new(&stack.kafka_bootstrap, &stack.clickhouse_url, 6).await;
    let a = common::start(f.config(&[]));
    let b = common::start(f.config(&[]));
    // Both members hold partitions before the data arrives.
    let assigned = |r: &common::Running| r.metrics.assigned_partitions.get();
    tributary_tests::poll_until(
        "both consumers to hold partitions",
        Duration::from_secs(60),
        || async {
            (assigned(&a) > 0 && assigned(&b) > 0 && assigned(&a) + assigned(&b) == 6).then_some(())
        },
    )
    .await;
    common::produce(&f.bootstrap, &f.topic, &common::events(1500, 13)).await;
    common::produce(&f.bootstrap, &f.topic, &common::events(1500, 13)).await;
    f.wait_for_events(3000, Duration::from_secs(90)).await;
    let consumed = |r: &common::Running| r.metrics.consumed.get();
    assert!(
        consumed(&a) > 0 && consumed(&b) > 0,
        "a read {}, b read {}",
        consumed(&a),
        consumed(&b)
    );
    a.stop().await;
    b.stop().await;
    assert_eq!(f.rows_after_merge().await, 3000);
}

/// Consumers join, leave and crash while events stream in, so rebalances
/// land on batches being filled and written: every event is stored, none
/// twice after merge. Messages dropped from waiting batches at revocation
/// (`consumer_revoked_messages`, re-read by the partitions' new owners)
/// show that the rebalances met data in flight. Before, a batch that came
/// due while a rebalance was under way (the revoke callback runs while
/// recv() waits, the message that used to trigger the clean-up comes only
/// after the new assignment) was written with its revoked partitions' rows
/// and their offsets: this test then found nothing dropped.
#[tokio::test]
async fn rebalances_with_batches_in_flight_lose_nothing() {
    let stack = Stack::require();
    let partitions = 6;
    let f = common::Fixture::new(&stack.kafka_bootstrap, &stack.clickhouse_url, partitions).await;
    // Batches fill for a second and a half before they are due: a
    // rebalance always finds one waiting.
    let slow = [
        ("CONSUMER_FLUSH_INTERVAL_MS", "1500"),
        ("CONSUMER_BATCH_SIZE", "5000"),
    ];
    let assigned = |r: &common::Running| r.metrics.assigned_partitions.get();
    let a = common::start(f.config(&slow));
    tributary_tests::poll_until(
        "a to hold every partition",
        Duration::from_secs(60),
        || async { (assigned(&a) == i64::from(partitions)).then_some(()) },
    )
    .await;

    let (bootstrap, topic) = (f.bootstrap.clone(), f.topic.clone());
    let producing = tokio::spawn(async move {
        for _ in 0..30 {
            common::produce(&bootstrap, &topic, &common::events(200, 17)).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let joined = |first: &common::Running, second: &common::Running| {
        assigned(first) > 0 && assigned(second) > 0
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let b = common::start(f.config(&slow));
    tributary_tests::poll_until("b to join", Duration::from_secs(60), || async {
        joined(&a, &b).then_some(())
    })
    .await;
    let c = common::start(f.config(&slow));
    tributary_tests::poll_until("c to join", Duration::from_secs(60), || async {
        (assigned(&c) > 0).then_some(())
    })
    .await;
    // What each member dropped at revocation, and whether it ever failed
    // to commit (it would, committing partitions it no longer owns).
    let seen = |r: &common::Running| {
        (
            r.metrics.revoked_messages.get(),
            r.metrics.commit_errors.get(),
        )
    };
    let (a_dropped, a_failed) = seen(&a);
    a.stop().await;
    let (b_dropped, b_failed) = seen(&b);
    b.crash().await;
    producing.await.unwrap();

    f.wait_for_events(6000, Duration::from_secs(120)).await;
    let (c_dropped, c_failed) = seen(&c);
    c.stop().await;
    assert!(
        a_dropped + b_dropped + c_dropped > 0,
        "no rebalance met a waiting batch"
    );
    assert_eq!(
        (a_failed, b_failed, c_failed),
        (0, 0, 0),
        "a member committed partitions it had lost"
    );
    assert_eq!(f.rows_after_merge().await, 6000);
}
