//! Rate limits: a token bucket per key (an API key, a client address),
//! refilled at a steady rate up to a burst. Pure: the clock is passed in.
//!
//! The buckets are bounded: past `MAX_KEYS`, full buckets (keys that have
//! not been limited lately) are dropped first, then the longest idle; a
//! flood of new keys costs memory only up to the bound and never lifts the
//! limit of a key that is being limited.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::{ConfigError, Env};

/// Most keys remembered at once.
pub const MAX_KEYS: usize = 100_000;

/// Requests per second and the burst allowed above it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

impl Rate {
    /// `{var}` requests per second (`0` turns the limit off) and
    /// `{var}_BURST` (default twice the rate, at least 1).
    pub fn from_env(
        env: &Env<'_>,
        var: &str,
        per_second: f64,
    ) -> Result<Option<Self>, ConfigError> {
        Self::from_env_with_burst(env, var, per_second, 1.0)
    }

    /// Like [`Rate::from_env`], the default burst at least `min_burst`.
    pub fn from_env_with_burst(
        env: &Env<'_>,
        var: &str,
        per_second: f64,
        min_burst: f64,
    ) -> Result<Option<Self>, ConfigError> {
        let rate: f64 = env.parse(var, per_second)?;
        if !(0.0..=1e9).contains(&rate) || rate.is_nan() {
            return Err(ConfigError::Invalid {
                var: var.to_owned(),
                value: rate.to_string(),
                reason: "must be between 0 (no limit) and 1e9 requests per second".into(),
            });
        }
        if rate == 0.0 {
            return Ok(None);
        }
        let burst_var = format!("{var}_BURST");
        let burst: f64 = env.parse(&burst_var, (rate * 2.0).max(min_burst))?;
        if !(1.0..=1e9).contains(&burst) || burst.is_nan() {
            return Err(ConfigError::Invalid {
                var: burst_var,
                value: burst.to_string(),
                reason: "must be between 1 and 1e9 requests".into(),
            });
        }
        Ok(Some(Self {
            per_second: rate,
            burst,
        }))
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst);
        self.at = now;
    }
}

/// Token buckets by key.
#[derive(Debug)]
pub struct Limiter {
    rate: Rate,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Limiter {
    pub fn new(rate: Rate) -> Self {
        Self {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token of `key`'s bucket at `now`: `Err` with how long until
    /// one is there when the bucket is empty.
    pub fn take(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let rate = self.rate;
        if !buckets.contains_key(key) && buckets.len() >= MAX_KEYS {
            shed(&mut buckets, rate, now);
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: rate.burst,
            at: now,
        });
        bucket.refill(rate, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / rate.per_second,
            ))
        }
    }
}

/// Makes room: full buckets go first (their keys are not being limited),
/// then the half with the most tokens left (the least limited), so the
/// keys being held back are the last to be forgotten.
fn shed(buckets: &mut HashMap<String, Bucket>, rate: Rate, now: Instant) {
    for b in buckets.values_mut() {
        b.refill(rate, now);
    }
    buckets.retain(|_, b| b.tokens < rate.burst);
    if buckets.len() >= MAX_KEYS {
        let mut by_room: Vec<(String, f64)> =
            buckets.iter().map(|(k, b)| (k.clone(), b.tokens)).collect();
        by_room.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (key, _) in by_room.into_iter().take(MAX_KEYS / 2) {
            buckets.remove(&key);
        }
    }
}

/// Whole seconds for a `Retry-After` header (at least 1).
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: f64, burst: f64) -> Limiter {
        Limiter::new(Rate { per_second, burst })
    }

    #[test]
    fn a_burst_then_the_rate_and_a_wait_that_says_when() {
        let t0 = Instant::now();
        let l = limiter(2.0, 3.0);
        for i in 0..3 {
            assert_eq!(l.take("k", t0), Ok(()), "burst {i}");
        }
        let wait = l.take("k", t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert_eq!(retry_after_secs(wait), 1);
        assert_eq!(l.take("k", t0 + Duration::from_millis(500)), Ok(()));
        assert!(l.take("k", t0 + Duration::from_millis(500)).is_err());
        assert_eq!(l.take("other", t0), Ok(()), "keys are apart");
        // Idle long enough, the burst is back (no more).
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(l.take("k", later), Ok(()));
        }
        assert!(l.take("k", later).is_err());
    }

    #[test]
    fn a_flood_of_new_keys_never_lifts_a_limit() {
        let t0 = Instant::now();
        let l = limiter(1.0, 2.0);
        l.take("limited", t0).unwrap();
        l.take("limited", t0).unwrap();
        assert!(l.take("limited", t0).is_err());
        for i in 0..(MAX_KEYS + 10) {
            let _ = l.take(&format!("flood-{i}"), t0 + Duration::from_millis(10));
        }
        assert!(
            l.take("limited", t0 + Duration::from_millis(20)).is_err(),
            "the limited key is remembered"
        );
        let held = l.buckets.lock().map(|b| b.len()).unwrap_or(0);
        assert!(held <= MAX_KEYS, "{held}");
    }

    #[test]
    fn settings_name_their_variable() {
        let none: [(&str, &str); 0] = [];
        let r = Rate::from_env(&Env::new(&none), "CAPTURE_RATE_LIMIT_PER_KEY", 100.0)
            .unwrap()
            .unwrap();
        assert_eq!((r.per_second, r.burst), (100.0, 200.0));
        let off = [("CAPTURE_RATE_LIMIT_PER_KEY", "0")];
        assert_eq!(
            Rate::from_env(&Env::new(&off), "CAPTURE_RATE_LIMIT_PER_KEY", 100.0).unwrap(),
            None
        );
        for (var, value) in [
            ("CAPTURE_RATE_LIMIT_PER_KEY", "-1"),
            ("CAPTURE_RATE_LIMIT_PER_KEY", "many"),
            ("CAPTURE_RATE_LIMIT_PER_KEY_BURST", "0.5"),
        ] {
            let e = Rate::from_env(
                &Env::new(&[(var, value)]),
                "CAPTURE_RATE_LIMIT_PER_KEY",
                100.0,
            )
            .unwrap_err();
            assert_eq!(e.var(), var);
        }
    }
}
