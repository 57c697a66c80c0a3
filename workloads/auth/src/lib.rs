//! Tributary auth: Users, projects and API keys in Postgres.
//!
//! Not built yet: this crate is a placeholder in the fixed workspace layout.
//! The work is tracked in issue #5; until it lands, `tributary auth` says so
//! and exits non-zero.

/// The issue that tracks this workload.
pub const TRACKING_ISSUE: u32 = 5;
