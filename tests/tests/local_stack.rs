//! Acceptance of `infrastructure/local-stack.sh` itself: a second, private
//! stack (own directory, own ports) is brought up twice and taken down, and
//! afterwards no process of it may be left.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tributary_tests::{parse_env_lines, repo_root, unique_name};

const PORTS: [(&str, u16); 7] = [
    ("STACK_KAFKA_PORT", 29092),
    ("STACK_CLICKHOUSE_HTTP_PORT", 28123),
    ("STACK_CLICKHOUSE_TCP_PORT", 29000),
    ("STACK_POSTGRES_PORT", 25432),
    ("STACK_REDIS_PORT", 26379),
    ("STACK_CLICKHOUSE_INTERSERVER_PORT", 29009),
    ("STACK_ZOOKEEPER_PORT", 22181),
];

fn run(dir: &Path, verb: &str) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg(repo_root().join("infrastructure/local-stack.sh"))
        .arg(verb)
        .env("TRIBUTARY_STACK_DIR", dir);
    for (var, port) in PORTS {
        cmd.env(var, port.to_string());
    }
    cmd.output().unwrap()
}

fn pids(dir: &Path) -> BTreeMap<String, u32> {
    std::fs::read_dir(dir.join("run"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pid"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let pid = text.lines().next().unwrap().parse().unwrap();
            (p.file_stem().unwrap().to_string_lossy().into_owned(), pid)
        })
        .collect()
}

/// Every live process whose command line mentions the private stack.
fn leftovers(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    let markers: Vec<String> = std::iter::once(dir)
        .chain(PORTS.iter().map(|(_, p)| format!("127.0.0.1:{p}")))
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .filter_map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            markers
                .iter()
                .any(|m| cmdline.contains(m.as_str()))
                .then(|| format!("{}: {cmdline}", e.file_name().to_string_lossy()))
        })
        .collect()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

struct Cleanup(PathBuf);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = run(&self.0, "reset");
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn up_twice_then_down_leaves_no_process_behind() {
    let dir = std::env::temp_dir().join(unique_name("tributary_stack_test"));
    let _cleanup = Cleanup(dir.clone());

    let first = run(&dir, "up");
    assert!(
        first.status.success(),
        "up failed: {}",
        String::from_utf8_lossy(&first.stderr)
    );
    let env = parse_env_lines(&String::from_utf8_lossy(&first.stdout));
    assert_eq!(env["KAFKA_BOOTSTRAP_SERVERS"], "127.0.0.1:29092");
    assert_eq!(env["CLICKHOUSE_URL"], "http://127.0.0.1:28123");
    assert_eq!(env["CLICKHOUSE_CLUSTER"], "tributary");
    assert_eq!(env["CLICKHOUSE_CLUSTER_URL"], "http://127.0.0.2:28123");
    assert_eq!(env["CLICKHOUSE_REPLICATED_CLUSTER"], "tributary_replicated");
    assert_eq!(env["CLICKHOUSE_REPLICATED_URL"], "http://127.0.0.4:28123");
    assert_eq!(
        env["POSTGRES_DSN"],
        "postgres://tributary:tributary@127.0.0.1:25432/tributary"
    );
    assert_eq!(env["REDIS_URL"], "redis://127.0.0.1:26379");
    let env_file = std::fs::read_to_string(dir.join("env")).unwrap();
    assert_eq!(
        parse_env_lines(&env_file),
        env,
        "env file differs from printed settings"
    );

    let started = pids(&dir);
    assert_eq!(
        started.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "clickhouse",
            "clickhouse_replica1",
            "clickhouse_replica2",
            "clickhouse_shard1",
            "clickhouse_shard2",
            "kafka",
            "postgres",
            "redis",
            "zookeeper"
        ]
    );
    assert!(started.values().all(|&p| alive(p)), "{started:?}");

    let second = run(&dir, "up");
    assert!(
        second.status.success(),
        "second up failed: {}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(pids(&dir), started, "second up restarted something");

    let status = run(&dir, "status");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
    assert_eq!(
        String::from_utf8_lossy(&status.stdout)
            .matches("answering")
            .count(),
        started.len()
    );

    // A different port while this stack runs is refused, not half-applied.
    let mut clash = Command::new("bash");
    clash
        .arg(repo_root().join("infrastructure/local-stack.sh"))
        .arg("up")
        .env("TRIBUTARY_STACK_DIR", &dir)
        .env("STACK_REDIS_PORT", "26380");
    let clash = clash.output().unwrap();
    assert!(!clash.status.success());
    assert!(String::from_utf8_lossy(&clash.stderr).contains("STACK_REDIS_PORT=26380"));

    let down = run(&dir, "down");
    assert!(
        down.status.success(),
        "down failed: {}",
        String::from_utf8_lossy(&down.stderr)
    );
    for (name, pid) in &started {
        assert!(!alive(*pid), "{name} (pid {pid}) still running after down");
    }
    assert_eq!(leftovers(&dir), Vec::<String>::new());

    let status = run(&dir, "status");
    assert_eq!(status.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&status.stdout)
            .matches("stopped")
            .count(),
        started.len()
    );
}
