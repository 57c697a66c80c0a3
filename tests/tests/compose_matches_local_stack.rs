//! The Docker stack (infrastructure/docker-compose.yml + docker.env) and the
//! process stack (infrastructure/local-stack.sh) must be interchangeable: same
//! host ports, same connection settings. Docker cannot run here, so this test
//! holds the two definitions to each other.

use std::collections::BTreeMap;

use tributary_tests::{parse_env_lines, repo_root};

/// `VAR -> default port` from the `pick_port VAR "$SAVED" DEFAULT` lines.
fn local_stack_defaults() -> BTreeMap<String, u16> {
    let script =
        std::fs::read_to_string(repo_root().join("infrastructure/local-stack.sh")).unwrap();
    script
        .lines()
        .filter_map(|l| {
            l.split_once("$(pick_port ")?
                .1
                .strip_suffix(')')
                .map(str::to_owned)
        })
        .map(|args| {
            let parts: Vec<&str> = args.split_whitespace().collect();
            (parts[0].to_owned(), parts[2].parse().unwrap())
        })
        .collect()
}

fn compose() -> serde_yaml::Value {
    let text =
        std::fs::read_to_string(repo_root().join("infrastructure/docker-compose.yml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

/// Host ports a compose service publishes (`"127.0.0.1:HOST:CONTAINER"`).
fn host_ports(compose: &serde_yaml::Value, service: &str) -> Vec<u16> {
    compose["services"][service]["ports"]
        .as_sequence()
        .unwrap_or_else(|| panic!("service {service} publishes no ports"))
        .iter()
        .map(|p| {
            let p = p.as_str().unwrap();
            let parts: Vec<&str> = p.split(':').collect();
            assert_eq!(
                parts.len(),
                3,
                "{service}: bind {p} to 127.0.0.1 explicitly"
            );
            assert_eq!(
                parts[0], "127.0.0.1",
                "{service}: {p} must stay on loopback"
            );
            parts[1].parse().unwrap()
        })
        .collect()
}

#[test]
fn both_stacks_publish_the_same_ports() {
    let d = local_stack_defaults();
    // Only the process stack runs the ClickHouse clusters (interserver
    // port for the replicas, ZooKeeper); the tests that need them say so.
    assert_eq!(d.len(), 7, "{d:?}");
    assert!(
        d.contains_key("STACK_CLICKHOUSE_INTERSERVER_PORT")
            && d.contains_key("STACK_ZOOKEEPER_PORT")
    );
    let c = compose();
    assert_eq!(host_ports(&c, "kafka"), [d["STACK_KAFKA_PORT"]]);
    assert_eq!(
        host_ports(&c, "clickhouse"),
        [
            d["STACK_CLICKHOUSE_HTTP_PORT"],
            d["STACK_CLICKHOUSE_TCP_PORT"]
        ]
    );
    assert_eq!(host_ports(&c, "postgres"), [d["STACK_POSTGRES_PORT"]]);
    assert_eq!(host_ports(&c, "redis"), [d["STACK_REDIS_PORT"]]);
    let advertised = c["services"]["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
        .as_str()
        .unwrap();
    assert!(
        advertised.contains(&format!("127.0.0.1:{}", d["STACK_KAFKA_PORT"])),
        "clients on the host must be sent back to the published port: {advertised}"
    );
}

#[test]
fn docker_env_has_the_settings_local_stack_prints() {
    let d = local_stack_defaults();
    let docker = parse_env_lines(
        &std::fs::read_to_string(repo_root().join("infrastructure/docker.env")).unwrap(),
    );
    let kafka = format!("127.0.0.1:{}", d["STACK_KAFKA_PORT"]);
    let ch = d["STACK_CLICKHOUSE_HTTP_PORT"].to_string();
    let expected: BTreeMap<&str, String> = [
        ("KAFKA_BOOTSTRAP_SERVERS", kafka.clone()),
        ("CAPTURE_KAFKA_BOOTSTRAP_SERVERS", kafka.clone()),
        ("CONSUMER_KAFKA_BOOTSTRAP_SERVERS", kafka),
        ("CLICKHOUSE_URL", format!("http://127.0.0.1:{ch}")),
        (
            "CLICKHOUSE_NATIVE_PORT",
            d["STACK_CLICKHOUSE_TCP_PORT"].to_string(),
        ),
        ("CONSUMER_CLICKHOUSE_HOST", "127.0.0.1".into()),
        ("CONSUMER_CLICKHOUSE_PORT", ch.clone()),
        ("QUERY_CLICKHOUSE_HOST", "127.0.0.1".into()),
        ("QUERY_CLICKHOUSE_PORT", ch),
        (
            "POSTGRES_DSN",
            format!(
                "postgres://tributary:tributary@127.0.0.1:{}/tributary",
                d["STACK_POSTGRES_PORT"]
            ),
        ),
        (
            "REDIS_URL",
            format!("redis://127.0.0.1:{}", d["STACK_REDIS_PORT"]),
        ),
    ]
    .into_iter()
    .collect();
    let docker: BTreeMap<&str, String> = docker
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    assert_eq!(docker, expected);

    // And local-stack.sh prints every one of those names.
    let script =
        std::fs::read_to_string(repo_root().join("infrastructure/local-stack.sh")).unwrap();
    for name in expected.keys() {
        assert!(
            script.contains(&format!("\n{name}=")),
            "local-stack.sh does not print {name}"
        );
    }
}
