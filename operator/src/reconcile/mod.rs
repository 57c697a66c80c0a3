//! Reconcile: one `AnalyticsPipeline` brought to what its spec asks.
//!
//! The steps, each waiting for the one before:
//! 1. `spec.paused`: nothing is applied; the status says so.
//! 2. Validate: what the schema could not refuse becomes an `InvalidSpec`
//!    condition naming the field; nothing is applied.
//! 3. Kafka topics: created, grown, never shrunk ([`crate::topics`]).
//!    Kafka unreachable is an error, retried with backoff.
//! 4. The ConfigMap, then the migration Job for this schema version and
//!    image (created once, then watched).
//! 5. Only after the Job succeeded (or with migrations off): Deployments
//!    (auth, capture, consumer, query), Services and PodDisruptionBudgets
//!    by server-side apply, the consumer's replicas capped at the events
//!    topic's observed partitions; then children no longer wanted are
//!    deleted.
//! 6. With `spec.consumer.scaling`, between 3 and 5: when a poll is due,
//!    the consumer group's lag decides the consumer's replicas (and may
//!    add partitions) ([`scale`]).
//! 7. The status, written only when it differs, and Events for what
//!    changed.

//!
//! Layout: [`context`] (what reconcile works with and keeps between runs),
//! the steps ([`scale`], [`migrate`], [`roll_out`], [`settle`]),
//! [`backoff`] after a failure, [`clock`] (one reading per reconcile);
//! [`observe`] and [`events`] are pure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::runtime::controller::Action;
use tracing::Instrument;

use crate::build::{self, Sizing, meta};
use crate::crd::AnalyticsPipeline;
use crate::kafka::{self, Kafka};
use crate::metrics::ErrorLabels;
use crate::status::{self, Migration, Observed, ScalingObserved};
use crate::topics::{TopicError, TopicOutcome};

pub mod apply;
pub mod backoff;
pub mod clock;
pub mod context;
pub mod error;
pub mod events;
pub mod migrate;
pub mod observe;
pub mod roll_out;
pub mod scale;
pub mod settle;

pub use backoff::{backoff, error_policy};
use clock::Now;
pub use context::{Context, key};
pub use error::Error;
use roll_out::apply_children;
use settle::{settle, settle_observed};

/// How often a settled pipeline is looked at again (topics deleted behind
/// the operator's back, drift the watches missed).
pub const RESYNC: Duration = Duration::from_secs(300);
/// How often a pipeline that is migrating or rolling out is looked at,
/// besides the watches on its Job and Deployments.
pub const WHILE_PROGRESSING: Duration = Duration::from_secs(30);

/// How soon a reconcile whose status write conflicted runs again.
pub const AFTER_CONFLICT: Duration = Duration::from_secs(1);

/// Reconciles `p`, counting and timing it, in one span naming the
/// pipeline (every log line of the reconcile carries it).
pub async fn reconcile<T: Kafka>(
    p: Arc<AnalyticsPipeline>,
    ctx: Arc<Context<T>>,
) -> Result<Action, Error> {
    let started = Instant::now();
    ctx.metrics.reconciles.inc();
    let span = tracing::info_span!(
        "reconcile",
        pipeline = %p.name_any(),
        namespace = %meta::namespace(&p),
    );
    let result = match run(&p, &ctx).instrument(span).await {
        // Not a failure: the newer object is on its way.
        Err(Error::StatusConflict) => {
            tracing::debug!(pipeline = %p.name_any(), "status write conflicted; reconciling again");
            Ok(Action::requeue(AFTER_CONFLICT))
        }
        other => other,
    };
    ctx.metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    match &result {
        Ok(_) => {
            ctx.failures().remove(&key(&p));
        }
        Err(e) => {
            ctx.metrics
                .errors
                .get_or_create(&ErrorLabels {
                    kind: e.kind().to_owned(),
                })
                .inc();
        }
    }
    result
}

/// What the previous status knew, as the starting point of this
/// reconcile's observations: what is not observed again stays as it was.
fn carried_over(p: &AnalyticsPipeline) -> Observed {
    let previous = p.status.clone().unwrap_or_default();
    Observed {
        generation: p.metadata.generation,
        invalid_spec: None,
        topics: None,
        migration: Migration::Waiting,
        workloads_observed: false,
        workloads_ready: Vec::new(),
        workloads_pending: Vec::new(),
        workloads_stalled: Vec::new(),
        api_error: None,
        partitions: previous.partitions,
        consumer_replicas: previous.consumer_replicas,
        consumer_lag: previous.consumer_lag,
        schema_version: previous.schema_version,
        endpoints: previous.endpoints,
        grown_partitions: previous.grown_partitions,
        // What the autoscaler remembers stands until its next poll.
        scaling: p
            .spec
            .consumer
            .scaling
            .as_ref()
            .map(|spec| ScalingObserved::kept(spec, previous.scaling.unwrap_or_default())),
    }
}

async fn run<T: Kafka>(p: &AnalyticsPipeline, ctx: &Context<T>) -> Result<Action, Error> {
    if p.metadata.deletion_timestamp.is_some() {
        // Being deleted: the garbage collector removes the children through
        // their owner references; re-applying them would fight it. Topics
        // and data are kept.
        ctx.forget(&key(p));
        return Ok(Action::await_change());
    }
    let now = Now::read();
    let p = &ctx.in_effect(p);
    if p.spec.paused {
        let next = status::paused(p.status.as_ref(), p.metadata.generation, &now.time());
        settle(ctx, p, next, &[]).await?;
        return Ok(Action::await_change());
    }
    let mut observed = carried_over(p);
    if let Err(e) = build::validate(p) {
        observed.invalid_spec = Some(e.to_string());
        settle_observed(ctx, p, &observed, &[], now).await?;
        // A spec change triggers the next reconcile.
        return Ok(Action::await_change());
    }

    ctx.uses_kafka(p);
    let outcomes = match ensure_topics(ctx, p).await {
        Ok(outcomes) => outcomes,
        Err(e) => {
            observed.topics = Some(Err(e.clone()));
            settle_observed(ctx, p, &observed, &[], now).await?;
            return Err(e.into());
        }
    };
    let mut outcomes = outcomes;
    if let Some(events_topic) = outcomes.first_mut()
        && let Some(grown) = scale::grown_observed(p, events_topic)
    {
        observed.grown_partitions = Some(grown.partitions);
        *events_topic = grown;
    }
    let mut partitions = outcomes
        .first()
        .map_or(p.spec.kafka.events.partitions, |o| o.partitions);
    let mut topic_events = events::topic_events(&outcomes);
    let scaled = match &p.spec.consumer.scaling {
        Some(spec) => Some(scale::scale(ctx, p, spec, partitions, now).await),
        None => {
            ctx.metrics.forget(&key(p), true);
            None
        }
    };
    if let Some(s) = &scaled {
        if let Some(grown) = &s.grown {
            partitions = grown.partitions;
            observed.grown_partitions = Some(grown.partitions);
            topic_events.extend(events::topic_events(std::slice::from_ref(grown)));
            if let Some(events_topic) = outcomes.first_mut() {
                *events_topic = grown.clone();
            }
        }
        observed.consumer_lag = s.lag.or(observed.consumer_lag);
        if let Some(polled) = &s.observed {
            observed.scaling = Some(polled.clone());
        }
    }
    observed.topics = Some(Ok(outcomes));
    observed.partitions = Some(partitions);

    let sizing = Sizing {
        partitions,
        consumer_replicas: scaled.as_ref().map(|s| s.replicas),
        schema_version: ctx.schema_version,
    };
    let children = match build::children(p, sizing) {
        Ok(children) => children,
        Err(e) => {
            observed.invalid_spec = Some(e.to_string());
            settle_observed(ctx, p, &observed, &topic_events, now).await?;
            return Ok(Action::await_change());
        }
    };
    let applied = apply_children(ctx, p, &children, &mut observed, now).await;
    let before = p.status.as_ref().and_then(|s| s.consumer_replicas);
    if let (Some(scaling), Some(from), Some(to)) = (
        observed.scaling.as_mut(),
        before,
        observed.consumer_replicas,
    ) && from != to
    {
        // A scale is told and stamped once the Deployment carries it, not
        // when decided (a migration may hold the rollout back).
        scaling.status.last_scale_time = Some(now.time());
        topic_events.push(scale::scaled_event(
            from,
            to,
            observed.consumer_lag,
            partitions,
        ));
    }
    if let Err(e) = &applied {
        // The status says what failed (naming the object) before the
        // retry; an earlier `Ready` must not stand.
        observed.api_error = Some(e.to_string());
    }
    settle_observed(ctx, p, &observed, &topic_events, now).await?;
    applied?;
    Ok(next_action(&observed, scaled.map(|s| s.next_poll)))
}

/// When to look again after a reconcile that observed `o`: at the latest
/// when the next lag poll is due (`next_poll`, scaling on).
pub fn next_action(o: &Observed, next_poll: Option<Duration>) -> Action {
    let wait = if o.migration.in_progress() || !o.workloads_pending.is_empty() {
        WHILE_PROGRESSING
    } else {
        RESYNC
    };
    Action::requeue(next_poll.map_or(wait, |poll| poll.min(wait)))
}

/// The pipeline's brokers as its spec names them, resolved as its pods
/// resolve them (see [`kafka::resolve_bootstrap`]).
pub(crate) fn bootstrap(p: &AnalyticsPipeline) -> kafka::Bootstrap {
    kafka::Bootstrap {
        servers: p.spec.kafka.bootstrap_servers.clone(),
        namespace: p.namespace().unwrap_or_default(),
    }
}

/// The events topic, then the dead-letter topic.
async fn ensure_topics<T: Kafka>(
    ctx: &Context<T>,
    p: &AnalyticsPipeline,
) -> Result<Vec<TopicOutcome>, TopicError> {
    let mut outcomes = Vec::with_capacity(2);
    for spec in [&scale::events_topic(p), &p.spec.kafka.dlq] {
        outcomes.push(ctx.kafka.ensure(&bootstrap(p), spec).await?);
    }
    Ok(outcomes)
}
