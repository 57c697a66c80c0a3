//! Capture with keys validated by the real auth service (on real Postgres):
//! signup → login → project → key → capture succeeds → key revoked → refused
//! once the cache period passed; while auth is down, a recently validated key
//! keeps working and an unknown key is never accepted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use serde_json::{Value, json};
use tributary_auth::testing::{post, start_auth};
use tributary_core::Event;
use tributary_tests::kafka::read_topic;
use tributary_tests::{Stack, poll_until, unique_name};

#[tokio::test]
async fn keys_from_the_auth_service_scope_capture() {
    let stack = Stack::require();
    let (auth, auth_stop) = start_auth(&stack.postgres_dsn).await;
    let http = reqwest::Client::new();
    let email = format!("{}@example.test", unique_name("owner"));
    post(
        &http,
        format!("{auth}/api/signup"),
        None,
        json!({"email": email, "password": "long-password"}),
    )
    .await;
    let login = post(
        &http,
        format!("{auth}/api/login"),
        None,
        json!({"email": email, "password": "long-password"}),
    )
    .await;
    let token = login["token"].as_str().unwrap().to_owned();
    let project = post(
        &http,
        format!("{auth}/api/projects"),
        Some(&token),
        json!({"name": "Store"}),
    )
    .await["id"]
        .as_u64()
        .unwrap();
    let new_key = |scope: &'static str| {
        let (http, auth, token) = (http.clone(), auth.clone(), token.clone());
        async move {
            post(
                &http,
                format!("{auth}/api/projects/{project}/api-keys"),
                Some(&token),
                json!({"name": scope, "scope": scope}),
            )
            .await
        }
    };
    let capture_key = new_key("capture").await;
    let query_key = new_key("query").await;
    let spare_key = new_key("capture").await;

    let (capture, topic) = common::start_on_new_topic(
        &stack,
        "capture_auth",
        2,
        &[
            ("CAPTURE_AUTH_URL", auth.as_str()),
            ("CAPTURE_REQUIRE_API_KEY", "true"),
            ("CAPTURE_AUTH_CACHE_SECS", "1"),
            ("CAPTURE_AUTH_NEGATIVE_CACHE_SECS", "1"),
        ],
    )
    .await;
    let send = |key: String| {
        let (http, url) = (capture.http.clone(), capture.url("/capture"));
        async move {
            http.post(url)
                .header("x-api-key", key)
                .json(&json!({"event": "checkout", "distinct_id": "buyer"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let key = |v: &Value| v["api_key"].as_str().unwrap().to_owned();

    assert_eq!(send(key(&capture_key)).await, 202);
    let received = read_topic(
        &stack.kafka_bootstrap,
        &topic,
        1,
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(
        Event::from_kafka_payload(&received[0].payload)
            .unwrap()
            .project_id,
        project
    );
    assert_eq!(
        send(key(&query_key)).await,
        401,
        "a query key cannot capture"
    );
    assert_eq!(send("trb_unknown".into()).await, 401);

    // Revoked: refused once the cache period (1 s) has passed.
    let id = capture_key["id"].as_i64().unwrap();
    let r = http
        .delete(format!("{auth}/api/projects/{project}/api-keys/{id}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    poll_until(
        "the revoked key to be refused",
        Duration::from_secs(15),
        || {
            let send = send(key(&capture_key));
            async move { (send.await == 401).then_some(()) }
        },
    )
    .await;

    // Auth goes down: the recently validated spare key still works, a key
    // never seen is not accepted (503, not 202).
    assert_eq!(send(key(&spare_key)).await, 202);
    auth_stop.cancel();
    let auth_addr = auth.trim_start_matches("http://").to_owned();
    poll_until(
        "the auth service to stop listening",
        Duration::from_secs(15),
        || {
            let addr = auth_addr.clone();
            async move {
                tokio::net::TcpStream::connect(addr)
                    .await
                    .is_err()
                    .then_some(())
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // let the 1 s cache entry expire
    assert_eq!(
        send(key(&spare_key)).await,
        202,
        "recently validated key refused while auth is down"
    );
    let never_seen = format!("trb_{}", "Q".repeat(43));
    assert_eq!(
        send(never_seen).await,
        503,
        "an unchecked key must not be accepted"
    );
    assert_eq!(send("not-even-a-key".into()).await, 401);
    capture.stop().await;
}
