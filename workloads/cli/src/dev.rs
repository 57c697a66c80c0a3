//! `tributary dev`: the whole pipeline in one process against the local
//! stack. It applies the migrations, makes the topics, starts auth, capture,
//! the consumer and query (capture and query checking keys with this auth),
//! waits until each answers its readiness check, prints where they listen,
//! and runs until Ctrl-C, or stops them all when one fails.

pub mod env;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tributary_core::config::{ConfigError, Env};
use tributary_core::topics::{KafkaAdmin, Topic, TopicError};

use crate::demo::{self, DemoError, api::Urls, dataset::Shape};
use crate::migrate::{MigrateError, migrate};

/// How long the workloads get to answer their readiness checks.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// Partitions of the topics dev makes (the operator's defaults).
const EVENTS_PARTITIONS: i32 = 12;
const DLQ_PARTITIONS: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("migrations: {0}")]
    Migrate(#[from] MigrateError),
    #[error("topics: {0}")]
    Topics(#[from] TopicError),
    #[error("{workload} stopped: {message}")]
    Workload {
        workload: &'static str,
        message: String,
    },
    #[error("demo: {0}")]
    Demo(#[from] DemoError),
    #[error("{workload} did not answer {url} with 200 within {READY_WITHIN:?}")]
    NotReady { workload: &'static str, url: String },
}

/// The four workloads' settings, read once so a bad value stops dev before
/// anything starts.
pub struct Settings {
    pub auth: tributary_auth::AuthConfig,
    pub capture: tributary_capture::CaptureConfig,
    pub consumer: tributary_consumer::ConsumerConfig,
    pub query: tributary_query::QueryConfig,
}

impl Settings {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            auth: tributary_auth::AuthConfig::from_env(env)?,
            capture: tributary_capture::CaptureConfig::from_env(env)?,
            consumer: tributary_consumer::ConsumerConfig::from_env(env)?,
            query: tributary_query::QueryConfig::from_env(env)?,
        })
    }

    /// Each workload's name, base URL and readiness URL.
    fn endpoints(&self) -> [(&'static str, String, String); 4] {
        let base = |listen: SocketAddr| format!("http://{}", reachable(listen));
        let consumer = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.consumer.metrics_port);
        let [auth, capture, consumer, query] = [
            base(self.auth.listen),
            base(self.capture.listen),
            base(consumer),
            base(self.query.listen),
        ];
        [
            ("auth", auth.clone(), format!("{auth}/health")),
            ("capture", capture.clone(), format!("{capture}/ready")),
            ("consumer", consumer.clone(), format!("{consumer}/health")),
            ("query", query.clone(), format!("{query}/ready")),
        ]
    }
}

/// `listen` as a client reaches it: a wildcard address is loopback here.
fn reachable(listen: SocketAddr) -> SocketAddr {
    if listen.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
    } else {
        listen
    }
}

/// The lines dev prints once everything is ready.
pub fn banner(s: &Settings) -> String {
    let [auth, capture, consumer, query] = s.endpoints();
    let mut out = String::from("tributary dev: the pipeline is up (Ctrl-C stops it)\n");
    let keys = if s.capture.require_api_key {
        "project API key required"
    } else {
        "no key required"
    };
    let rows = [
        (
            &capture,
            format!(
                "POST /capture, PostHog /e /batch /i/v0/e /track ({keys}) -> Kafka {}",
                s.capture.kafka.topic
            ),
        ),
        (
            &consumer,
            format!(
                "/metrics; Kafka {} -> ClickHouse {}.events, dead letters to {}",
                s.consumer.topic, s.consumer.clickhouse.database, s.consumer.dlq_topic
            ),
        ),
        (
            &query,
            format!(
                "POST /api/query/trend | funnel | retention over ClickHouse {}",
                s.query.clickhouse.database
            ),
        ),
        (
            &auth,
            "POST /api/signup, /api/login, /api/projects, /api/projects/{id}/api-keys".to_owned(),
        ),
    ];
    for ((name, url, _), what) in rows {
        out.push_str(&format!("  {name:<9}{url:<24}{what}\n"));
    }
    out
}

/// Runs the pipeline until `shutdown` or a workload's failure; with `demo`,
/// runs the demo on that shop once everything is ready.
pub async fn run(
    settings: Settings,
    demo: Option<Shape>,
    shutdown: CancellationToken,
) -> Result<(), DevError> {
    for line in migrate(
        &settings.consumer.clickhouse,
        Some(settings.auth.postgres_dsn.as_str()),
    )
    .await?
    {
        eprintln!("tributary dev: {line}");
    }
    ensure_topics(&settings).await?;

    let endpoints = settings.endpoints();
    let banner = banner(&settings);
    let stop = shutdown.child_token();
    let mut workloads = JoinSet::new();
    let Settings {
        auth,
        capture,
        consumer,
        query,
    } = settings;
    start(
        &mut workloads,
        "auth",
        tributary_auth::run(auth, stop.clone()),
    );
    start(
        &mut workloads,
        "capture",
        tributary_capture::run(capture, stop.clone()),
    );
    start(
        &mut workloads,
        "consumer",
        tributary_consumer::run(consumer, stop.clone()),
    );
    start(
        &mut workloads,
        "query",
        tributary_query::run(query, stop.clone()),
    );

    // Biased, shutdown first: once it fires, workloads end on purpose.
    let started = tokio::select! {
        biased;
        () = shutdown.cancelled() => Ok(()),
        ready = all_ready(&endpoints) => ready,
        Some(ended) = workloads.join_next() => Err(ended_early(ended)),
    };
    let outcome = match started {
        Err(e) => Err(e),
        Ok(()) if shutdown.is_cancelled() => Ok(()),
        Ok(()) => {
            println!("{banner}");
            let urls = Urls {
                auth: endpoints[0].1.clone(),
                capture: endpoints[1].1.clone(),
                query: endpoints[3].1.clone(),
            };
            tokio::select! {
                biased;
                () = shutdown.cancelled() => Ok(()),
                Some(ended) = workloads.join_next() => Err(ended_early(ended)),
                shown = show(demo, urls) => match shown {
                    Ok(()) => tokio::select! {
                        biased;
                        () = shutdown.cancelled() => Ok(()),
                        Some(ended) = workloads.join_next() => Err(ended_early(ended)),
                    },
                    Err(e) => Err(e),
                },
            }
        }
    };
    // Drain: every workload flushes and stops.
    stop.cancel();
    let mut first_failure = outcome.err();
    while let Some(ended) = workloads.join_next().await {
        if let Err(e) = ended_early_if_failed(ended) {
            first_failure.get_or_insert(e);
        }
    }
    first_failure.map_or(Ok(()), Err)
}

/// Runs the demo, if asked for.
async fn show(demo: Option<Shape>, urls: Urls) -> Result<(), DevError> {
    if let Some(shape) = demo {
        demo::run(urls, shape, chrono::Utc::now()).await?;
        println!("demo: done; the pipeline keeps running (Ctrl-C stops it)");
    }
    Ok(())
}

/// The events and dead-letter topics, made when missing.
async fn ensure_topics(settings: &Settings) -> Result<(), DevError> {
    let kafka = &settings.capture.kafka;
    let admin = KafkaAdmin::new(&kafka.bootstrap_servers, Duration::from_secs(20))?;
    let wanted = [
        (kafka.topic.clone(), EVENTS_PARTITIONS),
        (settings.consumer.topic.clone(), EVENTS_PARTITIONS),
        (settings.consumer.dlq_topic.clone(), DLQ_PARTITIONS),
    ];
    let mut seen = Vec::new();
    for (name, partitions) in wanted {
        if seen.contains(&name) {
            continue;
        }
        seen.push(name.clone());
        let topic = Topic {
            name: name.clone(),
            partitions,
            replication_factor: 1,
            retention_hours: 168,
        };
        let outcome = admin.ensure(&topic).await?;
        eprintln!(
            "tributary dev: Kafka {}: {}",
            kafka.bootstrap_servers,
            outcome.state()
        );
    }
    Ok(())
}

/// Polls every readiness URL until each answers 200.
async fn all_ready(endpoints: &[(&'static str, String, String)]) -> Result<(), DevError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| DevError::Workload {
            workload: "dev",
            message: e.to_string(),
        })?;
    let deadline = Instant::now() + READY_WITHIN;
    for (workload, _, url) in endpoints {
        loop {
            let answered = client.get(url).send().await.map(|r| r.status().as_u16());
            if matches!(answered, Ok(200)) {
                break;
            }
            if Instant::now() >= deadline {
                return Err(DevError::NotReady {
                    workload,
                    url: url.clone(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

type Ended = Result<(&'static str, Result<(), String>), tokio::task::JoinError>;

/// Runs `workload` as a task of `set`, its outcome named.
fn start<E, F>(
    set: &mut JoinSet<(&'static str, Result<(), String>)>,
    name: &'static str,
    workload: F,
) where
    E: std::fmt::Display,
    F: std::future::Future<Output = Result<(), E>> + Send + 'static,
{
    set.spawn(async move { (name, workload.await.map_err(|e| e.to_string())) });
}

/// A workload that ended before it was asked to: an error either way.
fn ended_early(ended: Ended) -> DevError {
    match ended_early_if_failed(ended) {
        Err(e) => e,
        Ok(workload) => DevError::Workload {
            workload,
            message: "ended without being asked to".to_owned(),
        },
    }
}

fn ended_early_if_failed(ended: Ended) -> Result<&'static str, DevError> {
    match ended {
        Ok((workload, Ok(()))) => Ok(workload),
        Ok((workload, Err(message))) => Err(DevError::Workload { workload, message }),
        Err(e) => Err(DevError::Workload {
            workload: "a workload",
            message: e.to_string(),
        }),
    }
}
