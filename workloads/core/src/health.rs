//! `GET /health/detailed`: each dependency of a workload checked now, with
//! how long it took to answer and what is wrong, in words fit for anyone
//! (no address, no server's own words: the log has those), beside what
//! the workload holds (queues, bytes, lag). Always 200: `/ready` is the
//! gate, this is for reading.

use std::future::Future;
use std::time::{Duration, Instant};

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

/// One dependency as checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dependency {
    pub name: &'static str,
    /// `up` or `down`.
    pub state: &'static str,
    /// How long the check took, when it was made now.
    pub latency_ms: Option<f64>,
    /// What is wrong, when down.
    pub problem: Option<String>,
}

impl Dependency {
    /// A dependency known from elsewhere (a watcher's last check).
    pub fn known(name: &'static str, problem: Option<String>) -> Self {
        Self {
            name,
            state: if problem.is_none() { "up" } else { "down" },
            latency_ms: None,
            problem,
        }
    }
}

/// Checks `name` with `check` (at most `limit`), timing it. A failure is
/// logged whole and told as `describe` puts it.
pub async fn probe<E: std::fmt::Display>(
    name: &'static str,
    limit: Duration,
    check: impl Future<Output = Result<(), E>>,
    describe: impl FnOnce(&E) -> String,
) -> Dependency {
    let started = Instant::now();
    let outcome = tokio::time::timeout(limit, check).await;
    let latency_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
    let problem = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(e)) => {
            tracing::warn!(dependency = name, error = %e, "detailed health: dependency down");
            Some(describe(&e))
        }
        Err(_) => Some(format!("did not answer within {} ms", limit.as_millis())),
    };
    Dependency {
        state: if problem.is_none() { "up" } else { "down" },
        name,
        latency_ms,
        problem,
    }
}

/// The answer: `status` is `ok` when every dependency is up, else
/// `degraded`; `details` (an object) adds the workload's own state.
pub fn answer(service: &str, dependencies: &[Dependency], details: Value) -> Response {
    let degraded = dependencies.iter().any(|d| d.state != "up");
    let mut body = json!({
        "service": service,
        "status": if degraded { "degraded" } else { "ok" },
        "dependencies": dependencies,
    });
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), details) {
        body.extend(extra);
    }
    Json(body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_probe_times_and_describes_without_the_error_s_words() {
        let up = probe(
            "redis",
            Duration::from_secs(1),
            async { Ok::<(), String>(()) },
            |_| "unavailable".into(),
        )
        .await;
        assert_eq!((up.state, up.problem.as_deref()), ("up", None));
        assert!(up.latency_ms.is_some());
        let down = probe(
            "redis",
            Duration::from_secs(1),
            async { Err::<(), String>("connection refused at 10.0.0.7:6379".into()) },
            |_| "unavailable".into(),
        )
        .await;
        assert_eq!(
            (down.state, down.problem.as_deref()),
            ("down", Some("unavailable"))
        );
        let slow = probe(
            "clickhouse",
            Duration::from_millis(20),
            async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok::<(), String>(())
            },
            |_| String::new(),
        )
        .await;
        assert_eq!(slow.problem.as_deref(), Some("did not answer within 20 ms"));
    }

    #[tokio::test]
    async fn degraded_when_any_dependency_is_down() {
        async fn body(deps: &[Dependency]) -> Value {
            let r = answer("query", deps, json!({"timeout_secs": 60}));
            let bytes = axum::body::to_bytes(r.into_body(), 4096)
                .await
                .unwrap_or_default();
            serde_json::from_slice::<Value>(&bytes).unwrap_or_default()
        }
        let ok = body(&[Dependency::known("clickhouse", None)]).await;
        assert_eq!(ok["status"], "ok");
        assert_eq!(ok["timeout_secs"], 60);
        let bad = body(&[
            Dependency::known("clickhouse", None),
            Dependency::known("redis", Some("unavailable".into())),
        ])
        .await;
        assert_eq!(bad["status"], "degraded");
        assert_eq!(bad["dependencies"][1]["problem"], "unavailable");
    }
}
