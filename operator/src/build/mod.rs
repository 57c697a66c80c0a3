//! Pure builders: an `AnalyticsPipeline` in, the Kubernetes objects it
//! stands for out. No I/O; reconcile applies what these return, and
//! `tributary-operator render` prints it.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde::Serialize;

use crate::crd::AnalyticsPipeline;

pub mod component;
pub mod config;
pub mod job;
pub mod meta;
pub mod pod;
pub mod workload;

pub use component::Component;

#[cfg(test)]
mod tests;

/// A spec the builders cannot turn into objects (what the schema could not
/// refuse): the field and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error(
        "{field}: {what} is not supported by the workloads yet; remove it (nothing was applied)"
    )]
    Unsupported {
        field: &'static str,
        what: &'static str,
    },
}

/// Every object of a pipeline, in apply order.
#[derive(Debug, Clone)]
pub struct Children {
    pub config_map: ConfigMap,
    /// `None` with `spec.migrations: false`.
    pub migration_job: Option<Job>,
    /// auth, capture, consumer, query.
    pub deployments: Vec<Deployment>,
    pub services: Vec<Service>,
    pub disruption_budgets: Vec<PodDisruptionBudget>,
    /// HorizontalPodAutoscalers of the workloads that ask for one.
    pub autoscalers: Vec<HorizontalPodAutoscaler>,
}

/// What the objects depend on besides the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizing {
    /// Partitions of the events topic: they cap the consumer's replicas.
    pub partitions: i32,
    /// The consumer's replicas as the lag autoscaler decided them (`None`:
    /// not decided; the spec's, or `minReplicas` with scaling on).
    pub consumer_replicas: Option<i32>,
    /// The ClickHouse schema version to migrate to.
    pub schema_version: u32,
}

impl Sizing {
    /// As the spec alone says, for this build's schema version.
    pub fn from_spec(p: &AnalyticsPipeline) -> Self {
        Self {
            partitions: p.spec.kafka.events.partitions,
            consumer_replicas: None,
            schema_version: tributary_core::schema::clickhouse_schema_version(),
        }
    }
}

/// Whether `p` can be built, without building it: what the schema could
/// not refuse, named by field. [`children`] succeeds for any `Sizing` when
/// this does.
pub fn validate(p: &AnalyticsPipeline) -> Result<(), BuildError> {
    check_spec(p)?;
    config::config_data(p).map(drop)
}

/// What the spec asks besides its settings that cannot be built.
fn check_spec(p: &AnalyticsPipeline) -> Result<(), BuildError> {
    // The CRD refuses such names at admission; a cluster that skipped the
    // rule (or a file rendered locally) gets the same answer here.
    meta::check_pipeline_name(&kube::ResourceExt::name_any(p)).map_err(|message| {
        BuildError::Invalid {
            field: "metadata.name",
            message,
        }
    })?;
    if p.spec.kafka.sasl_secret_ref.is_some() {
        return Err(BuildError::Unsupported {
            field: "spec.kafka.saslSecretRef",
            what: "Kafka SASL",
        });
    }
    if p.spec.kafka.tls_secret_ref.is_some() {
        return Err(BuildError::Unsupported {
            field: "spec.kafka.tlsSecretRef",
            what: "Kafka TLS",
        });
    }
    Ok(())
}

/// The objects of `p`, sized by `sizing`.
pub fn children(p: &AnalyticsPipeline, sizing: Sizing) -> Result<Children, BuildError> {
    check_spec(p)?;
    let config_map = config::config_map(p)?;
    let config = config_map.metadata.name.clone().unwrap_or_default();
    Ok(Children {
        migration_job: p
            .spec
            .migrations
            .then(|| job::migration_job(p, sizing.schema_version, &config)),
        deployments: Component::ALL
            .iter()
            .map(|&c| workload::deployment(p, c, &sizing, &config))
            .collect(),
        services: Component::ALL
            .iter()
            .filter(|c| c.serves())
            .map(|&c| workload::service(p, c))
            .collect(),
        disruption_budgets: Component::ALL
            .iter()
            .map(|&c| workload::disruption_budget(p, c))
            .collect(),
        autoscalers: Component::ALL
            .iter()
            .filter_map(|&c| workload::autoscaler(p, c))
            .collect(),
        config_map,
    })
}

/// Why objects could not be printed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("cannot write {kind} as YAML: {source}")]
    Yaml {
        kind: &'static str,
        source: serde_yaml::Error,
    },
}

/// Every object as one YAML stream (`---` between documents), as reconcile
/// would apply them to a cluster that has the spec's partitions and this
/// build's schema version.
pub fn render(p: &AnalyticsPipeline) -> Result<String, RenderError> {
    let c = children(p, Sizing::from_spec(p))?;
    let mut docs = vec![document(&c.config_map)?];
    if let Some(job) = &c.migration_job {
        docs.push(document(job)?);
    }
    for d in &c.deployments {
        docs.push(document(d)?);
    }
    for s in &c.services {
        docs.push(document(s)?);
    }
    for b in &c.disruption_budgets {
        docs.push(document(b)?);
    }
    for a in &c.autoscalers {
        docs.push(document(a)?);
    }
    Ok(docs.join("---\n"))
}

/// One object (k8s-openapi writes its `apiVersion` and `kind`).
fn document<K>(object: &K) -> Result<String, RenderError>
where
    K: k8s_openapi::Resource + Serialize,
{
    serde_yaml::to_string(object).map_err(|source| RenderError::Yaml {
        kind: K::KIND,
        source,
    })
}
