//! Capture's HTTP side against an in-memory sink, no broker involved: every
//! route and body format, requests recorded from real PostHog SDKs, bad
//! input, keys, rates, slow bodies and client addresses. Each case says what
//! the request is answered and exactly which events it hands on (none for a
//! refused one). The broker end of the same path is tested in
//! `formats_and_routes.rs` and `broker_outage.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{form, urlencode};

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tributary_core::Event;
use tributary_tests::gzip;
use uuid::Uuid;

use common::Running;

/// A request as a case sends it.
struct Sent {
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Sent {
    fn post(path: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            method: "POST",
            path: path.to_owned(),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    fn get(path: String) -> Self {
        Self {
            method: "GET",
            path,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    fn form(self) -> Self {
        self.header("content-type", "application/x-www-form-urlencoded")
    }

    async fn send(&self, capture: &Running) -> reqwest::Response {
        let method = reqwest::Method::from_bytes(self.method.as_bytes()).unwrap();
        let mut request = capture
            .http
            .request(method, capture.url(&self.path))
            .body(self.body.clone());
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        request.send().await.unwrap()
    }
}

/// What a taken event must arrive as: uuid, name, distinct_id, project.
type Expected = (Uuid, String, String, u64);

/// Makes events with known uuids and remembers what each must arrive as.
#[derive(Default)]
struct Events {
    expected: Vec<Expected>,
}

impl Events {
    fn next(&mut self, name: &str, distinct_id: &str, project: u64) -> Value {
        let uuid = Uuid::now_v7();
        self.expected
            .push((uuid, name.to_owned(), distinct_id.to_owned(), project));
        json!({"event": name, "distinct_id": distinct_id, "uuid": uuid.to_string(),
               "properties": {"$lib": "test", "n": 1}})
    }

    fn take(&mut self) -> Vec<Expected> {
        std::mem::take(&mut self.expected)
    }
}

/// A request that is taken: its status, its answer and its events.
struct Taken {
    name: &'static str,
    sent: Sent,
    status: u16,
    answer: Value,
    events: Vec<Expected>,
}

/// Every route and body format SDKs use. Keys: `phc_five` is project 5,
/// `phc_six` project 6; events without a key go to project 1.
fn taken_cases() -> Vec<Taken> {
    let mut ev = Events::default();
    let ok = json!({"status": 1});
    let mut cases = Vec::new();
    let mut case = |name, sent, status, answer: &Value, ev: &mut Events| {
        cases.push(Taken {
            name,
            sent,
            status,
            answer: answer.clone(),
            events: ev.take(),
        });
    };

    // Native /capture: one event, an array, a batch; key in X-API-Key.
    let body = ev.next("native_single", "alice", 5).to_string();
    let sent = Sent::post("/capture", body).header("x-api-key", "phc_five");
    case(
        "native one event",
        sent,
        202,
        &json!({"accepted": 1}),
        &mut ev,
    );
    let body = json!([
        ev.next("native_array", "bob", 5),
        ev.next("native_array", "carol", 5)
    ]);
    let sent = Sent::post("/capture", body.to_string()).header("x-api-key", "phc_five");
    case("native array", sent, 202, &json!({"accepted": 2}), &mut ev);
    let body = json!({"batch": [ev.next("native_batch", "dave", 6), ev.next("native_batch", "erin", 6), ev.next("native_batch", "42", 6)]});
    let sent = Sent::post("/capture", body.to_string()).header("x-api-key", "phc_six");
    case("native batch", sent, 202, &json!({"accepted": 3}), &mut ev);
    let body = ev.next("native_payload_key", "alice", 6);
    let sent = Sent::post(
        "/capture",
        json!({"api_key": "phc_six", "batch": [body]}).to_string(),
    );
    case(
        "native, key in the payload",
        sent,
        202,
        &json!({"accepted": 1}),
        &mut ev,
    );

    // posthog-js: gzip with ?compression=gzip-js, token in the events.
    let mut e = ev.next("gzip_hinted", "bob", 5);
    e["properties"]["token"] = json!("phc_five");
    let sent = Sent::post(
        "/e/?compression=gzip-js&ver=1.200.0",
        gzip(json!([e]).to_string().as_bytes()),
    );
    case("gzip with the gzip-js hint", sent, 200, &ok, &mut ev);

    // posthog-js 1.78: ?compression=gzip-js, but a form `data=` of base64
    // JSON (the body decides, not the hint).
    let mut e = ev.next("gzip_js_hint_base64_body", "carol", 5);
    e["properties"]["token"] = json!("phc_five");
    let body = form(&STANDARD.encode(json!([e]).to_string()), None);
    let sent = Sent::post("/e/?compression=gzip-js&ver=1.78.5", body).form();
    case("gzip-js hint on a base64 form", sent, 200, &ok, &mut ev);

    // gzip without a hint, on /i/v0/e.
    let body = json!({"api_key": "phc_six", "batch": [ev.next("gzip_magic", "dave", 6)]});
    let sent = Sent::post("/i/v0/e", gzip(body.to_string().as_bytes()));
    case("gzip without a hint", sent, 200, &ok, &mut ev);

    // /batch with {api_key, batch, sent_at}.
    let body = json!({"api_key": "phc_five", "sent_at": chrono::Utc::now().to_rfc3339(),
        "batch": [ev.next("batch_route", "erin", 5), ev.next("batch_route", "42", 5)]});
    case(
        "batch with sent_at",
        Sent::post("/batch/", body.to_string()),
        200,
        &ok,
        &mut ev,
    );

    // A form of base64 (compression=base64) on /track.
    let mut e = ev.next("form_base64", "alice", 6);
    e["api_key"] = json!("phc_six");
    let sent = Sent::post(
        "/track/",
        form(&STANDARD.encode(e.to_string()), Some("base64")),
    )
    .form();
    case("form of base64", sent, 200, &ok, &mut ev);

    // A form of plain JSON, no content type, the key as $token.
    let mut e = ev.next("form_json", "bob", 5);
    e["$token"] = json!("phc_five");
    case(
        "form of JSON, no content type",
        Sent::post("/e", form(&e.to_string(), None)),
        200,
        &ok,
        &mut ev,
    );

    // Raw base64, and GET ?data= (pixels, old SDKs); no key: project 1.
    let e = ev.next("raw_base64", "carol", 1);
    case(
        "raw base64",
        Sent::post("/e", STANDARD.encode(e.to_string())),
        200,
        &ok,
        &mut ev,
    );
    let e = ev.next("get_data", "dave", 1);
    let sent = Sent::get(format!(
        "/e/?data={}",
        urlencode(&STANDARD.encode(e.to_string()))
    ));
    case("GET ?data=", sent, 200, &ok, &mut ev);
    let e = ev.next("get_track", "erin", 5);
    let sent = Sent::get(format!(
        "/track?token=phc_five&data={}",
        urlencode(&e.to_string())
    ));
    case("GET ?data= with ?token=", sent, 200, &ok, &mut ev);
    cases
}

fn arrived(records: &[Event]) -> Vec<Expected> {
    records
        .iter()
        .map(|e| (e.uuid, e.event.clone(), e.distinct_id.clone(), e.project_id))
        .collect()
}

#[tokio::test]
async fn every_route_and_format_hands_on_exactly_its_events() {
    let (capture, sink) =
        common::start_in_memory(&[("CAPTURE_API_KEYS", "phc_five=5,phc_six=6")]).await;
    for case in taken_cases() {
        let r = case.sent.send(&capture).await;
        assert_eq!(r.status().as_u16(), case.status, "{}", case.name);
        let answer: Value = r.json().await.unwrap();
        assert_eq!(answer, case.answer, "{}", case.name);
        let events: Vec<Event> = sink
            .take()
            .iter()
            .map(|r| Event::from_kafka_payload(&r.payload).unwrap())
            .collect();
        assert_eq!(arrived(&events), case.events, "{}", case.name);
        for e in &events {
            assert_eq!(e.properties["n"], 1, "{}", case.name);
            assert!(!e.properties.contains_key("token"), "{}", case.name);
            assert_eq!(e.lib.name.as_deref(), Some("test"), "{}", case.name);
            assert_eq!(e.ip.as_deref(), Some("127.0.0.1"), "{}", case.name);
        }
    }
    capture.stop().await;
}

/// A request recorded from a real SDK by `recorded/record.py`.
#[derive(serde::Deserialize)]
struct Recorded {
    sdk: String,
    sent: Vec<Value>,
    method: String,
    path: String,
    headers: std::collections::BTreeMap<String, String>,
    body_base64: String,
}

/// What posthog-python and posthog-node actually send (JSON and gzip,
/// their own headers and paths) is taken, and every event they were given
/// arrives once with its name, distinct_id and properties.
#[tokio::test]
async fn requests_recorded_from_real_sdks_are_taken() {
    let (capture, sink) = common::start_in_memory(&[
        ("CAPTURE_REQUIRE_API_KEY", "true"),
        ("CAPTURE_API_KEYS", "phc_recorded=9"),
    ])
    .await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/recorded");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "recordings missing in {}", dir.display());
    for file in files {
        let recorded: Recorded = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        let name = format!("{} ({})", file.display(), recorded.sdk);
        let mut sent = Sent {
            method: if recorded.method == "GET" {
                "GET"
            } else {
                "POST"
            },
            path: recorded.path.clone(),
            headers: Vec::new(),
            body: STANDARD.decode(&recorded.body_base64).unwrap(),
        };
        for (k, v) in &recorded.headers {
            sent = sent.header(k, v);
        }
        let r = sent.send(&capture).await;
        assert_eq!(r.status(), 200, "{name}: {:?}", r.text().await);
        let events = sink.events();
        sink.take();
        let mut got: Vec<(String, String, Value)> = events
            .iter()
            .map(|e| {
                assert_eq!(e.project_id, 9, "{name}");
                let given: serde_json::Map<String, Value> = e
                    .properties
                    .iter()
                    .filter(|(k, _)| !k.starts_with('$'))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                (e.event.clone(), e.distinct_id.clone(), Value::Object(given))
            })
            .collect();
        let mut want: Vec<(String, String, Value)> = recorded
            .sent
            .iter()
            .map(|e| {
                (
                    e["event"].as_str().unwrap().to_owned(),
                    e["distinct_id"].as_str().unwrap().to_owned(),
                    e["properties"].clone(),
                )
            })
            .collect();
        got.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        want.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        assert_eq!(got, want, "{name}");
    }
    capture.stop().await;
}

#[tokio::test]
async fn bad_input_gets_its_status_and_nothing_is_handed_on() {
    let (capture, sink) = common::start_in_memory(&[]).await;
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
        assert!(sink.records().is_empty(), "{path} {kind} handed events on");
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

    let received = sink.events();
    assert_eq!(received.len(), 19, "a refused request handed something on");
    assert!(received.iter().all(|e| e.event == "big"));

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
    let (capture, sink) = common::start_in_memory(&[
        ("CAPTURE_REQUIRE_API_KEY", "true"),
        ("CAPTURE_API_KEYS", "phc_good=12"),
    ])
    .await;
    let e = json!({"event": "e", "distinct_id": "d"}).to_string();
    let refused = [
        (Sent::post("/capture", e.clone()), "missing_api_key"),
        (
            Sent::post("/capture", e.clone()).header("x-api-key", "phc_bad"),
            "invalid_api_key",
        ),
        (
            Sent::post(
                "/e",
                json!({"event": "e", "distinct_id": "d", "api_key": "phc_bad"}).to_string(),
            ),
            "invalid_api_key",
        ),
    ];
    for (sent, kind) in refused {
        let r = sent.send(&capture).await;
        assert_eq!(r.status(), 401, "{}", sent.path);
        assert_eq!(r.json::<Value>().await.unwrap()["error"], kind);
    }
    assert!(sink.records().is_empty());

    let r = Sent::post("/capture", e)
        .header("x-api-key", "phc_good")
        .send(&capture)
        .await;
    assert_eq!(r.status(), 202);
    let received = sink.events();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].project_id, 12);
    capture.stop().await;
}

#[tokio::test]
async fn a_body_that_never_arrives_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (capture, _sink) = common::start_in_memory(&[("CAPTURE_BODY_TIMEOUT_MS", "300")]).await;
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
    let mut seen = Vec::new();
    for hops in [None, Some("1")] {
        let extra: Vec<(&str, &str)> = hops
            .map(|h| vec![("CAPTURE_TRUSTED_PROXY_HOPS", h)])
            .unwrap_or_default();
        let (capture, sink) = common::start_in_memory(&extra).await;
        let r = Sent::post(
            "/capture",
            json!({"event": "e", "distinct_id": "d"}).to_string(),
        )
        .header("x-forwarded-for", "6.6.6.6, 198.51.100.7")
        .send(&capture)
        .await;
        assert_eq!(r.status(), 202);
        seen.push(sink.events()[0].ip.clone());
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
    let (capture, _sink) = common::start_in_memory(&[
        ("CAPTURE_API_KEYS", "phc_busy=1,phc_quiet=2"),
        ("CAPTURE_RATE_LIMIT_PER_KEY", "0.5"),
        ("CAPTURE_RATE_LIMIT_PER_KEY_BURST", "3"),
    ])
    .await;
    let send = |key: &'static str| {
        Sent::post(
            "/capture",
            json!({"event": "e", "distinct_id": "d"}).to_string(),
        )
        .header("x-api-key", key)
    };
    for i in 0..3 {
        assert_eq!(
            send("phc_busy").send(&capture).await.status(),
            202,
            "burst {i}"
        );
    }
    let limited = send("phc_busy").send(&capture).await;
    assert_eq!(limited.status(), 429);
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited", "{body}");
    assert_eq!(
        send("phc_quiet").send(&capture).await.status(),
        202,
        "another key"
    );
    capture.stop().await;
}

/// An unready sink turns `/ready` to 503 naming what is wrong, and a
/// request that reaches it anyway is refused (503, Retry-After), not
/// acknowledged.
#[tokio::test]
async fn an_unready_sink_refuses_rather_than_acknowledges() {
    let (capture, sink) = common::start_in_memory(&[]).await;
    let ready = capture.get("/ready").await;
    assert_eq!(ready.status(), 200);
    sink.set_down(Some("the brokers do not answer"));
    let ready = capture.get("/ready").await;
    assert_eq!(ready.status(), 503);
    assert_eq!(
        ready.json::<Value>().await.unwrap()["kafka"],
        "the brokers do not answer"
    );
    let r = Sent::post(
        "/capture",
        json!({"event": "e", "distinct_id": "d"}).to_string(),
    )
    .send(&capture)
    .await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "5");
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "kafka_not_ready");
    assert!(sink.records().is_empty());
    sink.set_down(None);
    let r = Sent::post(
        "/capture",
        json!({"event": "e", "distinct_id": "d"}).to_string(),
    )
    .send(&capture)
    .await;
    assert_eq!(r.status(), 202);
    assert_eq!(sink.records().len(), 1);
    capture.stop().await;
}
