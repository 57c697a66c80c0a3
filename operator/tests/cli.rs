//! `tributary-operator run` outside a cluster: it must say what is wrong
//! and exit with the documented code, not hang or panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn run(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let home = std::env::temp_dir().join(format!("tributary-operator-cli-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tributary-operator"))
        .arg("run")
        .env_clear()
        .env("HOME", &home)
        .env("KUBECONFIG", home.join("no-such-kubeconfig"))
        .env("LOG_FORMAT", "text")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_settings_exit_78_naming_the_variable() {
    let (code, stderr) = run(&[("OPERATOR_LEASE_DURATION_MS", "5")]);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("OPERATOR_LEASE_DURATION_MS"), "{stderr}");
    let (code, stderr) = run(&[("OPERATOR_WATCH_NAMESPACES", "analytics,,staging")]);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("OPERATOR_WATCH_NAMESPACES"), "{stderr}");
}

#[test]
fn no_cluster_is_an_error_that_says_so() {
    let (code, stderr) = run(&[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("no Kubernetes configuration"), "{stderr}");
}
