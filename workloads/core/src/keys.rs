//! API key → project. Validation sits behind [`KeyValidator`]: a static list
//! from configuration (`CAPTURE_API_KEYS`, `QUERY_API_KEYS`) or the auth
//! service ([`crate::key_service`]).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use crate::config::{ConfigError, Env};

/// What a validator says about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCheck {
    /// A key of this project, with the scope the validator asked for.
    Valid { project_id: u64 },
    /// Not a key we know (or revoked, or of another scope).
    Unknown,
}

/// The validator could not answer (e.g. the auth service is down and the key
/// is not cached). Requests get 503: an unknown key is never let through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

pub type KeyFuture<'a> = Pin<Box<dyn Future<Output = Result<KeyCheck, KeyError>> + Send + 'a>>;

/// Turns an API key into its project.
pub trait KeyValidator: Send + Sync + 'static {
    fn check<'a>(&'a self, key: &'a str) -> KeyFuture<'a>;
}

/// Keys from configuration (`CAPTURE_API_KEYS`, `QUERY_API_KEYS`).
#[derive(Debug, Clone, Default)]
pub struct StaticKeys(HashMap<String, u64>);

impl StaticKeys {
    pub fn new(keys: HashMap<String, u64>) -> Self {
        Self(keys)
    }
}

impl KeyValidator for StaticKeys {
    fn check<'a>(&'a self, key: &'a str) -> KeyFuture<'a> {
        let answer = match self.0.get(key) {
            Some(&project_id) => KeyCheck::Valid { project_id },
            None => KeyCheck::Unknown,
        };
        Box::pin(std::future::ready(Ok(answer)))
    }
}

/// Why a request's key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyRefusal {
    #[error("API key required: send it in the X-API-Key header")]
    Missing,
    #[error("invalid API key")]
    Invalid,
}

/// The project of a request, by the rules of `CAPTURE_REQUIRE_API_KEY` and
/// `QUERY_REQUIRE_API_KEY`:
/// with keys required, a missing or unknown key is refused; otherwise a valid
/// key still picks its project and anything else goes to the default project.
pub fn project_for(
    require: bool,
    key: Option<KeyCheck>,
    default_project: u64,
) -> Result<u64, KeyRefusal> {
    match (key, require) {
        (Some(KeyCheck::Valid { project_id }), _) => Ok(project_id),
        (None, true) => Err(KeyRefusal::Missing),
        (Some(KeyCheck::Unknown), true) => Err(KeyRefusal::Invalid),
        (_, false) => Ok(default_project),
    }
}

/// Parses `key=project_id,key=project_id` from `var`. Keys are secrets:
/// errors name the position, never the key.
pub fn parse_api_keys(raw: &str, var: &str) -> Result<HashMap<String, u64>, ConfigError> {
    let invalid = |reason: String| ConfigError::InvalidSecret {
        var: var.into(),
        reason,
    };
    let mut keys = HashMap::new();
    for (i, item) in raw.split(',').map(str::trim).enumerate() {
        if item.is_empty() {
            continue;
        }
        let (key, project) = item
            .rsplit_once('=')
            .ok_or_else(|| invalid(format!("entry {} is not key=project_id", i + 1)))?;
        let project: u64 = project
            .trim()
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| {
                invalid(format!(
                    "entry {}: project id must be a positive integer",
                    i + 1
                ))
            })?;
        if key.trim().is_empty() {
            return Err(invalid(format!("entry {}: empty key", i + 1)));
        }
        keys.insert(key.trim().to_owned(), project);
    }
    Ok(keys)
}

/// Reads an optional key list such as `CAPTURE_API_KEYS` (empty means none).
pub fn api_keys_from_env(env: &Env<'_>, var: &str) -> Result<HashMap<String, u64>, ConfigError> {
    let raw = env.string(var, "").or_else(|e| match e {
        ConfigError::Empty { .. } => Ok(String::new()),
        other => Err(other),
    })?;
    parse_api_keys(&raw, var)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn static_keys_resolve_their_project() {
        let keys = StaticKeys::new(HashMap::from([("phc_a".to_owned(), 3)]));
        assert_eq!(
            keys.check("phc_a").await.unwrap(),
            KeyCheck::Valid { project_id: 3 }
        );
        assert_eq!(keys.check("phc_b").await.unwrap(), KeyCheck::Unknown);
    }

    #[test]
    fn project_rules() {
        let valid = Some(KeyCheck::Valid { project_id: 9 });
        let unknown = Some(KeyCheck::Unknown);
        assert_eq!(project_for(true, valid, 1), Ok(9));
        assert_eq!(project_for(false, valid, 1), Ok(9));
        assert_eq!(project_for(true, None, 1), Err(KeyRefusal::Missing));
        assert_eq!(project_for(true, unknown, 1), Err(KeyRefusal::Invalid));
        assert_eq!(project_for(false, None, 1), Ok(1));
        assert_eq!(project_for(false, unknown, 1), Ok(1));
    }
}
