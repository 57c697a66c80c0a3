//! The settings of `tributary dev`: the environment as given, and for what
//! it leaves unset, defaults that make four workloads in one process one
//! pipeline: loopback addresses, one Kafka and one ClickHouse setting for
//! all, capture and query checking keys with this auth, and a random JWT
//! secret for the run.

use std::collections::HashMap;

use tributary_core::config::EnvSource;

/// Database the events go to unless `CONSUMER_CLICKHOUSE_DATABASE` says
/// otherwise: the operator's default.
pub const DATABASE: &str = "tributary";

/// `base`, with the dev defaults under it.
pub struct DevEnv<'a> {
    base: &'a dyn EnvSource,
    defaults: HashMap<&'static str, String>,
}

impl EnvSource for DevEnv<'_> {
    fn get(&self, name: &str) -> Option<String> {
        self.base
            .get(name)
            .or_else(|| self.defaults.get(name).cloned())
    }
}

impl<'a> DevEnv<'a> {
    /// The dev settings over `base`; `secret` is the JWT secret used when
    /// `JWT_SECRET` is unset.
    pub fn new(base: &'a dyn EnvSource, secret: String) -> Self {
        let mut defaults = HashMap::new();
        let mut default = |name: &'static str, value: String| {
            if base.get(name).is_none() {
                defaults.entry(name).or_insert(value);
            }
        };
        for host in ["CAPTURE_HOST", "QUERY_HOST", "AUTH_HOST"] {
            default(host, "127.0.0.1".to_owned());
        }
        if let Some(kafka) = base.get("KAFKA_BOOTSTRAP_SERVERS") {
            default("CAPTURE_KAFKA_BOOTSTRAP_SERVERS", kafka.clone());
            default("CONSUMER_KAFKA_BOOTSTRAP_SERVERS", kafka);
        }
        if let Some(topic) = base.get("CAPTURE_KAFKA_TOPIC") {
            default("CONSUMER_KAFKA_TOPIC", topic);
        }
        default("CONSUMER_CLICKHOUSE_DATABASE", DATABASE.to_owned());
        // Query reads what the consumer writes.
        for (query, consumer) in [
            ("QUERY_CLICKHOUSE_HOST", "CONSUMER_CLICKHOUSE_HOST"),
            ("QUERY_CLICKHOUSE_PORT", "CONSUMER_CLICKHOUSE_PORT"),
            ("QUERY_CLICKHOUSE_SECURE", "CONSUMER_CLICKHOUSE_SECURE"),
            ("QUERY_CLICKHOUSE_USER", "CONSUMER_CLICKHOUSE_USER"),
            ("QUERY_CLICKHOUSE_PASSWORD", "CONSUMER_CLICKHOUSE_PASSWORD"),
            ("QUERY_CLICKHOUSE_DATABASE", "CONSUMER_CLICKHOUSE_DATABASE"),
            ("QUERY_CLICKHOUSE_CLUSTER", "CONSUMER_CLICKHOUSE_CLUSTER"),
        ] {
            if let Some(value) = base.get(consumer) {
                default(query, value);
            }
        }
        default("QUERY_CLICKHOUSE_DATABASE", DATABASE.to_owned());
        let auth_port = base.get("AUTH_PORT").unwrap_or_else(|| "8002".to_owned());
        let auth = format!("http://127.0.0.1:{auth_port}");
        default("CAPTURE_AUTH_URL", auth.clone());
        default("QUERY_AUTH_URL", auth);
        default("CAPTURE_REQUIRE_API_KEY", "true".to_owned());
        default("QUERY_REQUIRE_API_KEY", "true".to_owned());
        default("JWT_SECRET", secret);
        Self { base, defaults }
    }

    /// Whether `name` is a dev default rather than the environment's.
    pub fn defaulted(&self, name: &str) -> bool {
        self.base.get(name).is_none() && self.defaults.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn dev(base: &[(&str, &str)]) -> Vec<(String, Option<String>)> {
        let base = vars(base);
        let env = DevEnv::new(&base, "s".repeat(64));
        [
            "CAPTURE_HOST",
            "CAPTURE_KAFKA_BOOTSTRAP_SERVERS",
            "CONSUMER_KAFKA_BOOTSTRAP_SERVERS",
            "CONSUMER_KAFKA_TOPIC",
            "CONSUMER_CLICKHOUSE_DATABASE",
            "QUERY_CLICKHOUSE_HOST",
            "QUERY_CLICKHOUSE_DATABASE",
            "QUERY_CLICKHOUSE_CLUSTER",
            "CAPTURE_AUTH_URL",
            "QUERY_REQUIRE_API_KEY",
        ]
        .iter()
        .map(|n| (n.to_string(), env.get(n)))
        .collect()
    }

    fn value(vars: &[(String, Option<String>)], name: &str) -> Option<String> {
        vars.iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.clone())
    }

    #[test]
    fn one_setting_reaches_every_workload_that_needs_it() {
        let vars = dev(&[
            ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092"),
            ("CAPTURE_KAFKA_TOPIC", "mine"),
            ("CONSUMER_CLICKHOUSE_HOST", "ch.local"),
            ("CONSUMER_CLICKHOUSE_DATABASE", "analytics"),
            ("CONSUMER_CLICKHOUSE_CLUSTER", "tributary"),
            ("AUTH_PORT", "18002"),
        ]);
        assert_eq!(
            value(&vars, "QUERY_CLICKHOUSE_CLUSTER").as_deref(),
            Some("tributary")
        );
        assert_eq!(
            value(&vars, "CAPTURE_KAFKA_BOOTSTRAP_SERVERS").as_deref(),
            Some("127.0.0.1:19092")
        );
        assert_eq!(
            value(&vars, "CONSUMER_KAFKA_BOOTSTRAP_SERVERS").as_deref(),
            Some("127.0.0.1:19092")
        );
        assert_eq!(
            value(&vars, "CONSUMER_KAFKA_TOPIC").as_deref(),
            Some("mine")
        );
        assert_eq!(
            value(&vars, "QUERY_CLICKHOUSE_HOST").as_deref(),
            Some("ch.local")
        );
        assert_eq!(
            value(&vars, "QUERY_CLICKHOUSE_DATABASE").as_deref(),
            Some("analytics")
        );
        assert_eq!(
            value(&vars, "CAPTURE_AUTH_URL").as_deref(),
            Some("http://127.0.0.1:18002")
        );
    }

    #[test]
    fn what_the_environment_sets_wins_and_the_rest_is_local_and_keyed() {
        let vars = dev(&[
            ("CAPTURE_HOST", "0.0.0.0"),
            ("CONSUMER_KAFKA_BOOTSTRAP_SERVERS", "b:9092"),
            ("QUERY_CLICKHOUSE_DATABASE", "other"),
        ]);
        assert_eq!(value(&vars, "CAPTURE_HOST").as_deref(), Some("0.0.0.0"));
        assert_eq!(
            value(&vars, "CONSUMER_KAFKA_BOOTSTRAP_SERVERS").as_deref(),
            Some("b:9092")
        );
        // Nothing to copy: the workload's own default applies.
        assert_eq!(value(&vars, "CAPTURE_KAFKA_BOOTSTRAP_SERVERS"), None);
        assert_eq!(
            value(&vars, "QUERY_CLICKHOUSE_DATABASE").as_deref(),
            Some("other")
        );
        assert_eq!(
            value(&vars, "CONSUMER_CLICKHOUSE_DATABASE").as_deref(),
            Some(DATABASE)
        );
        assert_eq!(
            value(&vars, "CAPTURE_AUTH_URL").as_deref(),
            Some("http://127.0.0.1:8002")
        );
        assert_eq!(
            value(&vars, "QUERY_REQUIRE_API_KEY").as_deref(),
            Some("true")
        );
    }

    #[test]
    fn the_random_secret_is_used_only_when_none_is_given() {
        let given = vars(&[("JWT_SECRET", "mine")]);
        let env = DevEnv::new(&given, "random".into());
        assert_eq!(env.get("JWT_SECRET").as_deref(), Some("mine"));
        assert!(!env.defaulted("JWT_SECRET"));
        let none = vars(&[]);
        let env = DevEnv::new(&none, "random".into());
        assert_eq!(env.get("JWT_SECRET").as_deref(), Some("random"));
        assert!(env.defaulted("JWT_SECRET"));
    }
}
