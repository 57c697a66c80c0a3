//! `tributary-operator`: subcommands `run`, `crd`, `render`.
//!
//! Exit codes: 0 done, 1 failed, 78 bad settings (`run`).

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
    /// Run the controller against the cluster (settings from the
    /// environment: OPERATOR_WATCH_NAMESPACES, OPERATOR_METRICS_PORT,
    /// OPERATOR_LEADER_ELECTION, OPERATOR_LEASE_NAME,
    /// OPERATOR_LEASE_DURATION_MS, OPERATOR_KAFKA_TIMEOUT_MS,
    /// OPERATOR_CLUSTER_DOMAIN, POD_NAMESPACE, POD_NAME, LOG_LEVEL,
    /// LOG_FORMAT).
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
        Command::Run => run(),
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

/// Bad settings: EX_CONFIG, as the workloads use.
const BAD_CONFIG: u8 = 78;

fn run() -> ExitCode {
    use tributary_core::config::{Env, ProcessEnv};
    use tributary_core::telemetry::{self, LogConfig};
    let env = Env::new(&ProcessEnv);
    let settings = LogConfig::from_env(&env).and_then(|logs| {
        tributary_operator::run::RunConfig::from_env(&env).map(|config| (logs, config))
    });
    let (logs, config) = match settings {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tributary-operator run: {e}");
            return ExitCode::from(BAD_CONFIG);
        }
    };
    if let Err(e) = telemetry::init("tributary-operator", &logs) {
        eprintln!("tributary-operator run: {e}");
        return ExitCode::FAILURE;
    }
    tributary_core::shutdown::run_until_signal("tributary-operator run", |shutdown| {
        tributary_operator::run::run(config, shutdown)
    })
}
