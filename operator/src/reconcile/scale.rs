//! The lag autoscaler's step of reconcile (`spec.consumer.scaling`): when a
//! poll is due, read the consumer group's lag, decide the consumer's
//! replicas ([`crate::autoscale`], pure), add partitions when
//! `autoGrowPartitions` says so, and tell: an Event per change, metrics.
//!
//! Polls are timed by `status.scaling.lastPollTime`, not by reconciles:
//! the watches wake reconcile far more often (a pod becoming ready), and
//! each poll may double the replicas. Between polls the replicas asked for
//! last stand.

use std::time::Duration;

use kube::runtime::events::{Event, EventType};

use super::Context;
use crate::autoscale::poll::{self, Reading};
use crate::crd::{AnalyticsPipeline, ConsumerScaling, TopicSpec};
use crate::kafka::Kafka;
use crate::status::{Reason, ScalingObserved};
use crate::topics::{TopicChange, TopicOutcome};

/// What the step decided.
pub struct Scaled {
    /// Consumer replicas to ask for.
    pub replicas: i32,
    /// What this poll saw; `None` between polls (what the status kept
    /// stands).
    pub observed: Option<ScalingObserved>,
    /// The group's total lag, when read this time.
    pub lag: Option<i64>,
    /// The events topic after partitions were added this time.
    pub grown: Option<TopicOutcome>,
    /// When the next poll is due.
    pub next_poll: Duration,
}

/// The events topic as reconcile ensures it: partitions the operator
/// added stand (the spec's lower count is not a shrink to refuse).
pub fn events_topic(p: &AnalyticsPipeline) -> TopicSpec {
    let mut topic = p.spec.kafka.events.clone();
    if let Some(grown) = p.status.as_ref().and_then(|s| s.grown_partitions) {
        topic.partitions = topic.partitions.max(grown);
    }
    topic
}

/// The events topic as observed, with partitions the operator may have
/// added read as grown rather than as a shrink of the spec: with
/// `autoGrowPartitions`, a topic above the spec's count but within
/// `maxPartitions` is what the autoscaler made, whatever the status says
/// (a status read from a stale cache, or lost in a backup's restore, does
/// not remember the growth). `None`: the outcome stands as it is.
pub fn grown_observed(p: &AnalyticsPipeline, outcome: &TopicOutcome) -> Option<TopicOutcome> {
    let growth = p
        .spec
        .consumer
        .scaling
        .as_ref()?
        .auto_grow_partitions
        .as_ref()?;
    match outcome.change {
        TopicChange::ShrinkRefused { .. } if outcome.partitions <= growth.max_partitions => {
            Some(TopicOutcome {
                change: TopicChange::Unchanged,
                ..outcome.clone()
            })
        }
        _ => None,
    }
}

/// The step for `p`, whose events topic has `partitions`.
pub async fn scale<T: Kafka>(
    ctx: &Context<T>,
    p: &AnalyticsPipeline,
    spec: &ConsumerScaling,
    partitions: i32,
    now: super::clock::Now,
) -> Scaled {
    let now = now.second();
    let previous = p.status.as_ref().and_then(|s| s.scaling.as_ref());
    let current = p.status.as_ref().and_then(|s| s.consumer_replicas);
    let remembered = ctx.last_poll(p);
    let wait = poll::due_in(spec, previous, remembered, now);
    if wait > 0 {
        return Scaled {
            replicas: poll::between_polls(spec, current, partitions),
            observed: None,
            lag: None,
            grown: None,
            next_poll: seconds(wait),
        };
    }
    ctx.polled(p, now);

    let kafka = &p.spec.kafka;
    let labels = super::key(p);
    let read = ctx
        .kafka
        .lag(
            &super::bootstrap(p),
            &kafka.consumer_group,
            &kafka.events.name,
            partitions,
        )
        .await;
    let reading = match &read {
        Ok(lag) => {
            let total = lag.total();
            ctx.metrics.consumer_lag.get_or_create(&labels).set(total);
            Some(Reading {
                total,
                max_partition: lag.max_partition(),
            })
        }
        Err(e) => {
            ctx.metrics.lag_read_errors.get_or_create(&labels).inc();
            tracing::warn!(error = %e, "cannot read the consumer group's lag; replicas stay");
            None
        }
    };
    let (decided, polled) = poll::poll(spec, current, partitions, reading, previous, now);
    let mut observed = ScalingObserved {
        poll: Some(match (&read, &polled) {
            (Ok(_), Some(polled)) => Ok(polled.clone()),
            (Err(e), _) => Err(e.to_string()),
            // A reading always gives a poll outcome.
            (Ok(_), None) => Err("the lag was read but not judged".to_owned()),
        }),
        ..ScalingObserved::kept(spec, decided.status)
    };
    let grow_to = polled.as_ref().and_then(|p| p.grow_to);
    let grown = match (grow_to, reading) {
        (Some(to), Some(reading)) => {
            grow(ctx, p, partitions, to, reading.total, now, &mut observed).await
        }
        _ => None,
    };
    Scaled {
        replicas: decided.replicas,
        observed: Some(observed),
        lag: reading.map(|r| r.total),
        grown,
        next_poll: seconds(spec.poll_interval_seconds),
    }
}

/// Adds partitions to the events topic up to `to`. On success the status
/// remembers the count; where the broker cannot, the window starts over
/// (the next attempt is a window away) and the condition says why.
async fn grow<T: Kafka>(
    ctx: &Context<T>,
    p: &AnalyticsPipeline,
    partitions: i32,
    to: i32,
    lag: i64,
    now: i64,
    observed: &mut ScalingObserved,
) -> Option<TopicOutcome> {
    let mut topic = events_topic(p);
    topic.partitions = to;
    let blocked = |reason: Reason, why: String| {
        (
            reason,
            format!(
                "the lag asks for more consumers than the events topic's {partitions} partitions, and partitions cannot be added: {why}"
            ),
        )
    };
    let outcome = ctx.kafka.ensure(&super::bootstrap(p), &topic).await;
    let status = &mut observed.status;
    match outcome {
        Ok(o) if o.partitions >= to => {
            tracing::info!(topic = %o.name, from = partitions, to = o.partitions, "added partitions to the events topic");
            status.saturated_since = None;
            status.lag_when_saturated = None;
            return Some(o);
        }
        Ok(o) => {
            let why = match &o.change {
                TopicChange::GrowUnsupported { reason, .. } => reason.clone(),
                _ => o.message(),
            };
            observed.growth_blocked = Some(blocked(Reason::PartitionGrowthUnsupported, why));
        }
        Err(e) => {
            observed.growth_blocked = Some(blocked(Reason::PartitionGrowthFailed, e.to_string()));
        }
    }
    status.saturated_since = poll::time(now);
    status.lag_when_saturated = Some(lag);
    None
}

fn seconds(s: i64) -> Duration {
    Duration::from_secs(u64::try_from(s).unwrap_or(0))
}

/// The `ConsumerScaled` Event for applied replicas that moved `from` `to`,
/// with the lag that moved them.
pub fn scaled_event(from: i32, to: i32, lag: Option<i64>, partitions: i32) -> Event {
    let why = lag.map_or_else(
        || format!("bounds over {partitions} partitions"),
        |lag| format!("lag {lag} messages over {partitions} partitions"),
    );
    Event {
        type_: EventType::Normal,
        reason: "ConsumerScaled".into(),
        note: Some(format!("consumer {from} -> {to} replicas: {why}")),
        action: "Scale".into(),
        secondary: None,
    }
}
