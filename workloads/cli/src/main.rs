//! `tributary`: one binary, one subcommand per workload.
//!
//! The operator's Deployments all run this binary and differ only by their
//! arguments. Configuration comes from the environment (see docs/configuration.md).
//! Exit status: 0 after a clean shutdown, 1 when the workload failed, 78
//! when the configuration is invalid (the message names the variable).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tributary_cli::{dev, migrate};
use tributary_core::config::{Env, ProcessEnv};
use tributary_core::telemetry::{self, LogConfig};

// mimalloc: measurably faster than glibc malloc for capture's many small
// JSON allocations (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status for invalid configuration (EX_CONFIG).
const BAD_CONFIG: u8 = 78;

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
    /// Inspect, replay and report the dead-letter queue.
    #[command(subcommand)]
    Dlq(tributary_cli::dlq::DlqCommand),
    /// Run the whole pipeline locally against the local stack.
    Dev(DevArgs),
}

#[derive(Debug, clap::Args)]
struct DevArgs {
    /// Once up, make a user, project and keys through auth, send a synthetic
    /// shop's week through capture, and print a trend and a funnel checked
    /// against what was sent.
    #[arg(long)]
    demo: bool,
    /// Users in the demo's shop.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    demo_users: u64,
    /// Seed of the demo's shop (the same seed, the same shop).
    #[arg(long, default_value_t = 1)]
    demo_seed: u64,
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Self::Capture => "capture",
            Self::Consumer => "consumer",
            Self::Query => "query",
            Self::Auth => "auth",
            Self::Migrate => "migrate",
            Self::Dlq(_) => "dlq",
            Self::Dev(_) => "dev",
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let name = cli.command.name();
    // dev fills in what the environment leaves unset (see dev::env).
    let dev_env = dev::env::DevEnv::new(&ProcessEnv, random_secret());
    let env = match cli.command {
        Command::Dev(_) => Env::new(&dev_env),
        _ => Env::new(&ProcessEnv),
    };
    let logs = match LogConfig::from_env(&env) {
        Ok(c) => c,
        Err(e) => return config_error(name, &e),
    };
    // The stdout of dev and dlq is for people (a banner, the demo, tables);
    // their logs go to stderr.
    let installed = match cli.command {
        Command::Dev(_) | Command::Dlq(_) => {
            telemetry::init_with_writer(name, &logs, std::io::stderr)
        }
        _ => telemetry::init(name, &logs),
    };
    if let Err(e) = installed {
        eprintln!("tributary {name}: {e}");
        return ExitCode::FAILURE;
    }
    match cli.command {
        Command::Capture => {
            let config = match tributary_capture::CaptureConfig::from_env(&env) {
                Ok(c) => c,
                Err(e) => return config_error(name, &e),
            };
            accepted(name);
            run_async(name, |shutdown| async move {
                tributary_capture::run(config, shutdown).await
            })
        }
        Command::Consumer => {
            let config = match tributary_consumer::ConsumerConfig::from_env(&env) {
                Ok(c) => c,
                Err(e) => return config_error(name, &e),
            };
            accepted(name);
            run_async(name, |shutdown| async move {
                tributary_consumer::run(config, shutdown).await
            })
        }
        Command::Auth => {
            let config = match tributary_auth::AuthConfig::from_env(&env) {
                Ok(c) => c,
                Err(e) => return config_error(name, &e),
            };
            accepted(name);
            run_async(name, |shutdown| async move {
                tributary_auth::run(config, shutdown).await
            })
        }
        Command::Migrate => {
            // The consumer writes events, so the ClickHouse schema follows its
            // settings; Postgres migrations run when POSTGRES_DSN is set.
            let settings =
                match tributary_core::clickhouse::ClickHouseSettings::from_env(&env, "CONSUMER") {
                    Ok(c) => c,
                    Err(e) => return config_error(name, &e),
                };
            let postgres = match env.optional_string("POSTGRES_DSN") {
                Ok(dsn) => dsn,
                Err(e) => return config_error(name, &e),
            };
            accepted(name);
            run_async(name, |_shutdown| async move {
                for line in migrate::migrate(&settings, postgres.as_deref()).await? {
                    println!("{line}");
                }
                Ok::<(), migrate::MigrateError>(())
            })
        }
        Command::Query => {
            let config = match tributary_query::QueryConfig::from_env(&env) {
                Ok(c) => c,
                Err(e) => return config_error(name, &e),
            };
            accepted(name);
            run_async(name, |shutdown| async move {
                tributary_query::run(config, shutdown).await
            })
        }
        Command::Dev(args) => {
            let demo = args.demo.then_some(tributary_cli::demo::dataset::Shape {
                users: usize::try_from(args.demo_users).unwrap_or(usize::MAX),
                days: 7,
                seed: args.demo_seed,
            });
            let settings = match dev::Settings::from_env(&env) {
                Ok(s) => s,
                Err(e) => return config_error(name, &e),
            };
            accepted(name);
            if dev_env.defaulted("JWT_SECRET") {
                eprintln!(
                    "tributary dev: JWT_SECRET not set: using a random one for this run (sessions end with it)"
                );
            }
            run_async(name, |shutdown| dev::run(settings, demo, shutdown))
        }
        Command::Dlq(command) => {
            let settings = match tributary_cli::dlq::DlqSettings::from_env(&env) {
                Ok(s) => s,
                Err(e) => return config_error(name, &e),
            };
            accepted(name);
            run_async(name, |shutdown| async move {
                tokio::select! {
                    done = tributary_cli::dlq::run(command, &settings) => done,
                    () = shutdown.cancelled() => Err(tributary_cli::dlq::DlqError::Interrupted),
                }
            })
        }
    }
}

/// 64 random hex digits.
fn random_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Logged once a subcommand's settings parsed: from here on a failure is
/// the workload's, not its configuration's (tests of rendered pods wait
/// for this line).
fn accepted(name: &str) {
    tracing::info!(subcommand = name, "settings accepted");
}

fn config_error(name: &str, e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("tributary {name}: invalid configuration: {e}");
    ExitCode::from(BAD_CONFIG)
}

/// Runs a workload on a multi-threaded runtime with SIGTERM/SIGINT wired to
/// its shutdown token.
/// Runs a workload until SIGTERM/SIGINT (see
/// [`tributary_core::shutdown::run_until_signal`]).
fn run_async<F, Fut, E>(name: &str, workload: F) -> ExitCode
where
    F: FnOnce(tokio_util::sync::CancellationToken) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    tributary_core::shutdown::run_until_signal(&format!("tributary {name}"), workload)
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
        for args in [
            &["capture"][..],
            &["consumer"],
            &["query"],
            &["auth"],
            &["migrate"],
            &["dlq", "report"],
            &["dev", "--demo"],
        ] {
            let cli = Cli::try_parse_from(std::iter::once("tributary").chain(args.iter().copied()))
                .unwrap();
            assert_eq!(cli.command.name(), args[0]);
        }
        // A replay says which messages.
        assert!(Cli::try_parse_from(["tributary", "dlq", "replay"]).is_err());
        assert!(Cli::try_parse_from(["tributary", "dlq", "replay", "--offsets", "1:x"]).is_err());
        assert!(Cli::try_parse_from(["tributary", "frobnicate"]).is_err());
    }
}
