//! What the `tributary` binary does beyond starting one workload: `dev`
//! (the whole pipeline in one process), the demo that `dev --demo` runs,
//! `dlq` (the dead-letter tool) and `migrate`. A library so the tests can use the same pieces.

pub mod demo;
pub mod dev;
pub mod dlq;
pub mod migrate;
