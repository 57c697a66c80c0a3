//! What the `tributary` binary does beyond starting one workload: `dev`
//! (the whole pipeline in one process), `migrate`, and the demo that `dev
//! --demo` runs. A library so the tests can use the same pieces.

pub mod demo;
pub mod dev;
pub mod migrate;
