//! `tributary-operator`: subcommands `run`, `crd`, `render`.
//!
//! Not built yet: every subcommand says so and exits with status 3.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "tributary-operator",
    version,
    about = "Tributary Kubernetes operator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the controller against the cluster.
    Run,
    /// Print the AnalyticsPipeline CRD as YAML.
    Crd,
    /// Print every object a pipeline would produce, without a cluster.
    Render,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let name = match cli.command {
        Command::Run => "run",
        Command::Crd => "crd",
        Command::Render => "render",
    };
    eprintln!(
        "tributary-operator {name}: not built yet (tracked in issue #{}); nothing was done",
        tributary_operator::TRACKING_ISSUE
    );
    ExitCode::from(3)
}
