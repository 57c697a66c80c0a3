//! Step 4: the migration Job for this schema version and image, created
//! once and then watched; whether its pod can start at all.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use super::clock::Now;
use super::context::Context;
use super::error::Error;
use super::{apply, observe};
use crate::build::Children;
use crate::crd::AnalyticsPipeline;
use crate::kafka::Kafka;
use crate::status::Migration;

/// Where this schema version's migration stands, creating its Job the
/// first time. An existing Job is only read: its pod template cannot change.
/// While it has not succeeded, earlier Jobs of the pipeline that never
/// finished (a pod that could not start, before the spec was fixed) are
/// deleted: their pods would hold the namespace's quota and run a second
/// migration at once. Finished ones stay until the rollout (see [`prune`](super::roll_out::prune)).
pub(super) async fn migrate<T: Kafka>(
    ctx: &Context<T>,
    p: &AnalyticsPipeline,
    namespace: &str,
    children: &Children,
    now: Now,
) -> Result<Migration, Error> {
    let Some(job) = &children.migration_job else {
        return Ok(Migration::Disabled);
    };
    let job = match apply::get::<Job>(&ctx.client, namespace, &job.name_any()).await? {
        Some(existing) => existing,
        None => ctx.put(namespace, job).await?,
    };
    let state = observe::migration(&job);
    if state != Migration::Succeeded
        && let Some(owned) = ctx.owned(p, namespace)
    {
        let unfinished = owned
            .prune_unless(std::slice::from_ref(&job), |old: &Job| {
                observe::migration(old) == Migration::Succeeded
            })
            .await?;
        if !unfinished.is_empty() {
            tracing::info!(
                ?unfinished,
                "deleted migration Jobs that never finished; this spec's Job replaces them"
            );
        }
    }
    if state == Migration::Succeeded {
        return Ok(state);
    }
    // Whether its pod can start while running, and what the last attempt
    // said once failed, its pods say (telling only: a failed read leaves
    // the state as the Job tells it).
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let selector = format!("batch.kubernetes.io/job-name={}", job.name_any());
    let pods = match pods.list(&ListParams::default().labels(&selector)).await {
        Ok(pods) => pods.items,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the migration Job's pods; its progress is told without them");
            return Ok(state);
        }
    };
    if let Migration::Failed { reason } = state {
        return Ok(Migration::Failed {
            reason: match observe::last_words(&pods) {
                Some(words) => format!("{reason}; the last attempt said: {words}"),
                None => reason,
            },
        });
    }
    if state != Migration::Running {
        return Ok(state);
    }
    Ok(
        match observe::migration_pending(&job, &pods, now.timestamp()) {
            Some((reason, message)) => Migration::Pending { reason, message },
            None => Migration::Running,
        },
    )
}
