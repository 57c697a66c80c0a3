//! A workload's Deployment, Service and PodDisruptionBudget.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    ContainerPort, HTTPGetAction, PodTemplateSpec, Probe, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::component::Component;
use super::config::{Reader, merge_env, secret_env};
use super::{Sizing, meta, pod};
use crate::crd::AnalyticsPipeline;

/// Consumer replicas: the autoscaler's, else `minReplicas` with scaling
/// on, else the spec's (or the default); never more than the events
/// topic's partitions, since a consumer beyond them sits idle.
pub fn consumer_replicas(p: &AnalyticsPipeline, sizing: &Sizing) -> i32 {
    let spec = &p.spec.consumer;
    let wanted = sizing
        .consumer_replicas
        .or_else(|| spec.scaling.as_ref().map(|s| s.min_replicas))
        .or(spec.workload.replicas)
        .unwrap_or(Component::Consumer.default_replicas());
    wanted.min(sizing.partitions).max(0)
}

fn http_probe(path: &str, port: i32, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(port),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

/// The Deployment of `component`, `sizing` deciding the consumer's
/// replicas, its pods reading the ConfigMap `config` (its name changes
/// with the settings, so a settings change rolls the pods).
pub fn deployment(
    p: &AnalyticsPipeline,
    component: Component,
    sizing: &Sizing,
    config: &str,
) -> Deployment {
    let spec = component.spec(&p.spec);
    // With an autoscaler, the replicas are its own: left out of the apply,
    // so the operator neither sets nor owns them.
    let replicas = match component {
        _ if component.autoscaling(&p.spec).is_some() => None,
        Component::Consumer => Some(consumer_replicas(p, sizing)),
        _ => Some(spec.replicas.unwrap_or(component.default_replicas())),
    };
    let env = merge_env(secret_env(p, Reader::Workload(component)), &spec.env);
    let mut container = pod::container(p, component.name(), config, env);
    container.ports = Some(vec![ContainerPort {
        name: Some("http".to_owned()),
        container_port: component.port(),
        ..ContainerPort::default()
    }]);
    container.resources = Some(
        spec.resources
            .clone()
            .unwrap_or_else(|| component.default_resources()),
    );
    container.liveness_probe = Some(http_probe("/health", component.port(), 10));
    container.readiness_probe = Some(http_probe(component.readiness_path(), component.port(), 5));
    let selector = meta::selector(p, component);
    let mut pod_labels = meta::labels(p, component.name());
    pod_labels.extend(selector.clone());
    Deployment {
        metadata: meta::meta(p, meta::child_name(p, component.name()), component.name()),
        spec: Some(DeploymentSpec {
            replicas,
            selector: LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod::pod(container, Some(spec), "Always")),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// The HorizontalPodAutoscaler of `component`, when its spec asks for one.
pub fn autoscaler(p: &AnalyticsPipeline, component: Component) -> Option<HorizontalPodAutoscaler> {
    let scaling = component.autoscaling(&p.spec)?;
    let name = meta::child_name(p, component.name());
    Some(HorizontalPodAutoscaler {
        metadata: meta::meta(p, name.clone(), component.name()),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".to_owned()),
                kind: "Deployment".to_owned(),
                name,
            },
            min_replicas: Some(scaling.min_replicas),
            max_replicas: scaling.max_replicas,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".to_owned(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".to_owned(),
                    target: MetricTarget {
                        type_: "Utilization".to_owned(),
                        average_utilization: Some(scaling.target_cpu_utilization_percentage),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }]),
            ..HorizontalPodAutoscalerSpec::default()
        }),
        ..HorizontalPodAutoscaler::default()
    })
}

/// The ClusterIP Service of a component that serves HTTP.
pub fn service(p: &AnalyticsPipeline, component: Component) -> Service {
    Service {
        metadata: meta::meta(p, meta::child_name(p, component.name()), component.name()),
        spec: Some(ServiceSpec {
            selector: Some(meta::selector(p, component)),
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port: component.port(),
                target_port: Some(IntOrString::String("http".to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// At most one pod of a component away at a time for voluntary
/// disruptions (node drains).
pub fn disruption_budget(p: &AnalyticsPipeline, component: Component) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta::meta(p, meta::child_name(p, component.name()), component.name()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(meta::selector(p, component)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}
