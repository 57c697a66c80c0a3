//! Tributary consumer: Kafka `events` to ClickHouse in batches, with a dead-letter queue.
//!
//! Not built yet: this crate is a placeholder in the fixed workspace layout.
//! The work is tracked in issue #4; until it lands, `tributary consumer` says so
//! and exits non-zero.

/// The issue that tracks this workload.
pub const TRACKING_ISSUE: u32 = 4;
