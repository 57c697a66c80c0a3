//! The four workloads of a pipeline and what sets them apart: subcommand,
//! port, probes, default replicas and resources.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::crd::{AnalyticsPipelineSpec, CpuAutoscaling, WorkloadSpec};

/// A workload of the pipeline, in the order Deployments are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    Auth,
    Capture,
    Consumer,
    Query,
}

impl Component {
    /// In apply order: auth first (capture and query check keys against
    /// it), the consumer before query.
    pub const ALL: [Component; 4] = [
        Component::Auth,
        Component::Capture,
        Component::Consumer,
        Component::Query,
    ];

    /// The `tributary` subcommand, and the name suffix of its objects.
    pub fn name(self) -> &'static str {
        match self {
            Component::Auth => "auth",
            Component::Capture => "capture",
            Component::Consumer => "consumer",
            Component::Query => "query",
        }
    }

    /// The port its HTTP server (or, for the consumer, its health and
    /// metrics server) listens on.
    pub fn port(self) -> i32 {
        match self {
            Component::Capture => 8000,
            Component::Query => 8001,
            Component::Auth => 8002,
            Component::Consumer => 9090,
        }
    }

    /// Whether it gets a Service (the consumer serves nobody).
    pub fn serves(self) -> bool {
        self != Component::Consumer
    }

    /// Readiness path, where the binary checks what the workload serves
    /// with: capture's `/ready` is 503 while Kafka does not answer, query's
    /// while ClickHouse does not, auth's while Postgres does not. The
    /// consumer serves no one (no Service): its health is enough, and its
    /// lag tells when it cannot work.
    pub fn readiness_path(self) -> &'static str {
        match self {
            Component::Capture | Component::Query | Component::Auth => "/ready",
            Component::Consumer => "/health",
        }
    }

    pub fn spec(self, spec: &AnalyticsPipelineSpec) -> &WorkloadSpec {
        match self {
            Component::Auth => &spec.auth,
            Component::Capture => &spec.capture.workload,
            Component::Consumer => &spec.consumer.workload,
            Component::Query => &spec.query.workload,
        }
    }

    /// The HorizontalPodAutoscaler `spec` asks for this workload, if any.
    pub fn autoscaling(self, spec: &AnalyticsPipelineSpec) -> Option<&CpuAutoscaling> {
        match self {
            Component::Capture => spec.capture.autoscaling.as_ref(),
            Component::Query => spec.query.autoscaling.as_ref(),
            Component::Auth | Component::Consumer => None,
        }
    }

    pub fn default_replicas(self) -> i32 {
        match self {
            Component::Capture | Component::Query => 2,
            Component::Auth | Component::Consumer => 1,
        }
    }

    /// The seed's recommended requests and limits (002, "Resource limits").
    pub fn default_resources(self) -> ResourceRequirements {
        let (cpu_req, cpu_lim, mem_req, mem_lim) = match self {
            Component::Capture => ("100m", "1000m", "128Mi", "512Mi"),
            Component::Consumer => ("200m", "2000m", "256Mi", "1Gi"),
            Component::Query => ("100m", "2000m", "256Mi", "1Gi"),
            Component::Auth => ("50m", "500m", "64Mi", "256Mi"),
        };
        let pair = |cpu: &str, mem: &str| {
            BTreeMap::from([
                ("cpu".to_owned(), Quantity(cpu.to_owned())),
                ("memory".to_owned(), Quantity(mem.to_owned())),
            ])
        };
        ResourceRequirements {
            requests: Some(pair(cpu_req, mem_req)),
            limits: Some(pair(cpu_lim, mem_lim)),
            ..ResourceRequirements::default()
        }
    }
}
