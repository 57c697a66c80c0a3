//! The reconcile harness: a pipeline stored in the fake API server, a
//! context with an in-memory broker, and helpers to read what a reconcile
//! did.

use std::sync::Arc;

use kube::runtime::controller::Action;
use kube::runtime::events::Reporter;
use serde_json::{Value, json};
use tributary_operator::build;
use tributary_operator::crd::AnalyticsPipeline;
use tributary_operator::metrics::Metrics;
use tributary_operator::reconcile::{Context, Error, reconcile};

use super::{Call, FakeApi, MemoryBroker};

pub const NS: &str = "analytics";
pub const PIPELINE: &str =
    "/apis/tributary.dev/v1alpha1/namespaces/analytics/analyticspipelines/shop";
pub const CONFIG_MAPS: &str = "/api/v1/namespaces/analytics/configmaps";
pub const JOBS: &str = "/apis/batch/v1/namespaces/analytics/jobs";
pub const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/analytics/deployments";
pub const SERVICES: &str = "/api/v1/namespaces/analytics/services";
pub const AUTOSCALERS: &str = "/apis/autoscaling/v2/namespaces/analytics/horizontalpodautoscalers";
pub const BUDGETS: &str = "/apis/policy/v1/namespaces/analytics/poddisruptionbudgets";
pub const PODS: &str = "/api/v1/namespaces/analytics/pods";
pub const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/analytics/events";
pub const UID: &str = "3f0c1b9e-pipeline";

/// The minimal example as the cluster would hold it, `change`d.
pub fn pipeline(change: impl FnOnce(&mut Value)) -> Value {
    let mut p: Value =
        serde_yaml::from_str(include_str!("../../../crds/examples/minimal.yaml")).unwrap();
    p["metadata"] = json!({"name": "shop", "namespace": NS, "uid": UID, "generation": 1});
    change(&mut p);
    p
}

pub struct Harness {
    pub fake: Arc<FakeApi>,
    pub ctx: Arc<Context<MemoryBroker>>,
}

impl Harness {
    pub fn new(p: Value, broker: MemoryBroker) -> Self {
        let fake = FakeApi::new();
        fake.put(PIPELINE, p);
        let reporter = Reporter {
            controller: "tributary-operator".into(),
            instance: None,
        };
        let ctx = Context::new(fake.client(), broker, reporter, Metrics::default());
        Self {
            fake,
            ctx: Arc::new(ctx),
        }
    }

    pub fn stored(&self) -> AnalyticsPipeline {
        self.fake.pipeline(PIPELINE)
    }

    pub async fn reconcile(&self) -> Result<Action, Error> {
        reconcile(Arc::new(self.stored()), Arc::clone(&self.ctx)).await
    }

    /// Reconciles, expecting success, and returns the requests made.
    pub async fn calls(&self) -> (Action, Vec<Call>) {
        let action = self.reconcile().await.expect("reconcile succeeds");
        (action, self.fake.take_calls())
    }

    pub fn condition(&self, type_: &str) -> (String, String, String) {
        let status = self.fake.get(PIPELINE).unwrap()["status"].clone();
        let c = status["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == type_).cloned())
            .unwrap_or_else(|| panic!("no condition {type_} in {status}"));
        let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
        (s("status"), s("reason"), s("message"))
    }

    /// The ConfigMap of the stored pipeline's settings.
    pub fn config_map_key(&self) -> String {
        let p = self.stored();
        let sizing = build::Sizing {
            partitions: 12,
            consumer_replicas: None,
            schema_version: self.ctx.schema_version,
        };
        let c = build::children(&p, sizing).expect("a valid pipeline");
        format!(
            "{CONFIG_MAPS}/{}",
            c.config_map.metadata.name.expect("named")
        )
    }

    pub fn job_key(&self) -> String {
        let p = self.stored();
        let sizing = build::Sizing {
            partitions: 12,
            consumer_replicas: None,
            schema_version: self.ctx.schema_version,
        };
        let job = build::children(&p, sizing)
            .expect("a valid pipeline")
            .migration_job
            .expect("migrations on");
        format!("{JOBS}/{}", job.metadata.name.expect("named"))
    }

    pub fn complete_job(&self, key: &str) {
        self.fake.set_status(
            key,
            json!({"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}),
        );
    }

    /// Every Deployment reports its replicas updated and available.
    pub fn roll_out_deployments(&self) {
        for key in self.fake.keys(DEPLOYMENTS) {
            let d = self.fake.get(&key).unwrap();
            let replicas = d["spec"]["replicas"].as_i64().unwrap();
            self.fake.set_status(
                &key,
                json!({
                    "observedGeneration": d["metadata"]["generation"],
                    "replicas": replicas, "updatedReplicas": replicas,
                    "availableReplicas": replicas, "readyReplicas": replicas,
                }),
            );
        }
    }
}

/// `METHOD path` of each call; an Event's name (a timestamp) reads `*`.
pub fn lines(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .map(|c| match c.path.strip_prefix(&format!("{EVENTS}/")) {
            Some(_) => format!("{} {EVENTS}/*", c.method),
            None => c.line(),
        })
        .collect()
}

/// `(type, reason)` of the Events published: new ones, and repeats the
/// recorder folds into a series of an earlier one.
pub fn events(calls: &[Call]) -> Vec<(String, String)> {
    calls
        .iter()
        .filter(|c| c.path.starts_with(EVENTS))
        .map(|c| {
            let b = c.body.as_ref().unwrap();
            (
                b["type"].as_str().unwrap().to_owned(),
                b["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

pub fn event(type_: &str, reason: &str) -> (String, String) {
    (type_.to_owned(), reason.to_owned())
}

pub fn workload_applies() -> Vec<String> {
    let mut v: Vec<String> = ["auth", "capture", "consumer", "query"]
        .iter()
        .map(|c| format!("PATCH {DEPLOYMENTS}/shop-{c}"))
        .collect();
    v.extend(
        ["auth", "capture", "query"]
            .iter()
            .map(|c| format!("PATCH {SERVICES}/shop-{c}")),
    );
    v.extend(
        ["auth", "capture", "consumer", "query"]
            .iter()
            .map(|c| format!("PATCH {BUDGETS}/shop-{c}")),
    );
    v
}

/// The lists prune makes; ConfigMaps too once every workload rolled out.
pub fn prune_lists() -> Vec<String> {
    [JOBS, DEPLOYMENTS, SERVICES, BUDGETS, AUTOSCALERS]
        .iter()
        .map(|c| format!("GET {c}"))
        .collect()
}

pub fn concat(parts: &[&[String]]) -> Vec<String> {
    parts.iter().flat_map(|p| p.iter().cloned()).collect()
}

pub fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}
