//! Typed configuration from environment variables.
//!
//! Every workload reads its settings through [`Env`], which knows each
//! variable's name, so a bad value stops the process with a message such as
//! `invalid value "ten" for CONSUMER_BATCH_SIZE: expected an unsigned integer`.
//! Variables that are unset fall back to the documented default; variables that
//! are set but empty are an error (an empty value is almost always a broken
//! template, not a wish for the default).

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

/// A configuration error that names the variable at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{var} is required but not set")]
    Missing { var: String },
    #[error("{var} is set but empty")]
    Empty { var: String },
    #[error("invalid value {value:?} for {var}: {reason}")]
    Invalid {
        var: String,
        value: String,
        reason: String,
    },
    /// Like `Invalid`, for secrets: the value is never echoed.
    #[error("invalid value for {var} (value hidden, it is a secret): {reason}")]
    InvalidSecret { var: String, reason: String },
}

impl ConfigError {
    /// Name of the variable at fault.
    pub fn var(&self) -> &str {
        match self {
            Self::Missing { var }
            | Self::Empty { var }
            | Self::Invalid { var, .. }
            | Self::InvalidSecret { var, .. } => var,
        }
    }

    fn invalid(var: &str, value: &str, reason: impl Display) -> Self {
        Self::Invalid {
            var: var.to_owned(),
            value: value.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// Longest duration any `*_MS` setting accepts: one week.
pub const MAX_DURATION_MS: u64 = 7 * 24 * 3600 * 1000;

/// Where variables come from: the process environment, or a map in tests.
pub trait EnvSource {
    fn get(&self, name: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
    }
}

impl EnvSource for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
}

impl EnvSource for [(&str, &str)] {
    fn get(&self, name: &str) -> Option<String> {
        self.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

impl<const N: usize> EnvSource for [(&str, &str); N] {
    fn get(&self, name: &str) -> Option<String> {
        EnvSource::get(self.as_slice(), name)
    }
}

/// Typed accessors over an [`EnvSource`].
pub struct Env<'a> {
    source: &'a dyn EnvSource,
}

impl<'a> Env<'a> {
    pub fn new(source: &'a dyn EnvSource) -> Self {
        Self { source }
    }

    /// The raw value: `None` when unset, an error when set but blank.
    fn raw(&self, var: &str) -> Result<Option<String>, ConfigError> {
        match self.source.get(var) {
            None => Ok(None),
            Some(v) if v.trim().is_empty() => Err(ConfigError::Empty {
                var: var.to_owned(),
            }),
            Some(v) => Ok(Some(v.trim().to_owned())),
        }
    }

    /// A string with a default.
    pub fn string(&self, var: &str, default: &str) -> Result<String, ConfigError> {
        Ok(self.raw(var)?.unwrap_or_else(|| default.to_owned()))
    }

    /// A string that may be absent.
    pub fn optional_string(&self, var: &str) -> Result<Option<String>, ConfigError> {
        self.raw(var)
    }

    /// A string that must be set.
    pub fn required_string(&self, var: &str) -> Result<String, ConfigError> {
        self.raw(var)?.ok_or_else(|| ConfigError::Missing {
            var: var.to_owned(),
        })
    }

    /// A secret that must be set. Never echoed in errors.
    pub fn required_secret(&self, var: &str) -> Result<String, ConfigError> {
        match self.source.get(var) {
            None => Err(ConfigError::Missing {
                var: var.to_owned(),
            }),
            Some(v) if v.is_empty() => Err(ConfigError::Empty {
                var: var.to_owned(),
            }),
            Some(v) => Ok(v),
        }
    }

    /// Any `FromStr` value with a default.
    pub fn parse<T>(&self, var: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.raw(var)? {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e| ConfigError::invalid(var, &v, e)),
        }
    }

    /// An integer within `[min, max]`, with a default.
    pub fn int_in<T>(&self, var: &str, default: T, min: T, max: T) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + Display + Copy,
        T::Err: Display,
    {
        let value = self.parse(var, default)?;
        if value < min || value > max {
            return Err(ConfigError::invalid(
                var,
                &value.to_string(),
                format!("must be between {min} and {max}"),
            ));
        }
        Ok(value)
    }

    /// A boolean: `true/false`, `1/0`, `yes/no`, `on/off` (any case).
    pub fn bool(&self, var: &str, default: bool) -> Result<bool, ConfigError> {
        match self.raw(var)? {
            None => Ok(default),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err(ConfigError::invalid(
                    var,
                    &v,
                    "expected true or false (also 1/0, yes/no, on/off)",
                )),
            },
        }
    }

    /// A TCP port (1–65535).
    pub fn port(&self, var: &str, default: u16) -> Result<u16, ConfigError> {
        self.int_in(var, default, 1, u16::MAX)
    }

    /// A duration given in whole milliseconds, at least `min_ms`.
    pub fn duration_ms(
        &self,
        var: &str,
        default_ms: u64,
        min_ms: u64,
    ) -> Result<Duration, ConfigError> {
        self.int_in(var, default_ms, min_ms, u64::MAX)
            .map(Duration::from_millis)
    }

    /// A comma-separated list; blank items are an error.
    pub fn list(&self, var: &str, default: &[&str]) -> Result<Vec<String>, ConfigError> {
        match self.raw(var)? {
            None => Ok(default.iter().map(|s| (*s).to_owned()).collect()),
            Some(v) => v
                .split(',')
                .map(|item| {
                    let item = item.trim();
                    if item.is_empty() {
                        Err(ConfigError::invalid(
                            var,
                            &v,
                            "empty item in comma-separated list",
                        ))
                    } else {
                        Ok(item.to_owned())
                    }
                })
                .collect(),
        }
    }

    /// One of a fixed set of words (case-insensitive), returned lower-cased.
    pub fn one_of(
        &self,
        var: &str,
        default: &str,
        allowed: &[&str],
    ) -> Result<String, ConfigError> {
        let value = self.string(var, default)?.to_ascii_lowercase();
        if allowed.contains(&value.as_str()) {
            Ok(value)
        } else {
            Err(ConfigError::invalid(
                var,
                &value,
                format!("expected one of {}", allowed.join(", ")),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_variables_take_their_default() {
        let src: [(&str, &str); 0] = [];
        let env = Env::new(&src);
        assert_eq!(env.string("A", "x").unwrap(), "x");
        assert_eq!(env.parse("B", 7u32).unwrap(), 7);
        assert!(env.bool("C", true).unwrap());
        assert_eq!(env.port("D", 9090).unwrap(), 9090);
        assert_eq!(
            env.duration_ms("E", 250, 1).unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(env.list("F", &["a", "b"]).unwrap(), vec!["a", "b"]);
        assert_eq!(env.optional_string("G").unwrap(), None);
    }

    #[test]
    fn set_values_are_parsed_and_trimmed() {
        let src = [
            ("N", " 12 "),
            ("B", "Yes"),
            ("L", "k1:9092, k2:9092"),
            ("P", "8123"),
            ("M", "JSON"),
        ];
        let env = Env::new(&src);
        assert_eq!(env.parse("N", 0u32).unwrap(), 12);
        assert!(env.bool("B", false).unwrap());
        assert_eq!(env.list("L", &[]).unwrap(), vec!["k1:9092", "k2:9092"]);
        assert_eq!(env.port("P", 1).unwrap(), 8123);
        assert_eq!(env.one_of("M", "text", &["json", "text"]).unwrap(), "json");
    }

    #[test]
    fn bad_values_name_the_variable_and_the_value() {
        let src = [("CONSUMER_BATCH_SIZE", "ten")];
        let err = Env::new(&src)
            .parse("CONSUMER_BATCH_SIZE", 1000u32)
            .unwrap_err();
        assert_eq!(err.var(), "CONSUMER_BATCH_SIZE");
        let msg = err.to_string();
        assert!(
            msg.contains("CONSUMER_BATCH_SIZE") && msg.contains("\"ten\""),
            "{msg}"
        );
    }

    #[test]
    fn each_accessor_rejects_its_bad_inputs() {
        let src = [
            ("B", "maybe"),
            ("P0", "0"),
            ("P1", "70000"),
            ("D", "5"),
            ("L", "a,,b"),
            ("M", "xml"),
            ("E", "   "),
        ];
        let env = Env::new(&src);
        assert!(
            env.bool("B", false)
                .unwrap_err()
                .to_string()
                .contains("expected true or false")
        );
        assert!(
            env.port("P0", 1)
                .unwrap_err()
                .to_string()
                .contains("between 1 and 65535")
        );
        assert!(env.port("P1", 1).is_err());
        assert!(
            env.duration_ms("D", 100, 10)
                .unwrap_err()
                .to_string()
                .contains("between 10")
        );
        assert!(
            env.list("L", &[])
                .unwrap_err()
                .to_string()
                .contains("empty item")
        );
        assert!(
            env.one_of("M", "json", &["json", "text"])
                .unwrap_err()
                .to_string()
                .contains("json, text")
        );
        assert_eq!(
            env.string("E", "d").unwrap_err(),
            ConfigError::Empty { var: "E".into() }
        );
    }

    #[test]
    fn required_values_must_be_present() {
        let src: [(&str, &str); 0] = [];
        let env = Env::new(&src);
        assert_eq!(
            env.required_string("POSTGRES_DSN").unwrap_err().to_string(),
            "POSTGRES_DSN is required but not set"
        );
        assert_eq!(
            env.required_secret("JWT_SECRET").unwrap_err().var(),
            "JWT_SECRET"
        );
    }

    #[test]
    fn secrets_are_not_trimmed_and_never_echoed() {
        let src = [("JWT_SECRET", " s3cret ")];
        assert_eq!(
            Env::new(&src).required_secret("JWT_SECRET").unwrap(),
            " s3cret "
        );
        let err = ConfigError::InvalidSecret {
            var: "JWT_SECRET".into(),
            reason: "too short".into(),
        };
        assert!(!err.to_string().contains("s3cret"));
    }

    #[test]
    fn the_process_environment_is_a_source() {
        // PATH is set in every test environment this suite runs in.
        assert!(ProcessEnv.get("PATH").is_some());
        assert!(ProcessEnv.get("TRIBUTARY_SURELY_UNSET_VARIABLE").is_none());
    }
}
