//! The Tributary operator: reconciles `AnalyticsPipeline`
//! (`tributary.dev/v1alpha1`) into topics, migrations and Deployments.
//!
//! - `crd`: the custom resource; `build`: the objects a pipeline stands
//!   for (pure); `topics`: its Kafka topics; `status`: its conditions
//!   (pure); `reconcile`: the steps that apply them.
//! - `kafka`: the seam to the brokers (topics, `lag`); `autoscale`: consumer
//!   replicas from lag (pure), applied by `reconcile::scale`.

pub mod autoscale;
pub mod build;
pub mod crd;
pub mod kafka;
pub mod lag;
pub mod lease;
pub mod metrics;
pub mod rbac;
pub mod reconcile;
pub mod run;
pub mod status;
pub mod topics;

/// The CustomResourceDefinition of `AnalyticsPipeline`, as YAML.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    serde_yaml::to_string(&crd::AnalyticsPipeline::crd())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checked-in CRD is what the types generate.
    #[test]
    fn the_checked_in_crd_is_current() {
        let generated = crd_yaml().unwrap_or_default();
        let checked_in = include_str!("../../crds/analyticspipeline.yaml");
        assert!(
            generated == checked_in,
            "crds/analyticspipeline.yaml is stale: run `make crd` \
             (cargo run -p tributary-operator -- crd -o crds/analyticspipeline.yaml)"
        );
        let chart = include_str!("../../charts/tributary-operator/files/analyticspipeline.yaml");
        assert!(
            chart == checked_in,
            "the chart's copy of the CRD is stale: run `make crd`"
        );
    }

    /// Every example pipeline reads as an `AnalyticsPipeline`.
    #[test]
    fn the_examples_are_pipelines() {
        for (name, text) in [
            ("minimal", include_str!("../../crds/examples/minimal.yaml")),
            ("full", include_str!("../../crds/examples/full.yaml")),
        ] {
            let p: crd::AnalyticsPipeline =
                serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(p.spec.kafka.events.name, "events", "{name}");
            assert!(!p.spec.image.is_empty(), "{name}");
        }
    }
}
