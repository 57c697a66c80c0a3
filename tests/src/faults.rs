//! The fault suite: a steady load of events with client uuids goes through
//! capture while one fault is injected at a time; each scenario reports what
//! was sent, acknowledged, refused, stored and shown, and how long recovery
//! took. The workloads run as their own processes (the `tributary` binary),
//! the servers behind what lets a test break them: a private broker behind
//! a proxy that can hold its replies, a private ClickHouse that can be
//! killed, consumers that can be SIGKILLed, added and removed.
//!
//! `workloads/cli/tests/faults.rs` runs it: a short form in `make test`,
//! the whole (`TRIBUTARY_FAULTS=full`) in `make faults`.

pub mod load;
pub mod report;
pub mod rig;
pub mod scenarios;

/// How long and how hard each scenario runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// Seconds per fault, a few kills: for every CI run.
    Short,
    /// The durations: 60 s outages, ten kills.
    Full,
}

impl Form {
    /// `TRIBUTARY_FAULTS=full` or the short form.
    pub fn from_env() -> Self {
        match std::env::var("TRIBUTARY_FAULTS").as_deref() {
            Ok("full") => Self::Full,
            _ => Self::Short,
        }
    }

    /// How long an outage lasts.
    pub fn outage(self) -> std::time::Duration {
        match self {
            Self::Short => std::time::Duration::from_secs(12),
            Self::Full => std::time::Duration::from_secs(60),
        }
    }

    /// How many times the consumer is killed.
    pub fn kills(self) -> usize {
        match self {
            Self::Short => 3,
            Self::Full => 10,
        }
    }
}
