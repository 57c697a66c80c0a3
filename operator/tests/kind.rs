//! The kind workflow (`infrastructure/kind/`) cannot run here (no Docker
//! engine), so its parts are checked for what would break it there: the
//! dependencies provide every Service and Secret the example pipeline names,
//! with the credentials matching; Kafka advertises a name the operator
//! resolves from its own namespace; ClickHouse lets the example's
//! password-less user in over the network; the cluster runs a Kubernetes the
//! chart accepts; the script parses. `kubernetes_schemas.rs` validates the
//! manifests against the Kubernetes schemas.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Namespace, Secret, Service};
use serde::Deserialize;
use serde_yaml::Value;
use tributary_operator::build::{Component, meta};
use tributary_operator::crd::AnalyticsPipeline;
use tributary_tests::repo_root;

fn kind_dir() -> PathBuf {
    repo_root().join("infrastructure/kind")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The objects of `infrastructure/kind/deps/`, by kind.
#[derive(Default)]
struct Deps {
    namespaces: Vec<Namespace>,
    services: Vec<Service>,
    secrets: Vec<Secret>,
    deployments: Vec<Deployment>,
    statefulsets: Vec<StatefulSet>,
    config_maps: Vec<ConfigMap>,
}

fn deps() -> Deps {
    deps_in("deps")
}

/// The objects of `infrastructure/kind/<dir>/`.
fn deps_in(dir: &str) -> Deps {
    let mut files: Vec<PathBuf> = std::fs::read_dir(kind_dir().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut deps = Deps::default();
    for file in files {
        for doc in serde_yaml::Deserializer::from_str(&read(&file)) {
            let value = Value::deserialize(doc).unwrap();
            let kind = value["kind"].as_str().unwrap_or_default().to_owned();
            let what = format!("{} in {}", kind, file.display());
            match kind.as_str() {
                "Namespace" => deps.namespaces.push(parse(value, &what)),
                "Service" => deps.services.push(parse(value, &what)),
                "Secret" => deps.secrets.push(parse(value, &what)),
                "Deployment" => deps.deployments.push(parse(value, &what)),
                "StatefulSet" => deps.statefulsets.push(parse(value, &what)),
                "ConfigMap" => deps.config_maps.push(parse(value, &what)),
                _ => panic!("{what}: a kind this test does not know; teach it"),
            }
        }
    }
    deps
}

fn parse<T: serde::de::DeserializeOwned>(value: Value, what: &str) -> T {
    serde_yaml::from_value(value).unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// `KEY=value` assignments at the top of the script.
fn script_var(name: &str) -> String {
    let script = read(&kind_dir().join("kind.sh"));
    script
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("kind.sh sets no {name}"))
        .to_owned()
}

fn example() -> AnalyticsPipeline {
    example_named("minimal")
}

fn example_named(name: &str) -> AnalyticsPipeline {
    let path = repo_root().join(format!("crds/examples/{name}.yaml"));
    serde_yaml::from_str(&read(&path)).unwrap()
}

/// `host` and `port` of `scheme://host:port/...` or `host:port`.
fn host_port(address: &str) -> (String, i32) {
    let rest = address.split_once("://").map_or(address, |(_, r)| r);
    let authority = rest.split('/').next().unwrap();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = authority
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{address}: no port"));
    (host.to_owned(), port.parse().unwrap())
}

impl Deps {
    fn service(&self, name: &str) -> &Service {
        self.services
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no Service {name} in kind/deps"))
    }

    /// Asserts a Service `host` serves `port`.
    fn serves(&self, host: &str, port: i32, what: &str) {
        let ports = self.service(host).spec.as_ref().unwrap().ports.clone();
        assert!(
            ports.unwrap_or_default().iter().any(|p| p.port == port),
            "{what}: Service {host} has no port {port}"
        );
    }

    fn secret_value(&self, name: &str, key: &str) -> String {
        let secret = self
            .secrets
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no Secret {name} in kind/deps"));
        secret
            .string_data
            .as_ref()
            .and_then(|d| d.get(key))
            .unwrap_or_else(|| panic!("Secret {name} has no key {key}"))
            .clone()
    }

    fn container(&self, workload: &str) -> &Container {
        let spec = self
            .deployments
            .iter()
            .find(|d| d.metadata.name.as_deref() == Some(workload))
            .map(|d| &d.spec.as_ref().unwrap().template)
            .or_else(|| {
                self.statefulsets
                    .iter()
                    .find(|s| s.metadata.name.as_deref() == Some(workload))
                    .map(|s| &s.spec.as_ref().unwrap().template)
            })
            .unwrap_or_else(|| panic!("no workload {workload} in kind/deps"));
        &spec.spec.as_ref().unwrap().containers[0]
    }

    /// The literal value of `container`'s variable `name`.
    fn env(&self, workload: &str, name: &str) -> String {
        self.container(workload)
            .env
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
            .unwrap_or_else(|| panic!("{workload} sets no {name}"))
    }
}

#[test]
fn the_dependencies_provide_every_service_the_example_pipeline_names() {
    let deps = deps();
    let spec = example().spec;
    for broker in spec.kafka.bootstrap_servers.split(',') {
        let (host, port) = host_port(broker);
        deps.serves(&host, port, "spec.kafka.bootstrapServers");
    }
    let (host, port) = host_port(&spec.clickhouse.url);
    deps.serves(&host, port, "spec.clickhouse.url");
    let redis = spec
        .redis
        .url
        .as_deref()
        .expect("the example names Redis by url");
    let (host, port) = host_port(redis);
    deps.serves(&host, port, "spec.redis.url");
}

#[test]
fn everything_lives_in_the_namespace_the_script_applies_the_pipeline_to() {
    let deps = deps();
    let namespace = script_var("NAMESPACE");
    let names: Vec<_> = deps
        .namespaces
        .iter()
        .map(|n| n.metadata.name.clone())
        .collect();
    assert_eq!(names, [Some(namespace.clone())]);
    let namespaces = deps
        .services
        .iter()
        .map(|s| &s.metadata)
        .chain(deps.secrets.iter().map(|s| &s.metadata))
        .chain(deps.deployments.iter().map(|d| &d.metadata))
        .chain(deps.statefulsets.iter().map(|s| &s.metadata))
        .map(|m| (m.name.clone(), m.namespace.clone()));
    for (name, ns) in namespaces {
        assert_eq!(ns.as_deref(), Some(namespace.as_str()), "{name:?}");
    }
    assert_eq!(
        example().metadata.name.as_deref(),
        Some(script_var("PIPELINE").as_str())
    );
}

#[test]
fn the_postgres_dsn_the_pipeline_reads_opens_the_postgres_it_installs() {
    let deps = deps();
    let reference = example().spec.postgres_dsn_secret_ref;
    let dsn = deps.secret_value(&reference.name, &reference.key);
    let (host, port) = host_port(&dsn);
    deps.serves(&host, port, "the Postgres DSN");
    // postgres://user:password@host:port/database
    let rest = dsn.split_once("://").unwrap().1;
    let (credentials, location) = rest.split_once('@').unwrap();
    let (user, password) = credentials.split_once(':').unwrap();
    let database = location.split_once('/').unwrap().1;
    assert_eq!(deps.env("postgres", "POSTGRES_USER"), user);
    assert_eq!(deps.env("postgres", "POSTGRES_DB"), database);
    let from = deps
        .container("postgres")
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "POSTGRES_PASSWORD")
        .and_then(|e| e.value_from.as_ref())
        .and_then(|v| v.secret_key_ref.as_ref())
        .expect("POSTGRES_PASSWORD from a Secret");
    assert_eq!(deps.secret_value(&from.name, &from.key), password);
}

#[test]
fn the_script_makes_the_jwt_secret_the_pipeline_reads() {
    let reference = example().spec.jwt_secret_ref;
    let script = read(&kind_dir().join("kind.sh"));
    let create = format!("create secret generic {}", reference.name);
    let literal = format!("--from-literal={}=", reference.key);
    let at = script
        .find(&create)
        .expect("kind.sh creates the JWT Secret");
    assert!(script[at..].contains(&literal), "no key {}", reference.key);
    assert!(
        deps()
            .secrets
            .iter()
            .all(|s| s.metadata.name.as_deref() != Some(&reference.name)),
        "a fixed JWT secret is checked in"
    );
}

#[test]
fn kafka_advertises_a_name_the_operator_resolves_from_its_own_namespace() {
    let deps = deps();
    let kafka = deps
        .statefulsets
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some("kafka"));
    let kafka = kafka.expect("a kafka StatefulSet");
    let spec = kafka.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(1));
    let headless = deps.service(&spec.service_name.clone().unwrap());
    assert_eq!(
        headless.spec.as_ref().unwrap().cluster_ip.as_deref(),
        Some("None")
    );
    let pod = spec.template.spec.as_ref().unwrap();
    // Service links would add KAFKA_PORT & co., which the image reads as settings.
    assert_eq!(pod.enable_service_links, Some(false));

    let env = pod.containers[0].env.clone().unwrap();
    let at = |name: &str| env.iter().position(|e| e.name == name);
    let namespace = at("POD_NAMESPACE").expect("POD_NAMESPACE");
    let field = env[namespace]
        .value_from
        .as_ref()
        .and_then(|v| v.field_ref.as_ref());
    assert_eq!(field.unwrap().field_path, "metadata.namespace");
    let advertised = at("KAFKA_ADVERTISED_LISTENERS").unwrap();
    assert!(
        namespace < advertised,
        "$(POD_NAMESPACE) expands only if defined before"
    );
    let pod_name = format!("{}-0", kafka.metadata.name.as_deref().unwrap());
    let expected_host = format!(
        "{pod_name}.{}.$(POD_NAMESPACE).svc.cluster.local",
        spec.service_name.as_deref().unwrap()
    );
    for listener in env[advertised].value.as_deref().unwrap().split(',') {
        let (host, port) = host_port(listener);
        assert_eq!(host, expected_host, "{listener}");
        deps.serves(spec.service_name.as_deref().unwrap(), port, listener);
    }
}

#[test]
fn clickhouse_lets_the_examples_passwordless_user_in_over_the_network() {
    assert!(example().spec.clickhouse.credentials_secret_ref.is_none());
    // Otherwise the image restricts `default` to localhost.
    assert_eq!(deps().env("clickhouse", "CLICKHOUSE_SKIP_USER_SETUP"), "1");
}

#[test]
fn the_cluster_example_runs_on_the_two_shards_cluster_deps_install() {
    let deps = deps_in("cluster-deps");
    let spec = example_named("cluster").spec;
    let (url_host, http) = host_port(&spec.clickhouse.url);
    deps.serves(&url_host, http, "spec.clickhouse.url");
    let cluster = spec
        .clickhouse
        .cluster
        .expect("the example names a cluster");
    let config = &deps.config_maps[0];
    let xml = config
        .data
        .as_ref()
        .and_then(|d| d.get("remote_servers.xml"))
        .expect("remote_servers.xml");
    let named = xml
        .split(&format!("<{cluster}>"))
        .nth(1)
        .and_then(|rest| rest.split(&format!("</{cluster}>")).next())
        .unwrap_or_else(|| panic!("remote_servers has no cluster {cluster}: {xml}"));
    let hosts: Vec<&str> = named
        .split("<host>")
        .skip(1)
        .filter_map(|h| h.split("</host>").next())
        .collect();
    assert_eq!(hosts.len(), 2, "two shards: {named}");
    assert!(hosts.contains(&url_host.as_str()), "the URL names a node");
    for host in hosts {
        // Its native port for the other node, and the HTTP port of the URL
        // for the migration, which reaches every node there.
        deps.serves(host, 9000, "remote_servers");
        deps.serves(host, http, "the migration");
        let mounted = deps.deployments.iter().any(|d| {
            d.metadata.name.as_deref() == Some(host)
                && d.spec
                    .as_ref()
                    .unwrap()
                    .template
                    .spec
                    .as_ref()
                    .unwrap()
                    .volumes
                    .iter()
                    .flatten()
                    .any(|v| {
                        v.config_map.as_ref().map(|c| c.name.as_str())
                            == config.metadata.name.as_deref()
                    })
        });
        assert!(mounted, "{host} does not mount the cluster's config");
        assert_eq!(deps.env(host, "CLICKHOUSE_SKIP_USER_SETUP"), "1");
    }
    let script = read(&kind_dir().join("kind.sh"));
    assert!(
        script.contains("$HERE/cluster-deps/"),
        "kind.sh applies cluster-deps"
    );
}

/// `(major, minor)` of `v1.33.1`, `>=1.33.0-0` and the like.
fn minor_version(text: &str) -> (u32, u32) {
    let digits = text.trim_start_matches(|c: char| !c.is_ascii_digit());
    let mut parts = digits.split(['.', '-']).map(|p| p.parse::<u32>().unwrap());
    (parts.next().unwrap(), parts.next().unwrap())
}

#[test]
fn the_cluster_runs_a_kubernetes_the_chart_accepts() {
    let cluster: Value = serde_yaml::from_str(&read(&kind_dir().join("cluster.yaml"))).unwrap();
    assert_eq!(cluster["kind"], "Cluster");
    assert_eq!(cluster["apiVersion"], "kind.x-k8s.io/v1alpha4");
    assert_eq!(
        cluster["name"].as_str(),
        Some(script_var("CLUSTER").as_str())
    );
    let chart: Value = serde_yaml::from_str(&read(
        &repo_root().join("charts/tributary-operator/Chart.yaml"),
    ))
    .unwrap();
    let least = minor_version(chart["kubeVersion"].as_str().unwrap());
    let nodes = cluster["nodes"].as_sequence().unwrap();
    assert!(!nodes.is_empty());
    for node in nodes {
        assert!(["control-plane", "worker"].contains(&node["role"].as_str().unwrap()));
        let image = node["image"].as_str().expect("a pinned node image");
        let tag = image
            .strip_prefix("kindest/node:")
            .expect("a kindest/node image");
        assert!(
            minor_version(tag) >= least,
            "{image} is older than the chart's {least:?}"
        );
    }
}

#[test]
fn the_script_parses_and_the_make_targets_call_it() {
    let out = Command::new("bash")
        .arg("-n")
        .arg(kind_dir().join("kind.sh"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let makefile = read(&repo_root().join("Makefile"));
    for (target, verb) in [("kind-up", "up"), ("kind-down", "down")] {
        let recipe = makefile
            .split_once(&format!("\n{target}:"))
            .unwrap_or_else(|| panic!("no make target {target}"))
            .1;
        let first = recipe.lines().nth(1).unwrap().trim();
        assert_eq!(first, format!("infrastructure/kind/kind.sh {verb}"));
    }
}

#[test]
fn the_smoke_event_goes_where_the_pipeline_serves_and_stores_it() {
    let p = example();
    let capture = Component::Capture;
    assert!(capture.serves());
    assert_eq!(script_var("CAPTURE_PORT"), capture.port().to_string());
    let script = read(&kind_dir().join("kind.sh"));
    let service = format!("service/$PIPELINE-{}", capture.name());
    assert!(script.contains(&service), "no port-forward to {service}");
    assert_eq!(
        meta::child_name(&p, capture.name()),
        format!("{}-{}", script_var("PIPELINE"), capture.name())
    );
    let table = format!("{}.events", p.spec.clickhouse.database);
    assert_eq!(script_var("EVENTS_TABLE"), table);
    let layout = tributary_core::schema::Layout::Single;
    let schema = tributary_core::schema::render(
        &tributary_core::schema::clickhouse_migrations(&layout)[0].steps[0],
        &p.spec.clickhouse.database,
    );
    assert!(
        schema.contains(&format!("CREATE TABLE IF NOT EXISTS {table}\n")),
        "the events table moved: {schema}"
    );
    assert!(schema.contains("distinct_id "), "no distinct_id column");
}
