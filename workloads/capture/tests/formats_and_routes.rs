//! Every body format and route delivers its events to the real broker, keyed
//! by distinct_id; bad input is refused with its status and message, and
//! nothing of a refused request reaches the topic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

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

fn form(data: &str, compression: Option<&str>) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    s.append_pair("data", data);
    if let Some(c) = compression {
        s.append_pair("compression", c);
    }
    s.finish()
}

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

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn bad_input_gets_its_status_and_nothing_reaches_the_topic() {
    let stack = Stack::require();
    let (capture, topic) = common::start_on_new_topic(&stack, "capture_bad", 2, &[]).await;
    let http = &capture.http;
    let ok = json!({"event": "e", "distinct_id": "d"});

    let big_props = "x".repeat(1024 * 1024 + 10);
    let bomb = gzip(&vec![b' '; 30 * 1024 * 1024]);
    type Case<'a> = (&'a str, Vec<u8>, Option<&'a str>, u16, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            "/e",
            b"{\"event\": ".to_vec(),
            None,
            400,
            "malformed_json",
            "malformed JSON",
        ),
        (
            "/e",
            vec![0x1f, 0x8b, 8, 0, 1, 2, 3],
            None,
            400,
            "invalid_gzip",
            "gzip",
        ),
        (
            "/e",
            b"%%% not base64 %%%".to_vec(),
            None,
            400,
            "invalid_base64",
            "base64",
        ),
        (
            "/e",
            b"{\"event\": \"\xff\xfe\"}".to_vec(),
            None,
            400,
            "invalid_utf8",
            "UTF-8",
        ),
        ("/e", b"".to_vec(), None, 400, "empty_body", "empty"),
        (
            "/e",
            json!({"distinct_id": "d"}).to_string().into_bytes(),
            None,
            400,
            "invalid_event_name",
            "event 0: event is missing",
        ),
        (
            "/batch",
            json!({"batch": [ok, ok, {"event": "e"}]})
                .to_string()
                .into_bytes(),
            None,
            400,
            "invalid_distinct_id",
            "event 2: distinct_id is missing",
        ),
        (
            "/capture",
            json!({"event": "e", "distinct_id": "d", "properties": "no"})
                .to_string()
                .into_bytes(),
            None,
            400,
            "invalid_properties",
            "properties must be an object",
        ),
        (
            "/e",
            json!({"event": "e", "distinct_id": "d", "properties": {"big": big_props}})
                .to_string()
                .into_bytes(),
            None,
            413,
            "too_large",
            "1048576 bytes",
        ),
        ("/batch", bomb, None, 413, "too_large", "20971520 bytes"),
        (
            "/e",
            b"x=1".to_vec(),
            Some("application/x-www-form-urlencoded"),
            400,
            "invalid_form",
            "data",
        ),
        // Bytes that are not UTF-8 are refused in every encoding, a form's
        // percent-escapes and the query string included (not turned into
        // U+FFFD).
        (
            "/e",
            b"data=%7B%22event%22%3A%22%FF%FE%22%2C%22distinct_id%22%3A%22d%22%7D".to_vec(),
            Some("application/x-www-form-urlencoded"),
            400,
            "invalid_utf8",
            "UTF-8",
        ),
        (
            "/e?token=%FF",
            ok.to_string().into_bytes(),
            None,
            400,
            "invalid_utf8",
            "UTF-8",
        ),
        (
            "/capture",
            b"{\"event\": \"e\xff\", \"distinct_id\": \"d\"}".to_vec(),
            None,
            400,
            "invalid_utf8",
            "UTF-8",
        ),
        // An integer beyond 64 bits would be stored rounded: refused.
        (
            "/capture",
            b"{\"event\": \"e\", \"distinct_id\": \"d\", \"properties\": {\"order\": 123456789012345678901234567890}}".to_vec(),
            None,
            400,
            "integer_too_large",
            "beyond 64 bits",
        ),
        // Events of one request naming two projects' keys.
        (
            "/batch",
            json!({"batch": [
                {"event": "e", "distinct_id": "d", "properties": {"token": "phc_one"}},
                {"event": "e", "distinct_id": "d", "properties": {"token": "phc_two"}},
            ]})
            .to_string()
            .into_bytes(),
            None,
            400,
            "mixed_keys",
            "event 1 carries another project key",
        ),
        (
            "/batch",
            json!({"api_key": "phc_one", "batch": [
                {"event": "e", "distinct_id": "d", "properties": {"token": "phc_two"}},
            ]})
            .to_string()
            .into_bytes(),
            None,
            400,
            "mixed_keys",
            "event 0 carries another project key",
        ),
        (
            "/e?token=phc_two",
            json!({"event": "e", "distinct_id": "d", "properties": {"token": "phc_one"}})
                .to_string()
                .into_bytes(),
            None,
            400,
            "mixed_keys",
            "two different project keys",
        ),
    ];
    for (path, body, content_type, status, kind, message) in cases {
        let mut req = http.post(capture.url(path)).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{path} {kind}");
        let request_id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], kind, "{path}: {body}");
        assert_eq!(body["request_id"], request_id, "{path}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains(message),
            "{path}: {body}"
        );
    }
    // A GET ?data= whose escapes are not UTF-8.
    let r = http
        .get(capture.url("/e?data=%FF%FE%FD"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_utf8", "{body}");
    // The index of the bad event is in the body.
    let r = http
        .post(capture.url("/batch"))
        .json(&json!({"batch": [ok, {"event": 3, "distinct_id": "d"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["index"], 1);

    // One event over Kafka's message limit: 413 naming the event, nothing produced.
    let huge = json!({"batch": [ok, {"event": "e", "distinct_id": "d", "properties": {"blob": "z".repeat(1_000_000)}}]});
    let r = http
        .post(capture.url("/batch"))
        .json(&huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().starts_with("event 1 is "),
        "{body}"
    );

    // A 17 MB batch is within the batch limit (and 413 on an event route).
    let many: Vec<Value> = (0..19)
        .map(|i| json!({"event": "big", "distinct_id": format!("u{i}"), "properties": {"blob": "y".repeat(900 * 1000)}}))
        .collect();
    let body = json!({"batch": many}).to_string();
    assert_eq!(
        http.post(capture.url("/e"))
            .body(body.clone())
            .send()
            .await
            .unwrap()
            .status(),
        413
    );
    assert_eq!(
        http.post(capture.url("/batch"))
            .body(body)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let received = read_topic(&stack.kafka_bootstrap, &topic, 19, Duration::from_secs(2)).await;
    assert_eq!(received.len(), 19, "a refused request produced something");
    assert!(
        received
            .iter()
            .all(|m| Event::from_kafka_payload(&m.payload).unwrap().event == "big")
    );

    let metrics = capture.metrics_text().await;
    assert!(
        metrics.contains(r#"capture_events_rejected_total{reason="malformed_json"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"capture_events_rejected_total{reason="invalid_distinct_id"} 3"#),
        "{metrics}"
    );
    capture.stop().await;
}

#[tokio::test]
async fn required_keys_are_enforced_and_pick_the_project() {
    let stack = Stack::require();
    let (capture, topic) = common::start_on_new_topic(
        &stack,
        "capture_keys",
        1,
        &[
            ("CAPTURE_REQUIRE_API_KEY", "true"),
            ("CAPTURE_API_KEYS", "phc_good=12"),
        ],
    )
    .await;
    let http = &capture.http;
    let e = json!({"event": "e", "distinct_id": "d"});

    let r = http
        .post(capture.url("/capture"))
        .json(&e)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "missing_api_key");
    let r = http
        .post(capture.url("/capture"))
        .header("x-api-key", "phc_bad")
        .json(&e)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_api_key");
    let r = http
        .post(capture.url("/e"))
        .json(&json!({"event": "e", "distinct_id": "d", "api_key": "phc_bad"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let r = http
        .post(capture.url("/capture"))
        .header("x-api-key", "phc_good")
        .json(&e)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let received = read_topic(&stack.kafka_bootstrap, &topic, 1, Duration::from_secs(1)).await;
    assert_eq!(received.len(), 1);
    assert_eq!(
        Event::from_kafka_payload(&received[0].payload)
            .unwrap()
            .project_id,
        12
    );
    capture.stop().await;
}

#[tokio::test]
async fn a_body_that_never_arrives_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stack = Stack::require();
    let (capture, _topic) = common::start_on_new_topic(
        &stack,
        "capture_slow",
        1,
        &[("CAPTURE_BODY_TIMEOUT_MS", "300")],
    )
    .await;
    let mut stream = tokio::net::TcpStream::connect(capture.addr).await.unwrap();
    // Promise 100 bytes, send 10, then stall.
    stream
        .write_all(b"POST /capture HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"event\":")
        .await
        .unwrap();
    let mut response = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut response))
        .await
        .expect("no answer within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&response[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("body_timeout"), "{text}");
    capture.stop().await;
}

/// An event's `ip`: by default the peer's address, whatever
/// `X-Forwarded-For` says (before, its leftmost entry, the client's own
/// choice, was taken); behind one trusted proxy, the entry it appended.
#[tokio::test]
async fn an_events_address_is_not_the_clients_to_choose() {
    let stack = Stack::require();
    let mut seen = Vec::new();
    for hops in [None, Some("1")] {
        let extra: Vec<(&str, &str)> = hops
            .map(|h| vec![("CAPTURE_TRUSTED_PROXY_HOPS", h)])
            .unwrap_or_default();
        let (capture, topic) = common::start_on_new_topic(&stack, "capture_xff", 1, &extra).await;
        let r = capture
            .http
            .post(capture.url("/capture"))
            .header("x-forwarded-for", "6.6.6.6, 198.51.100.7")
            .json(&json!({"event": "e", "distinct_id": "d"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let received = read_topic(
            &stack.kafka_bootstrap,
            &topic,
            1,
            Duration::from_millis(300),
        )
        .await;
        seen.push(Event::from_kafka_payload(&received[0].payload).unwrap().ip);
        capture.stop().await;
    }
    assert_eq!(
        seen,
        [
            Some("127.0.0.1".to_owned()),
            Some("198.51.100.7".to_owned())
        ]
    );
}

/// A key past its rate gets 429 with when to retry; other keys do not
/// notice. (Before, nothing limited a key: one tenant could take every
/// capture pod's capacity.)
#[tokio::test]
async fn a_key_past_its_rate_is_told_when_to_retry_and_others_go_on() {
    let stack = Stack::require();
    let (capture, _topic) = common::start_on_new_topic(
        &stack,
        "capture_rate",
        1,
        &[
            ("CAPTURE_API_KEYS", "phc_busy=1,phc_quiet=2"),
            ("CAPTURE_RATE_LIMIT_PER_KEY", "0.5"),
            ("CAPTURE_RATE_LIMIT_PER_KEY_BURST", "3"),
        ],
    )
    .await;
    let send = |key: &'static str| {
        let (http, url) = (capture.http.clone(), capture.url("/capture"));
        async move {
            http.post(url)
                .header("x-api-key", key)
                .json(&json!({"event": "e", "distinct_id": "d"}))
                .send()
                .await
                .unwrap()
        }
    };
    for i in 0..3 {
        assert_eq!(send("phc_busy").await.status(), 202, "burst {i}");
    }
    let limited = send("phc_busy").await;
    assert_eq!(limited.status(), 429);
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited", "{body}");
    assert_eq!(send("phc_quiet").await.status(), 202, "another key");
    capture.stop().await;
}
