//! Auth settings: `AUTH_*`, `POSTGRES_DSN`, `JWT_SECRET`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tributary_core::config::{ConfigError, Env};

#[derive(Clone, PartialEq)]
pub struct AuthConfig {
    /// `AUTH_HOST` (`0.0.0.0`) and `AUTH_PORT` (`8002`).
    pub listen: SocketAddr,
    /// `POSTGRES_DSN` (required, secret).
    pub postgres_dsn: String,
    /// `JWT_SECRET` (required, secret, at least 32 bytes).
    pub jwt_secret: String,
    /// `AUTH_JWT_TTL_SECS` (`3600`): lifetime of a login token.
    pub jwt_ttl: Duration,
    /// `AUTH_MIGRATE_ON_START` (`true`): apply the Postgres migrations at start.
    pub migrate_on_start: bool,
    /// `AUTH_LOGIN_MAX_FAILURES` (`5`): failed logins per account or address
    /// within the window before further attempts get 429.
    pub login_max_failures: u32,
    /// `AUTH_LOGIN_WINDOW_SECS` (`300`): that window, and the lockout.
    pub login_window: Duration,
    /// `AUTH_TRUSTED_PROXY_HOPS` (`0`): proxies in front of auth that
    /// append to `X-Forwarded-For`; the client address for login throttling
    /// is the entry the outermost appended (0: the peer's address). Behind
    /// an ingress set 1, or every client shares the ingress's address.
    pub trusted_proxy_hops: usize,
    /// `AUTH_RATE_LIMIT_PER_ADDRESS` (`5` requests/s, burst `20`; `0`:
    /// off): signups and logins per client address, before any password
    /// hashing.
    pub rate_per_address: Option<tributary_core::rate::Rate>,
    /// `AUTH_VALIDATE_RATE_LIMIT_PER_ADDRESS` (`1000`/s, burst twice that;
    /// `0`: off): `/api/keys/validate` calls per client address. Capture
    /// and query pods call it only on a cache miss.
    pub validate_rate_per_address: Option<tributary_core::rate::Rate>,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("listen", &self.listen)
            .field("postgres_dsn", &"<secret>")
            .field("jwt_secret", &"<secret>")
            .field("jwt_ttl", &self.jwt_ttl)
            .field("migrate_on_start", &self.migrate_on_start)
            .finish_non_exhaustive()
    }
}

pub const MIN_JWT_SECRET_BYTES: usize = 32;

impl AuthConfig {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let host: IpAddr = env.parse("AUTH_HOST", IpAddr::from([0, 0, 0, 0]))?;
        let jwt_secret = env.required_secret("JWT_SECRET")?;
        if jwt_secret.len() < MIN_JWT_SECRET_BYTES {
            return Err(ConfigError::InvalidSecret {
                var: "JWT_SECRET".into(),
                reason: format!("must be at least {MIN_JWT_SECRET_BYTES} bytes"),
            });
        }
        Ok(Self {
            listen: SocketAddr::new(host, env.port("AUTH_PORT", 8002)?),
            postgres_dsn: env.required_secret("POSTGRES_DSN")?,
            jwt_secret,
            jwt_ttl: Duration::from_secs(env.int_in(
                "AUTH_JWT_TTL_SECS",
                3600u64,
                60,
                30 * 24 * 3600,
            )?),
            migrate_on_start: env.bool("AUTH_MIGRATE_ON_START", true)?,
            login_max_failures: env.int_in("AUTH_LOGIN_MAX_FAILURES", 5u32, 1, 1000)?,
            login_window: Duration::from_secs(env.int_in(
                "AUTH_LOGIN_WINDOW_SECS",
                300u64,
                1,
                86_400,
            )?),
            trusted_proxy_hops: tributary_core::http::trusted_hops_from_env(env, "AUTH")?,
            // A person retyping a password never meets it; a script does.
            rate_per_address: tributary_core::rate::Rate::from_env_with_burst(
                env,
                "AUTH_RATE_LIMIT_PER_ADDRESS",
                5.0,
                20.0,
            )?,
            validate_rate_per_address: tributary_core::rate::Rate::from_env(
                env,
                "AUTH_VALIDATE_RATE_LIMIT_PER_ADDRESS",
                1000.0,
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn requires_the_secrets() {
        let src: [(&str, &str); 0] = [];
        assert_eq!(
            AuthConfig::from_env(&Env::new(&src)).unwrap_err().var(),
            "JWT_SECRET"
        );
        let src = [("JWT_SECRET", SECRET)];
        assert_eq!(
            AuthConfig::from_env(&Env::new(&src)).unwrap_err().var(),
            "POSTGRES_DSN"
        );
    }

    #[test]
    fn short_jwt_secrets_are_refused_without_echoing_them() {
        let src = [("JWT_SECRET", "tooshort"), ("POSTGRES_DSN", "postgres://x")];
        let err = AuthConfig::from_env(&Env::new(&src)).unwrap_err();
        assert_eq!(err.var(), "JWT_SECRET");
        assert!(!err.to_string().contains("tooshort"));
    }

    #[test]
    fn debug_output_hides_secrets() {
        let src = [
            ("JWT_SECRET", SECRET),
            ("POSTGRES_DSN", "postgres://u:pw@h/db"),
        ];
        let c = AuthConfig::from_env(&Env::new(&src)).unwrap();
        let text = format!("{c:?}");
        assert!(!text.contains(SECRET) && !text.contains("pw@"), "{text}");
        assert_eq!(c.listen.port(), 8002);
    }
}
