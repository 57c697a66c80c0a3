//! Capture with keys validated by the real auth service (on real Postgres):
//! signup → login → project → key → capture succeeds → key revoked → refused
//! once the cache period passed; while auth is down, a recently validated key
//! keeps working and an unknown key is never accepted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use std::collections::HashMap;

use serde_json::{Value, json};
use tributary_auth::testing::{post, start_auth};
use tributary_capture::CaptureConfig;
use tributary_core::Event;
use tributary_core::config::Env;
use tributary_tests::kafka::read_topic;
use tributary_tests::{Stack, poll_until, unique_name};

/// A user who signed up and made a project, with its bearer token.
struct Owner {
    http: reqwest::Client,
    auth: String,
    token: String,
    project: u64,
}

impl Owner {
    async fn new(auth: &str, project_name: &str) -> Self {
        let http = reqwest::Client::new();
        let email = format!("{}@example.test", unique_name("owner"));
        let user = json!({"email": email, "password": "long-password"});
        post(&http, format!("{auth}/api/signup"), None, user.clone()).await;
        let login = post(&http, format!("{auth}/api/login"), None, user).await;
        let token = login["token"].as_str().unwrap().to_owned();
        let project = post(
            &http,
            format!("{auth}/api/projects"),
            Some(&token),
            json!({"name": project_name}),
        )
        .await["id"]
            .as_u64()
            .unwrap();
        Self {
            http,
            auth: auth.to_owned(),
            token,
            project,
        }
    }

    /// A new key of `scope` for the project (`id`, `api_key`).
    async fn key(&self, scope: &str) -> Value {
        post(
            &self.http,
            format!("{}/api/projects/{}/api-keys", self.auth, self.project),
            Some(&self.token),
            json!({"name": scope, "scope": scope}),
        )
        .await
    }

    async fn revoke(&self, key: &Value) {
        let id = key["id"].as_i64().unwrap();
        let r = self
            .http
            .delete(format!(
                "{}/api/projects/{}/api-keys/{id}",
                self.auth, self.project
            ))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }
}

#[tokio::test]
async fn keys_from_the_auth_service_scope_capture() {
    let stack = Stack::require();
    let (auth, auth_stop) = start_auth(&stack.postgres_dsn).await;
    let owner = Owner::new(&auth, "Store").await;
    let project = owner.project;
    let new_key = |scope: &'static str| owner.key(scope);
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
    owner.revoke(&capture_key).await;
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

/// Capture as the binary starts without key settings but the auth
/// service's address: keys are required.
fn with_defaults(stack: &Stack, topic: &str, auth: &str, extra: &[(&str, &str)]) -> CaptureConfig {
    let mut vars: HashMap<String, String> = [
        ("CAPTURE_HOST", "127.0.0.1"),
        (
            "CAPTURE_KAFKA_BOOTSTRAP_SERVERS",
            stack.kafka_bootstrap.as_str(),
        ),
        ("CAPTURE_KAFKA_TOPIC", topic),
        ("CAPTURE_AUTH_URL", auth),
        ("CAPTURE_AUTH_CACHE_SECS", "1"),
        ("CAPTURE_AUTH_NEGATIVE_CACHE_SECS", "1"),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    vars.insert("CAPTURE_KAFKA_READY_INTERVAL_MS".into(), "200".into());
    let mut config = CaptureConfig::from_env(&Env::new(&vars)).unwrap();
    config.listen.set_port(0);
    config
}

/// No event reaches a real tenant's project without its valid key: by
/// default a missing, unknown or revoked key is 401; keyless events are an
/// explicit opt-in that names the project made for them, and even then an
/// unknown or revoked key is refused (before, with keys not required, each
/// went to project 1, auth's first real project).
#[tokio::test]
async fn no_event_reaches_a_tenant_without_its_valid_key_by_default_or_when_keyless_is_opted_into()
{
    let stack = Stack::require();
    let (auth, auth_stop) = start_auth(&stack.postgres_dsn).await;
    let tenant = Owner::new(&auth, "Store").await;
    let keyless = Owner::new(&auth, "Anonymous traffic").await;
    let key = tenant.key("capture").await;
    let revoked = tenant.key("capture").await;
    let key_of = |v: &Value| v["api_key"].as_str().unwrap().to_owned();
    let unknown = format!("trb_{}", "u".repeat(43));

    let send = |url: String, key: Option<String>| async move {
        let mut request = reqwest::Client::new()
            .post(url)
            .json(&json!({"event": "checkout", "distinct_id": "buyer"}));
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        request.send().await.unwrap().status().as_u16()
    };

    // The defaults.
    let topic = unique_name("capture_defaults");
    tributary_tests::kafka::create_topic(&stack.kafka_bootstrap, &topic, 1).await;
    let closed = common::start(with_defaults(&stack, &topic, &auth, &[])).await;
    closed.wait_ready(Duration::from_secs(30)).await;
    let url = closed.url("/capture");
    assert_eq!(send(url.clone(), None).await, 401, "no key");
    assert_eq!(
        send(url.clone(), Some(unknown.clone())).await,
        401,
        "unknown key"
    );
    assert_eq!(
        send(url.clone(), Some(key_of(&revoked))).await,
        202,
        "valid until revoked"
    );
    tenant.revoke(&revoked).await;
    poll_until(
        "the revoked key to be refused",
        Duration::from_secs(15),
        || {
            let send = send(url.clone(), Some(key_of(&revoked)));
            async move { (send.await == 401).then_some(()) }
        },
    )
    .await;
    assert_eq!(send(url, Some(key_of(&key))).await, 202);
    let stored = read_topic(
        &stack.kafka_bootstrap,
        &topic,
        2,
        Duration::from_millis(500),
    )
    .await;
    // Every event stored came with a key valid when it was sent (the
    // revoked one, until the cache let it go): the tenant's.
    for m in &stored {
        assert_eq!(
            Event::from_kafka_payload(&m.payload).unwrap().project_id,
            tenant.project
        );
    }
    closed.stop().await;

    // Keyless opted into, naming the project made for it.
    let topic = unique_name("capture_keyless");
    tributary_tests::kafka::create_topic(&stack.kafka_bootstrap, &topic, 1).await;
    let project = keyless.project.to_string();
    let open = common::start(with_defaults(
        &stack,
        &topic,
        &auth,
        &[
            ("CAPTURE_REQUIRE_API_KEY", "false"),
            ("CAPTURE_KEYLESS_PROJECT_ID", project.as_str()),
        ],
    ))
    .await;
    open.wait_ready(Duration::from_secs(30)).await;
    let url = open.url("/capture");
    assert_eq!(send(url.clone(), Some(unknown)).await, 401, "unknown key");
    assert_eq!(
        send(url.clone(), Some(key_of(&revoked))).await,
        401,
        "revoked key"
    );
    assert_eq!(send(url.clone(), None).await, 202, "no key");
    assert_eq!(send(url, Some(key_of(&key))).await, 202, "a valid key");
    let stored = read_topic(
        &stack.kafka_bootstrap,
        &topic,
        2,
        Duration::from_millis(500),
    )
    .await;
    let projects: Vec<u64> = stored
        .iter()
        .map(|m| Event::from_kafka_payload(&m.payload).unwrap().project_id)
        .collect();
    assert_eq!(projects, [keyless.project, tenant.project]);
    open.stop().await;
    auth_stop.cancel();
}
