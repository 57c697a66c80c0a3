//! `tributary dev`: the whole pipeline in one process against the local
//! stack. It applies the migrations, makes the topics, starts auth, capture,
//! the consumer and query (capture and query checking keys with this auth),
//! waits until each answers its readiness check, prints where they listen,
//! and runs until Ctrl-C, or stops them all when one fails.

pub mod env;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tributary_core::config::{ConfigError, Env};
use tributary_core::topics::{KafkaAdmin, Topic, TopicError};

use crate::demo::{self, DemoError, api::Urls, dataset::Shape};
use crate::migrate::{MigrateError, migrate};

/// How long the workloads get to stop once asked.
const DRAIN_WITHIN: Duration = Duration::from_secs(30);
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
    #[error("demo: {source}; {hint}")]
    NotDelivered {
        source: Box<DemoError>,
        hint: String,
    },
    #[error("{workload} did not answer {url} with 200 within {READY_WITHIN:?} (last: {last})")]
    NotReady {
        workload: &'static str,
        url: String,
        last: String,
    },
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
    let keys = match s.capture.keyless {
        tributary_core::keys::Keyless::Refused => "project API key required".to_owned(),
        tributary_core::keys::Keyless::Project(p) => {
            format!("events without a key go to project {p}")
        }
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
    // Ctrl-C while preparing stops dev before anything started.
    tokio::select! {
        biased;
        () = shutdown.cancelled() => return Ok(()),
        prepared = prepare(&settings) => prepared?,
    }

    let endpoints = settings.endpoints();
    let banner = banner(&settings);
    let stop = shutdown.child_token();
    let mut workloads = Workloads::default();
    let Settings {
        auth,
        capture,
        consumer,
        query,
    } = settings;
    workloads.start("auth", tributary_auth::run(auth, stop.clone()));
    workloads.start("capture", tributary_capture::run(capture, stop.clone()));
    workloads.start("consumer", tributary_consumer::run(consumer, stop.clone()));
    workloads.start("query", tributary_query::run(query, stop.clone()));

    // Biased, shutdown first: once it fires, workloads end on purpose.
    let started = tokio::select! {
        biased;
        () = shutdown.cancelled() => Ok(()),
        ready = all_ready(&endpoints) => ready,
        Some(ended) = workloads.set.join_next() => Err(workloads.ended_early(ended)),
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
                Some(ended) = workloads.set.join_next() => Err(workloads.ended_early(ended)),
                shown = show(demo, urls, &endpoints[2].1) => match shown {
                    Ok(()) => tokio::select! {
                        biased;
                        () = shutdown.cancelled() => Ok(()),
                        Some(ended) = workloads.set.join_next() => Err(workloads.ended_early(ended)),
                    },
                    Err(e) => Err(e),
                },
            }
        }
    };
    // Drain: every workload flushes and stops, within a bound.
    stop.cancel();
    let mut first_failure = outcome.err();
    let drained = tokio::time::timeout(DRAIN_WITHIN, async {
        while let Some(ended) = workloads.set.join_next().await {
            if let Err(e) = workloads.outcome(ended) {
                first_failure.get_or_insert(e);
            }
        }
    })
    .await;
    if drained.is_err() {
        first_failure.get_or_insert(DevError::Workload {
            workload: "dev",
            message: format!("the workloads did not stop within {DRAIN_WITHIN:?}"),
        });
    }
    first_failure.map_or(Ok(()), Err)
}

/// Migrations, then topics.
async fn prepare(settings: &Settings) -> Result<(), DevError> {
    for line in migrate(
        &settings.consumer.clickhouse,
        Some(settings.auth.postgres_dsn.as_str()),
    )
    .await?
    {
        eprintln!("tributary dev: {line}");
    }
    ensure_topics(settings).await
}

/// Runs the demo, if asked for.
async fn show(demo: Option<Shape>, urls: Urls, consumer: &str) -> Result<(), DevError> {
    if let Some(shape) = demo {
        match demo::run(urls, shape, chrono::Utc::now()).await {
            Ok(_) => println!("demo: done; the pipeline keeps running (Ctrl-C stops it)"),
            Err(e @ DemoError::NotVisible { .. }) => {
                return Err(DevError::NotDelivered {
                    source: Box::new(e),
                    hint: consumer_hint(consumer).await,
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Why events may not arrive, read off the consumer's metrics.
async fn consumer_hint(consumer: &str) -> String {
    match reqwest::get(format!("{consumer}/metrics")).await {
        Ok(r) => hint_from(&r.text().await.unwrap_or_default()),
        Err(e) => format!("the consumer's metrics did not answer: {e}"),
    }
}

/// The hint the consumer's metrics `text` give.
fn hint_from(text: &str) -> String {
    let value = |name: &str| tributary_core::metrics::values(text, name).first().copied();
    match (value("consumer_assigned_partitions"), value("consumer_messages_consumed_total")) {
        (Some(p), _) if p < 0.5 => "the consumer has no partitions assigned: its group has not settled (a broker that keeps an old member can hold it; set CONSUMER_KAFKA_GROUP_ID to a new group)".to_owned(),
        (Some(p), Some(c)) => format!("the consumer has {p} partitions and consumed {c} messages; see its log for insert errors"),
        _ => "the consumer's metrics say nothing of its partitions".to_owned(),
    }
}

/// The events and dead-letter topics, made when missing; a topic that
/// exists is left as it is (dev never grows a shared broker's topics).
async fn ensure_topics(settings: &Settings) -> Result<(), DevError> {
    let capture = &settings.capture.kafka;
    let consumer = &settings.consumer;
    let wanted = [
        (
            &capture.bootstrap_servers,
            &capture.topic,
            EVENTS_PARTITIONS,
        ),
        (
            &consumer.bootstrap_servers,
            &consumer.topic,
            EVENTS_PARTITIONS,
        ),
        (
            &consumer.bootstrap_servers,
            &consumer.dlq_topic,
            DLQ_PARTITIONS,
        ),
    ];
    let mut seen = Vec::new();
    for (bootstrap, name, partitions) in wanted {
        if seen.contains(&(bootstrap, name)) {
            continue;
        }
        seen.push((bootstrap, name));
        let admin = KafkaAdmin::new(bootstrap, Duration::from_secs(20))?;
        let state = match admin.partitions(name).await? {
            Some(n) => format!("topic {name} has {n} partitions"),
            None => {
                let topic = Topic {
                    name: name.clone(),
                    partitions,
                    replication_factor: 1,
                    retention_hours: 168,
                };
                admin.ensure(&topic).await?.message()
            }
        };
        eprintln!("tributary dev: Kafka {bootstrap}: {state}");
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
                let last = match answered {
                    Ok(status) => format!("status {status}"),
                    Err(e) => e.to_string(),
                };
                return Err(DevError::NotReady {
                    workload,
                    url: url.clone(),
                    last,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

type Ended = Result<(&'static str, Result<(), String>), tokio::task::JoinError>;

/// The running workloads, each task's name kept for a panic's report.
#[derive(Default)]
struct Workloads {
    set: JoinSet<(&'static str, Result<(), String>)>,
    names: HashMap<tokio::task::Id, &'static str>,
}

impl Workloads {
    /// Runs `workload` as a task, its outcome named.
    fn start<E, F>(&mut self, name: &'static str, workload: F)
    where
        E: std::fmt::Display,
        F: std::future::Future<Output = Result<(), E>> + Send + 'static,
    {
        let task = self
            .set
            .spawn(async move { (name, workload.await.map_err(|e| e.to_string())) });
        self.names.insert(task.id(), name);
    }

    /// A workload that ended before it was asked to: an error either way.
    fn ended_early(&self, ended: Ended) -> DevError {
        match self.outcome(ended) {
            Err(e) => e,
            Ok(workload) => DevError::Workload {
                workload,
                message: "ended without being asked to".to_owned(),
            },
        }
    }

    fn outcome(&self, ended: Ended) -> Result<&'static str, DevError> {
        match ended {
            Ok((workload, Ok(()))) => Ok(workload),
            Ok((workload, Err(message))) => Err(DevError::Workload { workload, message }),
            Err(e) => Err(DevError::Workload {
                workload: self.names.get(&e.id()).copied().unwrap_or("a workload"),
                message: e.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::hint_from;

    #[test]
    fn the_hint_says_whether_the_consumer_has_partitions() {
        let stuck = "consumer_messages_consumed_total 0\nconsumer_assigned_partitions 0\n";
        assert!(hint_from(stuck).contains("no partitions assigned"));
        let working = "consumer_messages_consumed_total 40\nconsumer_assigned_partitions 12\n";
        assert!(hint_from(working).contains("12 partitions and consumed 40"));
        assert!(hint_from("").contains("say nothing"));
    }
}
