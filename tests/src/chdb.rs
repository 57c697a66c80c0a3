//! Runs SQL on chdb (current ClickHouse, in-process in Python) through
//! `tests/chdb/run_sql.py`, with the stack's Python.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::repo_root;

/// What one statement did on chdb.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Ran; rows of the result (JSONCompact `data`), if it had one.
    Ok(Option<Vec<Vec<serde_json::Value>>>),
    Failed(String),
}

/// Runs `statements` in order in one chdb session.
pub fn run(python: &Path, statements: &[String]) -> Vec<Outcome> {
    let mut child = Command::new(python)
        .arg(repo_root().join("tests/chdb/run_sql.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    let input = serde_json::to_vec(statements).unwrap_or_default();
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&input)
            .unwrap_or_else(|e| panic!("writing to chdb runner: {e}"));
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("chdb runner: {e}"));
    assert!(
        out.status.success(),
        "chdb runner failed (is chdb installed? infrastructure/local-stack.sh up installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("chdb runner output: {e}"));
    parsed
        .into_iter()
        .map(|r| {
            if r["ok"].as_bool() == Some(true) {
                Outcome::Ok(r["data"].as_array().map(|rows| {
                    rows.iter()
                        .map(|row| row.as_array().cloned().unwrap_or_default())
                        .collect()
                }))
            } else {
                Outcome::Failed(r["error"].as_str().unwrap_or("unknown error").to_owned())
            }
        })
        .collect()
}
