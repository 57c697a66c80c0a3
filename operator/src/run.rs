//! `tributary-operator run`: the controller process. It serves `/health`
//! and `/metrics` at once, waits to lead (a Lease), then runs one
//! `kube::runtime::Controller` per watched scope until shutdown or until it
//! loses the Lease (then it exits, so a restart waits as a candidate).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tributary_core::config::{ConfigError, Env};

use crate::build::meta::MANAGER;
use crate::crd::AnalyticsPipeline;
use crate::kafka::{Brokers, Kafka, SystemDns};
use crate::lease::{Kept, LeaseLock};
use crate::metrics::{Metrics, PipelineLabels};
use crate::reconcile::apply::Child;
use crate::reconcile::{self, Context};

/// How long the controller waits for more events of a pipeline before
/// reconciling it.
pub const DEBOUNCE: Duration = Duration::from_secs(1);

/// Settings of `run`, from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunConfig {
    /// `OPERATOR_WATCH_NAMESPACES`: namespaces to watch, comma-separated;
    /// unset: every namespace.
    pub namespaces: Vec<String>,
    /// `OPERATOR_METRICS_PORT` (8080): `/health` and `/metrics`.
    pub metrics_port: u16,
    /// `OPERATOR_LEADER_ELECTION` (true).
    pub leader_election: bool,
    /// `OPERATOR_LEASE_NAME` (`tributary-operator`).
    pub lease_name: String,
    /// `POD_NAMESPACE`: where the Lease lives (the client's default
    /// namespace when unset).
    pub lease_namespace: Option<String>,
    /// `POD_NAME`, else `HOSTNAME`: this replica's name in the Lease.
    pub identity: String,
    /// `OPERATOR_LEASE_DURATION_MS` (15000): how long a Lease holds
    /// without renewal; it is renewed every third of that.
    pub lease_duration: Duration,
    /// `OPERATOR_KAFKA_TIMEOUT_MS` (10000): Kafka admin requests.
    pub kafka_timeout: Duration,
    /// `OPERATOR_CLUSTER_DOMAIN` (`cluster.local`): the cluster's DNS
    /// domain, to resolve a pipeline's broker names as its pods do.
    pub cluster_domain: String,
}

impl RunConfig {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        // Replicas must never share an identity (each would think it holds
        // the Lease): without a pod or host name, one is made up.
        let identity = match env.optional_string("POD_NAME")? {
            Some(name) => name,
            None => match env.optional_string("HOSTNAME")? {
                Some(host) => host,
                None => format!("{MANAGER}-{}", std::process::id()),
            },
        };
        Ok(Self {
            namespaces: env.list("OPERATOR_WATCH_NAMESPACES", &[])?,
            metrics_port: env.port("OPERATOR_METRICS_PORT", 8080)?,
            leader_election: env.bool("OPERATOR_LEADER_ELECTION", true)?,
            lease_name: env.string("OPERATOR_LEASE_NAME", MANAGER)?,
            lease_namespace: env.optional_string("POD_NAMESPACE")?,
            identity,
            lease_duration: env.duration_ms("OPERATOR_LEASE_DURATION_MS", 15_000, 3_000)?,
            kafka_timeout: env.duration_ms("OPERATOR_KAFKA_TIMEOUT_MS", 10_000, 100)?,
            cluster_domain: env
                .string("OPERATOR_CLUSTER_DOMAIN", "cluster.local")?
                .trim_matches('.')
                .to_owned(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("no Kubernetes configuration (in-cluster or kubeconfig): {0}")]
    Config(#[source] kube::Error),
    #[error(
        "the AnalyticsPipeline CRD is not installed: kubectl apply -f crds/analyticspipeline.yaml \
         (or install the Helm chart)"
    )]
    CrdMissing,
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Serve(#[from] tributary_core::http::ServeError),
    #[error("lost the leader Lease {0}; exiting so a fresh start waits as a candidate")]
    LostLease(String),
}

/// Runs the operator until `shutdown` fires.
pub async fn run(config: RunConfig, shutdown: CancellationToken) -> Result<(), RunError> {
    let client = Client::try_default().await.map_err(RunError::Config)?;
    // Asked where the operator may list (a watched namespace, or all), so
    // namespace-scoped RBAC is enough.
    let probe = api::<AnalyticsPipeline>(&client, config.namespaces.first().map(String::as_str));
    match probe.list_metadata(&ListParams::default().limit(1)).await {
        Err(kube::Error::Api(e)) if e.code == 404 => return Err(RunError::CrdMissing),
        Err(e) => return Err(e.into()),
        Ok(_) => {}
    }

    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let addr = SocketAddr::from(([0, 0, 0, 0], config.metrics_port));
    let listener = tributary_core::http::bind(addr).await?;
    let router = tributary_core::http::health_router(MANAGER)
        .merge(tributary_core::metrics::router(Arc::new(registry)));
    let server = tokio::spawn(tributary_core::http::serve(
        listener,
        router,
        shutdown.clone(),
    ));
    tracing::info!(%addr, "serving /health and /metrics");

    let lease = if config.leader_election {
        let namespace = config
            .lease_namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_owned());
        let lock = Arc::new(LeaseLock::new(
            client.clone(),
            &namespace,
            &config.lease_name,
            &config.identity,
            config.lease_duration,
        ));
        if !lock.acquire(&shutdown).await {
            return finish(server).await;
        }
        tracing::info!(identity = lock.identity(), lease = %config.lease_name, %namespace, "leading");
        let keeper = Arc::clone(&lock);
        let keeping = shutdown.clone();
        Some((
            lock,
            tokio::spawn(async move { keeper.keep(&keeping).await }),
        ))
    } else {
        None
    };
    metrics.leader.set(1);

    let reporter = Reporter {
        controller: MANAGER.to_owned(),
        instance: Some(config.identity.clone()),
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        Brokers::new(
            config.kafka_timeout,
            &config.cluster_domain,
            Box::new(SystemDns {
                timeout: Duration::from_secs(2),
            }),
        ),
        reporter,
        metrics.clone(),
    ));
    let scopes: Vec<Option<String>> = if config.namespaces.is_empty() {
        vec![None]
    } else {
        config.namespaces.iter().cloned().map(Some).collect()
    };
    tracing::info!(namespaces = ?config.namespaces, "watching AnalyticsPipelines (none listed: all namespaces)");
    let controllers = futures::stream::select_all(
        scopes
            .iter()
            .map(|ns| controller(&client, ns.as_deref(), Arc::clone(&ctx), shutdown.clone())),
    )
    .for_each(|()| async {});
    let outcome = match lease {
        None => {
            controllers.await;
            Kept::Shutdown
        }
        Some((lock, mut keeper)) => {
            // On shutdown the controllers drain their reconciles; when the
            // Lease is lost they are dropped at once, mid-reconcile if need
            // be, since another replica may already lead.
            let kept = tokio::select! {
                () = controllers => keeper.await.unwrap_or(Kept::Lost),
                kept = &mut keeper => kept.unwrap_or(Kept::Lost),
            };
            if kept == Kept::Shutdown
                && let Err(e) = lock.release().await
            {
                tracing::warn!(error = %e, "cannot release the leader Lease; a standby takes over when it expires");
            }
            kept
        }
    };
    metrics.leader.set(0);
    if outcome == Kept::Lost {
        shutdown.cancel();
        finish(server).await?;
        return Err(RunError::LostLease(config.lease_name));
    }
    finish(server).await
}

/// Waits for the `/health` and `/metrics` server to drain.
async fn finish(
    server: tokio::task::JoinHandle<Result<(), tributary_core::http::ServeError>>,
) -> Result<(), RunError> {
    match server.await {
        Ok(result) => result.map_err(RunError::from),
        Err(e) => {
            tracing::error!(error = %e, "the metrics server task failed");
            Ok(())
        }
    }
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn owned<K: Child>(
    c: Controller<AnalyticsPipeline>,
    client: &Client,
    namespace: Option<&str>,
) -> Controller<AnalyticsPipeline> {
    // Only the operator's own children are watched and cached.
    let managed =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGER}"));
    c.owns(api::<K>(client, namespace), managed)
}

/// The controller of one scope (a namespace, or all), as a stream that
/// ends when `stop` fires.
fn controller(
    client: &Client,
    namespace: Option<&str>,
    ctx: Arc<Context<Brokers>>,
    stop: CancellationToken,
) -> BoxStream<'static, ()> {
    let mut c = Controller::new(
        api::<AnalyticsPipeline>(client, namespace),
        watcher::Config::default().any_semantic(),
    );
    c = owned::<ConfigMap>(c, client, namespace);
    c = owned::<Job>(c, client, namespace);
    c = owned::<Deployment>(c, client, namespace);
    c = owned::<Service>(c, client, namespace);
    c = owned::<PodDisruptionBudget>(c, client, namespace);
    // HorizontalPodAutoscalers are not watched: their status changes with
    // every metrics read, and nothing in it matters to reconcile (the
    // replicas they set show on the Deployments).
    // Events that arrive together (a Deployment's rollout steps, the
    // operator's own writes coming back) make one reconcile, and give the
    // cache time to catch up with the writes before it runs.
    let seen = Arc::clone(&ctx);
    c.with_config(controller::Config::default().debounce(DEBOUNCE))
        .graceful_shutdown_on(stop.cancelled_owned())
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .map(move |result| outcome(&seen, result))
        .boxed()
}

/// What one controller step's `result` means beyond the reconcile: a
/// pipeline the controller no longer finds was deleted (without a
/// finalizer, a delete never reaches reconcile: a requeue, or its children
/// going, ask for it and find nothing), so what is kept for it goes.
pub fn outcome<T: Kafka>(
    ctx: &Context<T>,
    result: Result<
        (ObjectRef<AnalyticsPipeline>, Action),
        controller::Error<reconcile::Error, watcher::Error>,
    >,
) {
    match result {
        Ok((object, _)) => tracing::debug!(pipeline = %object, "reconciled"),
        Err(controller::Error::ObjectNotFound(object)) => ctx.forget(&PipelineLabels {
            namespace: object.namespace.clone().unwrap_or_default(),
            pipeline: object.name.clone(),
        }),
        // error_policy has logged it.
        Err(controller::Error::ReconcilerFailed(_, _)) => {}
        Err(e) => tracing::warn!(error = %e, "controller"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_default_to_one_leader_watching_every_namespace() {
        let none: [(&str, &str); 0] = [];
        let c = RunConfig::from_env(&Env::new(&none)).unwrap_or_else(|e| panic!("{e}"));
        assert!(c.namespaces.is_empty());
        assert!(c.leader_election);
        assert_eq!(c.metrics_port, 8080);
        assert_eq!(c.lease_name, "tributary-operator");
        assert!(
            c.identity.starts_with("tributary-operator-"),
            "{}",
            c.identity
        );
        assert_eq!(c.lease_duration, Duration::from_secs(15));

        let set = [
            ("OPERATOR_WATCH_NAMESPACES", "analytics, staging"),
            ("POD_NAME", "tributary-operator-7d9f-abcde"),
            ("HOSTNAME", "ignored"),
            ("OPERATOR_LEADER_ELECTION", "false"),
        ];
        let c = RunConfig::from_env(&Env::new(&set)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.namespaces, ["analytics", "staging"]);
        assert_eq!(c.identity, "tributary-operator-7d9f-abcde");
        assert!(!c.leader_election);

        let bad = [("OPERATOR_LEASE_DURATION_MS", "500")];
        let e = RunConfig::from_env(&Env::new(&bad))
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("OPERATOR_LEASE_DURATION_MS")));
    }
}
