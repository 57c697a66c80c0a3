//! Query settings, read from `QUERY_*` environment variables and `REDIS_URL`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tributary_core::clickhouse::ClickHouseSettings;
use tributary_core::config::{ConfigError, Env};
use tributary_core::key_service::CachePolicy;
use tributary_core::keys::{Keyless, api_keys_from_env, check_validator, keyless_from_env};
use tributary_core::rate::Rate;

#[derive(Debug, Clone, PartialEq)]
pub struct QueryConfig {
    /// `QUERY_HOST` (`0.0.0.0`) and `QUERY_PORT` (`8001`).
    pub listen: SocketAddr,
    /// `QUERY_CLICKHOUSE_*`: host, port, database, user, password, ...
    pub clickhouse: ClickHouseSettings,
    /// `REDIS_URL` (`redis://localhost:6379`): cache and async jobs.
    pub redis_url: String,
    /// `QUERY_TIMEOUT_SECS` (`60`): the longest a query may run on ClickHouse.
    pub timeout: Duration,
    /// `QUERY_CACHE_TTL_SECS` (`300`): how long answers stay cached; 0 turns
    /// the cache off.
    pub cache_ttl: Duration,
    /// `QUERY_JOB_TTL_SECS` (`86400`): how long async job results are kept.
    pub job_ttl: Duration,
    /// `QUERY_MAX_CONCURRENT_QUERIES` (`8`): queries running on ClickHouse at
    /// once (others wait; async jobs too).
    pub max_concurrent_queries: usize,
    /// `QUERY_FUNNEL_LOCAL_EVENTS` (`10000000`): funnel events this process
    /// may hold at once, across the funnels running, to group them into
    /// users' paths itself (32 bytes each); past it ClickHouse
    /// groups them, about twice as slowly. 0: always ClickHouse.
    pub funnel_local_events: usize,
    /// `QUERY_FUNNEL_MATCHING` (`auto`): `auto` lets a ClickHouse that can
    /// (one with `arrayFold`) match funnels itself, sending only counts and
    /// times to convert; `service` always matches them here, sparing
    /// ClickHouse's CPU for the price of holding the funnel's events.
    pub funnel_matching_in_clickhouse: bool,
    /// `QUERY_REQUIRE_API_KEY` (`true`) and `QUERY_KEYLESS_PROJECT_ID`:
    /// requests without an `X-API-Key` of scope `query` are refused (401),
    /// unless keys are not required and the project open to keyless reads
    /// is named. An unknown or revoked key is refused either way.
    pub keyless: Keyless,
    /// `QUERY_API_KEYS`: static `key=project_id` pairs, used when
    /// `QUERY_AUTH_URL` is unset.
    pub api_keys: HashMap<String, u64>,
    /// `QUERY_RATE_LIMIT_PER_KEY` (`20` requests/s, `0`: off) and
    /// `QUERY_RATE_LIMIT_PER_KEY_BURST` (twice that), per query pod.
    pub rate_per_key: Option<Rate>,
    /// `QUERY_MAX_JOBS_PER_PROJECT` (`4`): async queries a project may have
    /// running at once in one query pod; more get 429.
    pub max_jobs_per_project: usize,
    /// `QUERY_AUTH_URL` (unset): the auth service that validates keys.
    pub auth_url: Option<String>,
    /// `QUERY_AUTH_CACHE_SECS` (60), `QUERY_AUTH_NEGATIVE_CACHE_SECS` (10),
    /// `QUERY_AUTH_STALE_SECS` (600).
    pub auth_cache: CachePolicy,
    /// Saved insights and dashboards: `None` without `POSTGRES_DSN`.
    pub saved: Option<SavedConfig>,
}

/// `POSTGRES_DSN` (secret) and `QUERY_MIGRATE_ON_START` (`true`: create the
/// tables at start, retrying while Postgres cannot; `false` when `tributary
/// migrate` does it).
#[derive(Clone, PartialEq)]
pub struct SavedConfig {
    pub postgres_dsn: String,
    pub migrate_on_start: bool,
    /// `QUERY_MAX_INSIGHTS_PER_PROJECT` (`1000`) and
    /// `QUERY_MAX_DASHBOARDS_PER_PROJECT` (`100`): what one project may keep.
    pub limits: crate::store::Limits,
}

impl std::fmt::Debug for SavedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SavedConfig")
            .field("postgres_dsn", &"<secret>")
            .field("migrate_on_start", &self.migrate_on_start)
            .field("limits", &self.limits)
            .finish()
    }
}

impl QueryConfig {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let host: IpAddr = env.parse("QUERY_HOST", IpAddr::from([0, 0, 0, 0]))?;
        let secs = |var: &str, default: u64, min: u64, max: u64| {
            env.int_in(var, default, min, max).map(Duration::from_secs)
        };
        let api_keys = api_keys_from_env(env, "QUERY_API_KEYS")?;
        let keyless = keyless_from_env(env, "QUERY")?;
        let auth_url = env.optional_string("QUERY_AUTH_URL")?;
        Ok(Self {
            listen: SocketAddr::new(host, env.port("QUERY_PORT", 8001)?),
            clickhouse: ClickHouseSettings::from_env(env, "QUERY")?,
            redis_url: env.string("REDIS_URL", "redis://localhost:6379")?,
            timeout: secs("QUERY_TIMEOUT_SECS", 60, 1, 3600)?,
            cache_ttl: secs("QUERY_CACHE_TTL_SECS", 300, 0, 7 * 86_400)?,
            job_ttl: secs("QUERY_JOB_TTL_SECS", 86_400, 60, 30 * 86_400)?,
            max_concurrent_queries: env.int_in("QUERY_MAX_CONCURRENT_QUERIES", 8usize, 1, 1024)?,
            funnel_local_events: env.int_in(
                "QUERY_FUNNEL_LOCAL_EVENTS",
                crate::warehouse::DEFAULT_FUNNEL_EVENTS,
                0,
                1_000_000_000,
            )?,
            funnel_matching_in_clickhouse: env.one_of(
                "QUERY_FUNNEL_MATCHING",
                "auto",
                &["auto", "service"],
            )? == "auto",
            auth_cache: CachePolicy::from_env(env, "QUERY")?,
            saved: match env.optional_string("POSTGRES_DSN")? {
                Some(postgres_dsn) => Some(SavedConfig {
                    postgres_dsn,
                    migrate_on_start: env.bool("QUERY_MIGRATE_ON_START", true)?,
                    limits: crate::store::Limits {
                        insights: env.int_in(
                            "QUERY_MAX_INSIGHTS_PER_PROJECT",
                            1_000i64,
                            1,
                            1_000_000,
                        )?,
                        dashboards: env.int_in(
                            "QUERY_MAX_DASHBOARDS_PER_PROJECT",
                            100i64,
                            1,
                            100_000,
                        )?,
                    },
                }),
                None => None,
            },
            keyless,
            api_keys,
            auth_url,
            rate_per_key: Rate::from_env(env, "QUERY_RATE_LIMIT_PER_KEY", 20.0)?,
            max_jobs_per_project: env.int_in("QUERY_MAX_JOBS_PER_PROJECT", 4usize, 1, 1000)?,
        })
        .and_then(|c: Self| {
            check_validator(c.keyless, "QUERY", c.auth_url.as_deref(), &c.api_keys).map(|()| c)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        // Keys are required: something must check them.
        let src = [("QUERY_AUTH_URL", "http://auth:8002")];
        let c = QueryConfig::from_env(&Env::new(&src)).unwrap();
        assert_eq!(c.keyless, Keyless::Refused);
        let none: [(&str, &str); 0] = [];
        let e = QueryConfig::from_env(&Env::new(&none)).unwrap_err();
        assert_eq!(e.var(), "QUERY_REQUIRE_API_KEY", "{e}");
        assert_eq!(c.listen.port(), 8001);
        assert_eq!(c.clickhouse.port, 8123);
        assert_eq!(c.timeout, Duration::from_secs(60));
        assert_eq!(c.auth_cache.valid_for, Duration::from_secs(60));
        assert_eq!(c.funnel_local_events, 10_000_000);
        assert!(c.funnel_matching_in_clickhouse);
        assert_eq!(c.saved, None, "no saved insights without Postgres");
        let src = [
            ("QUERY_AUTH_URL", "http://auth:8002"),
            ("QUERY_FUNNEL_MATCHING", "Service"),
        ];
        let c = QueryConfig::from_env(&Env::new(&src)).unwrap();
        assert!(!c.funnel_matching_in_clickhouse);
    }

    #[test]
    fn postgres_makes_saved_insights_and_its_dsn_stays_secret() {
        let src = [
            ("QUERY_AUTH_URL", "http://auth:8002"),
            ("POSTGRES_DSN", "postgres://u:hunter2@db/app"),
        ];
        let c = QueryConfig::from_env(&Env::new(&src)).unwrap();
        let saved = c.saved.clone().unwrap();
        assert!(saved.migrate_on_start);
        assert_eq!(
            saved.limits,
            crate::store::Limits {
                insights: 1_000,
                dashboards: 100
            }
        );
        assert_eq!(saved.postgres_dsn, "postgres://u:hunter2@db/app");
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("QUERY_PORT", "x"),
            ("QUERY_TIMEOUT_SECS", "0"),
            ("QUERY_REQUIRE_API_KEY", "maybe"),
            ("QUERY_API_KEYS", "secretkey"),
            ("QUERY_CLICKHOUSE_DATABASE", "a;b"),
            ("QUERY_AUTH_CACHE_SECS", "-1"),
            ("QUERY_FUNNEL_LOCAL_EVENTS", "lots"),
            ("QUERY_FUNNEL_MATCHING", "clickhouse"),
            ("QUERY_FUNNEL_MATCHING", ""),
            ("POSTGRES_DSN", ""),
            ("QUERY_DEFAULT_PROJECT_ID", "1"),
        ] {
            let src = [(var, value), ("QUERY_AUTH_URL", "http://auth:8002")];
            let e = QueryConfig::from_env(&Env::new(&src)).unwrap_err();
            assert_eq!(e.var(), var, "{e}");
        }
    }
}
