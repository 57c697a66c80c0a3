//! `tributary-operator`: subcommands `run`, `crd`, `render`.
//!
//! `crd` and `render` are built; `run` says it is not built yet and exits
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
    /// Print every object a pipeline would produce, as YAML, without a
    /// cluster.
    Render {
        /// The AnalyticsPipeline manifest (`-`: standard input).
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd { output } => crd(output),
        Command::Run => not_built("run"),
        Command::Render { file } => render(&file),
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

fn render(file: &std::path::Path) -> ExitCode {
    let text = if file == std::path::Path::new("-") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map(|_| text)
    } else {
        std::fs::read_to_string(file)
    };
    let text = match text {
        Ok(text) => text,
        Err(e) => {
            eprintln!(
                "tributary-operator render: cannot read {}: {e}",
                file.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let pipeline: tributary_operator::crd::AnalyticsPipeline = match serde_yaml::from_str(&text) {
        Ok(p) => p,
        Err(e) => {
            eprintln!(
                "tributary-operator render: {} is not an AnalyticsPipeline: {e}",
                file.display()
            );
            return ExitCode::FAILURE;
        }
    };
    match tributary_operator::build::render(&pipeline) {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tributary-operator render: {}: {e}", file.display());
            ExitCode::FAILURE
        }
    }
}

fn not_built(name: &str) -> ExitCode {
    eprintln!(
        "tributary-operator {name}: not built yet (tracked in issue #{}); nothing was done",
        tributary_operator::TRACKING_ISSUE
    );
    ExitCode::from(3)
}
