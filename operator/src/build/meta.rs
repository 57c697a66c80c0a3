//! Names, labels and owner references of a pipeline's children.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use super::component::Component;
use crate::crd::AnalyticsPipeline;

/// The field manager of every server-side apply.
pub const MANAGER: &str = "tributary-operator";

/// Namespace of the pipeline (`default` when it has none, as when rendering
/// a file without one).
pub fn namespace(p: &AnalyticsPipeline) -> String {
    p.namespace().unwrap_or_else(|| "default".to_owned())
}

/// Longest pipeline name: `{name}-capture` names a Service, a DNS-1035
/// label of at most 63 characters. The CRD refuses longer names at
/// admission with the same rule (see `crd.rs`).
pub const MAX_PIPELINE_NAME: usize = 55;

/// Whether `name` makes valid child names: at most [`MAX_PIPELINE_NAME`]
/// characters, lowercase letters, digits and `-`, starting with a letter
/// and ending with a letter or digit (a DNS-1035 label). `Err` says why.
pub fn check_pipeline_name(name: &str) -> Result<(), String> {
    if name.len() > MAX_PIPELINE_NAME {
        return Err(format!(
            "{name:?} has {} characters; at most {MAX_PIPELINE_NAME} (Services are named {{name}}-capture, at most 63)",
            name.len()
        ));
    }
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{name:?}: use lowercase letters, digits and '-', starting with a letter and ending with a letter or digit (it names Services, which allow no dots)"
        ))
    }
}

/// `{pipeline}-{suffix}`.
pub fn child_name(p: &AnalyticsPipeline, suffix: &str) -> String {
    format!("{}-{suffix}", p.name_any())
}

/// The labels selecting a component's pods: stable for the life of the
/// Deployment (a selector cannot change).
pub fn selector(p: &AnalyticsPipeline, component: Component) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "tributary".to_owned()),
        ("app.kubernetes.io/instance".to_owned(), p.name_any()),
        (
            "app.kubernetes.io/component".to_owned(),
            component.name().to_owned(),
        ),
    ])
}

/// The recommended `app.kubernetes.io/*` labels of a child.
pub fn labels(p: &AnalyticsPipeline, component: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "tributary".to_owned()),
        ("app.kubernetes.io/instance".to_owned(), p.name_any()),
        (
            "app.kubernetes.io/component".to_owned(),
            component.to_owned(),
        ),
        (
            "app.kubernetes.io/part-of".to_owned(),
            "tributary".to_owned(),
        ),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            MANAGER.to_owned(),
        ),
    ]);
    if let Some(version) = image_tag(&p.spec.image) {
        labels.insert("app.kubernetes.io/version".to_owned(), version);
    }
    labels
}

/// The image's tag when it is a valid label value.
fn image_tag(image: &str) -> Option<String> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    let tag = last.split_once(':')?.1;
    let valid = !tag.is_empty()
        && tag.len() <= 63
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && tag.starts_with(|c: char| c.is_ascii_alphanumeric())
        && tag.ends_with(|c: char| c.is_ascii_alphanumeric());
    valid.then(|| tag.to_owned())
}

/// Metadata of a child: name, namespace, labels, and the pipeline as its
/// controlling owner (when the pipeline came from a cluster and has a uid).
pub fn meta(p: &AnalyticsPipeline, name: String, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(namespace(p)),
        labels: Some(labels(p, component)),
        owner_references: p.controller_owner_ref(&()).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_labels_come_from_valid_tags_only() {
        assert_eq!(
            image_tag("ghcr.io/x/tributary:0.1.0").as_deref(),
            Some("0.1.0")
        );
        assert_eq!(
            image_tag("registry:5000/tributary:v2").as_deref(),
            Some("v2")
        );
        assert_eq!(image_tag("registry:5000/tributary"), None);
        assert_eq!(image_tag("tributary@sha256:abcd"), None);
        assert_eq!(
            image_tag("tributary:0.1.0@sha256:abcd").as_deref(),
            Some("0.1.0")
        );
        assert_eq!(image_tag(&format!("t:{}", "a".repeat(64))), None);
    }
}
