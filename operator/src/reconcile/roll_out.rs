//! Step 5: the ConfigMap, the migration, and once it succeeded the
//! workloads, Services, budgets and autoscalers; then what is no longer
//! wanted is deleted.

use kube::ResourceExt;

use super::clock::Now;
use super::context::{Context, key};
use super::error::Error;
use super::migrate::migrate;
use super::{apply, observe};
use crate::build::{Children, Component, meta};
use crate::crd::AnalyticsPipeline;
use crate::kafka::Kafka;
use crate::status::{Migration, Observed};

/// The ConfigMap, the migration, and once it succeeded the workloads.
pub(super) async fn apply_children<T: Kafka>(
    ctx: &Context<T>,
    p: &AnalyticsPipeline,
    children: &Children,
    observed: &mut Observed,
    now: Now,
) -> Result<(), Error> {
    let namespace = meta::namespace(p);
    ctx.put(&namespace, &children.config_map).await?;
    observed.migration = migrate(ctx, p, &namespace, children, now).await?;
    if matches!(observed.migration, Migration::Succeeded) {
        observed.schema_version = Some(ctx.schema_version.to_string());
    }
    if matches!(
        observed.migration,
        Migration::Succeeded | Migration::Disabled
    ) {
        roll_out(ctx, p, &namespace, children, observed).await?;
    }
    Ok(())
}

/// Applies the workloads in order, notes which have rolled out, and
/// deletes the children no longer wanted.
async fn roll_out<T: Kafka>(
    ctx: &Context<T>,
    p: &AnalyticsPipeline,
    namespace: &str,
    children: &Children,
    observed: &mut Observed,
) -> Result<(), Error> {
    for (component, deployment) in Component::ALL.iter().zip(&children.deployments) {
        if component.autoscaling(&p.spec).is_some() {
            apply::hand_over_replicas(&ctx.client, namespace, &deployment.name_any())
                .await
                .map_err(|source| Error::Apply {
                    kind: "Deployment".to_owned(),
                    name: deployment.name_any(),
                    source,
                })?;
        }
        let applied = ctx.put(namespace, deployment).await?;
        if component == &Component::Consumer {
            observed.consumer_replicas = applied.spec.as_ref().and_then(|s| s.replicas);
            let running = applied.status.as_ref().and_then(|s| s.replicas);
            ctx.metrics
                .consumer_replicas(&key(p), observed.consumer_replicas, running);
        }
        if let Some(why) = observe::stalled(&applied) {
            observed
                .workloads_stalled
                .push(format!("{}: {why}", component.name()));
        }
        let list = if observe::rolled_out(&applied) {
            &mut observed.workloads_ready
        } else {
            &mut observed.workloads_pending
        };
        list.push(component.name().to_owned());
    }
    for service in &children.services {
        ctx.put(namespace, service).await?;
    }
    for budget in &children.disruption_budgets {
        ctx.put(namespace, budget).await?;
    }
    for autoscaler in &children.autoscalers {
        ctx.put(namespace, autoscaler).await?;
    }
    observed.workloads_observed = true;
    observed.endpoints = observe::endpoints(p);
    // Pods of the previous version read the previous ConfigMap (a restart
    // too) until the rollout replaced them all.
    let rolled_out = observed.workloads_pending.is_empty();
    prune(ctx, p, namespace, children, rolled_out).await
}

/// Deletes the pipeline's children that `children` no longer holds: old
/// migration Jobs, workloads, Services or budgets of removed parts, and,
/// once every workload `rolled_out`, ConfigMaps of earlier settings.
pub(super) async fn prune<T: Kafka>(
    ctx: &Context<T>,
    p: &AnalyticsPipeline,
    namespace: &str,
    children: &Children,
    rolled_out: bool,
) -> Result<(), Error> {
    let Some(owned) = ctx.owned(p, namespace) else {
        return Ok(());
    };
    let mut deleted = owned.prune(children.migration_job.as_slice()).await?;
    deleted.extend(owned.prune(&children.deployments).await?);
    deleted.extend(owned.prune(&children.services).await?);
    deleted.extend(owned.prune(&children.disruption_budgets).await?);
    deleted.extend(owned.prune(&children.autoscalers).await?);
    if rolled_out {
        deleted.extend(
            owned
                .prune(std::slice::from_ref(&children.config_map))
                .await?,
        );
    }
    if !deleted.is_empty() {
        tracing::info!(?deleted, "deleted children no longer wanted");
    }
    Ok(())
}
