//! Broker outage: with the broker gone, `/ready` turns 503 and requests get
//! 503 within the produce timeout (never a silent 2xx); once a broker is back,
//! both recover without restarting capture.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tributary_core::Event;
use tributary_tests::kafka::{PrivateBroker, create_topic, read_topic};
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
