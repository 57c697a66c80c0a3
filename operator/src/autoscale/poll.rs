//! One poll of the autoscaler, from the spec and the status it left last
//! time to the replicas, the partitions to grow to, and the status to keep:
//! the rules of [`super::decide`] and [`super::grow`] joined, still pure.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::grow::{GrowPolicy, Growth, Saturation, growth};
use super::{
    Decision, History, Policy, Reason, Recommendation, bounds, decide, raw_recommendation,
};
use crate::crd::{ConsumerScaling, ScalingRecommendation, ScalingStatus};

/// A lag reading: the group's total and its largest partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub total: i64,
    pub max_partition: i64,
}

/// Why the replicas cannot follow the lag all the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Limited {
    /// The lag asks for `wanted` replicas; the events topic has only
    /// `partitions` (and `maxReplicas` would allow more).
    Partitions { wanted: i32, partitions: i32 },
    /// The lag asks for `wanted`; `maxReplicas` is `max`.
    MaxReplicas { wanted: i32, max: i32 },
}

/// The outcome of a poll that read the lag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Polled {
    pub reading: Reading,
    /// Replicas before and after.
    pub from: i32,
    pub to: i32,
    pub reason: Reason,
    pub limited: Option<Limited>,
    /// Partitions to add now (`autoGrowPartitions`): grow the events topic
    /// to this many.
    pub grow_to: Option<i32>,
}

/// One poll's result: the replicas to run and the status to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poll {
    pub replicas: i32,
    pub status: ScalingStatus,
}

/// The spec's rule settings.
pub fn policy(spec: &ConsumerScaling) -> Policy {
    Policy {
        min_replicas: spec.min_replicas,
        max_replicas: spec.max_replicas,
        lag_per_replica: spec.lag_per_replica,
        window_seconds: spec.stabilization_window_seconds,
    }
}

/// Unix second `second` as a Kubernetes time.
pub fn time(second: i64) -> Option<Time> {
    Timestamp::from_second(second).ok().map(Time)
}

fn second(t: &Time) -> i64 {
    t.0.as_second()
}

/// Seconds until the next poll is due (0: now), after the last one: the
/// later of what `previous` records and what this process `remembers`
/// (the status it reads may predate its own last write).
pub fn due_in(
    spec: &ConsumerScaling,
    previous: Option<&ScalingStatus>,
    remembered: Option<i64>,
    now: i64,
) -> i64 {
    previous
        .and_then(|s| s.last_poll_time.as_ref())
        .map(second)
        .max(remembered)
        .map_or(0, |last| {
            (last + spec.poll_interval_seconds - now).clamp(0, spec.poll_interval_seconds)
        })
}

/// The replicas between polls: what runs, brought within the bounds
/// (the spec or the partitions may have changed since).
pub fn between_polls(spec: &ConsumerScaling, current: Option<i32>, partitions: i32) -> i32 {
    let (lower, upper) = bounds(&policy(spec), partitions);
    current.unwrap_or(lower).clamp(lower, upper)
}

/// The rule's memory, from the status.
fn history(previous: Option<&ScalingStatus>) -> History {
    let Some(s) = previous else {
        return History::default();
    };
    History {
        recommendations: s
            .recommendations
            .iter()
            .map(|r| Recommendation {
                at: second(&r.time),
                replicas: r.replicas,
            })
            .collect(),
        last_scale: s.last_scale_time.as_ref().map(second),
    }
}

fn saturation(previous: Option<&ScalingStatus>) -> Option<Saturation> {
    let s = previous?;
    Some(Saturation {
        since: second(s.saturated_since.as_ref()?),
        lag: s.lag_when_saturated?,
    })
}

/// A poll at unix second `now`, with `current` replicas running (`None`:
/// none asked for yet) and `partitions` in the events topic; `reading` is
/// `None` when the lag could not be read.
pub fn poll(
    spec: &ConsumerScaling,
    current: Option<i32>,
    partitions: i32,
    reading: Option<Reading>,
    previous: Option<&ScalingStatus>,
    now: i64,
) -> (Poll, Option<Polled>) {
    let policy = policy(spec);
    let (lower, upper) = bounds(&policy, partitions);
    let current = current.unwrap_or(lower);
    let Decision {
        replicas,
        reason,
        history,
        recommendation: _,
    } = decide(
        &policy,
        current,
        partitions,
        reading.map(|r| r.total),
        &history(previous),
        now,
    );
    // What the lag asks for without the tolerance band (which only keeps
    // the current count from moving): the limits and growth judge this.
    let wanted = reading.map(|r| raw_recommendation(&policy, 0, r.total));
    let grow = spec.auto_grow_partitions.as_ref().map(|g| {
        growth(
            &GrowPolicy {
                max_partitions: g.max_partitions,
                window_seconds: g.window_seconds,
            },
            partitions,
            spec.max_replicas,
            wanted.unwrap_or(0),
            reading.map(|r| r.total),
            saturation(previous),
            now,
        )
    });
    let open = match grow {
        Some(Growth::Watching(w)) => Some(w),
        _ => None,
    };
    let status = ScalingStatus {
        last_poll_time: time(now),
        // Set by reconcile when the applied replicas change.
        last_scale_time: previous.and_then(|s| s.last_scale_time.clone()),
        recommendations: history
            .recommendations
            .iter()
            .filter_map(|r| {
                Some(ScalingRecommendation {
                    time: time(r.at)?,
                    replicas: r.replicas,
                })
            })
            .collect(),
        max_partition_lag: reading
            .map(|r| r.max_partition)
            .or_else(|| previous.and_then(|s| s.max_partition_lag)),
        saturated_since: open.and_then(|w| time(w.since)),
        lag_when_saturated: open.map(|w| w.lag),
    };
    let polled = reading.zip(wanted).map(|(reading, wanted)| Polled {
        reading,
        from: current,
        to: replicas,
        reason,
        limited: (wanted > upper).then_some({
            if upper < policy.max_replicas {
                Limited::Partitions { wanted, partitions }
            } else {
                Limited::MaxReplicas {
                    wanted,
                    max: policy.max_replicas,
                }
            }
        }),
        grow_to: match grow {
            Some(Growth::Grow { to }) => Some(to),
            _ => None,
        },
    });
    (Poll { replicas, status }, polled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::PartitionGrowth;

    fn spec(growth: Option<PartitionGrowth>) -> ConsumerScaling {
        ConsumerScaling {
            min_replicas: 1,
            max_replicas: 40,
            lag_per_replica: 10_000,
            stabilization_window_seconds: 300,
            poll_interval_seconds: 15,
            auto_grow_partitions: growth,
        }
    }

    fn reading(total: i64) -> Option<Reading> {
        Some(Reading {
            total,
            max_partition: total / 12,
        })
    }

    #[test]
    fn the_status_round_trips_the_rules_memory() {
        let s = spec(None);
        let (first, polled) = poll(&s, Some(2), 12, reading(40_000), None, 1_000);
        let polled = polled.unwrap_or_else(|| panic!("read"));
        assert_eq!((polled.from, polled.to, first.replicas), (2, 4, 4));
        assert_eq!(polled.reason, Reason::ScaleUp);
        assert_eq!(
            first.status.last_scale_time, None,
            "reconcile stamps a scale once it is applied"
        );
        assert_eq!(first.status.recommendations.len(), 1);
        // The dip is held back by the recommendation kept in the status,
        // as the rule alone would hold it back with its own history.
        let (second_poll, polled) =
            poll(&s, Some(4), 12, reading(10_000), Some(&first.status), 1_100);
        assert_eq!(second_poll.replicas, 4);
        assert_eq!(polled.map(|p| p.reason), Some(Reason::Stabilizing));
        let (after, _) = poll(
            &s,
            Some(4),
            12,
            reading(10_000),
            Some(&second_poll.status),
            1_301,
        );
        assert_eq!(after.replicas, 1, "the window has passed");
    }

    #[test]
    fn a_failed_read_keeps_the_replicas_and_the_memory() {
        let s = spec(None);
        let (first, _) = poll(&s, Some(2), 12, reading(80_000), None, 1_000);
        let (failed, polled) = poll(&s, Some(4), 12, None, Some(&first.status), 1_015);
        assert!(polled.is_none());
        assert_eq!(failed.replicas, 4);
        assert_eq!(failed.status.recommendations, first.status.recommendations);
        assert_eq!(
            failed.status.max_partition_lag,
            first.status.max_partition_lag
        );
        assert_eq!(
            failed.status.last_poll_time.as_ref().map(second),
            Some(1_015)
        );
    }

    #[test]
    fn polls_are_due_every_interval() {
        let s = spec(None);
        assert_eq!(due_in(&s, None, None, 1_000), 0);
        let (p, _) = poll(&s, None, 12, reading(0), None, 1_000);
        assert_eq!(p.replicas, 1, "no replicas yet: the minimum");
        assert_eq!(due_in(&s, Some(&p.status), None, 1_000), 15);
        assert_eq!(due_in(&s, Some(&p.status), None, 1_010), 5);
        assert_eq!(due_in(&s, Some(&p.status), None, 1_015), 0);
        assert_eq!(due_in(&s, Some(&p.status), None, 5_000), 0);
        // A clock that went back never waits longer than one interval.
        assert_eq!(due_in(&s, Some(&p.status), None, 0), 15);
        // A later poll this process remembers counts even when the status
        // read back is older.
        assert_eq!(due_in(&s, Some(&p.status), Some(1_010), 1_015), 10);
        assert_eq!(due_in(&s, None, Some(1_010), 1_015), 10);
        assert_eq!(between_polls(&s, Some(30), 12), 12);
        assert_eq!(between_polls(&s, None, 12), 1);
    }

    #[test]
    fn limits_name_what_binds() {
        let s = spec(None);
        let (_, polled) = poll(&s, Some(12), 12, reading(300_000), None, 0);
        assert_eq!(
            polled.and_then(|p| p.limited),
            Some(Limited::Partitions {
                wanted: 30,
                partitions: 12
            })
        );
        let (_, polled) = poll(&s, Some(12), 60, reading(500_000), None, 0);
        assert_eq!(
            polled.and_then(|p| p.limited),
            Some(Limited::MaxReplicas {
                wanted: 50,
                max: 40
            })
        );
        let (_, polled) = poll(&s, Some(5), 12, reading(50_000), None, 0);
        assert_eq!(polled.and_then(|p| p.limited), None);
    }

    #[test]
    fn growth_is_asked_for_after_a_window_of_rising_lag_and_the_window_is_kept() {
        let s = spec(Some(PartitionGrowth {
            max_partitions: 48,
            window_seconds: 600,
        }));
        let (p, polled) = poll(&s, Some(12), 12, reading(300_000), None, 0);
        assert_eq!(polled.and_then(|p| p.grow_to), None);
        assert_eq!(p.status.saturated_since.as_ref().map(second), Some(0));
        assert_eq!(p.status.lag_when_saturated, Some(300_000));
        // A restart in between: the window comes back from the status.
        let (_, polled) = poll(&s, Some(12), 12, reading(320_000), Some(&p.status), 600);
        assert_eq!(polled.and_then(|p| p.grow_to), Some(24));
    }
}
