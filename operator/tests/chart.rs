//! The Helm chart `charts/tributary-operator`, rendered and linted (strict)
//! by Helm's own SDK for each values file in its `ci/`, every object
//! validated strictly against the Kubernetes schemas, the values schema
//! refusing bad values, the CRD equal to `crds/analyticspipeline.yaml`, and
//! the RBAC rules equal to the calls the operator makes
//! (`tributary_operator::rbac`), which in turn cover every call the mocked
//! API server records in a reconcile and a leader election.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use support::harness::*;
use support::{Call, FakeApi, MemoryBroker};
use tributary_operator::lease::LeaseLock;
use tributary_operator::rbac;
use tributary_tests::Stack;

const VERSIONS: [&str; 2] = ["1.33.0", "1.37.0"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The script's report, made once for all tests of this file.
fn report() -> &'static Value {
    static REPORT: OnceLock<Value> = OnceLock::new();
    REPORT.get_or_init(|| {
        let python = Stack::require()
            .python
            .expect("TRIBUTARY_PYTHON not set by local-stack.sh");
        let out = Command::new(python)
            .arg(repo().join("operator/tests/chart/check_chart.py"))
            .arg(repo().join("charts/tributary-operator"))
            .args(VERSIONS)
            .output()
            .expect("running check_chart.py");
        assert!(
            out.status.success(),
            "check_chart.py failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    })
}

fn objects(values: &str) -> &'static [Value] {
    report()["renders"][values]
        .as_array()
        .unwrap_or_else(|| panic!("no render for {values}"))
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

#[test]
fn the_chart_lints_strictly_and_renders_valid_objects_for_every_values_file() {
    let renders = report()["renders"].as_object().unwrap();
    assert!(renders.len() >= 3, "{:?}", renders.keys());
    for (name, lint) in report()["lint"].as_object().unwrap() {
        assert_eq!(lint["errors"], json!([]), "{name}: {lint}");
        let serious: Vec<&Value> = lint["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["severity"].as_i64().unwrap_or(3) >= 2)
            .collect();
        assert!(serious.is_empty(), "{name}: {serious:?}");
    }
    for (name, problems) in report()["invalid"].as_object().unwrap() {
        assert_eq!(problems, &json!([]), "{name}");
        assert!(!objects(name).is_empty(), "{name} rendered nothing");
    }
}

#[test]
fn the_values_schema_refuses_bad_values_naming_the_key() {
    for (name, key) in report()["expected_refusals"].as_object().unwrap() {
        let message = report()["refused"][name]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: accepted"));
        assert!(message.contains(key.as_str().unwrap()), "{name}: {message}");
    }
}

#[test]
fn the_chart_installs_the_crd_the_operator_generates_and_keeps_it() {
    let checked_in: Value =
        serde_yaml::from_str(include_str!("../../crds/analyticspipeline.yaml")).unwrap();
    let crds = of_kind(objects("default-values"), "CustomResourceDefinition");
    assert_eq!(crds.len(), 1);
    let mut rendered = crds[0].clone();
    let meta = rendered["metadata"].as_object_mut().unwrap();
    let annotations = meta.remove("annotations").unwrap();
    assert_eq!(annotations["helm.sh/resource-policy"], "keep");
    assert!(meta.remove("labels").is_some());
    assert!(
        numbers_as_floats(rendered) == numbers_as_floats(checked_in),
        "the chart's CRD differs from crds/analyticspipeline.yaml: run `make crd`"
    );

    let full = of_kind(objects("full-values"), "CustomResourceDefinition");
    assert!(
        full[0]["metadata"]["annotations"]
            .get("helm.sh/resource-policy")
            .is_none(),
        "crds.keep: false"
    );
    assert!(of_kind(objects("namespaced-values"), "CustomResourceDefinition").is_empty());
}

/// `v` with every number a float: Helm's YAML writes `1000.0` as `1000`.
fn numbers_as_floats(v: Value) -> Value {
    match v {
        Value::Number(n) => json!(n.as_f64()),
        Value::Array(a) => Value::Array(a.into_iter().map(numbers_as_floats).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| (k, numbers_as_floats(v)))
                .collect(),
        ),
        other => other,
    }
}

/// `(group, resource, verb)` triples a set of rules grants.
fn granted(rules: &Value) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in rules.as_array().unwrap() {
        let list = |k: &str| -> Vec<String> {
            rule[k]
                .as_array()
                .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
                .unwrap_or_default()
        };
        for group in list("apiGroups") {
            for resource in list("resources") {
                for verb in list("verbs") {
                    out.insert((group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    out
}

fn needed(table: &[(&str, &str, &[&str])]) -> BTreeSet<(String, String, String)> {
    table
        .iter()
        .flat_map(|(g, r, verbs)| {
            verbs
                .iter()
                .map(move |v| ((*g).to_owned(), (*r).to_owned(), (*v).to_owned()))
        })
        .collect()
}

fn rules_of<'a>(objects: &'a [Value], kind: &str, name_suffix: &str) -> Vec<&'a Value> {
    of_kind(objects, kind)
        .into_iter()
        .filter(|o| {
            o["metadata"]["name"]
                .as_str()
                .unwrap()
                .ends_with(name_suffix)
        })
        .collect()
}

#[test]
fn rbac_grants_exactly_the_calls_the_operator_makes() {
    let all = objects("default-values");
    let cluster = rules_of(all, "ClusterRole", "-operator");
    assert_eq!(cluster.len(), 1);
    assert_eq!(
        granted(&cluster[0]["rules"]),
        needed(rbac::PIPELINE_NAMESPACES)
    );
    let leases = rules_of(all, "Role", "-leader-election");
    assert_eq!(leases.len(), 1);
    assert_eq!(granted(&leases[0]["rules"]), needed(rbac::LEADER_ELECTION));
    assert_eq!(leases[0]["metadata"]["namespace"], "tributary-system");

    // Watching a list: a Role in each namespace, nothing cluster-wide.
    let namespaced = objects("namespaced-values");
    assert!(of_kind(namespaced, "ClusterRole").is_empty());
    assert!(of_kind(namespaced, "ClusterRoleBinding").is_empty());
    let roles = rules_of(namespaced, "Role", "-operator");
    let namespaces: Vec<&str> = roles
        .iter()
        .map(|r| r["metadata"]["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(namespaces, ["analytics", "staging"]);
    for role in roles {
        assert_eq!(granted(&role["rules"]), needed(rbac::PIPELINE_NAMESPACES));
    }
    assert!(
        rules_of(namespaced, "Role", "-leader-election").is_empty(),
        "no Lease without leader election"
    );
    let deployment = &of_kind(namespaced, "Deployment")[0];
    let env = &deployment["spec"]["template"]["spec"]["containers"][0]["env"];
    let watch = env
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "OPERATOR_WATCH_NAMESPACES")
        .unwrap();
    assert_eq!(watch["value"], "analytics,staging");
}

/// `(group, resource, verb)` of a recorded call.
fn as_rbac(call: &Call) -> Vec<(String, String, String)> {
    let parts: Vec<&str> = call.path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => (String::new(), rest),
        ["apis", group, _version, rest @ ..] => ((*group).to_owned(), rest),
        _ => panic!("unexpected path {}", call.path),
    };
    let (resource, named) = match rest {
        ["namespaces", _ns, plural] => ((*plural).to_owned(), false),
        ["namespaces", _ns, plural, _name] => ((*plural).to_owned(), true),
        ["namespaces", _ns, plural, _name, sub] => (format!("{plural}/{sub}"), true),
        _ => panic!("unexpected path {}", call.path),
    };
    let verbs: &[&str] = match (call.method.as_str(), named) {
        ("GET", true) => &["get"],
        ("GET", false) if call.query.get("watch").is_some_and(|w| w == "true") => &["watch"],
        ("GET", false) => &["list"],
        ("POST", _) => &["create"],
        ("PUT", _) => &["update"],
        ("DELETE", _) => &["delete"],
        // A server-side apply creates what is not there yet: authorised as
        // create then, as patch otherwise.
        ("PATCH", _) if !resource.ends_with("/status") => &["patch", "create"],
        ("PATCH", _) => &["patch"],
        (m, _) => panic!("unexpected method {m}"),
    };
    verbs
        .iter()
        .map(|v| (group.clone(), resource.clone(), (*v).to_owned()))
        .collect()
}

#[tokio::test]
async fn every_call_the_mocked_api_records_is_in_the_rbac_table() {
    // A pipeline's life: created, migrated, rolled out, a new image (a new
    // Job; the old one deleted).
    let h = Harness::new(pipeline(|_| {}), MemoryBroker::new(true));
    let mut calls = Vec::new();
    calls.extend(h.calls().await.1);
    h.complete_job(&h.job_key());
    calls.extend(h.calls().await.1);
    h.roll_out_deployments();
    calls.extend(h.calls().await.1);
    let mut p = h.fake.get(PIPELINE).unwrap();
    p["spec"]["image"] = json!("ghcr.io/tributary-dev/tributary:0.2.0");
    p["metadata"]["generation"] = json!(2);
    h.fake.put(PIPELINE, p);
    calls.extend(h.calls().await.1);
    h.complete_job(&h.job_key());
    calls.extend(h.calls().await.1);
    assert!(calls.iter().any(|c| c.method == "DELETE"), "pruned");
    // Autoscaling on (the hand-over, an HPA), then off (the HPA deleted).
    for (generation, autoscaling) in [(3, json!({"maxReplicas": 6})), (4, Value::Null)] {
        let mut p = h.fake.get(PIPELINE).unwrap();
        p["spec"]["capture"]["autoscaling"] = autoscaling;
        p["metadata"]["generation"] = json!(generation);
        h.fake.put(PIPELINE, p);
        h.roll_out_deployments();
        calls.extend(h.calls().await.1);
    }
    assert!(
        calls
            .iter()
            .any(|c| c.method == "DELETE" && c.path.contains("horizontalpodautoscalers")),
        "the HPA applied and deleted"
    );
    assert!(
        calls
            .iter()
            .any(|c| c.query.get("fieldManager").map(String::as_str)
                == Some("tributary-operator-handover")),
        "the replicas handed over"
    );

    // Leader election: create, renew, take over, release.
    let fake = FakeApi::new();
    let lock = |who: &str| {
        LeaseLock::new(
            fake.client(),
            "ops",
            "tributary-operator",
            who,
            Duration::from_secs(15),
        )
    };
    let (a, b) = (lock("a"), lock("b"));
    let at = |s| Timestamp::from_second(s).unwrap();
    assert!(a.try_hold(at(100)).await.unwrap());
    assert!(!b.try_hold(at(101)).await.unwrap());
    assert!(b.try_hold(at(200)).await.unwrap());
    b.release().await.unwrap();
    let lease_calls = fake.take_calls();

    let pipelines = needed(rbac::PIPELINE_NAMESPACES);
    for call in &calls {
        for triple in as_rbac(call) {
            assert!(
                pipelines.contains(&triple),
                "{} needs {triple:?}",
                call.line()
            );
        }
    }
    let leases = needed(rbac::LEADER_ELECTION);
    for call in &lease_calls {
        for triple in as_rbac(call) {
            assert!(leases.contains(&triple), "{} needs {triple:?}", call.line());
        }
    }
}

/// Waits for `child` to exit within `within`; kills it and fails otherwise.
fn exit_within(mut child: std::process::Child, within: Duration, what: &str) -> (i32, String) {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            return (status.code().unwrap_or(-1), err);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            panic!("{what}: still running after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The contract between the chart and the binary: for the chart's own
/// defaults and every values file in `ci/`, the operator container exactly
/// as Helm's SDK renders it (command, args, env) is started the way a
/// kubelet would start it (`tributary_tests::kubelet`: the downward API
/// filled in, an empty `value` set as an empty variable, the namespace's
/// Service links), with no cluster reachable. It must get past its
/// settings to the "no cluster" exit (1), never 78.
///
/// What it cannot show: the image's own environment beyond `PATH` and a
/// `HOME` without a kubeconfig (distroless sets nothing else the operator
/// reads).
#[test]
fn the_operator_gets_past_its_settings_with_the_default_values_and_every_ci_file() {
    use tributary_tests::kubelet::{Namespace, Pod};
    let operator = Path::new(env!("CARGO_BIN_EXE_tributary-operator"));
    let renders = report()["renders"].as_object().unwrap();
    assert!(
        renders.contains_key("chart-defaults"),
        "{:?}",
        renders.keys()
    );
    for (name, objects) in renders {
        let objects = objects.as_array().unwrap();
        let deployments = of_kind(objects, "Deployment");
        assert_eq!(deployments.len(), 1, "{name}");
        let deployment = deployments[0];
        let spec = &deployment["spec"]["template"]["spec"];
        let container = spec["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "operator")
            .unwrap_or_else(|| panic!("{name}: no operator container"));
        assert_eq!(
            container["command"],
            json!(["tributary-operator"]),
            "{name}"
        );
        let namespace = Namespace {
            name: "tributary-system".into(),
            services: of_kind(objects, "Service").into_iter().cloned().collect(),
            ..Namespace::default()
        };
        let pod = Pod {
            name: format!(
                "{}-7d9f5c-x2k4q",
                deployment["metadata"]["name"].as_str().unwrap()
            ),
            ip: "10.244.0.17".into(),
            spec,
        };
        let env = namespace
            .container_env(&pod, container)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let home = std::env::temp_dir().join(tributary_tests::unique_name("operator-home"));
        std::fs::create_dir_all(&home).unwrap();
        let args: Vec<&str> = container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let child = Command::new(operator)
            .args(&args)
            .env_clear()
            .envs(&env)
            .env("HOME", &home)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (code, stderr) = exit_within(child, Duration::from_secs(30), name);
        let _ = std::fs::remove_dir_all(&home);
        assert_ne!(
            code, 78,
            "{name}: the operator refused its settings: {stderr}"
        );
        assert_eq!(code, 1, "{name}: {stderr}");
        assert!(
            stderr.contains("no Kubernetes configuration"),
            "{name}: expected the no-cluster exit, got: {stderr}"
        );
    }
}
