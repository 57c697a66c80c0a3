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

/// What becomes of a request without a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyless {
    /// Refused with 401 (the default: `*_REQUIRE_API_KEY=true`).
    Refused,
    /// Taken into this project, one made for keyless traffic
    /// (`*_REQUIRE_API_KEY=false` with `*_KEYLESS_PROJECT_ID`).
    Project(u64),
}

/// The project of a request. A valid key picks its project; an unknown,
/// revoked or wrong-scope key is refused whatever the mode (it never falls
/// back to a project); a request without a key is refused, unless keyless
/// traffic was opted into, when it goes to the project made for it.
pub fn project_for(keyless: Keyless, key: Option<KeyCheck>) -> Result<u64, KeyRefusal> {
    match (key, keyless) {
        (Some(KeyCheck::Valid { project_id }), _) => Ok(project_id),
        (Some(KeyCheck::Unknown), _) => Err(KeyRefusal::Invalid),
        (None, Keyless::Project(project_id)) => Ok(project_id),
        (None, Keyless::Refused) => Err(KeyRefusal::Missing),
    }
}

/// `{prefix}_REQUIRE_API_KEY` (`true`) and `{prefix}_KEYLESS_PROJECT_ID`:
/// keyless traffic is an explicit opt-in that names the project made for
/// it. The `{prefix}_DEFAULT_PROJECT_ID` of earlier versions, which sent
/// keyless and unknown-key traffic to project 1 (a real tenant's), is
/// refused with what replaces it.
pub fn keyless_from_env(env: &Env<'_>, prefix: &str) -> Result<Keyless, ConfigError> {
    let require_var = format!("{prefix}_REQUIRE_API_KEY");
    let project_var = format!("{prefix}_KEYLESS_PROJECT_ID");
    let old_var = format!("{prefix}_DEFAULT_PROJECT_ID");
    if let Some(old) = env.optional_string(&old_var)? {
        return Err(ConfigError::Invalid {
            var: old_var,
            value: old,
            reason: format!(
                "no longer read: requests without a key are refused; to take them, set \
                 {require_var}=false and {project_var} to a project made for keyless traffic"
            ),
        });
    }
    let require = env.bool(&require_var, true)?;
    let project: Option<u64> = match env.optional_string(&project_var)? {
        None => None,
        Some(raw) => {
            Some(
                raw.parse()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| ConfigError::Invalid {
                        var: project_var.clone(),
                        value: raw.clone(),
                        reason: "expected a project id (a positive integer)".to_owned(),
                    })?,
            )
        }
    };
    match (require, project) {
        (true, None) => Ok(Keyless::Refused),
        (true, Some(p)) => Err(ConfigError::Invalid {
            var: project_var,
            value: p.to_string(),
            reason: format!(
                "set, but {require_var} is true: requests without a key are refused; set {require_var}=false to take them into this project"
            ),
        }),
        (false, Some(p)) => Ok(Keyless::Project(p)),
        (false, None) => Err(ConfigError::Invalid {
            var: require_var,
            value: "false".to_owned(),
            reason: format!(
                "keyless traffic needs {project_var}: the id of a project made for it in auth (it never goes to another project)"
            ),
        }),
    }
}

/// Keys required, and nothing that could check one: refused at start,
/// since every request would be.
pub fn check_validator(
    keyless: Keyless,
    prefix: &str,
    auth_url: Option<&str>,
    static_keys: &HashMap<String, u64>,
) -> Result<(), ConfigError> {
    if keyless == Keyless::Refused && auth_url.is_none() && static_keys.is_empty() {
        return Err(ConfigError::Invalid {
            var: format!("{prefix}_REQUIRE_API_KEY"),
            value: "true".to_owned(),
            reason: format!(
                "keys are required (the default) but nothing can check one: set {prefix}_AUTH_URL \
                 (the auth service) or {prefix}_API_KEYS"
            ),
        });
    }
    Ok(())
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
        for keyless in [Keyless::Refused, Keyless::Project(4)] {
            assert_eq!(project_for(keyless, valid), Ok(9));
            assert_eq!(
                project_for(keyless, unknown),
                Err(KeyRefusal::Invalid),
                "an unknown or revoked key is refused in every mode"
            );
        }
        assert_eq!(
            project_for(Keyless::Refused, None),
            Err(KeyRefusal::Missing)
        );
        assert_eq!(project_for(Keyless::Project(4), None), Ok(4));
    }

    #[test]
    fn keys_are_required_unless_keyless_traffic_names_its_project() {
        let keyless = |vars: &[(&str, &str)]| {
            let owned: HashMap<String, String> = vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            keyless_from_env(&Env::new(&owned), "CAPTURE")
        };
        assert_eq!(keyless(&[]), Ok(Keyless::Refused), "the default");
        assert_eq!(
            keyless(&[
                ("CAPTURE_REQUIRE_API_KEY", "false"),
                ("CAPTURE_KEYLESS_PROJECT_ID", "42")
            ]),
            Ok(Keyless::Project(42))
        );
        for (vars, var) in [
            (
                &[("CAPTURE_REQUIRE_API_KEY", "false")][..],
                "CAPTURE_REQUIRE_API_KEY",
            ),
            (
                &[("CAPTURE_KEYLESS_PROJECT_ID", "42")][..],
                "CAPTURE_KEYLESS_PROJECT_ID",
            ),
            (
                &[
                    ("CAPTURE_REQUIRE_API_KEY", "false"),
                    ("CAPTURE_KEYLESS_PROJECT_ID", "0"),
                ][..],
                "CAPTURE_KEYLESS_PROJECT_ID",
            ),
            (
                &[("CAPTURE_DEFAULT_PROJECT_ID", "1")][..],
                "CAPTURE_DEFAULT_PROJECT_ID",
            ),
        ] {
            let e = keyless(vars).unwrap_err();
            assert_eq!(e.var(), var, "{vars:?}: {e}");
        }
    }
}
