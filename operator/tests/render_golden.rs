//! What the operator builds for the examples, as a reviewer reads it:
//! `render(crds/examples/<name>.yaml)` must equal `tests/golden/<name>.yaml`.
//! A change to the builders shows here as a diff to review; when it is
//! intended, write the new files with
//!
//! ```text
//! UPDATE_GOLDEN=1 cargo test -p tributary-operator --test render_golden
//! ```
//!
//! and commit them with the change. (Properties that hold for every
//! pipeline, not just the examples, are tested in `src/build/tests.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use tributary_operator::build::render;
use tributary_operator::crd::AnalyticsPipeline;

fn check(example: &str) {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = manifest.join(format!("../crds/examples/{example}.yaml"));
    let p: AnalyticsPipeline =
        serde_yaml::from_str(&std::fs::read_to_string(&source).unwrap()).unwrap();
    let rendered = render(&p).unwrap();
    let golden = manifest.join(format!("tests/golden/{example}.yaml"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &rendered).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&golden).unwrap_or_default();
    if rendered != want {
        let diff = similar::TextDiff::from_lines(&want, &rendered)
            .unified_diff()
            .context_radius(4)
            .header(&format!("{}", golden.display()), "rendered")
            .to_string();
        panic!(
            "render({example}.yaml) differs from {}:\n{diff}\nIf the change is intended: UPDATE_GOLDEN=1 cargo test -p tributary-operator --test render_golden",
            golden.display()
        );
    }
}

#[test]
fn the_minimal_example_renders_as_reviewed() {
    check("minimal");
}

#[test]
fn the_full_example_renders_as_reviewed() {
    check("full");
}

#[test]
fn the_cluster_example_renders_as_reviewed() {
    check("cluster");
}
