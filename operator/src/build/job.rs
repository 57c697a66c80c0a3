//! The migration Job: `tributary migrate` from the pipeline's image, named
//! after the schema version (and the image), so each version migrates once.

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sha2::{Digest, Sha256};

use super::config::{Reader, secret_env};
use super::{meta, pod};
use crate::crd::AnalyticsPipeline;

/// Longest name a Job may have (its pods' `job-name` label holds it).
const MAX_NAME: usize = 63;

/// `{pipeline}-migrate-v{version}-{8 hex digits of the image}`, shortened
/// to fit; the same pipeline, version and image always give the same name.
pub fn migration_job_name(p: &AnalyticsPipeline, schema_version: u32) -> String {
    let digest = Sha256::digest(p.spec.image.as_bytes());
    let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let suffix = format!("-migrate-v{schema_version}-{hex}");
    let base = meta::child_name(p, "");
    let base = base.trim_end_matches('-');
    let room = MAX_NAME.saturating_sub(suffix.len());
    let cut: String = base.chars().take(room).collect();
    format!("{}{suffix}", cut.trim_end_matches('-'))
}

/// The Job migrating ClickHouse and Postgres to `schema_version`.
pub fn migration_job(p: &AnalyticsPipeline, schema_version: u32) -> Job {
    let container = pod::container(p, "migrate", secret_env(p, Reader::Migrate));
    let mut labels = meta::labels(p, "migrate");
    labels.insert(
        "tributary.dev/schema-version".to_owned(),
        schema_version.to_string(),
    );
    let mut metadata = meta::meta(p, migration_job_name(p, schema_version), "migrate");
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
                spec: Some(pod::pod(container, None, "Never")),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    }
}
