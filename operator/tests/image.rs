//! The container image cannot be built here (no Docker engine), so the
//! Dockerfile and .dockerignore are checked for what the system relies on:
//! one image with both binaries and `tributary` as the entrypoint (the
//! operator's Deployments pass only a subcommand), a minimal runtime of the
//! build's Debian release, the non-root user the pods declare, OCI labels
//! that agree with the workspace, one tag everywhere (chart, examples, kind,
//! Makefile), and a build context without build output.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use serde_yaml::Value;
use tributary_operator::crd::AnalyticsPipeline;
use tributary_tests::repo_root;

fn read(path: &str) -> String {
    let path = repo_root().join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(path: &str) -> Value {
    serde_yaml::from_str(&read(path)).unwrap()
}

/// One Dockerfile instruction: its keyword (upper case) and the rest, with
/// continuation lines joined and comments dropped.
struct Instruction {
    keyword: String,
    args: String,
}

/// The Dockerfile's build stages, each a list of instructions from its FROM.
fn stages() -> Vec<Vec<Instruction>> {
    let text = read("Dockerfile");
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(trimmed);
                logical.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stages: Vec<Vec<Instruction>> = vec![Vec::new()];
    for line in logical {
        let (keyword, args) = line.split_once(' ').unwrap_or((&line, ""));
        let instruction = Instruction {
            keyword: keyword.to_uppercase(),
            args: args.split_whitespace().collect::<Vec<_>>().join(" "),
        };
        if instruction.keyword == "FROM" {
            stages.push(Vec::new());
        }
        stages.last_mut().unwrap().push(instruction);
    }
    stages
}

fn args_of<'a>(stage: &'a [Instruction], keyword: &str) -> Vec<&'a str> {
    stage
        .iter()
        .filter(|i| i.keyword == keyword)
        .map(|i| i.args.as_str())
        .collect()
}

/// `ARG name=default` anywhere in the Dockerfile.
fn arg_default(name: &str) -> String {
    stages()
        .iter()
        .flat_map(|s| {
            args_of(s, "ARG")
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .find_map(|a| a.strip_prefix(&format!("{name}=")).map(str::to_owned))
        .unwrap_or_else(|| panic!("no ARG {name} with a default"))
}

/// A `key = "value"` of the workspace's `[workspace.package]`.
fn workspace(key: &str) -> String {
    let manifest = read("Cargo.toml");
    let package = manifest.split_once("[workspace.package]").unwrap().1;
    let package = package.split("\n[").next().unwrap();
    package
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or_else(|| panic!("no {key} in [workspace.package]"))
        .to_owned()
}

#[test]
fn one_image_holds_both_binaries_with_tributary_as_the_entrypoint() {
    let stages = stages();
    let build = stages
        .iter()
        .find(|s| s[0].args.ends_with(" AS build"))
        .expect("a stage named build");
    let run = args_of(build, "RUN").join("\n");
    assert!(run.contains("cargo build --release --locked"), "{run}");
    // The packages whose [[bin]] are the two binaries.
    for (package, manifest, bin) in [
        ("tributary-cli", "workloads/cli/Cargo.toml", "tributary"),
        (
            "tributary-operator",
            "operator/Cargo.toml",
            "tributary-operator",
        ),
    ] {
        assert!(
            run.contains(&format!("-p {package}")),
            "{package} not built"
        );
        let declared = read(manifest).contains(&format!("[[bin]]\nname = \"{bin}\""));
        assert!(declared, "{manifest} declares no binary {bin}");
        assert!(
            run.contains(&format!("target/release/{bin} "))
                || run.ends_with(&format!("target/release/{bin}")),
            "{bin} not installed"
        );
    }
    let runtime = stages.last().unwrap();
    assert_eq!(
        args_of(runtime, "COPY"),
        ["--from=build /out/ /usr/local/bin/"]
    );
    assert_eq!(
        args_of(runtime, "ENTRYPOINT"),
        [r#"["/usr/local/bin/tributary"]"#]
    );
    // The operator's own container names its binary (found on PATH).
    let deployment = read("charts/tributary-operator/templates/deployment.yaml");
    assert!(deployment.contains("command: [tributary-operator]"));
}

#[test]
fn the_runtime_is_minimal_of_the_builds_debian_and_runs_as_the_pods_user() {
    let stages = stages();
    let runtime = stages.last().unwrap();
    let base = &runtime[0].args;
    let release = arg_default("DEBIAN_RELEASE");
    let number = match release.as_str() {
        "bookworm" => "12",
        "trixie" => "13",
        other => panic!("unknown Debian release {other}"),
    };
    assert_eq!(
        base,
        &format!("gcr.io/distroless/cc-debian{number}:nonroot")
    );
    let builder = &stages
        .iter()
        .find(|s| s[0].args.ends_with(" AS build"))
        .unwrap()[0];
    assert!(
        builder.args.contains("-${DEBIAN_RELEASE} AS build"),
        "{}",
        builder.args
    );

    let values = yaml("charts/tributary-operator/values.yaml");
    let pod = &values["podSecurityContext"];
    let user = format!(
        "{}:{}",
        pod["runAsUser"].as_i64().unwrap(),
        pod["runAsGroup"].as_i64().unwrap()
    );
    assert_eq!(args_of(runtime, "USER"), [user.as_str()]);
    assert_ne!(user, "0:0");
}

/// What `gcr.io/distroless/cc-debian12` holds of shared libraries: glibc,
/// libgcc, libstdc++, libgomp and OpenSSL 3 (zlib is linked statically).
const RUNTIME_LIBRARIES: [&str; 13] = [
    "linux-vdso.so.1",
    "ld-linux-x86-64.so.2",
    "ld-linux-aarch64.so.1",
    "libc.so.6",
    "libm.so.6",
    "libdl.so.2",
    "libpthread.so.0",
    "librt.so.1",
    "libgcc_s.so.1",
    "libstdc++.so.6",
    "libgomp.so.1",
    "libssl.so.3",
    "libcrypto.so.3",
];

#[test]
fn the_binaries_need_no_library_the_runtime_base_lacks() {
    let operator = Path::new(env!("CARGO_BIN_EXE_tributary-operator"));
    // `tributary` is built beside it when the whole workspace is (make test).
    let tributary = operator.with_file_name("tributary");
    for binary in [operator, tributary.as_path()] {
        if !binary.exists() {
            continue;
        }
        let out = Command::new("ldd")
            .arg(binary)
            .output()
            .expect("running ldd");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listing = String::from_utf8_lossy(&out.stdout);
        let needed: Vec<&str> = listing
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(|lib| lib.rsplit('/').next().unwrap())
            .collect();
        assert!(needed.contains(&"libc.so.6"), "{listing}");
        for lib in needed {
            assert!(
                RUNTIME_LIBRARIES.contains(&lib),
                "{} needs {lib}, which the runtime image lacks",
                binary.display()
            );
        }
    }
}

#[test]
fn the_rust_toolchain_meets_the_workspaces_rust_version() {
    let parse = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap()).collect() };
    assert!(parse(&arg_default("RUST_VERSION")) >= parse(&workspace("rust-version")));
    // The build installs what a local build installs, by the same script.
    let build = read("Dockerfile");
    assert!(build.contains("RUN infrastructure/install-build-deps.sh"));
}

#[test]
fn the_labels_and_the_tag_agree_with_the_workspace_chart_examples_and_kind() {
    let stages = stages();
    let labels = args_of(stages.last().unwrap(), "LABEL").join(" ");
    let label = |key: &str| -> String {
        let key = format!("org.opencontainers.image.{key}=\"");
        let at = labels
            .find(&key)
            .unwrap_or_else(|| panic!("no label {key}"));
        labels[at + key.len()..]
            .split('"')
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(label("title"), "tributary");
    assert!(!label("description").is_empty());
    assert_eq!(label("version"), "${VERSION}");
    assert_eq!(label("revision"), "${REVISION}");
    assert_eq!(label("licenses"), workspace("license"));
    assert_eq!(label("source"), workspace("repository"));

    let version = workspace("version");
    assert_eq!(arg_default("VERSION"), version);
    let chart = yaml("charts/tributary-operator/Chart.yaml");
    assert_eq!(chart["appVersion"].as_str(), Some(version.as_str()));
    let values = yaml("charts/tributary-operator/values.yaml");
    let image = format!(
        "{}:{version}",
        values["image"]["repository"].as_str().unwrap()
    );

    for example in [
        "crds/examples/minimal.yaml",
        "crds/examples/full.yaml",
        "crds/examples/cluster.yaml",
    ] {
        let p: AnalyticsPipeline = serde_yaml::from_str(&read(example)).unwrap();
        assert_eq!(p.spec.image, image, "{example}");
    }
    let tagged = |path: &str, prefix: &str| {
        let text = read(path);
        let line = text.lines().find_map(|l| l.strip_prefix(prefix));
        assert_eq!(line.map(str::trim), Some(image.as_str()), "{path}");
    };
    tagged("Makefile", "IMAGE :=");
    tagged("infrastructure/kind/kind.sh", "IMAGE=");
}

#[test]
fn the_build_context_leaves_out_build_output_and_keeps_every_source() {
    let ignore = read(".dockerignore");
    let patterns: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for out in ["target", ".stack", ".git"] {
        assert!(patterns.contains(&out), "{out} is sent to the builder");
    }
    let manifest = read("Cargo.toml");
    let members = manifest
        .split_once("members = [")
        .unwrap()
        .1
        .split(']')
        .next()
        .unwrap();
    let mut needed: Vec<String> = members
        .split(',')
        .map(|m| m.trim().trim_matches('"').to_owned())
        .filter(|m| !m.is_empty())
        .collect();
    assert!(needed.len() >= 8, "{needed:?}");
    needed.extend(
        [
            "Cargo.toml",
            "Cargo.lock",
            "infrastructure/install-build-deps.sh",
        ]
        .map(String::from),
    );
    for path in &needed {
        assert!(Path::new(&repo_root().join(path)).exists(), "{path}");
        for pattern in &patterns {
            let base = pattern.trim_start_matches("**/");
            let ignored = path == base
                || path.starts_with(&format!("{base}/"))
                || Path::new(path).components().any(|c| c.as_os_str() == base);
            assert!(!ignored, "{pattern} leaves {path} out of the build");
        }
    }
}
