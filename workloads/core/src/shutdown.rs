//! Graceful shutdown on SIGTERM (Kubernetes) and SIGINT (Ctrl-C).
//!
//! [`install`] registers the handlers before it returns, so a signal that
//! arrives while the service is still starting is not lost, and hands back a
//! [`CancellationToken`] that every long-running task watches. Services drain
//! (flush batches, commit offsets, finish in-flight requests) once it fires.

use std::io;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// Which signal asked the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Terminate,
    Interrupt,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Self::Terminate => "SIGTERM",
            Self::Interrupt => "SIGINT",
        }
    }
}

/// Registers SIGTERM and SIGINT handlers and returns a token cancelled when
/// either arrives. Must be called inside a Tokio runtime.
pub fn install() -> io::Result<CancellationToken> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let token = CancellationToken::new();
    let fired = token.clone();
    tokio::spawn(async move {
        let which = tokio::select! {
            _ = term.recv() => Signal::Terminate,
            _ = int.recv() => Signal::Interrupt,
        };
        tracing::info!(signal = which.name(), "shutdown requested, draining");
        fired.cancel();
    });
    Ok(token)
}

/// Runs `program` to completion on a multi-threaded runtime, handing it a
/// token cancelled on SIGTERM or SIGINT, and turns the outcome into the
/// process's exit code (failures are logged and printed as
/// `{label}: {error}`). Shared by the `tributary` and `tributary-operator`
/// binaries.
pub fn run_until_signal<F, Fut, E>(label: &str, program: F) -> std::process::ExitCode
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    use std::process::ExitCode;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{label}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let shutdown = match install() {
            Ok(token) => token,
            Err(e) => {
                tracing::error!(error = %e, "cannot install signal handlers");
                eprintln!("{label}: cannot install signal handlers: {e}");
                return ExitCode::FAILURE;
            }
        };
        match program(shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "{label} failed");
                eprintln!("{label}: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Sends a real SIGTERM to this test process; the handler installed by
    /// `install` catches it, so the process survives and the token fires.
    #[tokio::test]
    async fn sigterm_cancels_the_token() {
        let token = install().unwrap();
        assert!(!token.is_cancelled());
        let status = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(10), token.cancelled())
            .await
            .expect("token not cancelled within 10 s of SIGTERM");
    }
}
