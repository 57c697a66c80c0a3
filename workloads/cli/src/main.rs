//! `tributary`: one binary, one subcommand per workload.
//!
//! The operator's Deployments all run this binary and differ only by their
//! arguments. Subcommands whose workload is not built yet say so on stderr and
//! exit with status 3 (they never pretend to run).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit status of a subcommand whose workload is not built yet.
const NOT_BUILT: u8 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "tributary",
    version,
    about = "Tributary: self-hosted product analytics on Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// HTTP capture API (PostHog-compatible) producing to Kafka.
    Capture,
    /// Kafka consumer writing events to ClickHouse.
    Consumer,
    /// Query API: trends, funnels, retention.
    Query,
    /// Auth API: users, projects, API keys.
    Auth,
    /// Apply ClickHouse and Postgres migrations.
    Migrate,
    /// Inspect and replay the dead-letter queue.
    Dlq,
    /// Run the whole pipeline locally against the local stack.
    Dev,
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Self::Capture => "capture",
            Self::Consumer => "consumer",
            Self::Query => "query",
            Self::Auth => "auth",
            Self::Migrate => "migrate",
            Self::Dlq => "dlq",
            Self::Dev => "dev",
        }
    }

    /// The issue tracking a subcommand that is not built yet.
    fn tracking_issue(&self) -> u32 {
        match self {
            Self::Capture => tributary_capture::TRACKING_ISSUE,
            Self::Consumer | Self::Migrate => tributary_consumer::TRACKING_ISSUE,
            Self::Query => tributary_query::TRACKING_ISSUE,
            Self::Auth => tributary_auth::TRACKING_ISSUE,
            Self::Dlq | Self::Dev => 10,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    eprintln!(
        "tributary {}: not built yet (tracked in issue #{}); nothing was started",
        cli.command.name(),
        cli.command.tracking_issue()
    );
    ExitCode::from(NOT_BUILT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_subcommand_parses() {
        for name in [
            "capture", "consumer", "query", "auth", "migrate", "dlq", "dev",
        ] {
            let cli = Cli::try_parse_from(["tributary", name]).unwrap();
            assert_eq!(cli.command.name(), name);
        }
        assert!(Cli::try_parse_from(["tributary", "frobnicate"]).is_err());
    }
}
