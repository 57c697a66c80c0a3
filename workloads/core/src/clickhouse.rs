//! ClickHouse connection settings shared by the consumer, query and migrate.
//!
//! The test server is ClickHouse 18.16, which the `clickhouse` crate only talks
//! to with schema validation off and without compression; production runs a
//! current ClickHouse where both can be on. Hence both are settings.

use clickhouse::{Client, Compression};

use crate::config::{ConfigError, Env};

/// Settings read with a component prefix, e.g. `CONSUMER_CLICKHOUSE_HOST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickHouseSettings {
    /// `{P}_CLICKHOUSE_HOST` (`localhost`).
    pub host: String,
    /// `{P}_CLICKHOUSE_PORT` (`8123`, the HTTP interface).
    pub port: u16,
    /// `{P}_CLICKHOUSE_SECURE` (`false`): https instead of http.
    pub secure: bool,
    /// `{P}_CLICKHOUSE_DATABASE` (`default`).
    pub database: String,
    /// `{P}_CLICKHOUSE_USER` (`default`).
    pub user: String,
    /// `{P}_CLICKHOUSE_PASSWORD` (empty).
    pub password: String,
    /// `{P}_CLICKHOUSE_VALIDATION` (`false`): RowBinary schema validation
    /// (needs a server newer than 18.16).
    pub validation: bool,
    /// `{P}_CLICKHOUSE_COMPRESSION` (`none`): `none` or `lz4`.
    pub lz4: bool,
    /// `{P}_CLICKHOUSE_CLUSTER` (unset): the cluster's name in the servers'
    /// `remote_servers`. Set, `events` is a `Distributed` table over each
    /// shard's `events_local` (see [`crate::schema::Layout`]); unset, one
    /// server holds `events`.
    pub cluster: Option<String>,
}

impl ClickHouseSettings {
    pub fn from_env(env: &Env<'_>, prefix: &str) -> Result<Self, ConfigError> {
        let var = |name: &str| format!("{prefix}_CLICKHOUSE_{name}");
        let identifier = |name: &str, value: String| {
            if value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                Ok(value)
            } else {
                Err(ConfigError::Invalid {
                    var: var(name),
                    value,
                    reason: "only letters, digits and _ are allowed".into(),
                })
            }
        };
        let database = identifier("DATABASE", env.string(&var("DATABASE"), "default")?)?;
        let cluster = match env.optional_string(&var("CLUSTER"))? {
            Some(name) => Some(identifier("CLUSTER", name)?),
            None => None,
        };
        Ok(Self {
            host: env.string(&var("HOST"), "localhost")?,
            port: env.port(&var("PORT"), 8123)?,
            secure: env.bool(&var("SECURE"), false)?,
            database,
            user: env.string(&var("USER"), "default")?,
            password: env.optional_string(&var("PASSWORD"))?.unwrap_or_default(),
            validation: env.bool(&var("VALIDATION"), false)?,
            lz4: env.one_of(&var("COMPRESSION"), "none", &["none", "lz4"])? == "lz4",
            cluster,
        })
    }

    /// The server's URL, for clients and for error messages.
    pub fn url(&self) -> String {
        let scheme = if self.secure { "https" } else { "http" };
        format!("{scheme}://{}:{}", self.host, self.port)
    }

    /// The same settings for another server of the cluster (`host`, at
    /// this server's port, scheme and credentials).
    pub fn on_host(&self, host: &str) -> Self {
        Self {
            host: host.to_owned(),
            ..self.clone()
        }
    }

    /// A client bound to the database. On a cluster its inserts into the
    /// Distributed `events` are synchronous: acknowledged once every shard
    /// has its rows, so a consumer commits offsets only for rows stored
    /// (asynchronous inserts would be acknowledged from the receiving
    /// node's queue, which a lost node takes with it).
    pub fn client(&self) -> Client {
        let client = self.client_without_database().with_database(&self.database);
        match self.cluster {
            Some(_) => client.with_setting("insert_distributed_sync", "1"),
            None => client,
        }
    }

    /// A client for server-level statements (CREATE DATABASE).
    pub fn client_without_database(&self) -> Client {
        Client::default()
            .with_url(self.url())
            .with_user(&self.user)
            .with_password(&self.password)
            .with_validation(self.validation)
            .with_compression(if self.lz4 {
                Compression::Lz4
            } else {
                Compression::None
            })
    }
}

/// The server's exception code in an error response (`Code: 60. DB::Exception`).
pub fn exception_code(error: &clickhouse::error::Error) -> Option<u32> {
    let clickhouse::error::Error::BadResponse(text) = error else {
        return None;
    };
    let rest = text.split("Code: ").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_prefixed_settings() {
        let src = [
            ("CONSUMER_CLICKHOUSE_HOST", "ch.internal"),
            ("CONSUMER_CLICKHOUSE_PORT", "18123"),
            ("CONSUMER_CLICKHOUSE_DATABASE", "analytics"),
            ("CONSUMER_CLICKHOUSE_COMPRESSION", "lz4"),
        ];
        let s = ClickHouseSettings::from_env(&Env::new(&src), "CONSUMER").unwrap();
        assert_eq!(s.url(), "http://ch.internal:18123");
        assert_eq!(s.database, "analytics");
        assert!(s.lz4);
        assert!(!s.validation);
    }

    #[test]
    fn database_and_cluster_names_cannot_inject_sql() {
        let src = [("QUERY_CLICKHOUSE_DATABASE", "x; DROP TABLE events")];
        let err = ClickHouseSettings::from_env(&Env::new(&src), "QUERY").unwrap_err();
        assert_eq!(err.var(), "QUERY_CLICKHOUSE_DATABASE");
        let src = [("QUERY_CLICKHOUSE_CLUSTER", "c', events_local, rand())")];
        let err = ClickHouseSettings::from_env(&Env::new(&src), "QUERY").unwrap_err();
        assert_eq!(err.var(), "QUERY_CLICKHOUSE_CLUSTER");
    }

    #[test]
    fn a_cluster_is_named_or_absent() {
        let none = ClickHouseSettings::from_env(&Env::new(&[]), "QUERY").unwrap();
        assert_eq!(none.cluster, None);
        // Empty is refused, as every setting's empty value is: it is a
        // mistake more often than a way to say "none".
        let empty = [("QUERY_CLICKHOUSE_CLUSTER", " ")];
        let e = ClickHouseSettings::from_env(&Env::new(&empty), "QUERY").unwrap_err();
        assert_eq!(e.var(), "QUERY_CLICKHOUSE_CLUSTER");
        let named = [("QUERY_CLICKHOUSE_CLUSTER", "tributary")];
        let s = ClickHouseSettings::from_env(&Env::new(&named), "QUERY").unwrap();
        assert_eq!(s.cluster.as_deref(), Some("tributary"));
        assert_eq!(s.on_host("ch-1").url(), "http://ch-1:8123");
    }

    #[test]
    fn exception_codes_are_read_from_responses() {
        let e = clickhouse::error::Error::BadResponse(
            "Code: 60, e.displayText() = DB::Exception: Table x doesn't exist".into(),
        );
        assert_eq!(exception_code(&e), Some(60));
        let e =
            clickhouse::error::Error::BadResponse("Code: 27. DB::Exception: Cannot parse".into());
        assert_eq!(exception_code(&e), Some(27));
        assert_eq!(exception_code(&clickhouse::error::Error::TimedOut), None);
    }
}
