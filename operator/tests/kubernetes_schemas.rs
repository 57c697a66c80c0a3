//! Everything `render` prints for the example pipelines, the CRD itself,
//! and the kind workflow's dependencies (`infrastructure/kind/deps/`),
//! validated strictly (unknown fields refused) against the
//! Kubernetes schemas of several minor versions, with `kubernetes-validate`
//! from PyPI (installed into the stack's Python by local-stack.sh).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use tributary_operator::build::render;
use tributary_operator::crd::AnalyticsPipeline;
use tributary_tests::{Stack, unique_name};

/// The oldest version k8s-openapi is built for (v1_33) up to the newest the
/// validator knows.
const VERSIONS: [&str; 5] = ["1.33.0", "1.34.0", "1.35.0", "1.36.0", "1.37.0"];

fn python() -> PathBuf {
    Stack::require()
        .python
        .expect("TRIBUTARY_PYTHON not set by local-stack.sh")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The validator's verdict on `yaml` for `version`: `Ok` or its output.
fn validate(yaml: &str, version: &str) -> Result<(), String> {
    let file = std::env::temp_dir().join(format!("{}.yaml", unique_name("tributary_render")));
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new(python())
        .args([
            "-m",
            "kubernetes_validate",
            "--strict",
            "--quiet",
            "-k",
            version,
        ])
        .arg(&file)
        .output()
        .expect("running kubernetes-validate");
    let _ = std::fs::remove_file(&file);
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn rendered(example: &str) -> String {
    let text = std::fs::read_to_string(repo().join("crds/examples").join(example)).unwrap();
    let p: AnalyticsPipeline = serde_yaml::from_str(&text).unwrap();
    render(&p).unwrap()
}

#[test]
fn rendered_examples_and_the_crd_are_valid_on_every_version() {
    let crd = std::fs::read_to_string(repo().join("crds/analyticspipeline.yaml")).unwrap();
    for (what, yaml) in [
        ("minimal", rendered("minimal.yaml")),
        ("full", rendered("full.yaml")),
        ("cluster", rendered("cluster.yaml")),
        ("crd", crd),
    ] {
        assert!(yaml.contains("kind:"), "{what}: nothing rendered");
        for version in VERSIONS {
            if let Err(e) = validate(&yaml, version) {
                panic!("{what} on Kubernetes {version}:\n{e}");
            }
        }
    }
}

#[test]
fn the_kind_dependencies_are_valid_on_every_version() {
    let dir = repo().join("infrastructure/kind/deps");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    for file in files {
        let yaml = std::fs::read_to_string(&file).unwrap();
        assert!(yaml.contains("kind:"), "{}: empty", file.display());
        for version in VERSIONS {
            if let Err(e) = validate(&yaml, version) {
                panic!("{} on Kubernetes {version}:\n{e}", file.display());
            }
        }
    }
}

#[test]
fn the_validator_refuses_what_kubernetes_would() {
    let yaml = rendered("minimal.yaml");
    // A misspelt field, and a string where a number belongs.
    let misspelt = yaml.replacen("replicas:", "replica:", 1);
    assert!(
        validate(&misspelt, VERSIONS[0]).is_err(),
        "unknown field accepted"
    );
    let mistyped = yaml.replacen("containerPort: 8002", "containerPort: http", 1);
    assert_ne!(mistyped, yaml);
    assert!(
        validate(&mistyped, VERSIONS[0]).is_err(),
        "string port accepted"
    );
}
