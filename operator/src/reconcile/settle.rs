//! The last step: the status written when it changed, and Events for what
//! changed.

use kube::api::{Api, PostParams};
use kube::runtime::events::Event;
use kube::{Resource, ResourceExt};

use super::clock::Now;
use super::context::{Context, Written, key, lock};
use super::error::Error;
use super::events;
use crate::build::meta;
use crate::crd::AnalyticsPipeline;
use crate::kafka::Kafka;
use crate::status::{self, Observed};

/// Writes the status `observed` makes (see [`settle`]).
pub(super) async fn settle_observed<T: Kafka>(
    ctx: &Context<T>,
    p: &AnalyticsPipeline,
    observed: &Observed,
    extra_events: &[Event],
    now: Now,
) -> Result<(), Error> {
    let next = status::next_status(p.status.as_ref(), observed, &now.time());
    settle(ctx, p, next, extra_events).await
}

/// Writes `next` when it differs from the status `p` has (an unchanged
/// status is not written, so it never re-triggers reconcile), then
/// publishes `extra_events` and an Event per condition that moved. A failed Event is
/// logged, not retried: the status already tells.
pub(super) async fn settle<T: Kafka>(
    ctx: &Context<T>,
    p: &AnalyticsPipeline,
    next: status::Next,
    extra_events: &[Event],
) -> Result<(), Error> {
    let status::Next {
        status: next,
        verdicts,
    } = next;
    let previous = p.status.as_ref();
    if previous != Some(&next) {
        let api: Api<AnalyticsPipeline> = Api::namespaced(ctx.client.clone(), &meta::namespace(p));
        // A replace of the status carries the resourceVersion reconcile
        // read: if the pipeline changed since (a stale cache, a spec
        // edit), the API server answers 409 and reconcile runs again from
        // the newer object, so an old view never overwrites a newer one.
        let mut object = p.clone();
        object.status = Some(next.clone());
        object.metadata.managed_fields = None;
        let stored = match api
            .replace_status(&p.name_any(), &PostParams::default(), &object)
            .await
        {
            Ok(stored) => stored,
            Err(kube::Error::Api(e)) if e.code == 409 => {
                // What was done (a topic created, grown, its retention
                // changed) will not show as a change to the next
                // reconcile: tell it now. Condition changes are told by
                // the reconcile whose status write lands.
                let told: Vec<&Event> = extra_events.iter().collect();
                publish(ctx, p, &told).await;
                return Err(Error::StatusConflict);
            }
            // Deleted meanwhile.
            Err(kube::Error::Api(e)) if e.code == 404 => {
                ctx.forget(&key(p));
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        lock(&ctx.written).insert(
            key(p),
            Written {
                uid: p.metadata.uid.clone(),
                resource_version: stored.metadata.resource_version,
                status: next.clone(),
            },
        );
    }
    let transitions = events::transition_events(previous, &verdicts);
    let all: Vec<&Event> = extra_events.iter().chain(&transitions).collect();
    publish(ctx, p, &all).await;
    Ok(())
}

/// Publishes `events` on `p`; a failed Event is logged, not retried.
pub(super) async fn publish<T: Kafka>(ctx: &Context<T>, p: &AnalyticsPipeline, events: &[&Event]) {
    let reference = p.object_ref(&());
    for event in events {
        if let Err(e) = ctx.recorder.publish(event, &reference).await {
            tracing::warn!(reason = %event.reason, error = %e, "cannot publish an Event");
        }
    }
}
