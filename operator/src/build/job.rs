//! The migration Job: `tributary migrate` from the pipeline's image, named
//! after the schema version and a digest of what it runs (its pod template
//! and the settings it reads), so each version migrates once per image and
//! settings. A Job that failed for a wrong setting is retried by fixing the
//! spec: the fixed spec gets a new Job.

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sha2::{Digest, Sha256};

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::config::{Reader, merge_env, secret_env};
use super::{meta, pod};
use crate::crd::{AnalyticsPipeline, WorkloadSpec};

/// Longest name a Job may have (its pods' `job-name` label holds it).
const MAX_NAME: usize = 63;

/// `{pipeline}-migrate-v{version}-{8 hex digits of fingerprint}`,
/// shortened to fit; the same inputs always give the same name.
pub fn migration_job_name(
    p: &AnalyticsPipeline,
    schema_version: u32,
    fingerprint: &[u8],
) -> String {
    let digest = Sha256::digest(fingerprint);
    let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let suffix = format!("-migrate-v{schema_version}-{hex}");
    let base = meta::child_name(p, "");
    let base = base.trim_end_matches('-');
    let room = MAX_NAME.saturating_sub(suffix.len());
    let cut: String = base.chars().take(room).collect();
    format!("{}{suffix}", cut.trim_end_matches('-'))
}

/// Requests and limits of a migration: it sends DDL and waits.
fn default_resources() -> ResourceRequirements {
    let pair = |cpu: &str, mem: &str| {
        BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.to_owned())),
            ("memory".to_owned(), Quantity(mem.to_owned())),
        ])
    };
    ResourceRequirements {
        requests: Some(pair("50m", "64Mi")),
        limits: Some(pair("500m", "256Mi")),
        ..ResourceRequirements::default()
    }
}

/// Where the migration may run: its own node selector and tolerations,
/// each defaulting to the consumer's (the Job writes the schema the
/// consumer writes to, from the same nodes).
fn scheduling(p: &AnalyticsPipeline) -> WorkloadSpec {
    let own = &p.spec.migration_job;
    let consumer = &p.spec.consumer.workload;
    WorkloadSpec {
        node_selector: if own.node_selector.is_empty() {
            consumer.node_selector.clone()
        } else {
            own.node_selector.clone()
        },
        tolerations: if own.tolerations.is_empty() {
            consumer.tolerations.clone()
        } else {
            own.tolerations.clone()
        },
        ..WorkloadSpec::default()
    }
}

/// The Job migrating ClickHouse and Postgres to `schema_version`, reading
/// the ConfigMap `config`.
pub fn migration_job(p: &AnalyticsPipeline, schema_version: u32, config: &str) -> Job {
    let spec = &p.spec.migration_job;
    let env = merge_env(secret_env(p, Reader::Migrate), &spec.env);
    let mut container = pod::container(p, "migrate", config, env);
    container.resources = Some(spec.resources.clone().unwrap_or_else(default_resources));
    let mut labels = meta::labels(p, "migrate");
    labels.insert(
        "tributary.dev/schema-version".to_owned(),
        schema_version.to_string(),
    );
    let pod_spec = pod::pod(container, Some(&scheduling(p)), "Never");
    // The pod spec holds the image, the Secret references and the
    // ConfigMap's name (a digest of the settings).
    let fingerprint = serde_json::to_vec(&pod_spec).unwrap_or_default();
    let mut metadata = meta::meta(
        p,
        migration_job_name(p, schema_version, &fingerprint),
        "migrate",
    );
    metadata.labels = Some(labels.clone());
    Job {
        metadata,
        spec: Some(JobSpec {
            backoff_limit: Some(4),
            active_deadline_seconds: Some(900),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    }
}
