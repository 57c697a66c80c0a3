//! Tributary query: trends, funnels and retention over ClickHouse, with a
//! Redis cache and async jobs.
//!
//! Pure parts: [`request`] (bodies and field errors), [`range`] (dates,
//! timezones, buckets), [`sql`] (literals, properties, filters), [`trend`],
//! [`funnel`], [`funnel_match`] and [`retention`] (SQL generation and
//! answers). I/O: [`warehouse`] (ClickHouse), [`cache`] (Redis), [`api`].

pub mod funnel;
pub mod funnel_match;
pub mod range;
pub mod request;
pub mod retention;
pub mod sql;
pub mod trend;
pub mod warehouse;

/// The issue that tracks this workload.
pub const TRACKING_ISSUE: u32 = 6;
