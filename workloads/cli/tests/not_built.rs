//! Runs the real binary: subcommands that are not built yet must say so and
//! exit non-zero rather than pretend to work.

use std::process::Command;

#[test]
fn unbuilt_subcommands_fail_loudly() {
    for name in [
        "capture", "consumer", "query", "auth", "migrate", "dlq", "dev",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_tributary"))
            .arg(name)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "tributary {name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("not built yet"),
            "tributary {name}: {stderr}"
        );
        assert!(stderr.contains(&format!("tributary {name}")), "{stderr}");
    }
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .arg("frobnicate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
