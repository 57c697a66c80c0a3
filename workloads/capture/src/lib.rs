//! Tributary capture: HTTP ingestion (PostHog-compatible) into the Kafka `events` topic.
//!
//! Not built yet: this crate is a placeholder in the fixed workspace layout.
//! The work is tracked in issue #3; until it lands, `tributary capture` says so
//! and exits non-zero.

/// The issue that tracks this workload.
pub const TRACKING_ISSUE: u32 = 3;
