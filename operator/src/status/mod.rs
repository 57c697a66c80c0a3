//! The pipeline's status from what reconcile observed: pure, so the same
//! observations always give the same status (a write that changes nothing
//! does not re-trigger reconcile), and a condition's `lastTransitionTime`
//! moves only when its status does.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::AnalyticsPipelineStatus;
use crate::topics::{TopicChange, TopicError, TopicOutcome};

mod reason;
mod scaling;
mod verdict;

pub use reason::{Announcement, ConditionType, Reason, announcement};
pub use scaling::ScalingObserved;
use scaling::{scaling_active_verdict, scaling_limited_verdict};
pub use verdict::{Truth, Verdict};
use verdict::{unknown, verdict};

// The condition types as written, for reading conditions back.
pub const READY: &str = ConditionType::Ready.as_str();
pub const TOPICS_READY: &str = ConditionType::TopicsReady.as_str();
pub const MIGRATIONS_COMPLETE: &str = ConditionType::MigrationsComplete.as_str();
pub const PROGRESSING: &str = ConditionType::Progressing.as_str();
pub const DEGRADED: &str = ConditionType::Degraded.as_str();
pub const SCALING_ACTIVE: &str = ConditionType::ScalingActive.as_str();
pub const SCALING_LIMITED: &str = ConditionType::ScalingLimited.as_str();

/// Where the migration Job stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Migration {
    /// `spec.migrations: false`.
    Disabled,
    /// Not looked at: an earlier step (the spec, the topics) stopped the
    /// reconcile. The previous condition stands.
    Waiting,
    /// Created and not finished.
    Running,
    /// Created, and its pod cannot start: `reason` (`Unschedulable`,
    /// `PodNotStarting`, `NoPod`) and what Kubernetes says.
    Pending {
        reason: Reason,
        message: String,
    },
    Succeeded,
    /// Out of retries; the Job's reason.
    Failed {
        reason: String,
    },
}

impl Migration {
    /// Whether the Job has yet to finish (running or stuck before it runs).
    pub fn in_progress(&self) -> bool {
        matches!(self, Migration::Running | Migration::Pending { .. })
    }
}

/// What one reconcile saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub generation: Option<i64>,
    /// What the spec asks that cannot be built (a message naming the field).
    pub invalid_spec: Option<String>,
    /// The topics, or why Kafka could not be asked; `None` when they were
    /// not checked (the spec is invalid).
    pub topics: Option<Result<Vec<TopicOutcome>, TopicError>>,
    pub migration: Migration,
    /// Whether the workloads were applied and looked at this time (not
    /// when an earlier step stopped the reconcile).
    pub workloads_observed: bool,
    /// Workloads whose Deployment has all its replicas updated and
    /// available, and those that have not yet.
    pub workloads_ready: Vec<String>,
    pub workloads_pending: Vec<String>,
    /// Rollouts past their progress deadline: `component: reason: message`.
    pub workloads_stalled: Vec<String>,
    /// A write or read of the Kubernetes API that failed, naming the object.
    pub api_error: Option<String>,
    pub partitions: Option<i32>,
    pub consumer_replicas: Option<i32>,
    pub consumer_lag: Option<i64>,
    pub schema_version: Option<String>,
    pub endpoints: BTreeMap<String, String>,
    /// Partitions the operator added to the events topic.
    pub grown_partitions: Option<i32>,
    /// The lag autoscaler; `None` with scaling off (its conditions go).
    pub scaling: Option<ScalingObserved>,
}

fn topics_verdict(topics: &Option<Result<Vec<TopicOutcome>, TopicError>>) -> Verdict {
    match topics {
        None => unknown(
            ConditionType::TopicsReady,
            Reason::NotChecked,
            "the spec is invalid: topics are checked once it is fixed",
        ),
        Some(Err(e)) => verdict(
            ConditionType::TopicsReady,
            false,
            Reason::of_topic_error(e),
            e.to_string(),
        ),
        Some(Ok(outcomes)) => {
            let problems: Vec<&TopicOutcome> =
                outcomes.iter().filter(|o| !o.as_specified()).collect();
            match problems.first() {
                None => verdict(
                    ConditionType::TopicsReady,
                    true,
                    Reason::TopicsAsSpecified,
                    outcomes
                        .iter()
                        .map(TopicOutcome::state)
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
                Some(first) => {
                    let reason = match first.change {
                        TopicChange::ShrinkRefused { .. } => Reason::ShrinkRefused,
                        TopicChange::GrowUnsupported { .. } => Reason::GrowUnsupported,
                        _ => Reason::RetentionUnsupported,
                    };
                    let message = problems
                        .iter()
                        .flat_map(|o| {
                            let partitions = (!matches!(
                                o.change,
                                TopicChange::Created
                                    | TopicChange::Grown { .. }
                                    | TopicChange::Unchanged
                            ))
                            .then(|| o.message());
                            partitions.into_iter().chain(o.retention_message())
                        })
                        .collect::<Vec<_>>()
                        .join("; ");
                    verdict(ConditionType::TopicsReady, false, reason, message)
                }
            }
        }
    }
}

fn migration_verdict(m: &Migration) -> Verdict {
    match m {
        Migration::Disabled => verdict(
            ConditionType::MigrationsComplete,
            true,
            Reason::Disabled,
            "spec.migrations is false: schemas are the user's to migrate".into(),
        ),
        Migration::Waiting => unknown(
            ConditionType::MigrationsComplete,
            Reason::Waiting,
            "the migration starts once the spec is valid and the topics are checked",
        )
        .unless_known(),
        Migration::Running => verdict(
            ConditionType::MigrationsComplete,
            false,
            Reason::Running,
            "the migration Job is running; workloads roll after it".into(),
        ),
        Migration::Pending { reason, message } => verdict(
            ConditionType::MigrationsComplete,
            false,
            *reason,
            format!("the migration Job's pod cannot start: {message}"),
        ),
        Migration::Succeeded => verdict(
            ConditionType::MigrationsComplete,
            true,
            Reason::Succeeded,
            "the migration Job succeeded".into(),
        ),
        Migration::Failed { reason } => verdict(
            ConditionType::MigrationsComplete,
            false,
            Reason::Failed,
            format!("the migration Job failed: {reason}"),
        ),
    }
}

/// What is failing, in order: `(reason, message)`.
fn failures(o: &Observed, topics: &Verdict, migration: &Verdict) -> Vec<(Reason, String)> {
    let mut failing = Vec::new();
    if let Some(e) = &o.invalid_spec {
        failing.push((Reason::InvalidSpec, e.clone()));
    }
    if topics.truth == Truth::False {
        failing.push((topics.reason, topics.message.clone()));
    }
    if let Migration::Failed { .. } = o.migration {
        failing.push((Reason::MigrationFailed, migration.message.clone()));
    }
    if let Some(e) = &o.api_error {
        failing.push((Reason::ApplyFailed, e.clone()));
    }
    if !o.workloads_stalled.is_empty() {
        failing.push((
            Reason::RolloutStalled,
            format!("rollout stalled: {}", o.workloads_stalled.join("; ")),
        ));
    }
    failing
}

/// The conditions for `o`, in a fixed order.
fn verdicts(o: &Observed) -> Vec<Verdict> {
    let topics = topics_verdict(&o.topics);
    let migration = migration_verdict(&o.migration);
    let failing = failures(o, &topics, &migration);
    let progressing = o.migration.in_progress() || !o.workloads_pending.is_empty();
    let progress = if let Migration::Pending { .. } = o.migration {
        format!("waiting for the migration Job; {}", migration.message)
    } else if o.migration == Migration::Running {
        "waiting for the migration Job".to_owned()
    } else if o.workloads_pending.is_empty() {
        "every workload is up to date".to_owned()
    } else {
        format!("rolling out: {}", o.workloads_pending.join(", "))
    };
    let ready = failing.is_empty() && migration.ok() && !progressing && o.workloads_observed;
    let ready_message = if ready {
        format!("ready: {}", o.workloads_ready.join(", "))
    } else if let Some((_, first)) = failing.first() {
        first.clone()
    } else {
        progress.clone()
    };
    let mut progressing_verdict = verdict(
        ConditionType::Progressing,
        progressing,
        if progressing {
            Reason::RollingOut
        } else {
            Reason::Stable
        },
        progress,
    );
    if !o.workloads_observed && !o.migration.in_progress() {
        progressing_verdict = progressing_verdict.unless_known();
    }
    let mut all = vec![
        verdict(
            ConditionType::Ready,
            ready,
            if ready {
                Reason::Ready
            } else if failing.is_empty() {
                Reason::Progressing
            } else {
                Reason::Degraded
            },
            ready_message,
        ),
        topics,
        migration,
        progressing_verdict,
        verdict(
            ConditionType::Degraded,
            !failing.is_empty(),
            failing
                .first()
                .map_or(Reason::Healthy, |(reason, _)| *reason),
            if failing.is_empty() {
                "nothing is failing".into()
            } else {
                failing
                    .iter()
                    .map(|(_, m)| m.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            },
        ),
    ];
    if let Some(s) = &o.scaling {
        all.push(scaling_active_verdict(s));
        all.push(scaling_limited_verdict(s));
    }
    all
}

/// A status to write, and the verdicts its conditions were made from (to
/// tell, as Events, the ones that moved).
#[derive(Debug, Clone, PartialEq)]
pub struct Next {
    pub status: AnalyticsPipelineStatus,
    pub verdicts: Vec<Verdict>,
}

/// `v` as a condition after `before`: its transition time kept while its
/// status holds, `now` when it changes; `before` itself if `v` was not
/// observed.
fn condition(
    v: &Verdict,
    before: Option<&Condition>,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    if v.keep
        && let Some(kept) = before
    {
        return kept.clone();
    }
    let status = v.truth.as_str();
    let since = before
        .filter(|c| c.status == status)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    Condition {
        type_: v.type_.as_str().to_owned(),
        status: status.to_owned(),
        reason: v.reason.as_str().to_owned(),
        message: v.message.clone(),
        observed_generation: generation,
        last_transition_time: since,
    }
}

fn before(previous: Option<&AnalyticsPipelineStatus>, t: ConditionType) -> Option<&Condition> {
    previous.and_then(|p| p.conditions.iter().find(|c| c.type_ == t.as_str()))
}

/// The status after `o`, keeping each condition's transition time from
/// `previous` while its status holds; `now` stamps the ones that change.
pub fn next_status(previous: Option<&AnalyticsPipelineStatus>, o: &Observed, now: &Time) -> Next {
    let verdicts = verdicts(o);
    let conditions = verdicts
        .iter()
        .map(|v| condition(v, before(previous, v.type_), o.generation, now))
        .collect();
    let status = AnalyticsPipelineStatus {
        observed_generation: o.generation,
        conditions,
        partitions: o.partitions,
        consumer_replicas: o.consumer_replicas,
        consumer_lag: o.consumer_lag,
        schema_version: o.schema_version.clone(),
        endpoints: o.endpoints.clone(),
        grown_partitions: o.grown_partitions,
        scaling: o.scaling.as_ref().map(|s| s.status.clone()),
    };
    Next { status, verdicts }
}

/// The status of a paused pipeline: what was last observed, with
/// `Progressing` saying that nothing is applied until `spec.paused` is
/// cleared.
pub fn paused(
    previous: Option<&AnalyticsPipelineStatus>,
    generation: Option<i64>,
    now: &Time,
) -> Next {
    let v = verdict(
        ConditionType::Progressing,
        false,
        Reason::Paused,
        "spec.paused is true: nothing is applied until it is cleared".to_owned(),
    );
    let mut status = previous.cloned().unwrap_or_default();
    status.observed_generation = generation;
    // Pausing is a transition of its own, though Progressing was False.
    let was_paused = before(previous, v.type_).filter(|c| c.reason == v.reason.as_str());
    let progressing = condition(&v, was_paused, generation, now);
    status.conditions.retain(|c| c.type_ != PROGRESSING);
    status.conditions.push(progressing);
    Next {
        status,
        verdicts: vec![v],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topics::Retention;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap_or_default())
    }

    fn topic(change: TopicChange, partitions: i32) -> TopicOutcome {
        TopicOutcome {
            name: "events".into(),
            partitions,
            change,
            retention: Retention::AsSpecified,
        }
    }

    fn status_after(
        previous: Option<&AnalyticsPipelineStatus>,
        o: &Observed,
        now: &Time,
    ) -> AnalyticsPipelineStatus {
        next_status(previous, o, now).status
    }

    fn paused_status(
        previous: Option<&AnalyticsPipelineStatus>,
        generation: Option<i64>,
        now: &Time,
    ) -> AnalyticsPipelineStatus {
        paused(previous, generation, now).status
    }

    fn healthy() -> Observed {
        Observed {
            generation: Some(3),
            invalid_spec: None,
            topics: Some(Ok(vec![topic(TopicChange::Unchanged, 12)])),
            migration: Migration::Succeeded,
            workloads_observed: true,
            workloads_ready: vec!["auth".into(), "capture".into()],
            workloads_pending: vec![],
            workloads_stalled: vec![],
            api_error: None,
            partitions: Some(12),
            consumer_replicas: Some(1),
            consumer_lag: None,
            schema_version: Some("2".into()),
            endpoints: BTreeMap::new(),
            grown_partitions: None,
            scaling: None,
        }
    }

    fn condition<'a>(s: &'a AnalyticsPipelineStatus, t: &str) -> &'a Condition {
        s.conditions
            .iter()
            .find(|c| c.type_ == t)
            .unwrap_or_else(|| panic!("no {t}"))
    }

    #[test]
    fn a_healthy_pipeline_is_ready_and_nothing_else_is_claimed() {
        let s = status_after(None, &healthy(), &at(100));
        let types: Vec<&str> = s.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(
            types,
            [
                READY,
                TOPICS_READY,
                MIGRATIONS_COMPLETE,
                PROGRESSING,
                DEGRADED
            ]
        );
        assert_eq!(condition(&s, READY).status, "True");
        assert_eq!(condition(&s, DEGRADED).status, "False");
        assert_eq!(condition(&s, PROGRESSING).status, "False");
        assert_eq!(s.observed_generation, Some(3));
        assert!(
            s.conditions
                .iter()
                .all(|c| c.observed_generation == Some(3))
        );
    }

    #[test]
    fn the_same_observations_give_the_same_status() {
        let first = status_after(None, &healthy(), &at(100));
        let again = status_after(Some(&first), &healthy(), &at(200));
        assert_eq!(first, again, "an unchanged status must not be rewritten");
        // Creating a topic is news for an Event, not a change of state.
        let mut created = healthy();
        created.topics = Some(Ok(vec![topic(TopicChange::Created, 12)]));
        assert_eq!(status_after(Some(&first), &created, &at(300)), first);
    }

    #[test]
    fn transition_times_move_only_with_the_status() {
        let first = status_after(None, &healthy(), &at(100));
        let mut o = healthy();
        o.workloads_pending = vec!["query".into()];
        let rolling = status_after(Some(&first), &o, &at(200));
        assert_eq!(condition(&rolling, READY).status, "False");
        assert_eq!(condition(&rolling, READY).last_transition_time, at(200));
        assert_eq!(
            condition(&rolling, TOPICS_READY).last_transition_time,
            at(100)
        );
        // A new message with the same status keeps the time.
        o.workloads_pending = vec!["query".into(), "capture".into()];
        let still = status_after(Some(&rolling), &o, &at(300));
        assert_ne!(
            condition(&still, PROGRESSING).message,
            condition(&rolling, PROGRESSING).message
        );
        assert_eq!(condition(&still, PROGRESSING).last_transition_time, at(200));
    }

    #[test]
    fn refused_topics_and_failed_migrations_degrade_with_their_reason() {
        let mut o = healthy();
        o.topics = Some(Ok(vec![topic(
            TopicChange::ShrinkRefused { wanted: 6 },
            12,
        )]));
        let s = status_after(None, &o, &at(1));
        assert_eq!(condition(&s, TOPICS_READY).reason, "ShrinkRefused");
        assert_eq!(condition(&s, DEGRADED).status, "True");
        assert!(
            condition(&s, READY).message.contains("set 12 or more"),
            "{}",
            condition(&s, READY).message
        );

        let mut o = healthy();
        o.topics = Some(Ok(vec![topic(
            TopicChange::GrowUnsupported {
                wanted: 24,
                reason: "UnsupportedFeature".into(),
            },
            12,
        )]));
        assert_eq!(
            condition(&status_after(None, &o, &at(1)), TOPICS_READY).reason,
            "GrowUnsupported"
        );

        let mut o = healthy();
        o.migration = Migration::Failed {
            reason: "BackoffLimitExceeded".into(),
        };
        let s = status_after(None, &o, &at(1));
        assert_eq!(condition(&s, MIGRATIONS_COMPLETE).reason, "Failed");
        assert!(
            condition(&s, DEGRADED)
                .message
                .contains("BackoffLimitExceeded")
        );
        assert_eq!(condition(&s, READY).status, "False");
    }

    #[test]
    fn a_retention_the_broker_will_not_change_is_reported_and_a_change_is_not_a_state() {
        let mut o = healthy();
        let mut events = topic(TopicChange::Unchanged, 12);
        events.retention = Retention::Unsupported {
            have_ms: Some(604_800_000),
            wanted_ms: 86_400_000,
            reason: "PolicyViolation: retention is fixed".into(),
        };
        o.topics = Some(Ok(vec![events.clone()]));
        let s = status_after(None, &o, &at(1));
        let c = condition(&s, TOPICS_READY);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "RetentionUnsupported")
        );
        assert!(
            c.message.contains("for 168 h") && c.message.contains("asks for 24 h"),
            "{}",
            c.message
        );
        assert!(c.message.contains("PolicyViolation"), "{}", c.message);
        assert_eq!(condition(&s, DEGRADED).status, "True");

        events.retention = Retention::Changed {
            from_ms: Some(604_800_000),
            to_ms: 86_400_000,
        };
        o.topics = Some(Ok(vec![events]));
        let before = status_after(None, &healthy(), &at(1));
        assert_eq!(status_after(Some(&before), &o, &at(2)), before);
    }

    #[test]
    fn a_running_migration_is_progress_not_failure() {
        let mut o = healthy();
        o.migration = Migration::Running;
        let s = status_after(None, &o, &at(1));
        assert_eq!(condition(&s, PROGRESSING).status, "True");
        assert_eq!(condition(&s, DEGRADED).status, "False");
        assert_eq!(condition(&s, READY).reason, "Progressing");
    }

    #[test]
    fn an_invalid_spec_is_a_condition_naming_the_field() {
        let mut o = healthy();
        o.invalid_spec = Some("spec.clickhouse.url: \"x\": relative URL without a base".into());
        o.topics = None;
        o.migration = Migration::Waiting;
        let s = status_after(None, &o, &at(1));
        assert_eq!(condition(&s, TOPICS_READY).status, "Unknown");
        assert_eq!(condition(&s, MIGRATIONS_COMPLETE).status, "Unknown");
        assert_eq!(condition(&s, READY).status, "False");
        assert_eq!(condition(&s, DEGRADED).reason, "InvalidSpec");
        assert!(
            condition(&s, READY)
                .message
                .starts_with("spec.clickhouse.url")
        );
        let mut o = healthy();
        o.topics = Some(Err(TopicError::Unreachable {
            bootstrap: "kafka:9092".into(),
            message: "connection refused".into(),
        }));
        assert_eq!(
            condition(&status_after(None, &o, &at(1)), TOPICS_READY).reason,
            "KafkaUnavailable"
        );
        o.topics = Some(Err(TopicError::Create {
            topic: "events".into(),
            message: "InvalidReplicationFactor".into(),
        }));
        let s = status_after(None, &o, &at(1));
        assert_eq!(condition(&s, TOPICS_READY).reason, "TopicCreateFailed");
        assert!(
            condition(&s, TOPICS_READY)
                .message
                .contains("InvalidReplicationFactor")
        );
    }

    #[test]
    fn a_paused_pipeline_keeps_what_was_observed_and_says_it_is_paused() {
        let before = status_after(None, &healthy(), &at(100));
        let s = paused_status(Some(&before), Some(4), &at(200));
        assert_eq!(condition(&s, READY), condition(&before, READY));
        assert_eq!(condition(&s, PROGRESSING).reason, "Paused");
        assert_eq!(condition(&s, PROGRESSING).last_transition_time, at(200));
        assert_eq!(s.observed_generation, Some(4));
        assert_eq!(
            paused_status(Some(&s), Some(4), &at(300)),
            s,
            "paused twice is one write"
        );
    }

    #[test]
    fn what_was_not_looked_at_keeps_its_previous_condition() {
        let before = status_after(None, &healthy(), &at(100));
        let mut kafka_down = healthy();
        kafka_down.topics = Some(Err(TopicError::Unreachable {
            bootstrap: "kafka:9092".into(),
            message: "connection refused".into(),
        }));
        kafka_down.migration = Migration::Waiting;
        kafka_down.workloads_observed = false;
        kafka_down.workloads_ready.clear();
        let s = status_after(Some(&before), &kafka_down, &at(200));
        assert_eq!(
            condition(&s, MIGRATIONS_COMPLETE),
            condition(&before, MIGRATIONS_COMPLETE),
            "the migration did succeed; Kafka being down does not change that"
        );
        assert_eq!(condition(&s, PROGRESSING), condition(&before, PROGRESSING));
        assert_eq!(condition(&s, READY).status, "False");
        assert_eq!(condition(&s, DEGRADED).reason, "KafkaUnavailable");
        // With nothing before, not looked at is Unknown.
        let first = status_after(None, &kafka_down, &at(200));
        assert_eq!(condition(&first, MIGRATIONS_COMPLETE).status, "Unknown");
    }

    #[test]
    fn api_errors_and_stalled_rollouts_degrade_naming_what_failed() {
        let mut o = healthy();
        o.api_error = Some("applying Deployment shop-query: admission webhook denied".into());
        let s = status_after(None, &o, &at(1));
        assert_eq!(condition(&s, DEGRADED).reason, "ApplyFailed");
        assert!(condition(&s, READY).message.contains("shop-query"));
        let mut o = healthy();
        o.workloads_stalled =
            vec!["query: ProgressDeadlineExceeded: ReplicaSet has timed out".into()];
        let s = status_after(None, &o, &at(1));
        assert_eq!(condition(&s, DEGRADED).reason, "RolloutStalled");
        assert_eq!(condition(&s, READY).status, "False");
    }
}
