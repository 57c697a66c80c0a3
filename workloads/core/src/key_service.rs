//! API keys validated by the auth service, with a short cache.
//!
//! Answers are cached: valid keys for `{P}_AUTH_CACHE_SECS` (60), unknown
//! or revoked keys for `{P}_AUTH_NEGATIVE_CACHE_SECS` (10), where `{P}` is
//! `CAPTURE` or `QUERY`. While the auth service cannot be reached, a key that
//! was valid within `{P}_AUTH_STALE_SECS` (600) keeps working; any other key gets 503
//! (never accepted unchecked). While auth answers, a revoked key stops working
//! at most one cache period after revocation. Strings that cannot be a key
//! (not `trb_` + 43 URL-safe characters) are refused without asking auth or
//! filling the cache.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::config::{ConfigError, Env};
use crate::keys::{KeyCheck, KeyError, KeyFuture, KeyValidator};

/// Cache periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    pub valid_for: Duration,
    pub invalid_for: Duration,
    pub stale_for: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    check: KeyCheck,
    at: Instant,
}

impl CachePolicy {
    /// Reads `{prefix}_AUTH_CACHE_SECS` (60), `{prefix}_AUTH_NEGATIVE_CACHE_SECS`
    /// (10) and `{prefix}_AUTH_STALE_SECS` (600).
    pub fn from_env(env: &Env<'_>, prefix: &str) -> Result<Self, ConfigError> {
        let secs = |name: &str, default: u64, max: u64| {
            env.int_in(&format!("{prefix}_AUTH_{name}"), default, 0, max)
                .map(Duration::from_secs)
        };
        Ok(Self {
            valid_for: secs("CACHE_SECS", 60, 86_400)?,
            invalid_for: secs("NEGATIVE_CACHE_SECS", 10, 86_400)?,
            stale_for: secs("STALE_SECS", 600, 7 * 86_400)?,
        })
    }
}

/// The cache itself; pure (the clock is passed in).
#[derive(Debug)]
pub struct KeyCache {
    policy: CachePolicy,
    entries: HashMap<String, Entry>,
}

const MAX_ENTRIES: usize = 100_000;

impl KeyCache {
    pub fn new(policy: CachePolicy) -> Self {
        Self {
            policy,
            entries: HashMap::new(),
        }
    }

    /// A fresh cached answer, if any.
    pub fn fresh(&self, key: &str, now: Instant) -> Option<KeyCheck> {
        let e = self.entries.get(key)?;
        let ttl = match e.check {
            KeyCheck::Valid { .. } => self.policy.valid_for,
            KeyCheck::Unknown => self.policy.invalid_for,
        };
        (now.duration_since(e.at) < ttl).then_some(e.check)
    }

    /// A valid answer still usable while the auth service is down.
    pub fn stale_valid(&self, key: &str, now: Instant) -> Option<KeyCheck> {
        let e = self.entries.get(key)?;
        (matches!(e.check, KeyCheck::Valid { .. })
            && now.duration_since(e.at) < self.policy.stale_for)
            .then_some(e.check)
    }

    pub fn store(&mut self, key: &str, check: KeyCheck, now: Instant) {
        if self.entries.len() >= MAX_ENTRIES {
            // Unknown keys go first; valid ones are what an outage relies on.
            let keep = self.policy.stale_for.max(self.policy.valid_for);
            self.entries.retain(|_, e| {
                matches!(e.check, KeyCheck::Valid { .. }) && now.duration_since(e.at) < keep
            });
            if self.entries.len() >= MAX_ENTRIES {
                self.entries.clear();
            }
        }
        self.entries
            .insert(key.to_owned(), Entry { check, at: now });
    }
}

/// Whether `key` has the shape of a key the auth service issues.
pub fn well_formed(key: &str) -> bool {
    key.len() == 47
        && key.starts_with("trb_")
        && key[4..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Why the auth service gave no answer.
enum AskError {
    /// Unreachable or failing (5xx): recently valid keys may be used.
    Unavailable(String),
    /// An answer that makes no sense: nothing is assumed.
    Unexpected(String),
}

/// Validates keys with `POST {auth}/api/keys/validate` for one scope.
pub struct AuthServiceKeys {
    url: String,
    scope: &'static str,
    http: reqwest::Client,
    cache: Mutex<KeyCache>,
}

impl AuthServiceKeys {
    pub fn new(auth_url: &str, scope: &'static str, policy: CachePolicy) -> Result<Self, KeyError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .map_err(|e| KeyError(format!("cannot create the auth client: {e}")))?;
        Ok(Self {
            url: format!("{}/api/keys/validate", auth_url.trim_end_matches('/')),
            scope,
            http,
            cache: Mutex::new(KeyCache::new(policy)),
        })
    }

    async fn ask(&self, key: &str) -> Result<KeyCheck, AskError> {
        let response = self
            .http
            .post(&self.url)
            .json(&json!({"api_key": key, "scope": self.scope}))
            .send()
            .await
            .map_err(|e| AskError::Unavailable(format!("auth service unreachable: {e}")))?;
        let status = response.status();
        // A 429 is auth shedding load (a flood of unknown keys): the same
        // as an outage for this key, so recently valid keys keep working.
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(AskError::Unavailable(format!(
                "auth service answered {status}"
            )));
        }
        if !status.is_success() {
            return Err(AskError::Unexpected(format!(
                "auth service answered {status}"
            )));
        }
        let body: Value = response
            .json()
            .await
            .map_err(|e| AskError::Unexpected(format!("auth service answer unreadable: {e}")))?;
        match (body["valid"].as_bool(), body["project_id"].as_u64()) {
            (Some(true), Some(project_id)) => Ok(KeyCheck::Valid { project_id }),
            (Some(false), _) => Ok(KeyCheck::Unknown),
            _ => Err(AskError::Unexpected(
                "auth service answer not understood".into(),
            )),
        }
    }
}

/// What clients are told; the detail goes to the log only.
const UNAVAILABLE: &str = "API key validation is unavailable; retry shortly";

impl KeyValidator for AuthServiceKeys {
    fn check<'a>(&'a self, key: &'a str) -> KeyFuture<'a> {
        Box::pin(async move {
            if !well_formed(key) {
                return Ok(KeyCheck::Unknown);
            }
            let now = Instant::now();
            if let Some(hit) = self.cache.lock().ok().and_then(|c| c.fresh(key, now)) {
                return Ok(hit);
            }
            match self.ask(key).await {
                Ok(check) => {
                    if let Ok(mut c) = self.cache.lock() {
                        c.store(key, check, Instant::now());
                    }
                    Ok(check)
                }
                Err(AskError::Unavailable(detail)) => {
                    match self.cache.lock().ok().and_then(|c| c.stale_valid(key, now)) {
                        Some(check) => {
                            tracing::warn!(error = %detail, "auth service unavailable; using a recently validated key");
                            Ok(check)
                        }
                        None => {
                            tracing::warn!(error = %detail, "auth service unavailable; key refused");
                            Err(KeyError(UNAVAILABLE.into()))
                        }
                    }
                }
                Err(AskError::Unexpected(detail)) => {
                    tracing::error!(error = %detail, "unexpected answer from the auth service");
                    Err(KeyError(UNAVAILABLE.into()))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CachePolicy {
        CachePolicy {
            valid_for: Duration::from_secs(60),
            invalid_for: Duration::from_secs(10),
            stale_for: Duration::from_secs(600),
        }
    }

    #[test]
    fn valid_and_invalid_answers_expire_at_their_own_pace() {
        let t0 = Instant::now();
        let mut c = KeyCache::new(policy());
        c.store("good", KeyCheck::Valid { project_id: 4 }, t0);
        c.store("bad", KeyCheck::Unknown, t0);
        assert_eq!(
            c.fresh("good", t0 + Duration::from_secs(59)),
            Some(KeyCheck::Valid { project_id: 4 })
        );
        assert_eq!(c.fresh("good", t0 + Duration::from_secs(60)), None);
        assert_eq!(
            c.fresh("bad", t0 + Duration::from_secs(9)),
            Some(KeyCheck::Unknown)
        );
        assert_eq!(c.fresh("bad", t0 + Duration::from_secs(10)), None);
        assert_eq!(c.fresh("never", t0), None);
    }

    #[test]
    fn only_key_shaped_strings_are_looked_up() {
        assert!(well_formed(&format!("trb_{}", "a".repeat(43))));
        assert!(well_formed(&format!("trb_ab-_{}", "Z".repeat(39))));
        assert!(!well_formed("trb_short"));
        assert!(!well_formed(&format!("xxx_{}", "a".repeat(43))));
        assert!(!well_formed(&format!("trb_{}é", "a".repeat(41))));
        assert!(!well_formed(&"x".repeat(10_000)));
    }

    #[test]
    fn a_full_cache_drops_unknown_keys_before_valid_ones() {
        let t0 = Instant::now();
        let mut c = KeyCache::new(policy());
        c.store("good", KeyCheck::Valid { project_id: 1 }, t0);
        for i in 0..MAX_ENTRIES {
            c.store(&format!("junk{i}"), KeyCheck::Unknown, t0);
        }
        assert!(
            c.stale_valid("good", t0).is_some(),
            "a flood of unknown keys evicted a valid one"
        );
        assert!(c.entries.len() <= MAX_ENTRIES);
    }

    #[test]
    fn only_recently_valid_keys_survive_an_outage() {
        let t0 = Instant::now();
        let mut c = KeyCache::new(policy());
        c.store("good", KeyCheck::Valid { project_id: 4 }, t0);
        c.store("bad", KeyCheck::Unknown, t0);
        assert!(
            c.stale_valid("good", t0 + Duration::from_secs(300))
                .is_some()
        );
        assert!(
            c.stale_valid("good", t0 + Duration::from_secs(600))
                .is_none()
        );
        assert!(c.stale_valid("bad", t0).is_none());
        assert!(c.stale_valid("never", t0).is_none());
    }

    /// Auth answering 429 (its per-address limit, met by a flood of
    /// unknown keys through this pod) is load shedding: a key validated
    /// before keeps working, a new one gets "retry shortly". Before, a
    /// 429 refused every uncached key as an unexpected answer.
    #[tokio::test]
    async fn an_auth_shedding_load_does_not_refuse_recently_valid_keys() {
        let app = axum::Router::new().route(
            "/api/keys/validate",
            axum::routing::post(|| async { axum::http::StatusCode::TOO_MANY_REQUESTS }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let keys = AuthServiceKeys::new(&format!("http://{addr}"), "capture", policy()).unwrap();
        let known = format!("trb_{}", "k".repeat(43));
        let new = format!("trb_{}", "n".repeat(43));
        let long_ago = Instant::now() - Duration::from_secs(120);
        keys.cache
            .lock()
            .unwrap()
            .store(&known, KeyCheck::Valid { project_id: 7 }, long_ago);
        assert_eq!(
            keys.check(&known).await.unwrap(),
            KeyCheck::Valid { project_id: 7 }
        );
        let refused = keys.check(&new).await.unwrap_err();
        assert_eq!(refused.0, UNAVAILABLE);
        server.abort();
    }
}
