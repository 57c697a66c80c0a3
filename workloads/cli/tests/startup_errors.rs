//! Runs the real binary: bad configuration and unreachable servers stop it
//! with a message that names the variable or the server.

use std::process::Command;

fn tributary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tributary"))
}

#[test]
fn migrate_names_the_unreachable_server() {
    let out = tributary()
        .arg("migrate")
        .env("CONSUMER_CLICKHOUSE_HOST", "127.0.0.1")
        .env("CONSUMER_CLICKHOUSE_PORT", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot reach ClickHouse at http://127.0.0.1:1"),
        "{stderr}"
    );
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    let out = tributary().arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bad_configuration_names_the_variable_and_exits_78() {
    for (command, var, value) in [
        ("capture", "CAPTURE_PORT", "eighty"),
        ("capture", "LOG_FORMAT", "xml"),
        ("capture", "CAPTURE_REQUIRE_API_KEY", "perhaps"),
        ("consumer", "CONSUMER_BATCH_SIZE", "lots"),
        ("auth", "AUTH_PORT", "-1"),
        ("query", "QUERY_TIMEOUT_SECS", "forever"),
        ("query", "QUERY_REQUIRE_API_KEY", "yes please"),
        ("migrate", "CONSUMER_CLICKHOUSE_PORT", "x"),
    ] {
        let out = tributary()
            .arg(command)
            .env(var, value)
            .env("JWT_SECRET", "0123456789abcdef0123456789abcdef")
            .env("POSTGRES_DSN", "postgres://u:pw@127.0.0.1:1/x")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(78), "{command} {var}={value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(var) && stderr.contains(value),
            "{var}: {stderr}"
        );
    }
}

#[test]
fn auth_names_the_unreachable_database_without_its_password() {
    let out = tributary()
        .arg("auth")
        .env("AUTH_PORT", "18999")
        .env("JWT_SECRET", "0123456789abcdef0123456789abcdef")
        .env("POSTGRES_DSN", "postgres://u:hunter2@127.0.0.1:1/x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot reach Postgres at 127.0.0.1:1/x"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "password leaked: {stderr}");
}
