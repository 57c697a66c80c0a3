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
