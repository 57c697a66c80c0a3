//! Latency percentiles and the seeds' SLO verdicts. Pure.

use std::time::Duration;

/// One load step (or query kind) summed up.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Requests (capture) or queries answered per second.
    pub rate: f64,
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    /// Failed requests over all requests, 0..=1.
    pub error_rate: f64,
}

/// The `q`-quantile (0..=1) of sorted `values` (nearest rank).
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Summary {
    /// `latencies` of the successful requests, `failed` others, `units`
    /// done over `elapsed`.
    pub fn of(mut latencies: Vec<Duration>, failed: u64, units: u64, elapsed: Duration) -> Self {
        latencies.sort();
        let total = latencies.len() as u64 + failed;
        Self {
            rate: units as f64 / elapsed.as_secs_f64().max(1e-9),
            p50: quantile(&latencies, 0.50),
            p95: quantile(&latencies, 0.95),
            p99: quantile(&latencies, 0.99),
            error_rate: if total == 0 {
                0.0
            } else {
                failed as f64 / total as f64
            },
        }
    }
}

/// Milliseconds, for tables.
pub fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// "holds" or "FAILS", with the measured value.
pub fn verdict(holds: bool, measured: &str) -> String {
    if holds {
        format!("holds ({measured})")
    } else {
        format!("FAILS ({measured})")
    }
}

/// One capture step: its target events/s, what the answered requests
/// measured, and the requests the generator could not send on time
/// (every sender busy).
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub target: u64,
    pub summary: Summary,
    pub shed: u64,
}

/// The highest step rate up to which capture met its SLO (p99 under
/// `p99_limit`, under 1% errors, nothing shed) at every step, if the first
/// step did.
pub fn capture_capacity(steps: &[Step], p99_limit: Duration) -> Option<u64> {
    let mut sorted: Vec<&Step> = steps.iter().collect();
    sorted.sort_by_key(|s| s.target);
    sorted
        .into_iter()
        .take_while(|s| s.summary.p99 < p99_limit && s.summary.error_rate < 0.01 && s.shed == 0)
        .map(|s| s.target)
        .last()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms_(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(ms_).collect();
        assert_eq!(quantile(&v, 0.5), ms_(50));
        assert_eq!(quantile(&v, 0.95), ms_(95));
        assert_eq!(quantile(&v, 0.99), ms_(99));
        assert_eq!(quantile(&v, 1.0), ms_(100));
        assert_eq!(quantile(&[ms_(7)], 0.99), ms_(7));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn a_summary_counts_failures_and_rate() {
        let s = Summary::of(
            vec![ms_(30), ms_(10), ms_(20)],
            1,
            40,
            Duration::from_secs(2),
        );
        assert_eq!(s.rate, 20.0);
        assert_eq!(s.p50, ms_(20));
        assert_eq!(s.p99, ms_(30));
        assert_eq!(s.error_rate, 0.25);
    }

    #[test]
    fn capacity_is_the_highest_step_within_the_slo() {
        let step = |p99: u64, errors: f64| Summary {
            rate: 0.0,
            p50: ms_(1),
            p95: ms_(1),
            p99: ms_(p99),
            error_rate: errors,
        };
        let at = |target, summary, shed| Step {
            target,
            summary,
            shed,
        };
        let steps = [
            at(100, step(20, 0.0), 0),
            at(500, step(150, 0.0), 0),
            at(1000, step(90, 0.05), 0),
            at(1500, step(90, 0.0), 3),
            at(2000, step(400, 0.0), 0),
        ];
        assert_eq!(capture_capacity(&steps, ms_(200)), Some(500));
        assert_eq!(capture_capacity(&steps[2..], ms_(200)), None);
        // A slow first step means no capacity, whatever holds above it.
        let late = [at(100, step(300, 0.0), 0), at(500, step(10, 0.0), 0)];
        assert_eq!(capture_capacity(&late, ms_(200)), None);
        assert!(verdict(false, "x").starts_with("FAILS"));
    }
}
