//! Every workload's probes, as the operator declares them, against what the
//! `tributary` binary serves: each declared path answers 200 while the
//! workload's servers answer, the port is where the binary listens by
//! default, and for the workloads behind a Service (capture, query, auth)
//! the readiness path answers 503 while the server the workload serves
//! with (Kafka, ClickHouse, Postgres) cannot be reached, while liveness
//! stays 200 (a restart would not help).
//!
//! The workloads run against the local stack on free ports (the probe's
//! port stands for the pod's, where the binary listens on its default).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::{Command, Stdio};
use std::time::Duration;

use tributary_core::config::Env;
use tributary_operator::build::{self, Sizing};
use tributary_operator::crd::AnalyticsPipeline;
use tributary_tests::clickhouse::host_port;
use tributary_tests::kafka::{create_topic, free_port};
use tributary_tests::process::Guarded;
use tributary_tests::tcp_proxy::TcpProxy;
use tributary_tests::{Stack, poll_until, unique_name};

/// `(liveness path, readiness path, port)` per workload, as the operator
/// declares them for the minimal example.
fn declared() -> BTreeMap<String, (String, String, i32)> {
    let p: AnalyticsPipeline =
        serde_yaml::from_str(include_str!("../../../crds/examples/minimal.yaml")).unwrap();
    let children = build::children(&p, Sizing::from_spec(&p)).unwrap();
    children
        .deployments
        .iter()
        .map(|d| {
            let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
            let c = &pod.containers[0];
            let get = |probe: &Option<k8s_openapi::api::core::v1::Probe>| {
                probe.as_ref().unwrap().http_get.clone().unwrap()
            };
            let (live, ready) = (get(&c.liveness_probe), get(&c.readiness_probe));
            let port = match (&live.port, &ready.port) {
                (
                    k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(a),
                    k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(b),
                ) if a == b => *a,
                other => panic!("probes on different or named ports: {other:?}"),
            };
            (
                c.args.as_ref().unwrap()[0].clone(),
                (live.path.unwrap(), ready.path.unwrap(), port),
            )
        })
        .collect()
}

/// The port each binary listens on when its port variable is unset.
fn default_port(workload: &str) -> u16 {
    let keyed = [
        ("CAPTURE_AUTH_URL", "http://auth:8002"),
        ("QUERY_AUTH_URL", "http://auth:8002"),
    ];
    let env = Env::new(&keyed);
    match workload {
        "capture" => tributary_capture::CaptureConfig::from_env(&env)
            .unwrap()
            .listen
            .port(),
        "query" => tributary_query::QueryConfig::from_env(&env)
            .unwrap()
            .listen
            .port(),
        "consumer" => {
            tributary_consumer::ConsumerConfig::from_env(&env)
                .unwrap()
                .metrics_port
        }
        "auth" => {
            let secret = "0123456789abcdef0123456789abcdef";
            let set = [
                ("POSTGRES_DSN", "postgres://x@db/x"),
                ("JWT_SECRET", secret),
            ];
            tributary_auth::AuthConfig::from_env(&Env::new(&set))
                .unwrap()
                .listen
                .port()
        }
        other => panic!("unknown workload {other}"),
    }
}

fn port_var(workload: &str) -> &'static str {
    match workload {
        "capture" => "CAPTURE_PORT",
        "query" => "QUERY_PORT",
        "auth" => "AUTH_PORT",
        _ => "CONSUMER_METRICS_PORT",
    }
}

fn start(workload: &str, port: u16, env: &[(&str, String)]) -> Guarded {
    Guarded(
        Command::new(env!("CARGO_BIN_EXE_tributary"))
            .arg(workload)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env(port_var(workload), port.to_string())
            .env("LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

async fn status(port: u16, path: &str) -> Option<u16> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    client
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// Polls `path` until it answers `want`.
async fn answers(port: u16, path: &str, want: u16, what: &str) {
    poll_until(
        &format!("{what}: GET {path} answering {want}"),
        Duration::from_secs(60),
        || async move { (status(port, path).await == Some(want)).then_some(()) },
    )
    .await;
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    free_port()
}

fn addr(host: &str, port: u16) -> SocketAddr {
    (host, port).to_socket_addrs().unwrap().next().unwrap()
}

/// The stack's ClickHouse database `database`, migrated by the binary.
fn migrated(stack: &Stack, database: &str) -> Vec<(&'static str, String)> {
    let (host, port) = host_port(&stack.clickhouse_url);
    let out = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .arg("migrate")
        .env("CONSUMER_CLICKHOUSE_HOST", &host)
        .env("CONSUMER_CLICKHOUSE_PORT", port.to_string())
        .env("CONSUMER_CLICKHOUSE_DATABASE", database)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    vec![
        ("QUERY_CLICKHOUSE_HOST", host.clone()),
        ("QUERY_CLICKHOUSE_PORT", port.to_string()),
        ("QUERY_CLICKHOUSE_DATABASE", database.to_owned()),
        ("CONSUMER_CLICKHOUSE_HOST", host),
        ("CONSUMER_CLICKHOUSE_PORT", port.to_string()),
        ("CONSUMER_CLICKHOUSE_DATABASE", database.to_owned()),
    ]
}

#[tokio::test]
async fn every_declared_probe_is_served_and_readiness_follows_the_server_each_workload_needs() {
    let stack = Stack::require();
    let probes = declared();
    assert_eq!(
        probes.keys().collect::<Vec<_>>(),
        ["auth", "capture", "consumer", "query"]
    );
    for (workload, (_, _, port)) in &probes {
        assert_eq!(
            i32::from(default_port(workload)),
            *port,
            "{workload}: the probes' port is not where the binary listens"
        );
    }
    let database = unique_name("probes");
    let clickhouse = migrated(&stack, &database);
    let topic = unique_name("probes");
    create_topic(&stack.kafka_bootstrap, &topic, 1).await;

    // Postgres through a proxy, so it can become unreachable for auth
    // without stopping the stack's server.
    let (pg_host, pg_port) = stack.postgres_address();
    let postgres = TcpProxy::start(addr(&pg_host, pg_port), None).unwrap();
    let dsn = stack.postgres_dsn_via(&postgres.addr().to_string());

    let kafka = |bootstrap: &str| {
        vec![
            ("CAPTURE_KAFKA_BOOTSTRAP_SERVERS", bootstrap.to_owned()),
            ("CAPTURE_KAFKA_TOPIC", topic.clone()),
            ("CONSUMER_KAFKA_BOOTSTRAP_SERVERS", bootstrap.to_owned()),
            ("CONSUMER_KAFKA_TOPIC", topic.clone()),
            ("CONSUMER_KAFKA_GROUP_ID", unique_name("probes")),
            ("CONSUMER_DLQ_TOPIC", unique_name("probes_dlq")),
        ]
    };
    let mut up: Vec<(&str, String)> = kafka(&stack.kafka_bootstrap);
    up.extend(clickhouse.clone());
    up.extend([
        // Keyless traffic (the explicit opt-in): the probes are the point.
        ("CAPTURE_REQUIRE_API_KEY", "false".to_owned()),
        ("CAPTURE_KEYLESS_PROJECT_ID", "1".to_owned()),
        ("QUERY_REQUIRE_API_KEY", "false".to_owned()),
        ("QUERY_KEYLESS_PROJECT_ID", "1".to_owned()),
        ("REDIS_URL", stack.redis_url.clone()),
        ("POSTGRES_DSN", dsn),
        ("JWT_SECRET", "0123456789abcdef0123456789abcdef".to_owned()),
    ]);

    // Everything reachable: every declared path answers 200.
    for (workload, (live, ready, _)) in &probes {
        let port = free_port();
        let _running = start(workload, port, &up);
        answers(port, live, 200, workload).await;
        answers(port, ready, 200, workload).await;
    }

    // Each server a workload serves with, unreachable: not ready, alive.
    let closed = format!("127.0.0.1:{}", closed_port());
    let mut no_kafka = up.clone();
    no_kafka.extend(kafka(&closed));
    let mut no_clickhouse = up.clone();
    no_clickhouse.push(("QUERY_CLICKHOUSE_PORT", closed_port().to_string()));
    for (workload, env) in [("capture", no_kafka), ("query", no_clickhouse)] {
        let (live, ready, _) = &probes[workload];
        let port = free_port();
        let _running = start(workload, port, &env);
        answers(port, live, 200, workload).await;
        answers(port, ready, 503, workload).await;
    }
    // Auth connects at start, so Postgres goes away once it is up.
    let (live, ready, _) = &probes["auth"];
    let port = free_port();
    let _auth = start("auth", port, &up);
    answers(port, ready, 200, "auth").await;
    let detailed = || async move {
        reqwest::get(format!("http://127.0.0.1:{port}/health/detailed"))
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };
    let health = detailed().await;
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["dependencies"][0]["name"], "postgres", "{health}");
    postgres.cut();
    answers(port, ready, 503, "auth without Postgres").await;
    assert_eq!(status(port, live).await, Some(200), "auth stays alive");
    let health = detailed().await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["dependencies"][0]["state"], "down", "{health}");
    assert!(
        !health
            .to_string()
            .contains(&postgres.addr().port().to_string()),
        "no address: {health}"
    );
}
