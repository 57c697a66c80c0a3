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

/// Most records each table keeps (accounts, addresses).
const MAX_RECORDS: usize = 100_000;

#[derive(Debug, Clone)]
struct Record {
    failures: u32,
    last: Instant,
}

/// Failures per key (an account or an address), bounded on its own: a
/// flood of new keys in one table never touches the other, and what it
/// evicts are the records that block nothing.
#[derive(Debug, Default)]
struct Table {
    records: HashMap<String, Record>,
}

impl Table {
    fn blocked(&self, key: &str, max: u32, window: Duration, now: Instant) -> Option<Duration> {
        let r = self.records.get(key)?;
        let until = r.last + window;
        (r.failures >= max && now < until).then(|| until - now)
    }

    fn fail(&mut self, key: &str, max: u32, window: Duration, now: Instant) {
        let r = self.records.entry(key.to_owned()).or_insert(Record {
            failures: 0,
            last: now,
        });
        if now.duration_since(r.last) > window {
            r.failures = 0;
        }
        r.failures += 1;
        r.last = now;
        if self.records.len() > MAX_RECORDS {
            self.shed(max, window, now);
        }
    }

    /// Makes room: expired records go first, then those that block
    /// nothing (fewer failures than the limit), then the oldest locks.
    fn shed(&mut self, max: u32, window: Duration, now: Instant) {
        self.records
            .retain(|_, r| now.duration_since(r.last) <= window);
        if self.records.len() > MAX_RECORDS {
            self.records.retain(|_, r| r.failures >= max);
        }
        if self.records.len() > MAX_RECORDS {
            let mut by_age: Vec<(String, Instant)> = self
                .records
                .iter()
                .map(|(k, r)| (k.clone(), r.last))
                .collect();
            by_age.sort_by_key(|(_, last)| *last);
            let excess = self.records.len() - MAX_RECORDS;
            for (key, _) in by_age.into_iter().take(excess) {
                self.records.remove(&key);
            }
        }
    }
}

#[derive(Debug)]
pub struct LoginThrottle {
    max_failures: u32,
    window: Duration,
    accounts: Table,
    addresses: Table,
}

impl LoginThrottle {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            accounts: Table::default(),
            addresses: Table::default(),
        }
    }

    /// How long the caller must wait, if it must.
    pub fn blocked(&self, account: &str, address: &str, now: Instant) -> Option<Duration> {
        let (max, window) = (self.max_failures, self.window);
        let a = self.accounts.blocked(account, max, window, now);
        let b = self.addresses.blocked(address, max, window, now);
        a.max(b)
    }

    pub fn record_failure(&mut self, account: &str, address: &str, now: Instant) {
        let (max, window) = (self.max_failures, self.window);
        self.accounts.fail(account, max, window, now);
        self.addresses.fail(address, max, window, now);
    }

    /// A login succeeded: the account's record is cleared and the attempt
    /// counted against the address (see `record_failure`, called before the
    /// password was checked) is taken back.
    pub fn record_success(&mut self, account: &str, address: &str) {
        self.accounts.records.remove(account);
        if let Some(r) = self.addresses.records.get_mut(address) {
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
    fn a_flood_of_new_addresses_or_accounts_does_not_lift_a_lock() {
        let t0 = Instant::now();
        let mut t = LoginThrottle::new(3, Duration::from_secs(300));
        for _ in 0..3 {
            t.record_failure("victim@x", "1.2.3.4", t0);
        }
        assert!(t.blocked("victim@x", "9.9.9.9", t0).is_some());
        // An attacker rotating (forged) addresses and made-up accounts,
        // each failing once, past the tables' bounds.
        for i in 0..(MAX_RECORDS + 10) {
            let at = t0 + Duration::from_millis(1);
            t.record_failure(&format!("nobody{i}@x"), &format!("address-{i}"), at);
        }
        let now = t0 + Duration::from_secs(1);
        assert!(
            t.blocked("victim@x", "9.9.9.9", now).is_some(),
            "the account stays locked"
        );
        assert!(
            t.blocked("someone@x", "1.2.3.4", now).is_some(),
            "and the address"
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
