//! Consumer replicas from Kafka lag: the pure rule, HPA/KEDA semantics.
//!
//! Given the group's total lag `L`, the events topic's partitions `P` and
//! the replicas running now:
//! 1. `raw = ceil(L / lagPerReplica)`; when `L / (lagPerReplica × current)`
//!    is within ±10 % of 1 the current count stands (noise does not move it).
//! 2. Clamped to `[minReplicas, min(maxReplicas, P)]`: a consumer beyond
//!    the partitions would sit idle.
//! 3. Up at once, at most doubling (or +4, whichever is more) per poll.
//! 4. Down only to the highest recommendation seen within the
//!    stabilization window, so a dip must last the whole window.
//! 5. A failed lag read changes nothing and is not recorded; the window
//!    does not age meanwhile. (Only a count above the bounds, after the
//!    spec or the partitions changed, is brought within them.)
//!
//! The recommendations of the window and the last scale time are returned
//! as [`History`], which reconcile keeps in the pipeline's status so a
//! restarted operator remembers them.

use std::collections::VecDeque;

pub mod grow;
pub mod poll;

/// Band around the current replicas within which lag does not move them.
pub const TOLERANCE: f64 = 0.1;

/// The spec's scaling settings, as the rule needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub min_replicas: i32,
    pub max_replicas: i32,
    pub lag_per_replica: i64,
    pub window_seconds: i64,
}

/// One recommendation: `replicas` at unix second `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recommendation {
    pub at: i64,
    pub replicas: i32,
}

/// What the rule remembers between polls.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct History {
    /// Recommendations within the window that can still be its highest:
    /// oldest first, each higher than every later one.
    pub recommendations: VecDeque<Recommendation>,
    /// Unix second of the last change of replicas.
    pub last_scale: Option<i64>,
}

/// Why the replicas are what [`decide`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Lag within the tolerance band, or the recommendation equals the
    /// current count.
    Steady,
    ScaleUp,
    /// Up, but limited by the rate of one doubling per poll.
    ScaleUpLimited,
    ScaleDown,
    /// A lower recommendation is held back by a higher one in the window.
    Stabilizing,
    /// The lag could not be read: nothing changes.
    NoReading,
    /// More replicas run than the bounds allow (the spec or the partitions
    /// changed): brought within them.
    Bounded,
}

/// The outcome of one poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub replicas: i32,
    /// This poll's recommendation (`None` without a reading).
    pub recommendation: Option<i32>,
    pub reason: Reason,
    pub history: History,
}

/// `[min, min(max, P)]`, never empty: when the partitions are fewer than
/// `min` they win, and at least one replica runs.
pub fn bounds(policy: &Policy, partitions: i32) -> (i32, i32) {
    let upper = policy.max_replicas.min(partitions).max(1);
    (policy.min_replicas.clamp(1, upper), upper)
}

/// The unclamped recommendation for `lag` with `current` replicas.
pub fn raw_recommendation(policy: &Policy, current: i32, lag: i64) -> i32 {
    let target = policy.lag_per_replica.max(1);
    let lag = lag.max(0);
    if current > 0 {
        let ratio = lag as f64 / (target as f64 * f64::from(current));
        if (ratio - 1.0).abs() <= TOLERANCE {
            return current;
        }
    }
    let raw = lag / target + i64::from(lag % target != 0);
    i32::try_from(raw).unwrap_or(i32::MAX)
}

/// Most replicas one poll may add to `current`.
fn scale_up_limit(current: i32) -> i32 {
    current.saturating_mul(2).max(current.saturating_add(4))
}

/// The replicas after a poll at unix second `now` that read `lag` (`None`:
/// the read failed), with `current` replicas running and `partitions` in
/// the events topic.
pub fn decide(
    policy: &Policy,
    current: i32,
    partitions: i32,
    lag: Option<i64>,
    history: &History,
    now: i64,
) -> Decision {
    let (lower, upper) = bounds(policy, partitions);
    let mut history = history.clone();
    let Some(lag) = lag else {
        // Nothing is learnt; only a count beyond the bounds is corrected,
        // and only downward to the partitions (never on missing data
        // otherwise).
        let (replicas, reason) = if current > upper {
            (upper, Reason::Bounded)
        } else {
            (current, Reason::NoReading)
        };
        // Nor does the window age: an outage longer than the window must
        // not let the first reading after it scale down at once.
        return finish(current, replicas, None, reason, history, now);
    };
    while history
        .recommendations
        .front()
        .is_some_and(|r| r.at <= now - policy.window_seconds.max(0))
    {
        history.recommendations.pop_front();
    }
    let recommendation = raw_recommendation(policy, current, lag).clamp(lower, upper);
    // Only the highest recommendation of the window matters, so one that
    // a later, higher or equal one outlives is dropped: the deque stays
    // descending and small however long the window.
    while history
        .recommendations
        .back()
        .is_some_and(|r| r.replicas <= recommendation)
    {
        history.recommendations.pop_back();
    }
    history.recommendations.push_back(Recommendation {
        at: now,
        replicas: recommendation,
    });
    let (replicas, reason) = if current > upper || (current < lower && recommendation <= lower) {
        (current.clamp(lower, upper), Reason::Bounded)
    } else if recommendation > current {
        // Never below the bounds, whatever the rate limit says.
        let limit = scale_up_limit(current).max(lower);
        if recommendation > limit {
            (limit, Reason::ScaleUpLimited)
        } else {
            (recommendation, Reason::ScaleUp)
        }
    } else if recommendation < current {
        let highest = history
            .recommendations
            .front()
            .map_or(recommendation, |r| r.replicas);
        if highest >= current {
            (current, Reason::Stabilizing)
        } else {
            (highest, Reason::ScaleDown)
        }
    } else {
        (current, Reason::Steady)
    };
    finish(
        current,
        replicas,
        Some(recommendation),
        reason,
        history,
        now,
    )
}

fn finish(
    current: i32,
    replicas: i32,
    recommendation: Option<i32>,
    reason: Reason,
    mut history: History,
    now: i64,
) -> Decision {
    if replicas != current {
        history.last_scale = Some(now);
    }
    Decision {
        replicas,
        recommendation,
        reason,
        history,
    }
}

#[cfg(test)]
mod tests;
