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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};

use crate::build::{self, Children, Component, Sizing, meta};
use crate::crd::{AnalyticsPipeline, AnalyticsPipelineStatus};
use crate::kafka::{self, Kafka};
use crate::metrics::{ErrorLabels, Metrics, PipelineLabels};
use crate::status::{self, Migration, Observed, ScalingObserved};
use crate::topics::{TopicError, TopicOutcome};

pub mod apply;
pub mod clock;
pub mod events;
pub mod observe;
pub mod scale;

use clock::Now;

/// How often a settled pipeline is looked at again (topics deleted behind
/// the operator's back, drift the watches missed).
pub const RESYNC: Duration = Duration::from_secs(300);
/// How often a pipeline that is migrating or rolling out is looked at,
/// besides the watches on its Job and Deployments.
pub const WHILE_PROGRESSING: Duration = Duration::from_secs(30);

/// How soon a reconcile whose status write conflicted runs again.
pub const AFTER_CONFLICT: Duration = Duration::from_secs(1);

/// What reconcile works with.
pub struct Context<T> {
    pub client: Client,
    pub kafka: T,
    pub recorder: Recorder,
    pub metrics: Metrics,
    /// The ClickHouse schema version this build migrates to.
    pub schema_version: u32,
    /// Consecutive failures per pipeline, for backoff.
    failures: Mutex<HashMap<PipelineLabels, u32>>,
    /// The unix second of each pipeline's last lag poll by this process.
    polls: Mutex<HashMap<PipelineLabels, i64>>,
    /// The last status this process wrote for each pipeline.
    written: Mutex<HashMap<PipelineLabels, Written>>,
    /// The brokers and consumer group each pipeline uses.
    kafka_uses: Mutex<HashMap<PipelineLabels, (kafka::Bootstrap, String)>>,
}

/// A status this process wrote, and the object version the write made.
#[derive(Debug, Clone)]
struct Written {
    uid: Option<String>,
    resource_version: Option<String>,
    status: AnalyticsPipelineStatus,
}

impl<T: Kafka> Context<T> {
    pub fn new(client: Client, kafka: T, reporter: Reporter, metrics: Metrics) -> Self {
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            kafka,
            metrics,
            schema_version: tributary_core::schema::clickhouse_schema_version(),
            failures: Mutex::new(HashMap::new()),
            polls: Mutex::new(HashMap::new()),
            written: Mutex::new(HashMap::new()),
            kafka_uses: Mutex::new(HashMap::new()),
        }
    }

    /// Drops everything this process keeps for the pipeline `key` (its
    /// backoff, poll and status memory, its metric series, and the Kafka
    /// clients no other pipeline uses): it was deleted. A pipeline deleted
    /// without a finalizer never reaches reconcile again; the controller
    /// reports it as not found, and `run` calls this.
    pub fn forget(&self, key: &PipelineLabels) {
        lock(&self.failures).remove(key);
        lock(&self.polls).remove(key);
        lock(&self.written).remove(key);
        self.metrics.forget(key, false);
        let in_use: Vec<(kafka::Bootstrap, String)> = {
            let mut uses = lock(&self.kafka_uses);
            uses.remove(key);
            uses.values().cloned().collect()
        };
        self.kafka.retain(&in_use);
        tracing::info!(pipeline = %key.pipeline, namespace = %key.namespace, "pipeline gone; its state, metrics and unused Kafka clients are dropped");
    }

    /// Whether this process keeps anything for `key` (tests).
    pub fn remembers(&self, key: &PipelineLabels) -> bool {
        lock(&self.failures).contains_key(key)
            || lock(&self.polls).contains_key(key)
            || lock(&self.written).contains_key(key)
            || lock(&self.kafka_uses).contains_key(key)
    }

    /// Notes the brokers and group `p` uses now, dropping clients of ones
    /// it used before and no one uses any more.
    fn uses_kafka(&self, p: &AnalyticsPipeline) {
        let now = (bootstrap(p), p.spec.kafka.consumer_group.clone());
        let in_use: Option<Vec<(kafka::Bootstrap, String)>> = {
            let mut uses = lock(&self.kafka_uses);
            let before = uses.insert(key(p), now.clone());
            (before.is_some_and(|b| b != now)).then(|| uses.values().cloned().collect())
        };
        if let Some(in_use) = in_use {
            self.kafka.retain(&in_use);
        }
    }

    /// Takes `p`'s status as the last one this process wrote (tests that
    /// move time by rewriting the status make it the operator's own).
    pub fn remember_status(&self, p: &AnalyticsPipeline) {
        if let Some(status) = &p.status {
            lock(&self.written).insert(
                key(p),
                Written {
                    uid: p.metadata.uid.clone(),
                    resource_version: p.metadata.resource_version.clone(),
                    status: status.clone(),
                },
            );
        }
    }

    /// `p` with the status reconcile should start from. The controller
    /// hands reconcile the object from its watch cache, which lags this
    /// process's own writes: right after a status write, the next event (a
    /// Deployment this reconcile patched) usually brings the object as it
    /// was before the write. When `p` is not the version this process
    /// last wrote and carries another status, that status is taken to be
    /// stale and the one written stands in for it (no one else writes it).
    /// `p`'s `resourceVersion` is kept: the status write is conditional on
    /// it, so a stale object can never overwrite a newer status.
    pub fn in_effect(&self, p: &AnalyticsPipeline) -> AnalyticsPipeline {
        let written = lock(&self.written).get(&key(p)).cloned();
        let mut p = p.clone();
        if let Some(w) = written
            && w.uid == p.metadata.uid
            && w.resource_version != p.metadata.resource_version
            && p.status.as_ref() != Some(&w.status)
        {
            tracing::debug!(pipeline = %p.name_any(), cached = ?p.metadata.resource_version, written = ?w.resource_version, "the cached pipeline predates this process's last status write; starting from that status");
            p.status = Some(w.status);
        }
        p
    }

    /// When this process last polled `p`'s lag.
    pub fn last_poll(&self, p: &AnalyticsPipeline) -> Option<i64> {
        lock(&self.polls).get(&key(p)).copied()
    }

    /// Notes a poll of `p`'s lag at unix second `at`.
    pub fn polled(&self, p: &AnalyticsPipeline, at: i64) {
        lock(&self.polls).insert(key(p), at);
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<PipelineLabels, u32>> {
        lock(&self.failures)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("applying {kind} {name}: {source}")]
    Apply {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Kafka(#[from] TopicError),
    /// The status write found a newer object than the one reconcile read
    /// (409): reconcile again from the newer one.
    #[error("the pipeline changed since it was read; reconciling again")]
    StatusConflict,
}

impl Error {
    /// The `kind` label of the error metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(_) | Error::Apply { .. } | Error::StatusConflict => "kubernetes",
            Error::Kafka(_) => "kafka",
        }
    }
}

/// Server-side applies `object`, naming it in the error.
async fn put<T: Kafka, K: apply::Child>(
    ctx: &Context<T>,
    namespace: &str,
    object: &K,
) -> Result<K, Error> {
    apply::apply(&ctx.client, namespace, object)
        .await
        .map_err(|source| Error::Apply {
            kind: K::kind(&()).into_owned(),
            name: object.name_any(),
            source,
        })
}

/// A pipeline's namespace and name: the key of the per-pipeline state
/// and the labels of its metrics.
pub fn key(p: &AnalyticsPipeline) -> PipelineLabels {
    PipelineLabels {
        namespace: meta::namespace(p),
        pipeline: p.name_any(),
    }
}

/// Reconciles `p`, counting and timing it.
pub async fn reconcile<T: Kafka>(
    p: Arc<AnalyticsPipeline>,
    ctx: Arc<Context<T>>,
) -> Result<Action, Error> {
    let started = Instant::now();
    ctx.metrics.reconciles.inc();
    let result = match run(&p, &ctx).await {
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

/// After a failed reconcile: try again after a backoff that doubles with
/// each consecutive failure of the same pipeline.
pub fn error_policy<T: Kafka>(
    p: Arc<AnalyticsPipeline>,
    error: &Error,
    ctx: Arc<Context<T>>,
) -> Action {
    let failures = {
        let mut all = ctx.failures();
        let n = all.entry(key(&p)).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let wait = backoff(failures);
    tracing::warn!(
        pipeline = %p.name_any(),
        namespace = %meta::namespace(&p),
        failures,
        retry_in_secs = wait.as_secs(),
        error = %error,
        "reconcile failed"
    );
    Action::requeue(wait)
}

/// 5 s after the first failure, doubling up to 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(6);
    Duration::from_secs(5 * 2u64.pow(exponent)).min(Duration::from_secs(300))
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
    let sizing = Sizing {
        schema_version: ctx.schema_version,
        ..Sizing::from_spec(p)
    };
    // The spec's partitions stand in for the observed ones: only the
    // validation matters here.
    if let Err(e) = build::children(p, sizing) {
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
        ..sizing
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

/// The ConfigMap, the migration, and once it succeeded the workloads.
async fn apply_children<T: Kafka>(
    ctx: &Context<T>,
    p: &AnalyticsPipeline,
    children: &Children,
    observed: &mut Observed,
    now: Now,
) -> Result<(), Error> {
    let namespace = meta::namespace(p);
    put(ctx, &namespace, &children.config_map).await?;
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
fn bootstrap(p: &AnalyticsPipeline) -> kafka::Bootstrap {
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

/// Where this schema version's migration stands, creating its Job the
/// first time. An existing Job is only read: its pod template cannot change.
/// While it has not succeeded, earlier Jobs of the pipeline that never
/// finished (a pod that could not start, before the spec was fixed) are
/// deleted: their pods would hold the namespace's quota and run a second
/// migration at once. Finished ones stay until the rollout (see [`prune`]).
async fn migrate<T: Kafka>(
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
        None => put(ctx, namespace, job).await?,
    };
    let state = observe::migration(&job);
    if state != Migration::Succeeded
        && let Some(owned) = owned(ctx, p, namespace)
    {
        let unfinished = owned
            .prune_unless(std::slice::from_ref(&job), |old: &Job| {
                observe::migration(old) == Migration::Succeeded
            })
            .await?;
        if !unfinished.is_empty() {
            tracing::info!(pipeline = %p.name_any(), namespace, ?unfinished, "deleted migration Jobs that never finished; this spec's Job replaces them");
        }
    }
    if state != Migration::Running {
        return Ok(state);
    }
    // Running, as the Job says; whether its pod can start, its pod says
    // (telling only: a failed read leaves it Running).
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let selector = format!("batch.kubernetes.io/job-name={}", job.name_any());
    let pods = match pods.list(&ListParams::default().labels(&selector)).await {
        Ok(pods) => pods.items,
        Err(e) => {
            tracing::warn!(pipeline = %p.name_any(), namespace, error = %e, "cannot list the migration Job's pods; its progress is told without them");
            return Ok(Migration::Running);
        }
    };
    Ok(
        match observe::migration_pending(&job, &pods, now.timestamp()) {
            Some((reason, message)) => Migration::Pending { reason, message },
            None => Migration::Running,
        },
    )
}

/// The children `p` controls in `namespace` (`None` before the pipeline
/// has a uid, as when rendered without a cluster).
fn owned<'a, T: Kafka>(
    ctx: &'a Context<T>,
    p: &AnalyticsPipeline,
    namespace: &'a str,
) -> Option<apply::Owned<'a>> {
    Some(apply::Owned {
        client: &ctx.client,
        namespace,
        selector: format!(
            "app.kubernetes.io/instance={},app.kubernetes.io/managed-by={}",
            p.name_any(),
            meta::MANAGER
        ),
        owner: p.uid()?,
    })
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
        let applied = put(ctx, namespace, deployment).await?;
        if component == &Component::Consumer {
            observed.consumer_replicas = applied.spec.as_ref().and_then(|s| s.replicas);
            let labels = key(p);
            let running = applied.status.as_ref().and_then(|s| s.replicas);
            for (gauge, value) in [
                (
                    &ctx.metrics.consumer_replicas_desired,
                    observed.consumer_replicas,
                ),
                (&ctx.metrics.consumer_replicas_current, running),
            ] {
                gauge
                    .get_or_create(&labels)
                    .set(i64::from(value.unwrap_or(0)));
            }
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
        put(ctx, namespace, service).await?;
    }
    for budget in &children.disruption_budgets {
        put(ctx, namespace, budget).await?;
    }
    for autoscaler in &children.autoscalers {
        put(ctx, namespace, autoscaler).await?;
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
async fn prune<T: Kafka>(
    ctx: &Context<T>,
    p: &AnalyticsPipeline,
    namespace: &str,
    children: &Children,
    rolled_out: bool,
) -> Result<(), Error> {
    let Some(owned) = owned(ctx, p, namespace) else {
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
        tracing::info!(pipeline = %p.name_any(), namespace, ?deleted, "deleted children no longer wanted");
    }
    Ok(())
}

async fn settle_observed<T: Kafka>(
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
async fn settle<T: Kafka>(
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
async fn publish<T: Kafka>(ctx: &Context<T>, p: &AnalyticsPipeline, events: &[&Event]) {
    let reference = p.object_ref(&());
    for event in events {
        if let Err(e) = ctx.recorder.publish(event, &reference).await {
            tracing::warn!(pipeline = %p.name_any(), reason = %event.reason, error = %e, "cannot publish an Event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_five_seconds_to_five_minutes() {
        let waits: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(backoff(0).as_secs(), 5);
        assert_eq!(backoff(u32::MAX).as_secs(), 300);
    }
}
