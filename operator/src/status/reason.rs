//! The pipeline's condition types and reasons as types: each knows the
//! string it is written as, and [`announcement`] says which Event, if
//! any, a condition's new value is told by, without matching strings.

use kube::runtime::events::EventType;

use super::verdict::Truth;
use crate::topics::TopicError;

/// A condition of `status.conditions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionType {
    Ready,
    TopicsReady,
    MigrationsComplete,
    Progressing,
    Degraded,
    ScalingActive,
    ScalingLimited,
}

impl ConditionType {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "Ready",
            Self::TopicsReady => "TopicsReady",
            Self::MigrationsComplete => "MigrationsComplete",
            Self::Progressing => "Progressing",
            Self::Degraded => "Degraded",
            Self::ScalingActive => "ScalingActive",
            Self::ScalingLimited => "ScalingLimited",
        }
    }
}

/// Why a condition is as it is: its `reason`, written as the variant's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    // Ready
    Ready,
    Progressing,
    Degraded,
    // TopicsReady (the failures also lead Degraded)
    NotChecked,
    TopicsAsSpecified,
    ShrinkRefused,
    GrowUnsupported,
    RetentionUnsupported,
    KafkaUnavailable,
    TopicCreateFailed,
    TopicGrowFailed,
    TopicMetadataError,
    TopicConfigFailed,
    // MigrationsComplete
    Disabled,
    Waiting,
    Running,
    /// The Job's pod cannot be scheduled.
    Unschedulable,
    /// The Job's pod is scheduled and does not start (an image pull, say).
    PodNotStarting,
    /// The Job has made no pod.
    NoPod,
    Succeeded,
    Failed,
    // Progressing
    RollingOut,
    Stable,
    Paused,
    // Degraded
    Healthy,
    InvalidSpec,
    MigrationFailed,
    ApplyFailed,
    RolloutStalled,
    // ScalingActive
    LagUnavailable,
    Steady,
    ScaleUp,
    ScaleUpRateLimited,
    ScaleDown,
    Stabilizing,
    NoReading,
    Bounded,
    // ScalingLimited
    WithinBounds,
    MaxReplicas,
    PartitionsAtMaximum,
    TooFewPartitions,
    PartitionGrowthUnsupported,
    PartitionGrowthFailed,
}

impl Reason {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "Ready",
            Self::Progressing => "Progressing",
            Self::Degraded => "Degraded",
            Self::NotChecked => "NotChecked",
            Self::TopicsAsSpecified => "TopicsAsSpecified",
            Self::ShrinkRefused => "ShrinkRefused",
            Self::GrowUnsupported => "GrowUnsupported",
            Self::RetentionUnsupported => "RetentionUnsupported",
            Self::KafkaUnavailable => "KafkaUnavailable",
            Self::TopicCreateFailed => "TopicCreateFailed",
            Self::TopicGrowFailed => "TopicGrowFailed",
            Self::TopicMetadataError => "TopicMetadataError",
            Self::TopicConfigFailed => "TopicConfigFailed",
            Self::Disabled => "Disabled",
            Self::Waiting => "Waiting",
            Self::Running => "Running",
            Self::Unschedulable => "Unschedulable",
            Self::PodNotStarting => "PodNotStarting",
            Self::NoPod => "NoPod",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::RollingOut => "RollingOut",
            Self::Stable => "Stable",
            Self::Paused => "Paused",
            Self::Healthy => "Healthy",
            Self::InvalidSpec => "InvalidSpec",
            Self::MigrationFailed => "MigrationFailed",
            Self::ApplyFailed => "ApplyFailed",
            Self::RolloutStalled => "RolloutStalled",
            Self::LagUnavailable => "LagUnavailable",
            Self::Steady => "Steady",
            Self::ScaleUp => "ScaleUp",
            Self::ScaleUpRateLimited => "ScaleUpRateLimited",
            Self::ScaleDown => "ScaleDown",
            Self::Stabilizing => "Stabilizing",
            Self::NoReading => "NoReading",
            Self::Bounded => "Bounded",
            Self::WithinBounds => "WithinBounds",
            Self::MaxReplicas => "MaxReplicas",
            Self::PartitionsAtMaximum => "PartitionsAtMaximum",
            Self::TooFewPartitions => "TooFewPartitions",
            Self::PartitionGrowthUnsupported => "PartitionGrowthUnsupported",
            Self::PartitionGrowthFailed => "PartitionGrowthFailed",
        }
    }

    /// The `TopicsReady` reason for a failure to reach or change topics.
    pub fn of_topic_error(e: &TopicError) -> Self {
        match e {
            TopicError::Unreachable { .. } => Self::KafkaUnavailable,
            TopicError::Create { .. } => Self::TopicCreateFailed,
            TopicError::Grow { .. } => Self::TopicGrowFailed,
            TopicError::Metadata { .. } => Self::TopicMetadataError,
            TopicError::Config { .. } => Self::TopicConfigFailed,
        }
    }
}

/// The Event that tells of a condition's new value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announcement {
    pub type_: EventType,
    /// The Event's reason (not always the condition's).
    pub reason: &'static str,
    /// What the operator was doing.
    pub action: &'static str,
}

/// Which Event, if any, tells that condition `type_` became `truth`
/// because of `reason`: failures as Warnings, milestones (a migration
/// started or done, the pipeline ready, a scaling decision) as Normal.
pub fn announcement(type_: ConditionType, truth: Truth, reason: Reason) -> Option<Announcement> {
    use ConditionType as C;
    use EventType::{Normal, Warning};
    use Reason as R;
    let (event, reason, action) = match (type_, truth, reason) {
        (C::TopicsReady, Truth::False, r) => (Warning, r.as_str(), "EnsureTopics"),
        (C::MigrationsComplete, Truth::False, R::Running) => {
            (Normal, "MigrationStarted", "Migrate")
        }
        (C::MigrationsComplete, Truth::False, R::Unschedulable | R::PodNotStarting | R::NoPod) => {
            (Warning, "MigrationPending", "Migrate")
        }
        (C::MigrationsComplete, Truth::False, _) => (Warning, "MigrationFailed", "Migrate"),
        (C::MigrationsComplete, Truth::True, R::Succeeded) => {
            (Normal, "MigrationSucceeded", "Migrate")
        }
        (C::Degraded, Truth::True, R::InvalidSpec) => (Warning, "InvalidSpec", "Validate"),
        (C::Degraded, Truth::True, r @ (R::ApplyFailed | R::RolloutStalled)) => {
            (Warning, r.as_str(), "Apply")
        }
        (C::Ready, Truth::True, _) => (Normal, "Ready", "Reconcile"),
        (C::ScalingActive, Truth::False, r) => (Warning, r.as_str(), "Scale"),
        (
            C::ScalingLimited,
            Truth::True,
            r @ (R::PartitionGrowthUnsupported | R::PartitionGrowthFailed),
        ) => (Warning, r.as_str(), "Scale"),
        (C::ScalingLimited, Truth::True, r) => (Normal, r.as_str(), "Scale"),
        _ => return None,
    };
    Some(Announcement {
        type_: event,
        reason,
        action,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_errors_are_written_as_before() {
        let errors = [
            TopicError::Unreachable {
                bootstrap: "b".into(),
                message: "m".into(),
            },
            TopicError::Create {
                topic: "t".into(),
                message: "m".into(),
            },
            TopicError::Grow {
                topic: "t".into(),
                message: "m".into(),
            },
            TopicError::Metadata {
                topic: "t".into(),
                message: "m".into(),
            },
            TopicError::Config {
                topic: "t".into(),
                message: "m".into(),
            },
        ];
        let written: Vec<&str> = errors
            .iter()
            .map(|e| Reason::of_topic_error(e).as_str())
            .collect();
        assert_eq!(
            written,
            [
                "KafkaUnavailable",
                "TopicCreateFailed",
                "TopicGrowFailed",
                "TopicMetadataError",
                "TopicConfigFailed"
            ]
        );
    }

    #[test]
    fn a_migration_stuck_before_its_pod_runs_is_pending_not_failed() {
        for r in [Reason::Unschedulable, Reason::PodNotStarting, Reason::NoPod] {
            let told = announcement(ConditionType::MigrationsComplete, Truth::False, r);
            assert_eq!(told.map(|a| a.reason), Some("MigrationPending"));
        }
        let told = announcement(
            ConditionType::MigrationsComplete,
            Truth::False,
            Reason::Failed,
        );
        assert_eq!(told.map(|a| a.type_), Some(EventType::Warning));
        assert_eq!(
            announcement(ConditionType::Progressing, Truth::True, Reason::RollingOut),
            None
        );
    }
}
