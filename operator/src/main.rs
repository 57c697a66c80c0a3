//! `tributary-operator`: subcommands `run`, `crd`, `render`.
//!
//! `crd` is built; `run` and `render` say they are not built yet and exit
//! with status 3.

use std::path::PathBuf;
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
    /// Print the AnalyticsPipeline CRD as YAML (`kubectl apply -f -`).
    Crd {
        /// Write it to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Print every object a pipeline would produce, without a cluster.
    Render,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd { output } => crd(output),
        Command::Run => not_built("run"),
        Command::Render => not_built("render"),
    }
}

fn crd(output: Option<PathBuf>) -> ExitCode {
    let yaml = match tributary_operator::crd_yaml() {
        Ok(yaml) => yaml,
        Err(e) => {
            eprintln!("tributary-operator crd: cannot write the CRD as YAML: {e}");
            return ExitCode::FAILURE;
        }
    };
    match output {
        None => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Some(path) => match std::fs::write(&path, yaml) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!(
                    "tributary-operator crd: cannot write {}: {e}",
                    path.display()
                );
                ExitCode::FAILURE
            }
        },
    }
}

fn not_built(name: &str) -> ExitCode {
    eprintln!(
        "tributary-operator {name}: not built yet (tracked in issue #{}); nothing was done",
        tributary_operator::TRACKING_ISSUE
    );
    ExitCode::from(3)
}
