//! Capture settings, read from `CAPTURE_*` environment variables.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tributary_core::config::{ConfigError, Env};
use tributary_core::key_service::CachePolicy;
use tributary_core::keys::{Keyless, api_keys_from_env, check_validator, keyless_from_env};
use tributary_core::rate::Rate;

/// Everything capture needs to run. See [`CaptureConfig::from_env`] for the
/// variables and their defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureConfig {
    /// `CAPTURE_HOST` (`0.0.0.0`) and `CAPTURE_PORT` (`8000`).
    pub listen: SocketAddr,
    pub kafka: KafkaSettings,
    /// `CAPTURE_REQUIRE_API_KEY` (`true`) and `CAPTURE_KEYLESS_PROJECT_ID`:
    /// events without a key are refused (401), unless keys are not required
    /// and the project made for keyless events is named. An unknown or
    /// revoked key is refused either way.
    pub keyless: Keyless,
    /// `CAPTURE_API_KEYS`: static keys, `key=project_id` pairs separated by
    /// commas, when `CAPTURE_AUTH_URL` is unset.
    pub api_keys: HashMap<String, u64>,
    /// `CAPTURE_RATE_LIMIT_PER_KEY` (`1000` requests/s, `0`: off) and
    /// `CAPTURE_RATE_LIMIT_PER_KEY_BURST` (twice that): a key past them gets
    /// 429 with `Retry-After` (per capture pod).
    pub rate_per_key: Option<Rate>,
    /// `CAPTURE_MAX_EVENT_BODY_BYTES` (1 MiB): body limit of the event routes,
    /// and limit of the decoded payload (gzip bombs stop here).
    pub max_event_body_bytes: usize,
    /// `CAPTURE_MAX_BATCH_BODY_BYTES` (20 MiB): the same for `/batch`.
    pub max_batch_body_bytes: usize,
    /// `CAPTURE_TRUSTED_PROXY_HOPS` (`0`): proxies in front of capture
    /// that append to `X-Forwarded-For`; an event's `ip` is the entry the
    /// outermost appended (0: the peer's address; behind an ingress, 1).
    pub trusted_proxy_hops: usize,
    /// `CAPTURE_BODY_TIMEOUT_MS` (`30000`): a body not received within this
    /// time gets 408 (slow clients cannot hold requests open forever).
    pub body_timeout: Duration,
    /// `CAPTURE_MAX_CONCURRENT_REQUESTS` (`1024`): requests in flight at once;
    /// more get 503 at once. (Their bytes are bounded by
    /// `CAPTURE_MAX_BYTES_IN_FLIGHT`; this bounds connections' own state.)
    pub max_concurrent_requests: usize,
    /// `CAPTURE_MAX_BYTES_IN_FLIGHT` (96 MiB): the bytes all requests in
    /// flight may hold together (bodies, decoded payloads, events being
    /// normalised and produced; see `budget`); a request that would need more
    /// gets 503 before the memory is used. A quarter stays for small requests.
    pub max_bytes_in_flight: usize,
    /// `CAPTURE_MAX_EVENTS_PER_REQUEST` (`10000`): more events in one request
    /// get 413.
    pub max_events_per_request: usize,
    /// `CAPTURE_AUTH_URL` (unset): the auth service that validates keys
    /// (e.g. `http://auth:8002`); unset means the static `CAPTURE_API_KEYS`.
    pub auth_url: Option<String>,
    /// `CAPTURE_AUTH_CACHE_SECS` (`60`), `CAPTURE_AUTH_NEGATIVE_CACHE_SECS`
    /// (`10`), `CAPTURE_AUTH_STALE_SECS` (`600`): see `tributary_core::key_service`.
    pub auth_cache: CachePolicy,
}

/// Producer settings.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaSettings {
    /// `CAPTURE_KAFKA_BOOTSTRAP_SERVERS` (`localhost:9092`).
    pub bootstrap_servers: String,
    /// `CAPTURE_KAFKA_TOPIC` (`events`).
    pub topic: String,
    /// `CAPTURE_KAFKA_PRODUCE_TIMEOUT_MS` (`10000`): how long a request waits
    /// for Kafka to acknowledge its events before answering 503.
    pub produce_timeout: Duration,
    /// `CAPTURE_KAFKA_LINGER_MS` (`5`): batching delay of the producer.
    pub linger: Duration,
    /// `CAPTURE_KAFKA_COMPRESSION` (`none`): none, gzip, snappy, lz4 or zstd.
    pub compression: String,
    /// `CAPTURE_KAFKA_QUEUE_MESSAGES` (`100000`): producer queue bound; when it
    /// is full capture answers 503 instead of buffering without limit.
    pub queue_messages: u32,
    /// `CAPTURE_KAFKA_READY_INTERVAL_MS` (`2000`): how often `/ready` checks
    /// that the brokers answer.
    pub ready_interval: Duration,
    /// `CAPTURE_KAFKA_MAX_MESSAGE_BYTES` (`1000000`, Kafka's default
    /// `message.max.bytes`): the largest serialised event; larger ones get 413.
    /// Raise it together with the topic's `max.message.bytes`.
    pub max_message_bytes: usize,
    /// Bytes librdkafka may queue (`queue.buffering.max.kbytes`): the
    /// capture budget, `CAPTURE_MAX_BYTES_IN_FLIGHT` (its default of 1 GiB
    /// would let the queue outgrow the pod).
    pub queue_bytes: usize,
}

const MIB: usize = 1024 * 1024;

impl CaptureConfig {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let host: IpAddr = env.parse("CAPTURE_HOST", IpAddr::from([0, 0, 0, 0]))?;
        let port = env.port("CAPTURE_PORT", 8000)?;
        let kafka = KafkaSettings {
            bootstrap_servers: env.string("CAPTURE_KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")?,
            topic: env.string("CAPTURE_KAFKA_TOPIC", "events")?,
            produce_timeout: env.duration_ms("CAPTURE_KAFKA_PRODUCE_TIMEOUT_MS", 10_000, 100)?,
            linger: Duration::from_millis(env.int_in("CAPTURE_KAFKA_LINGER_MS", 5u64, 0, 1_000)?),
            compression: env.one_of(
                "CAPTURE_KAFKA_COMPRESSION",
                "none",
                &["none", "gzip", "snappy", "lz4", "zstd"],
            )?,
            queue_messages: env.int_in(
                "CAPTURE_KAFKA_QUEUE_MESSAGES",
                100_000u32,
                1,
                10_000_000,
            )?,
            ready_interval: env.duration_ms("CAPTURE_KAFKA_READY_INTERVAL_MS", 2_000, 100)?,
            max_message_bytes: env.int_in(
                "CAPTURE_KAFKA_MAX_MESSAGE_BYTES",
                1_000_000usize,
                1024,
                100 * MIB,
            )?,
            queue_bytes: max_bytes_in_flight(env)?,
        };
        let api_keys = api_keys_from_env(env, "CAPTURE_API_KEYS")?;
        let keyless = keyless_from_env(env, "CAPTURE")?;
        let auth_url = env.optional_string("CAPTURE_AUTH_URL")?;
        check_validator(keyless, "CAPTURE", auth_url.as_deref(), &api_keys)?;
        Ok(Self {
            listen: SocketAddr::new(host, port),
            kafka,
            keyless,
            api_keys,
            rate_per_key: Rate::from_env(env, "CAPTURE_RATE_LIMIT_PER_KEY", 1000.0)?,
            max_event_body_bytes: env.int_in(
                "CAPTURE_MAX_EVENT_BODY_BYTES",
                MIB,
                1024,
                1024 * MIB,
            )?,
            max_batch_body_bytes: env.int_in(
                "CAPTURE_MAX_BATCH_BODY_BYTES",
                20 * MIB,
                1024,
                1024 * MIB,
            )?,
            trusted_proxy_hops: tributary_core::http::trusted_hops_from_env(env, "CAPTURE")?,
            body_timeout: env.duration_ms("CAPTURE_BODY_TIMEOUT_MS", 30_000, 100)?,
            max_concurrent_requests: env.int_in(
                "CAPTURE_MAX_CONCURRENT_REQUESTS",
                1024usize,
                1,
                1_000_000,
            )?,
            max_bytes_in_flight: max_bytes_in_flight(env)?,
            max_events_per_request: env.int_in(
                "CAPTURE_MAX_EVENTS_PER_REQUEST",
                10_000usize,
                1,
                1_000_000,
            )?,
            auth_url,
            auth_cache: CachePolicy::from_env(env, "CAPTURE")?,
        })
    }
}

fn max_bytes_in_flight(env: &Env<'_>) -> Result<usize, ConfigError> {
    env.int_in(
        "CAPTURE_MAX_BYTES_IN_FLIGHT",
        96 * MIB,
        4 * MIB,
        64 * 1024 * MIB,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        // Keys are required: something must check them.
        let src = [("CAPTURE_AUTH_URL", "http://auth:8002")];
        let c = CaptureConfig::from_env(&Env::new(&src)).unwrap();
        assert_eq!(c.keyless, Keyless::Refused);
        let none: [(&str, &str); 0] = [];
        let e = CaptureConfig::from_env(&Env::new(&none)).unwrap_err();
        assert_eq!(e.var(), "CAPTURE_REQUIRE_API_KEY", "{e}");
        assert!(e.to_string().contains("CAPTURE_AUTH_URL"), "{e}");
        assert_eq!(c.listen, "0.0.0.0:8000".parse().unwrap());
        assert_eq!(c.kafka.bootstrap_servers, "localhost:9092");
        assert_eq!(c.kafka.topic, "events");
        assert_eq!(c.kafka.produce_timeout, Duration::from_secs(10));
        assert!(c.api_keys.is_empty());
        assert_eq!(c.max_event_body_bytes, 1024 * 1024);
        assert_eq!(c.max_batch_body_bytes, 20 * 1024 * 1024);
    }

    #[test]
    fn reads_every_variable() {
        let src = [
            ("CAPTURE_HOST", "127.0.0.1"),
            ("CAPTURE_PORT", "18000"),
            ("CAPTURE_KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092"),
            ("CAPTURE_KAFKA_TOPIC", "ev"),
            ("CAPTURE_KAFKA_PRODUCE_TIMEOUT_MS", "2500"),
            ("CAPTURE_KAFKA_COMPRESSION", "LZ4"),
            ("CAPTURE_REQUIRE_API_KEY", "false"),
            ("CAPTURE_API_KEYS", "phc_a=1, phc_b=22"),
            ("CAPTURE_KEYLESS_PROJECT_ID", "7"),
        ];
        let c = CaptureConfig::from_env(&Env::new(&src)).unwrap();
        assert_eq!(c.listen, "127.0.0.1:18000".parse().unwrap());
        assert_eq!(c.kafka.topic, "ev");
        assert_eq!(c.kafka.produce_timeout, Duration::from_millis(2500));
        assert_eq!(c.kafka.compression, "lz4");
        assert_eq!(c.keyless, Keyless::Project(7));
        assert_eq!(c.api_keys["phc_b"], 22);
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("CAPTURE_DEFAULT_PROJECT_ID", "1"),
            ("CAPTURE_PORT", "http"),
            ("CAPTURE_HOST", "local host"),
            ("CAPTURE_REQUIRE_API_KEY", "sometimes"),
            ("CAPTURE_KAFKA_COMPRESSION", "brotli"),
            ("CAPTURE_KAFKA_PRODUCE_TIMEOUT_MS", "5"),
            ("CAPTURE_MAX_EVENT_BODY_BYTES", "12"),
            ("CAPTURE_API_KEYS", "phc_secret_value"),
            ("CAPTURE_API_KEYS", "phc_secret_value=zero"),
        ] {
            let src = [(var, value), ("CAPTURE_AUTH_URL", "http://auth:8002")];
            let err = CaptureConfig::from_env(&Env::new(&src)).unwrap_err();
            assert_eq!(err.var(), var, "{err}");
            if var == "CAPTURE_API_KEYS" {
                assert!(
                    !err.to_string().contains("phc_secret_value"),
                    "key leaked: {err}"
                );
            }
        }
    }
}
