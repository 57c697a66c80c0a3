//! For other crates' tests (feature `test-support`): auth running in-process
//! on a loopback port against the stack's Postgres, and a JSON call that
//! insists on success. Failures panic with what failed, as test code should.
#![allow(clippy::expect_used)]

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tributary_core::config::Env;

use crate::{Auth, AuthConfig};

/// Starts auth on `127.0.0.1` (a free port) against `postgres_dsn`; answers
/// its base URL and the token that stops it.
pub async fn start_auth(postgres_dsn: &str) -> (String, CancellationToken) {
    let vars = [
        ("AUTH_HOST", "127.0.0.1"),
        ("POSTGRES_DSN", postgres_dsn),
        ("JWT_SECRET", "test-support-secret-test-support-secret"),
    ];
    let mut config = AuthConfig::from_env(&Env::new(&vars)).expect("auth test settings");
    config.listen.set_port(0);
    let auth = Auth::bind(&config)
        .await
        .expect("auth binds a loopback port");
    let base = format!(
        "http://{}",
        auth.local_addr().expect("auth's bound address")
    );
    let stop = CancellationToken::new();
    tokio::spawn(auth.serve(stop.clone()));
    (base, stop)
}

/// POSTs `body` as JSON (with a bearer `token` when given) and answers the
/// JSON reply; panics unless the status is a success.
pub async fn post(http: &reqwest::Client, url: String, token: Option<&str>, body: Value) -> Value {
    let mut req = http.post(&url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("auth answers");
    assert!(r.status().is_success(), "POST {url}: {}", r.status());
    r.json().await.expect("a JSON reply")
}
