//! Broker outage: with the broker gone, `/ready` turns 503 and requests are
//! refused with 503 at the readiness gate; once a broker is back, both
//! recover without restarting capture. And past the gate: requests whose
//! acknowledgements never come are answered 503, never 2xx.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tributary_core::Event;
use tributary_tests::kafka::{PrivateBroker, create_topic, read_topic};
use tributary_tests::kafka_tap::TappedBroker;
use tributary_tests::{Stack, poll_until, unique_name};

#[tokio::test]
async fn ready_and_requests_follow_the_broker_down_and_back() {
    let stack = Stack::require();
    let bin = stack
        .tansu_bin
        .clone()
        .expect("TANSU_BIN not set by local-stack.sh");
    let mut broker = PrivateBroker::start(&bin);
    let topic = unique_name("capture_outage");
    create_topic(&broker.bootstrap(), &topic, 2).await;

    const PRODUCE_TIMEOUT_MS: u64 = 3000;
    let capture = common::start(common::config(
        &broker.bootstrap(),
        &topic,
        &[(
            "CAPTURE_KAFKA_PRODUCE_TIMEOUT_MS",
            &PRODUCE_TIMEOUT_MS.to_string(),
        )],
    ))
    .await;
    capture.wait_ready(Duration::from_secs(30)).await;
    let http = capture.http.clone();
    let send = |name: &'static str| {
        let http = http.clone();
        let url = capture.url("/capture");
        async move {
            let started = Instant::now();
            let r = http
                .post(url)
                .json(&json!({"event": name, "distinct_id": "outage-user"}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            (status, body, started.elapsed())
        }
    };
    assert_eq!(send("before").await.0, 202);
    let detailed = |http: reqwest::Client, url: String| async move {
        http.get(url)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    let health = detailed(http.clone(), capture.url("/health/detailed")).await;
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["dependencies"][0]["name"], "kafka", "{health}");
    assert!(health["producer_queue"].as_u64().is_some(), "{health}");

    broker.kill();

    // /ready notices within a few check intervals.
    let ready_url = capture.url("/ready");
    let body: Value = poll_until("/ready to answer 503", Duration::from_secs(20), || {
        let http = http.clone();
        let url = ready_url.clone();
        async move {
            let r = http.get(&url).send().await.ok()?;
            if r.status() == 503 {
                r.json().await.ok()
            } else {
                None
            }
        }
    })
    .await;
    assert_eq!(body["status"], "not_ready");
    assert!(!body["kafka"].as_str().unwrap().is_empty(), "{body}");
    let health = detailed(http.clone(), capture.url("/health/detailed")).await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["dependencies"][0]["state"], "down", "{health}");
    assert_eq!(
        health["dependencies"][0]["problem"], body["kafka"],
        "the same words as /ready: {health}"
    );
    assert!(
        !health.to_string().contains(&broker.port.to_string()),
        "{health}"
    );

    // Requests are refused with 503 and a reason, within the produce timeout.
    let (status, body, took) = send("during").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("Kafka"),
        "{body}"
    );
    assert!(
        took < Duration::from_millis(PRODUCE_TIMEOUT_MS + 2000),
        "took {took:?}"
    );

    // The broker comes back (empty: memory storage), the topic is recreated
    // as the operator would; capture recovers by itself.
    broker.restart();
    create_topic(&broker.bootstrap(), &topic, 2).await;
    capture.wait_ready(Duration::from_secs(30)).await;
    let status = poll_until(
        "a capture request to succeed again",
        Duration::from_secs(30),
        || {
            let send = send("after");
            async move {
                let (status, _, _) = send.await;
                (status == 202).then_some(status)
            }
        },
    )
    .await;
    assert_eq!(status, 202);

    let received = read_topic(&broker.bootstrap(), &topic, 1, Duration::from_secs(1)).await;
    let names: Vec<String> = received
        .iter()
        .map(|m| Event::from_kafka_payload(&m.payload).unwrap().event)
        .collect();
    assert!(names.iter().all(|n| n == "after"), "{names:?}");
    assert!(!names.is_empty());

    let metrics = capture.metrics_text().await;
    assert!(
        metrics.contains(r#"capture_requests_total{route="/capture",status="503"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("capture_kafka_produce_errors_total{reason=\"kafka_not_ready\"}"),
        "{metrics}"
    );
    capture.stop().await;
}

/// Requests in flight when the broker stops answering: they reach it (its
/// proxy sees Produce requests), their acknowledgements never come back,
/// and each is answered 503, never 2xx, while `/ready` still says 200 (the
/// readiness gate is not what refuses them). Released, the same requests
/// (same uuids) are taken, and every acknowledged event is on the topic.
/// (Answering 2xx once events are enqueued, without their acks, fails this
/// test: tried once by returning from `send_all` after `enqueue`.)
#[tokio::test]
async fn an_acknowledgement_that_never_comes_is_a_503_never_a_2xx() {
    let stack = Stack::require();
    let bin = stack
        .tansu_bin
        .clone()
        .expect("TANSU_BIN not set by local-stack.sh");
    let broker = TappedBroker::start(&bin);
    let topic = unique_name("capture_no_ack");
    create_topic(&broker.bootstrap(), &topic, 2).await;
    let capture = common::start(common::config(
        &broker.bootstrap(),
        &topic,
        &[
            ("CAPTURE_KAFKA_PRODUCE_TIMEOUT_MS", "2000"),
            // Checked once at start: no broker check runs during the test,
            // so readiness cannot be what refuses a request.
            ("CAPTURE_KAFKA_READY_INTERVAL_MS", "600000"),
        ],
    ))
    .await;
    capture.wait_ready(Duration::from_secs(30)).await;
    let event = |name: &str| json!({"event": name, "distinct_id": format!("{name}-user"), "uuid": uuid::Uuid::now_v7().to_string()});
    let requests: Vec<Value> = vec![
        event("single-1"),
        event("single-2"),
        json!({"batch": [event("batch-a"), event("batch-a"), event("batch-a")]}),
        json!([event("array-b"), event("array-b"), event("array-b")]),
    ];
    let mut expected: std::collections::HashSet<String> = requests
        .iter()
        .flat_map(|r| {
            let events = r.get("batch").cloned().unwrap_or_else(|| r.clone());
            match events {
                Value::Array(list) => list,
                one => vec![one],
            }
        })
        .map(|e| e["uuid"].as_str().unwrap().to_owned())
        .collect();
    let send = |body: Value| {
        let (http, url) = (capture.http.clone(), capture.url("/capture"));
        async move {
            let r = http.post(url).json(&body).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let before = event("before");
    expected.insert(before["uuid"].as_str().unwrap().to_owned());
    assert_eq!(send(before).await.0, 202);

    broker.take();
    broker.hold_replies(true);
    let answers = futures::future::join_all(requests.iter().cloned().map(send)).await;
    for (status, body) in &answers {
        assert_eq!(*status, 503, "{body}");
        assert_eq!(body["error"], "not_acknowledged", "{body}");
    }
    let produced = TappedBroker::count(&broker.take(), kafka_protocol::messages::ApiKey::Produce);
    assert!(produced > 0, "no Produce request reached the broker");
    let ready = capture.get("/ready").await;
    assert_eq!(
        ready.status(),
        200,
        "the refusals were not the readiness gate's"
    );

    broker.hold_replies(false);
    for body in requests {
        let status = poll_until(
            "a retried request to be taken",
            Duration::from_secs(60),
            || {
                let send = send(body.clone());
                async move {
                    let (status, _) = send.await;
                    (status == 202).then_some(status)
                }
            },
        )
        .await;
        assert_eq!(status, 202);
    }
    let on_topic = read_topic(
        &broker.bootstrap(),
        &topic,
        expected.len(),
        Duration::from_secs(1),
    )
    .await;
    let stored: std::collections::HashSet<String> = on_topic
        .iter()
        .map(|m| {
            Event::from_kafka_payload(&m.payload)
                .unwrap()
                .uuid
                .to_string()
        })
        .collect();
    assert_eq!(stored, expected, "an acknowledged event is missing");
    capture.stop().await;
}
