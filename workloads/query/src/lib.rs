//! Tributary query: Trends, funnels and retention over ClickHouse, with a Redis cache.
//!
//! Not built yet: this crate is a placeholder in the fixed workspace layout.
//! The work is tracked in issue #6; until it lands, `tributary query` says so
//! and exits non-zero.

/// The issue that tracks this workload.
pub const TRACKING_ISSUE: u32 = 6;
