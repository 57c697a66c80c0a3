//! Each service's OpenAPI document against the service itself: the whole
//! pipeline runs as `tributary dev` with its defaults (keys required,
//! checked by auth), a user, a project and a key of each scope are made
//! through auth, and schemathesis (PyPI) generates requests from each
//! document at `/openapi.json`: no answer may be a server error, and no
//! answer may break the schema the document gives for its status.
//!
//! What it cannot show: request encodings the documents do not describe
//! (capture's gzip, base64 and form bodies; the capture fuzz target and
//! `formats_and_routes.rs` cover those), and 5xx that need an outage (the
//! fault tests cover those). Rate limits are off so that the generated
//! requests reach the handlers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tributary_tests::process::{Dev, Guarded};
use tributary_tests::{Stack, unique_name, wait_for_ok};

/// Examples per operation and phase: enough to cross every field's edge
/// cases, small enough for the suite.
const EXAMPLES: &str = "25";

#[tokio::test]
async fn every_service_answers_within_its_openapi_document() {
    let stack = Stack::require();
    let python = stack
        .python
        .clone()
        .expect("TRIBUTARY_PYTHON (infrastructure/local-stack.sh env) names the stack's Python");
    let schemathesis = python.with_file_name("schemathesis");
    assert!(
        schemathesis.exists(),
        "{} is missing: infrastructure/local-stack.sh up installs it",
        schemathesis.display()
    );
    let mut dev = Dev::new(Path::new(env!("CARGO_BIN_EXE_tributary")), &stack);
    dev.command
        .env("AUTH_RATE_LIMIT_PER_ADDRESS", "0")
        .env("AUTH_VALIDATE_RATE_LIMIT_PER_ADDRESS", "0")
        .env("CAPTURE_RATE_LIMIT_PER_KEY", "0")
        .env("QUERY_RATE_LIMIT_PER_KEY", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _dev = Guarded(dev.command.spawn().unwrap());
    let url = |port: u16, path: &str| format!("http://127.0.0.1:{port}{path}");
    for port in [dev.auth_port, dev.capture_port, dev.query_port] {
        wait_for_ok("/ready", &url(port, "/ready"), Duration::from_secs(90)).await;
    }

    // A user, a project and its keys, through auth.
    let http = reqwest::Client::new();
    let post = |path: String, token: Option<String>, body: Value| {
        let mut req = http.post(path).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move {
            let r = req.send().await.unwrap();
            assert!(r.status().is_success(), "{}", r.status());
            r.json::<Value>().await.unwrap()
        }
    };
    let credentials = json!({
        "email": format!("{}@example.test", unique_name("schemathesis")),
        "password": "schemathesis-password",
    });
    post(url(dev.auth_port, "/api/signup"), None, credentials.clone()).await;
    let token = post(url(dev.auth_port, "/api/login"), None, credentials).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let project = post(
        url(dev.auth_port, "/api/projects"),
        Some(token.clone()),
        json!({"name": "schemathesis"}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let key = |scope: &'static str| {
        post(
            url(dev.auth_port, &format!("/api/projects/{project}/api-keys")),
            Some(token.clone()),
            json!({"name": scope, "scope": scope}),
        )
    };
    let capture_key = key("capture").await["api_key"].as_str().unwrap().to_owned();
    let query_key = key("query").await["api_key"].as_str().unwrap().to_owned();

    let mut failures = Vec::new();
    for (service, port, header) in [
        (
            "auth",
            dev.auth_port,
            format!("Authorization: Bearer {token}"),
        ),
        (
            "capture",
            dev.capture_port,
            format!("X-API-Key: {capture_key}"),
        ),
        ("query", dev.query_port, format!("X-API-Key: {query_key}")),
    ] {
        let out = Command::new(&schemathesis)
            .args(["run", &url(port, "/openapi.json")])
            .args(["--checks", "not_a_server_error,response_schema_conformance"])
            // The coverage phase trips over a Python AST error inside
            // hypothesis on this interpreter; the others generate freely.
            .args(["--phases", "examples,fuzzing,stateful"])
            .args(["--max-examples", EXAMPLES, "--workers", "2"])
            .args(["--request-timeout", "30"])
            .args(["--header", &header])
            .env("NO_COLOR", "1")
            // Its example database and reports stay out of the source tree.
            .current_dir(env!("CARGO_TARGET_TMPDIR"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let summary: Vec<&str> = stdout
            .lines()
            .skip_while(|l| !l.contains("SUMMARY"))
            .collect();
        println!("{service}:\n{}", summary.join("\n"));
        if !out.status.success() {
            failures.push(format!(
                "{service}: schemathesis failed ({}):\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
