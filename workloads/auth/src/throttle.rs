//! Failed-login throttling, per account and per client address. Pure: the
//! clock is passed in.
//!
//! After `max_failures` failures within `window`, further attempts for that
//! account or address are refused (429) until the window since the last
//! failure has passed. An attempt is counted as a failure *before* the
//! password is checked, so parallel guesses cannot all slip past the limit;
//! a success clears the account's record and takes the attempt back.

use std::collections::HashMap;
use std::time::{Duration, Instant};

const MAX_RECORDS: usize = 100_000;

#[derive(Debug, Clone)]
struct Record {
    failures: u32,
    last: Instant,
}

#[derive(Debug)]
pub struct LoginThrottle {
    max_failures: u32,
    window: Duration,
    records: HashMap<String, Record>,
}

impl LoginThrottle {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            records: HashMap::new(),
        }
    }

    fn key_blocked(&self, key: &str, now: Instant) -> Option<Duration> {
        let r = self.records.get(key)?;
        let until = r.last + self.window;
        (r.failures >= self.max_failures && now < until).then(|| until - now)
    }

    /// How long the caller must wait, if it must.
    pub fn blocked(&self, account: &str, address: &str, now: Instant) -> Option<Duration> {
        let a = self.key_blocked(&format!("account:{account}"), now);
        let b = self.key_blocked(&format!("address:{address}"), now);
        a.max(b)
    }

    pub fn record_failure(&mut self, account: &str, address: &str, now: Instant) {
        let window = self.window;
        for key in [format!("account:{account}"), format!("address:{address}")] {
            let r = self.records.entry(key).or_insert(Record {
                failures: 0,
                last: now,
            });
            if now.duration_since(r.last) > window {
                r.failures = 0;
            }
            r.failures += 1;
            r.last = now;
        }
        // Keep the map bounded: forget records older than the window, and
        // under a flood of distinct accounts start afresh.
        if self.records.len() > MAX_RECORDS {
            self.records
                .retain(|_, r| now.duration_since(r.last) <= window);
            if self.records.len() > MAX_RECORDS {
                self.records.clear();
            }
        }
    }

    /// A login succeeded: the account's record is cleared and the attempt
    /// counted against the address (see `record_failure`, called before the
    /// password was checked) is taken back.
    pub fn record_success(&mut self, account: &str, address: &str) {
        self.records.remove(&format!("account:{account}"));
        if let Some(r) = self.records.get_mut(&format!("address:{address}")) {
            r.failures = r.failures.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_max_failures_and_releases_after_the_window() {
        let t0 = Instant::now();
        let mut t = LoginThrottle::new(3, Duration::from_secs(60));
        for i in 0..3 {
            assert_eq!(t.blocked("a@x", "1.2.3.4", t0), None, "attempt {i}");
            t.record_failure("a@x", "1.2.3.4", t0);
        }
        assert!(
            t.blocked("a@x", "9.9.9.9", t0).is_some(),
            "account blocked from any address"
        );
        assert!(
            t.blocked("b@x", "1.2.3.4", t0).is_some(),
            "address blocked for any account"
        );
        assert_eq!(t.blocked("b@x", "9.9.9.9", t0), None);
        assert_eq!(
            t.blocked("a@x", "9.9.9.9", t0 + Duration::from_secs(61)),
            None
        );
    }

    #[test]
    fn success_clears_the_account() {
        let t0 = Instant::now();
        let mut t = LoginThrottle::new(2, Duration::from_secs(60));
        t.record_failure("a@x", "1.1.1.1", t0);
        t.record_success("a@x", "1.1.1.1");
        t.record_failure("a@x", "2.2.2.2", t0);
        assert_eq!(t.blocked("a@x", "3.3.3.3", t0), None);
    }

    #[test]
    fn old_failures_do_not_accumulate() {
        let t0 = Instant::now();
        let mut t = LoginThrottle::new(2, Duration::from_secs(10));
        t.record_failure("a@x", "1.1.1.1", t0);
        t.record_failure("a@x", "1.1.1.1", t0 + Duration::from_secs(30));
        assert_eq!(
            t.blocked("a@x", "1.1.1.1", t0 + Duration::from_secs(30)),
            None
        );
    }
}
