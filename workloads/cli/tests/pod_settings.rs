//! The contract between the operator and the `tributary` binary: every
//! container the operator renders for `crds/examples/*.yaml` (the four
//! workloads and the migration Job) is started with its args and its env
//! resolved as a kubelet would (`tributary_tests::kubelet`: the rendered
//! ConfigMap, the Secrets below, the namespace's Service links), and must
//! accept its settings: it logs `settings accepted` (then fails later, if
//! at all, for want of a cluster's servers), never exits 78.
//!
//! What it cannot show: whether the servers named in the settings answer
//! (no cluster DNS here); `make test`'s end-to-end tests cover the data
//! path.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tributary_operator::build::{self, Sizing};
use tributary_operator::crd::AnalyticsPipeline;
use tributary_tests::kubelet::{Namespace, Pod};
use tributary_tests::process::{Guarded, drain, lines_until};

/// The example Secrets' values (a cluster admin's, in a real install).
const SECRETS: &[(&str, &str, &str)] = &[
    (
        "tributary-postgres",
        "dsn",
        "postgres://tributary:secret@postgres:5432/tributary",
    ),
    (
        "tributary-jwt",
        "secret",
        "0123456789abcdef0123456789abcdef0123456789abcdef",
    ),
    ("tributary-redis", "url", "redis://:secret@redis:6379/0"),
    ("clickhouse-credentials", "username", "tributary"),
    ("clickhouse-credentials", "password", "secret"),
];

/// Services a namespace shared with other applications may hold: the
/// examples' dependencies, and an application's own named like Tributary's
/// setting prefixes (their links would read as `AUTH_PORT`, ...).
const NEIGHBOURS: &[(&str, i64)] = &[
    ("kafka", 9092),
    ("clickhouse", 8123),
    ("postgres", 5432),
    ("redis", 6379),
    ("auth", 80),
    ("capture", 80),
    ("query", 80),
    ("consumer-metrics", 9090),
];

fn examples() -> Vec<(String, AnalyticsPipeline)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crds/examples");
    let mut out: Vec<(String, AnalyticsPipeline)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let pipeline = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, pipeline)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 2, "{dir:?}");
    out
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap()
}

/// `(what, pod spec)` of every pod the operator renders for `p`.
fn pods(p: &AnalyticsPipeline) -> (Namespace, Vec<(String, Value)>) {
    let children = build::children(p, Sizing::from_spec(p)).unwrap();
    let mut services: Vec<Value> = children.services.iter().map(to_json).collect();
    services.extend(NEIGHBOURS.iter().map(|(name, port)| {
        json!({"metadata": {"name": name}, "spec": {"ports": [{"name": "http", "port": port}]}})
    }));
    let namespace = Namespace {
        name: p.metadata.namespace.clone().unwrap_or("default".into()),
        services,
        config_maps: vec![to_json(&children.config_map)],
        secrets: SECRETS
            .iter()
            .map(|(s, k, v)| (((*s).to_owned(), (*k).to_owned()), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
    };
    let mut out: Vec<(String, Value)> = children
        .deployments
        .iter()
        .map(|d| {
            let d = to_json(d);
            (
                d["metadata"]["name"].as_str().unwrap().to_owned(),
                d["spec"]["template"]["spec"].clone(),
            )
        })
        .collect();
    if let Some(job) = &children.migration_job {
        let job = to_json(job);
        out.push((
            job["metadata"]["name"].as_str().unwrap().to_owned(),
            job["spec"]["template"]["spec"].clone(),
        ));
    }
    (namespace, out)
}

#[test]
fn every_container_the_operator_renders_for_the_examples_accepts_its_settings() {
    let binary = Path::new(env!("CARGO_BIN_EXE_tributary"));
    let home = std::env::temp_dir().join(tributary_tests::unique_name("pod-home"));
    std::fs::create_dir_all(&home).unwrap();
    let mut checked = 0;
    for (file, pipeline) in examples() {
        let (namespace, pods) = pods(&pipeline);
        for (owner, spec) in pods {
            for container in spec["containers"].as_array().unwrap() {
                let what = format!("{file}: {owner}/{}", container["name"]);
                // The image's entrypoint is `tributary`; the operator
                // renders args only.
                assert!(container.get("command").is_none(), "{what}");
                let args: Vec<&str> = container["args"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap())
                    .collect();
                let pod = Pod {
                    name: format!("{owner}-5f7d8-q2x9z"),
                    ip: "10.244.1.23".into(),
                    spec: &spec,
                };
                let env = namespace
                    .container_env(&pod, container)
                    .unwrap_or_else(|e| panic!("{what}: a kubelet would not start it: {e}"));
                let mut child = Guarded(
                    Command::new(binary)
                        .args(&args)
                        .env_clear()
                        .envs(&env)
                        .env("HOME", &home)
                        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped())
                        .spawn()
                        .unwrap(),
                );
                let stderr = drain(child.0.stderr.take().unwrap());
                let stdout = child.0.stdout.take().unwrap();
                let seen = lines_until(
                    stdout,
                    |l| l.contains("settings accepted"),
                    Duration::from_secs(30),
                );
                if let Err(lines) = seen {
                    let status = child.terminate(Duration::from_secs(5));
                    let err = stderr
                        .recv_timeout(Duration::from_secs(5))
                        .unwrap_or_default();
                    panic!(
                        "{what}: settings not accepted (exit {status:?}):\n{err}\n{}",
                        lines.join("\n")
                    );
                }
                child.terminate(Duration::from_secs(5));
                checked += 1;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&home);
    assert!(checked >= 10, "{checked} containers");
}
