//! Every body format and route delivers its events to the real broker, keyed
//! by distinct_id, and the metrics count them. The HTTP side alone (each
//! format's events, bad input, keys, rates) is tested without a broker in
//! `http.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{form, urlencode};

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tributary_core::Event;
use tributary_tests::Stack;
use tributary_tests::gzip;
use tributary_tests::kafka::read_topic;
use uuid::Uuid;

fn event(name: &str, distinct_id: &str) -> (Uuid, Value) {
    let uuid = Uuid::now_v7();
    (
        uuid,
        json!({"event": name, "distinct_id": distinct_id, "uuid": uuid.to_string(), "properties": {"$lib": "test", "n": 1}}),
    )
}

#[tokio::test]
async fn every_format_and_route_reaches_the_topic_keyed_by_distinct_id() {
    let stack = Stack::require();
    let (capture, topic) = common::start_on_new_topic(
        &stack,
        "capture_formats",
        4,
        &[("CAPTURE_API_KEYS", "phc_project5=5,phc_project6=6")],
    )
    .await;
    let http = &capture.http;

    // uuid -> (distinct_id, project, event name)
    let mut expected: HashMap<Uuid, (String, u64, String)> = HashMap::new();
    let users = ["alice", "bob", "carol", "dave", "erin", "42"];
    let mut n = 0usize;
    let mut next =
        |name: &str, project: u64, expected: &mut HashMap<Uuid, (String, u64, String)>| {
            n += 1;
            let d = users[n % users.len()];
            let (uuid, v) = event(name, d);
            expected.insert(uuid, (d.to_owned(), project, name.to_owned()));
            v
        };

    // Native /capture: one event, an array, a batch; key in X-API-Key.
    let single = next("native_single", 5, &mut expected);
    let r = http
        .post(capture.url("/capture"))
        .header("x-api-key", "phc_project5")
        .json(&single)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"accepted": 1}));

    let array = json!([
        next("native_array", 5, &mut expected),
        next("native_array", 5, &mut expected)
    ]);
    let r = http
        .post(capture.url("/capture"))
        .header("x-api-key", "phc_project5")
        .json(&array)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"accepted": 2}));

    let batch = json!({"batch": [next("native_batch", 6, &mut expected), next("native_batch", 6, &mut expected), next("native_batch", 6, &mut expected)]});
    let r = http
        .post(capture.url("/capture"))
        .header("x-api-key", "phc_project6")
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"accepted": 3}));

    // PostHog routes. posthog-js: gzip with ?compression=gzip-js, token in the events.
    let mut e = next("gzip_hinted", 5, &mut expected);
    e["properties"]["token"] = json!("phc_project5");
    let body = gzip(json!([e]).to_string().as_bytes());
    let r = http
        .post(capture.url("/e/?compression=gzip-js&ver=1.200.0"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": 1}));

    // posthog-js 1.78: ?compression=gzip-js, but a form `data=` of base64
    // JSON (the body decides, not the hint).
    let mut e = next("gzip_js_hint_base64_body", 5, &mut expected);
    e["properties"]["token"] = json!("phc_project5");
    let r = http
        .post(capture.url("/e/?compression=gzip-js&ver=1.78.5"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&STANDARD.encode(json!([e]).to_string()), None))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);

    // gzip without the hint, on /i/v0/e
    let body = gzip(
        json!({"api_key": "phc_project6", "batch": [next("gzip_magic", 6, &mut expected)]})
            .to_string()
            .as_bytes(),
    );
    let r = http
        .post(capture.url("/i/v0/e"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // /batch with {api_key, batch, sent_at}
    let body = json!({"api_key": "phc_project5", "sent_at": chrono::Utc::now().to_rfc3339(), "batch": [next("batch_route", 5, &mut expected), next("batch_route", 5, &mut expected)]});
    let r = http
        .post(capture.url("/batch/"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // form-encoded base64 (compression=base64) on /track
    let mut e = next("form_base64", 6, &mut expected);
    e["api_key"] = json!("phc_project6");
    let body = form(&STANDARD.encode(e.to_string()), Some("base64"));
    let r = http
        .post(capture.url("/track/"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // form-encoded plain JSON on /e, no content type, key as $token
    let mut e = next("form_json", 5, &mut expected);
    e["$token"] = json!("phc_project5");
    let r = http
        .post(capture.url("/e"))
        .body(form(&e.to_string(), None))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // raw base64 body, and GET with ?data= (pixel/old SDKs); no key: default project 1
    let e = next("raw_base64", 1, &mut expected);
    let r = http
        .post(capture.url("/e"))
        .body(STANDARD.encode(e.to_string()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let e = next("get_data", 1, &mut expected);
    let url = format!(
        "{}?data={}",
        capture.url("/e/"),
        urlencode(&STANDARD.encode(e.to_string()))
    );
    let r = http.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);

    let received = read_topic(
        &stack.kafka_bootstrap,
        &topic,
        expected.len(),
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(
        received.len(),
        expected.len(),
        "extra messages on the topic"
    );
    let mut partition_of: HashMap<String, i32> = HashMap::new();
    for msg in &received {
        let event = Event::from_kafka_payload(&msg.payload).unwrap();
        let (distinct_id, project, name) = expected
            .get(&event.uuid)
            .unwrap_or_else(|| panic!("unexpected event {event:?}"));
        assert_eq!(&event.distinct_id, distinct_id);
        assert_eq!(
            msg.key_str(),
            Some(distinct_id.as_str()),
            "key must be the distinct_id"
        );
        assert_eq!(event.project_id, *project, "{name}");
        assert_eq!(&event.event, name);
        assert_eq!(event.properties["n"], 1);
        assert!(!event.properties.contains_key("token"));
        assert_eq!(event.lib.name.as_deref(), Some("test"));
        assert_eq!(event.ip.as_deref(), Some("127.0.0.1"));
        let p = *partition_of
            .entry(distinct_id.clone())
            .or_insert(msg.partition);
        assert_eq!(p, msg.partition, "{distinct_id} landed on two partitions");
    }
    let uuids: std::collections::HashSet<_> = received
        .iter()
        .map(|m| Event::from_kafka_payload(&m.payload).unwrap().uuid)
        .collect();
    assert_eq!(uuids.len(), expected.len());

    // Metrics count what happened, with the seed's names.
    let metrics = capture.metrics_text().await;
    assert!(
        metrics.contains(r#"capture_requests_total{route="/capture",status="202"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"capture_requests_total{route="/e",status="200"} 5"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("capture_events_received_total {}", expected.len())),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("capture_kafka_produce_total {}", expected.len())),
        "{metrics}"
    );
    assert!(
        metrics.contains("capture_kafka_produce_duration_seconds_count"),
        "{metrics}"
    );
    assert!(metrics.contains("capture_kafka_ready 1"), "{metrics}");

    capture.stop().await;
}
