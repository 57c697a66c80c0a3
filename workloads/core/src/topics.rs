//! Kafka topics brought to a [`Topic`]: what to do (pure [`plan`]), and
//! doing it through the broker's admin API ([`KafkaAdmin`]). The operator
//! keeps a pipeline's topics with it, `tributary dev` the local ones.
//!
//! Topics are created with the spec's partitions, replication and
//! retention; partitions grow where the broker supports it and never shrink
//! (Kafka cannot): a lower value in the spec is reported, not applied. A
//! changed retention reaches the existing topic ([`crate::topic_config`]),
//! or is reported where the broker will not change it.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::topic_config::{ConfigError, TopicConfigs};

/// A topic as wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
    pub retention_hours: i64,
}

/// What a topic needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicStep {
    Create,
    Grow {
        from: i32,
    },
    /// The spec asks for fewer partitions than the topic has.
    RefuseShrink {
        have: i32,
    },
    Keep,
}

impl TopicStep {
    /// How the topic stands once this step was taken. `grown` says how a
    /// `Grow` went (`Err`: the broker's reason it cannot add partitions);
    /// other steps ignore it.
    pub fn outcome(self, spec: &Topic, grown: Result<(), String>) -> TopicOutcome {
        let (partitions, change) = match (self, grown) {
            (TopicStep::Create, _) => (spec.partitions, TopicChange::Created),
            (TopicStep::Grow { from }, Ok(())) => (spec.partitions, TopicChange::Grown { from }),
            (TopicStep::Grow { from }, Err(reason)) => (
                from,
                TopicChange::GrowUnsupported {
                    wanted: spec.partitions,
                    reason,
                },
            ),
            (TopicStep::RefuseShrink { have }, _) => (
                have,
                TopicChange::ShrinkRefused {
                    wanted: spec.partitions,
                },
            ),
            (TopicStep::Keep, _) => (spec.partitions, TopicChange::Unchanged),
        };
        TopicOutcome {
            name: spec.name.clone(),
            partitions,
            change,
            retention: Retention::AsSpecified,
        }
    }
}

/// What became of a topic's retention.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Retention {
    /// The broker keeps messages as long as the spec asks.
    #[default]
    AsSpecified,
    /// Changed now from `from_ms` (`None`: the broker's default).
    Changed { from_ms: Option<i64>, to_ms: i64 },
    /// The broker will not change it (`reason`), and keeps `have_ms`.
    Unsupported {
        have_ms: Option<i64>,
        wanted_ms: i64,
        reason: String,
    },
}

/// The step that brings a topic with `observed` partitions (`None`: no
/// such topic) to `desired`.
pub fn plan(desired: &Topic, observed: Option<i32>) -> TopicStep {
    match observed {
        None => TopicStep::Create,
        Some(have) if have < desired.partitions => TopicStep::Grow { from: have },
        Some(have) if have > desired.partitions => TopicStep::RefuseShrink { have },
        Some(_) => TopicStep::Keep,
    }
}

/// How a topic stands after [`ensure`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicOutcome {
    pub name: String,
    /// Partitions it has now.
    pub partitions: i32,
    pub change: TopicChange,
    pub retention: Retention,
}

/// What [`ensure`] did or could not do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicChange {
    Created,
    Grown {
        from: i32,
    },
    Unchanged,
    /// The spec asks for fewer partitions; Kafka cannot remove any.
    ShrinkRefused {
        wanted: i32,
    },
    /// The broker does not support adding partitions.
    GrowUnsupported {
        wanted: i32,
        reason: String,
    },
}

impl TopicOutcome {
    /// Whether the topic is as the spec wants it.
    pub fn as_specified(&self) -> bool {
        matches!(
            self.change,
            TopicChange::Created | TopicChange::Grown { .. } | TopicChange::Unchanged
        ) && !matches!(self.retention, Retention::Unsupported { .. })
    }

    /// What was done to the retention, or why it could not be: `None` when
    /// it is as specified and was not touched.
    pub fn retention_message(&self) -> Option<String> {
        let n = &self.name;
        match &self.retention {
            Retention::AsSpecified => None,
            Retention::Changed { from_ms, to_ms } => Some(format!(
                "changed the retention of topic {n} from {} to {}",
                from_ms.map_or("the broker's default".to_owned(), hours),
                hours(*to_ms)
            )),
            Retention::Unsupported {
                have_ms,
                wanted_ms,
                reason,
            } => Some(format!(
                "topic {n} keeps messages {} and the spec asks for {}, but the broker will not change it ({reason})",
                have_ms.map_or("as the broker's default says".to_owned(), |ms| format!(
                    "for {}",
                    hours(ms)
                )),
                hours(*wanted_ms)
            )),
        }
    }

    /// How the topic stands, whatever was done to it: "topic events has
    /// 12 partitions" (a condition that only says this does not change
    /// when a reconcile created or grew the topic).
    pub fn state(&self) -> String {
        format!("topic {} has {}", self.name, partitions(self.partitions))
    }

    /// One line for a condition or an Event: what was done, or what could
    /// not be.
    pub fn message(&self) -> String {
        let n = &self.name;
        match &self.change {
            TopicChange::Created => {
                format!("created topic {n} with {}", partitions(self.partitions))
            }
            TopicChange::Grown { from } => {
                format!(
                    "grew topic {n} from {from} to {}",
                    partitions(self.partitions)
                )
            }
            TopicChange::Unchanged => self.state(),
            TopicChange::ShrinkRefused { wanted } => format!(
                "topic {n} has {} partitions and the spec asks for {wanted}: Kafka cannot remove partitions; set {} or more",
                self.partitions, self.partitions
            ),
            TopicChange::GrowUnsupported { wanted, reason } => format!(
                "topic {n} has {} partitions and the spec asks for {wanted}, but the broker cannot add partitions ({reason})",
                self.partitions
            ),
        }
    }
}

/// "168 h" (or milliseconds where not whole hours).
fn hours(ms: i64) -> String {
    if ms % 3_600_000 == 0 {
        format!("{} h", ms / 3_600_000)
    } else {
        format!("{ms} ms")
    }
}

/// "1 partition", "12 partitions".
fn partitions(n: i32) -> String {
    if n == 1 {
        "1 partition".to_owned()
    } else {
        format!("{n} partitions")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("Kafka at {bootstrap} did not answer: {message}")]
    Unreachable { bootstrap: String, message: String },
    #[error("creating topic {topic}: {message}")]
    Create { topic: String, message: String },
    #[error("adding partitions to topic {topic}: {message}")]
    Grow { topic: String, message: String },
    #[error("reading topic {topic} from the brokers: {message}")]
    Metadata { topic: String, message: String },
    #[error("changing the settings of topic {topic}: {message}")]
    Config { topic: String, message: String },
}

/// The request and operation timeouts of admin requests for a `timeout`:
/// the broker gives up on the operation (creating a topic) before the
/// client gives up on the request, so a slow creation comes back as the
/// broker's answer, not as a client timeout while the topic is made.
pub fn admin_timeouts(timeout: Duration) -> (Duration, Duration) {
    let operation = timeout
        .saturating_sub(Duration::from_secs(1))
        .max(timeout * 3 / 4);
    (timeout, operation)
}

/// A broker's admin API.
pub struct KafkaAdmin {
    bootstrap: String,
    admin: Arc<AdminClient<DefaultClientContext>>,
    configs: TopicConfigs,
    timeout: Duration,
}

impl KafkaAdmin {
    pub fn new(bootstrap: &str, timeout: Duration) -> Result<Self, TopicError> {
        let admin = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            // Metadata is asked for the pipeline's topics by name; a broker
            // with auto-creation on must not create them on that request.
            .set("allow.auto.create.topics", "false")
            .create()
            .map_err(|e| TopicError::Unreachable {
                bootstrap: bootstrap.to_owned(),
                message: e.to_string(),
            })?;
        Ok(Self {
            bootstrap: bootstrap.to_owned(),
            admin: Arc::new(admin),
            configs: TopicConfigs::new(bootstrap, timeout),
            timeout,
        })
    }

    fn options(&self) -> AdminOptions {
        let (request, operation) = admin_timeouts(self.timeout);
        AdminOptions::new()
            .request_timeout(Some(request))
            .operation_timeout(Some(operation))
    }

    /// Partitions of `topic`, `None` when it does not exist.
    pub async fn partitions(&self, name: &str) -> Result<Option<i32>, TopicError> {
        let admin = Arc::clone(&self.admin);
        let topic = name.to_owned();
        let timeout = self.timeout;
        // The metadata call blocks; keep it off the async threads. Only
        // this topic is asked for (auto-creation is off for this client).
        let metadata = tokio::task::spawn_blocking(move || {
            admin
                .inner()
                .fetch_metadata(Some(&topic), timeout)
                .map(|m| {
                    m.topics()
                        .iter()
                        .find(|t| t.name() == topic)
                        .map(|t| (t.error().map(RDKafkaErrorCode::from), t.partitions().len()))
                })
        })
        .await
        .map_err(|e| self.unreachable(e.to_string()))?
        .map_err(|e| self.unreachable(e.to_string()))?;
        match metadata {
            None | Some((Some(RDKafkaErrorCode::UnknownTopicOrPartition), _)) => Ok(None),
            // Any other answer (no leader yet, not authorised) says nothing
            // about whether the topic exists: creating it on that basis
            // would report a topic that is not there as made.
            Some((Some(code), _)) => Err(TopicError::Metadata {
                topic: name.to_owned(),
                message: code.to_string(),
            }),
            Some((None, 0)) => Ok(None),
            Some((None, n)) => Ok(Some(i32::try_from(n).unwrap_or(i32::MAX))),
        }
    }

    fn unreachable(&self, message: String) -> TopicError {
        TopicError::Unreachable {
            bootstrap: self.bootstrap.clone(),
            message,
        }
    }

    /// Creates the topic; `Ok(false)` when it already existed (made since
    /// the metadata was read).
    async fn create(&self, spec: &Topic) -> Result<bool, TopicError> {
        let retention_ms = (spec.retention_hours * 3_600_000).to_string();
        let topic = NewTopic::new(
            &spec.name,
            spec.partitions,
            TopicReplication::Fixed(spec.replication_factor),
        )
        .set("retention.ms", &retention_ms);
        let err = |message: String| TopicError::Create {
            topic: spec.name.clone(),
            message,
        };
        let results = self
            .admin
            .create_topics([&topic], &self.options())
            .await
            .map_err(|e| err(e.to_string()))?;
        let mut made = true;
        for r in results {
            match r {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => made = false,
                Err((_, code)) => return Err(err(code.to_string())),
            }
        }
        Ok(made)
    }

    /// Adds partitions up to `to`; `Ok(Err(reason))` when the broker does
    /// not support it.
    async fn grow(&self, topic: &str, to: i32) -> Result<Result<(), String>, TopicError> {
        let err = |message: String| TopicError::Grow {
            topic: topic.to_owned(),
            message,
        };
        let count = usize::try_from(to).unwrap_or(0);
        let results = match self
            .admin
            .create_partitions([&NewPartitions::new(topic, count)], &self.options())
            .await
        {
            Ok(results) => results,
            Err(KafkaError::AdminOp(code)) if cannot_grow(code) => {
                return Ok(Err(code.to_string()));
            }
            Err(e) => return Err(err(e.to_string())),
        };
        for r in results {
            match r {
                Ok(_) => {}
                Err((_, code)) if cannot_grow(code) => return Ok(Err(code.to_string())),
                Err((_, code)) => return Err(err(code.to_string())),
            }
        }
        Ok(Ok(()))
    }

    /// Brings `spec`'s topic to its partitions: creates it, grows it, or
    /// reports what cannot be done.
    pub async fn ensure(&self, spec: &Topic) -> Result<TopicOutcome, TopicError> {
        let observed = self.partitions(&spec.name).await?;
        let step = match plan(spec, observed) {
            TopicStep::Create if !self.create(spec).await? => {
                // Someone made it meanwhile: judge it as it is.
                match self.partitions(&spec.name).await? {
                    Some(have) => plan(spec, Some(have)),
                    None => TopicStep::Create,
                }
            }
            other => other,
        };
        let grown = match step {
            TopicStep::Grow { .. } => self.grow(&spec.name, spec.partitions).await?,
            _ => Ok(()),
        };
        let created = step == TopicStep::Create;
        let mut outcome = step.outcome(spec, grown);
        if !created {
            outcome.retention = self.retention(spec).await?;
        }
        Ok(outcome)
    }

    /// Brings an existing topic's retention to the spec's: read, and set
    /// where it differs.
    async fn retention(&self, spec: &Topic) -> Result<Retention, TopicError> {
        const KEY: &str = "retention.ms";
        let wanted = spec.retention_hours.saturating_mul(3_600_000);
        let failed = |e: ConfigError, have: Option<i64>| match e {
            ConfigError::Unreachable { bootstrap, message } => {
                Err(TopicError::Unreachable { bootstrap, message })
            }
            ConfigError::Refused(reason) => Ok(Retention::Unsupported {
                have_ms: have,
                wanted_ms: wanted,
                reason,
            }),
            ConfigError::Failed(message) => Err(TopicError::Config {
                topic: spec.name.clone(),
                message,
            }),
        };
        let parse = |v: Option<String>| v.and_then(|v| v.parse::<i64>().ok());
        let have = match self.configs.get(&spec.name, KEY).await {
            Ok(v) => parse(v),
            Err(e) => return failed(e, None),
        };
        if have == Some(wanted) {
            return Ok(Retention::AsSpecified);
        }
        // A successful answer means the change is committed; brokers serve
        // DescribeConfigs from metadata that may catch up a moment later,
        // so it is not read back here (the next reconcile reads it).
        match self.configs.set(&spec.name, KEY, &wanted.to_string()).await {
            Ok(()) => Ok(Retention::Changed {
                from_ms: have,
                to_ms: wanted,
            }),
            Err(e) => failed(e, have),
        }
    }
}

/// Answers meaning "this broker will not add partitions" (it lacks the
/// API, or a policy or the operator's rights forbid it): a lasting state to
/// report, not an error to retry.
fn cannot_grow(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::UnsupportedFeature
            | RDKafkaErrorCode::UnsupportedVersion
            | RDKafkaErrorCode::InvalidRequest
            | RDKafkaErrorCode::PolicyViolation
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::TopicAuthorizationFailed
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(partitions: i32) -> Topic {
        Topic {
            name: "events".into(),
            partitions,
            replication_factor: 1,
            retention_hours: 168,
        }
    }

    #[test]
    fn topics_are_created_grown_kept_and_never_shrunk() {
        assert_eq!(plan(&spec(12), None), TopicStep::Create);
        assert_eq!(plan(&spec(12), Some(6)), TopicStep::Grow { from: 6 });
        assert_eq!(plan(&spec(12), Some(12)), TopicStep::Keep);
        assert_eq!(
            plan(&spec(12), Some(24)),
            TopicStep::RefuseShrink { have: 24 }
        );
    }

    #[test]
    fn the_broker_gives_up_on_an_operation_before_the_client_gives_up_on_the_request() {
        for secs in [1, 2, 5, 10, 30, 120] {
            let t = Duration::from_secs(secs);
            let (request, operation) = admin_timeouts(t);
            assert_eq!(request, t);
            assert!(operation < request, "{secs}s: {operation:?} vs {request:?}");
            assert!(operation >= request * 3 / 4, "{secs}s: {operation:?}");
        }
        let (request, operation) = admin_timeouts(Duration::from_millis(100));
        assert!(operation < request);
    }

    #[test]
    fn refusals_say_what_to_do() {
        let o = TopicOutcome {
            name: "events".into(),
            partitions: 24,
            change: TopicChange::ShrinkRefused { wanted: 12 },
            retention: Retention::AsSpecified,
        };
        assert!(!o.as_specified());
        assert!(o.message().contains("set 24 or more"), "{}", o.message());
        let o = TopicOutcome {
            name: "events".into(),
            partitions: 12,
            change: TopicChange::GrowUnsupported {
                wanted: 24,
                reason: "UnsupportedVersion".into(),
            },
            retention: Retention::AsSpecified,
        };
        assert!(!o.as_specified());
        assert!(
            o.message().contains("cannot add partitions"),
            "{}",
            o.message()
        );
    }
}
