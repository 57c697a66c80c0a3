//! The stress procedure of seed 001 as two bounded, loopback-only load
//! runs against `tributary dev` ([`capture`], [`query`]); `src/bin/stress.rs`
//! is the command `make stress-capture` and `make stress-query` run.

pub mod capture;
pub mod pipeline;
pub mod query;
pub mod stats;

#[derive(Debug, thiserror::Error)]
pub enum StressError {
    #[error("starting the pipeline: {0}")]
    Start(String),
    #[error("{0}")]
    Setup(String),
}
