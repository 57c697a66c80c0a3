//! The lag autoscaler's conditions, `ScalingActive` and `ScalingLimited`,
//! from what it saw. Pure.

use crate::autoscale::Reason as Decision;
use crate::autoscale::poll::{Limited, Polled};
use crate::crd::{ConsumerScaling, ScalingStatus};

use super::reason::{ConditionType, Reason};
use super::verdict::{Verdict, unknown, verdict};

/// What the lag autoscaler saw and keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalingObserved {
    /// `status.scaling`.
    pub status: ScalingStatus,
    /// This reconcile's poll (`Err`: why the lag could not be read);
    /// `None` when no poll was due: the conditions stand.
    pub poll: Option<Result<Polled, String>>,
    /// `spec.consumer.scaling.autoGrowPartitions.maxPartitions`, when set.
    pub max_partitions: Option<i32>,
    /// Partitions were due to be added and were not: `(reason, message)`.
    pub growth_blocked: Option<(Reason, String)>,
}

impl ScalingObserved {
    /// What `status` remembers for `spec`, with no poll this time: the
    /// conditions stand.
    pub fn kept(spec: &ConsumerScaling, status: ScalingStatus) -> Self {
        Self {
            status,
            poll: None,
            max_partitions: spec.auto_grow_partitions.as_ref().map(|g| g.max_partitions),
            growth_blocked: None,
        }
    }
}

/// The `ScalingActive` reason for what the autoscaler decided.
fn decided(r: Decision) -> Reason {
    match r {
        Decision::Steady => Reason::Steady,
        Decision::ScaleUp => Reason::ScaleUp,
        Decision::ScaleUpLimited => Reason::ScaleUpRateLimited,
        Decision::ScaleDown => Reason::ScaleDown,
        Decision::Stabilizing => Reason::Stabilizing,
        Decision::NoReading => Reason::NoReading,
        Decision::Bounded => Reason::Bounded,
    }
}

/// `ScalingActive`: whether the lag could be read, and what it decided.
pub(super) fn scaling_active_verdict(s: &ScalingObserved) -> Verdict {
    match &s.poll {
        None => unknown(
            ConditionType::ScalingActive,
            Reason::Waiting,
            "the lag is read once the topics are ready",
        )
        .unless_known(),
        Some(Err(e)) => verdict(
            ConditionType::ScalingActive,
            false,
            Reason::LagUnavailable,
            format!("{e}; the consumer's replicas stay as they are until the lag can be read"),
        ),
        Some(Ok(p)) => {
            let replicas = if p.from == p.to {
                format!("{} replicas", p.to)
            } else {
                format!("{} -> {} replicas", p.from, p.to)
            };
            verdict(
                ConditionType::ScalingActive,
                true,
                decided(p.reason),
                format!(
                    "lag {} messages (largest partition {}): {replicas}",
                    p.reading.total, p.reading.max_partition
                ),
            )
        }
    }
}

/// `ScalingLimited`: whether the replicas cannot follow the lag.
pub(super) fn scaling_limited_verdict(s: &ScalingObserved) -> Verdict {
    let Some(Ok(p)) = &s.poll else {
        return unknown(
            ConditionType::ScalingLimited,
            Reason::Waiting,
            "the lag has not been read",
        )
        .unless_known();
    };
    if let Some((reason, message)) = &s.growth_blocked {
        return verdict(
            ConditionType::ScalingLimited,
            true,
            *reason,
            message.clone(),
        );
    }
    match (&p.limited, s.max_partitions) {
        (None, _) => verdict(
            ConditionType::ScalingLimited,
            false,
            Reason::WithinBounds,
            "the replicas follow the lag".into(),
        ),
        (Some(Limited::MaxReplicas { wanted, max }), _) => verdict(
            ConditionType::ScalingLimited,
            true,
            Reason::MaxReplicas,
            format!("the lag asks for {wanted} consumers; maxReplicas is {max}"),
        ),
        (Some(Limited::Partitions { wanted, partitions }), Some(max)) if *partitions >= max => {
            verdict(
                ConditionType::ScalingLimited,
                true,
                Reason::PartitionsAtMaximum,
                format!(
                    "the lag asks for {wanted} consumers; the events topic has {partitions} partitions, autoGrowPartitions.maxPartitions ({max})"
                ),
            )
        }
        (Some(Limited::Partitions { wanted, partitions }), Some(_)) => verdict(
            ConditionType::ScalingLimited,
            true,
            Reason::TooFewPartitions,
            format!(
                "the lag asks for {wanted} consumers; the events topic has {partitions} partitions: autoGrowPartitions adds more if the lag keeps rising for its window"
            ),
        ),
        (Some(Limited::Partitions { wanted, partitions }), None) => verdict(
            ConditionType::ScalingLimited,
            true,
            Reason::TooFewPartitions,
            format!(
                "the lag asks for {wanted} consumers; the events topic has {partitions} partitions: raise spec.kafka.events.partitions or set spec.consumer.scaling.autoGrowPartitions"
            ),
        ),
    }
}
