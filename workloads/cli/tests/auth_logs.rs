//! The real `tributary auth` process at debug level: its logs never carry a
//! password, an API key or a token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tributary_tests::kafka::free_port;
use tributary_tests::{Stack, unique_name, wait_for_ok};

#[tokio::test]
async fn logs_never_contain_secrets() {
    let stack = Stack::require();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .arg("auth")
        .env("AUTH_HOST", "127.0.0.1")
        .env("AUTH_PORT", port.to_string())
        .env("POSTGRES_DSN", &stack.postgres_dsn)
        .env("JWT_SECRET", "log-test-secret-log-test-secret-log-test")
        .env("LOG_LEVEL", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_for_ok(
        "auth to answer /health",
        &format!("{base}/health"),
        Duration::from_secs(30),
    )
    .await;

    let email = format!("{}@example.test", unique_name("logcheck"));
    let password = "Very-Secret-Password-42";
    let post = |path: &str, token: Option<&str>, body: Value| {
        let mut req = http.post(format!("{base}{path}")).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    post(
        "/api/signup",
        None,
        json!({"email": email, "password": password}),
    )
    .await;
    post(
        "/api/login",
        None,
        json!({"email": email, "password": "wrong-password-123"}),
    )
    .await;
    let token = post(
        "/api/login",
        None,
        json!({"email": email, "password": password}),
    )
    .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let project = post("/api/projects", Some(&token), json!({"name": "p"})).await["id"]
        .as_i64()
        .unwrap();
    let key = post(
        &format!("/api/projects/{project}/api-keys"),
        Some(&token),
        json!({"name": "k", "scope": "capture"}),
    )
    .await["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    post(
        "/api/keys/validate",
        None,
        json!({"api_key": key, "scope": "capture"}),
    )
    .await;

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(child.wait().unwrap().success());

    assert!(
        out.contains("API key created"),
        "expected the debug/info log lines: {out}"
    );
    for (what, secret) in [
        ("password", password),
        ("wrong password", "wrong-password-123"),
        ("API key", key.as_str()),
        ("token", token.as_str()),
        ("DSN password", "tributary:tributary@"),
        ("JWT secret", "log-test-secret"),
    ] {
        assert!(!out.contains(secret), "the logs contain the {what}");
    }
    // Every line is JSON.
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
    }
}
