//! The `AnalyticsPipeline` custom resource (`tributary.dev/v1alpha1`): one
//! pipeline's capture, consumer, query and auth workloads, its Kafka topics
//! and its databases. Every field has a description (`kubectl explain`);
//! bounds and CEL rules refuse impossible values at admission.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A Tributary pipeline: capture (HTTP → Kafka), consumer (Kafka →
/// ClickHouse), query (trends, funnels, retention) and auth (users,
/// projects, API keys), with their topics and migrations.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "tributary.dev",
    version = "v1alpha1",
    kind = "AnalyticsPipeline",
    plural = "analyticspipelines",
    shortname = "ap",
    namespaced,
    status = "AnalyticsPipelineStatus",
    // The name becomes Service names (`{name}-capture`: a DNS-1035 label
    // of at most 63 characters) and label values: refused here, at
    // admission, rather than found out at the Service's apply.
    validation = Rule::new("size(self.metadata.name) <= 55").message(
        "metadata.name: at most 55 characters (the operator names Services {name}-capture, which must fit in 63)"
    ),
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message(
        "metadata.name: lowercase letters, digits and '-', starting with a letter and ending with a letter or digit (it names Services, which allow no dots)"
    ),
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Partitions","type":"integer","jsonPath":".status.partitions"}"#,
    printcolumn = r#"{"name":"Consumers","type":"integer","jsonPath":".status.consumerReplicas"}"#,
    printcolumn = r#"{"name":"Lag","type":"integer","jsonPath":".status.consumerLag"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AnalyticsPipelineSpec {
    /// Container image holding the `tributary` binary; every workload and
    /// the migration Job run it with a different subcommand.
    #[schemars(length(min = 1))]
    pub image: String,
    /// Kafka brokers, topics and consumer group.
    pub kafka: KafkaSpec,
    /// ClickHouse, where events are stored and queried.
    pub clickhouse: ClickHouseSpec,
    /// Secret key holding the Postgres DSN of auth (users, projects, API
    /// keys), e.g. `postgres://user:pass@host:5432/db`.
    pub postgres_dsn_secret_ref: SecretKeyRef,
    /// Redis for query results and async jobs.
    pub redis: RedisSpec,
    /// Secret key holding the secret auth signs session tokens (JWT) with.
    pub jwt_secret_ref: SecretKeyRef,
    /// The capture workload (HTTP → Kafka).
    #[serde(default)]
    pub capture: CaptureSpec,
    /// The consumer workload (Kafka → ClickHouse).
    #[serde(default)]
    pub consumer: ConsumerSpec,
    /// The query workload (trends, funnels, retention).
    #[serde(default)]
    pub query: QuerySpec,
    /// The auth workload (users, projects, API keys).
    #[serde(default)]
    pub auth: WorkloadSpec,
    /// Whether the operator runs `tributary migrate` (ClickHouse and
    /// Postgres schemas) in a Job before rolling the workloads.
    #[serde(default = "yes")]
    pub migrations: bool,
    /// The migration Job's pod: its resources, more env, and where it may
    /// run (by default where the consumer may).
    #[serde(default, skip_serializing_if = "MigrationJobSpec::is_empty")]
    pub migration_job: MigrationJobSpec,
    /// While true, the operator changes nothing: no topic, Job or workload
    /// is created, updated or deleted.
    #[serde(default)]
    pub paused: bool,
}

fn yes() -> bool {
    true
}

/// A key of a Secret in the pipeline's namespace.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// A Secret in the pipeline's namespace.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Kafka brokers, topics and consumer group.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSpec {
    /// Comma-separated `host:port` list of brokers. A host without a dot
    /// (`kafka:9092`) is a Service in the pipeline's namespace, for the
    /// workloads and the operator alike.
    #[schemars(length(min = 1))]
    pub bootstrap_servers: String,
    /// The topic capture writes events to, keyed by distinct id.
    #[serde(default = "TopicSpec::events")]
    pub events: TopicSpec,
    /// The dead-letter topic for events the consumer cannot store.
    #[serde(default = "TopicSpec::dlq")]
    pub dlq: TopicSpec,
    /// Consumer group of the consumer workload.
    #[serde(default = "consumer_group")]
    #[schemars(length(min = 1, max = 249))]
    pub consumer_group: String,
    /// Secret with `username`, `password` and `mechanism` (`PLAIN`,
    /// `SCRAM-SHA-256`, `SCRAM-SHA-512`) for SASL authentication. Not yet
    /// supported by the workloads: a pipeline that sets it is refused with
    /// a condition rather than run without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl_secret_ref: Option<SecretRef>,
    /// Secret with `ca.crt` (and optionally `tls.crt`, `tls.key`) for TLS
    /// to the brokers. Not yet supported by the workloads: a pipeline that
    /// sets it is refused with a condition rather than run without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret_ref: Option<SecretRef>,
}

fn consumer_group() -> String {
    "event-consumers".to_owned()
}

/// A Kafka topic the operator manages.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TopicSpec {
    /// Topic name.
    #[schemars(length(min = 1, max = 249), regex(pattern = r"^[a-zA-Z0-9._-]+$"))]
    pub name: String,
    /// Partitions. Can grow (where the broker supports it), never shrink:
    /// a lower value is refused with a condition.
    #[schemars(range(min = 1, max = 10000))]
    pub partitions: i32,
    /// Copies of each partition across brokers.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 32))]
    pub replication_factor: i16,
    /// How long messages are kept, in hours (`retention.ms`).
    #[serde(default = "week")]
    #[schemars(range(min = 1, max = 87600))]
    pub retention_hours: i64,
}

fn one() -> i16 {
    1
}

fn week() -> i64 {
    168
}

impl TopicSpec {
    fn events() -> Self {
        Self {
            name: "events".to_owned(),
            partitions: 12,
            replication_factor: 1,
            retention_hours: week(),
        }
    }

    fn dlq() -> Self {
        Self {
            name: "events-dlq".to_owned(),
            partitions: 1,
            replication_factor: 1,
            retention_hours: 30 * 24,
        }
    }
}

/// ClickHouse, where events are stored and queried.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClickHouseSpec {
    /// HTTP(S) URL of the server, e.g. `http://clickhouse:8123`.
    #[schemars(length(min = 1))]
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')").message("must be an http:// or https:// URL"))]
    pub url: String,
    /// Database holding the `events` table.
    #[serde(default = "database")]
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$")
    )]
    pub database: String,
    /// Secret with `username` and `password` keys; the server's default
    /// user without a password when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
    /// A cluster in the servers' `remote_servers` (the URL names one of
    /// its nodes; every node serves HTTP at the same port): events are
    /// stored in `events_local` on every node and read through a
    /// `Distributed` `events` sharded by user; shards and replicas are read
    /// from `system.clusters` by the migration, which fails (and the
    /// `MigrationFailed` condition says why) when the cluster is missing or
    /// its nodes describe it differently. Unset: one server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$")
    )]
    pub cluster: Option<String>,
}

fn database() -> String {
    "tributary".to_owned()
}

/// Redis for query results and async jobs: a URL, or a Secret key holding
/// one (when it carries a password). Exactly one of the two.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.url) != has(self.urlSecretRef)").message("give exactly one of url and urlSecretRef"))]
pub struct RedisSpec {
    /// `redis://host:6379` without a password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Secret key holding the Redis URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret_ref: Option<SecretKeyRef>,
}

/// Settings every workload has.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSpec {
    /// Pods to run; the defaults are 2 for capture and query, 1 for auth
    /// and the consumer. The operator owns the Deployment's replicas: an
    /// HPA or `kubectl scale` pointed at it is undone at the next
    /// reconcile. Scale capture and query with their `autoscaling`, the
    /// consumer with its `scaling`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: Option<i32>,
    /// CPU and memory; the defaults are the seed's recommendations
    /// (capture 100m-1 CPU, 128Mi-512Mi; consumer 200m-2, 256Mi-1Gi;
    /// query 100m-2, 256Mi-1Gi; auth 50m-500m, 64Mi-256Mi).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// More environment variables (they win over the operator's). Refer
    /// to Secrets with `valueFrom`; never put secrets here as values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Node labels the pods must run on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
}

/// The migration Job's pod.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MigrationJobSpec {
    /// CPU and memory; default 50m-500m CPU, 64Mi-256Mi (a namespace with
    /// a ResourceQuota and no LimitRange admits no pod without them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// More environment variables (they win over the operator's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Node labels the pod must run on; the consumer's when empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the pod tolerates; the consumer's when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
}

impl MigrationJobSpec {
    fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// The capture workload.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.replicas) || !has(self.autoscaling)").message("give replicas or autoscaling, not both: with autoscaling, minReplicas and maxReplicas bound the replicas"))]
#[x_kube(validation = Rule::new("self.requireApiKey != has(self.keylessProjectId)").message("keylessProjectId goes with requireApiKey: false, and only with it: events without a key go to that project, made for them in auth"))]
pub struct CaptureSpec {
    #[serde(flatten)]
    pub workload: WorkloadSpec,
    /// Refuse events without a project API key (`CAPTURE_REQUIRE_API_KEY`).
    /// An unknown or revoked key is refused whatever this says.
    #[serde(default = "yes")]
    pub require_api_key: bool,
    /// With `requireApiKey: false`, the project events without a key go
    /// to: make one for them in auth (`POST /api/projects`); it is never
    /// another project's (`CAPTURE_KEYLESS_PROJECT_ID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub keyless_project_id: Option<i64>,
    /// Scaling on CPU by a HorizontalPodAutoscaler the operator owns; the
    /// Deployment's replicas are then the autoscaler's. Off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<CpuAutoscaling>,
}

/// The query workload.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.replicas) || !has(self.autoscaling)").message("give replicas or autoscaling, not both: with autoscaling, minReplicas and maxReplicas bound the replicas"))]
#[x_kube(validation = Rule::new("self.requireApiKey != has(self.keylessProjectId)").message("keylessProjectId goes with requireApiKey: false, and only with it: queries without a key read that project"))]
pub struct QuerySpec {
    #[serde(flatten)]
    pub workload: WorkloadSpec,
    /// Refuse queries without a project API key of scope `query`
    /// (`QUERY_REQUIRE_API_KEY`). An unknown or revoked key is refused
    /// whatever this says.
    #[serde(default = "yes")]
    pub require_api_key: bool,
    /// With `requireApiKey: false`, the project queries without a key
    /// read (`QUERY_KEYLESS_PROJECT_ID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub keyless_project_id: Option<i64>,
    /// Scaling on CPU by a HorizontalPodAutoscaler the operator owns; the
    /// Deployment's replicas are then the autoscaler's. Off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<CpuAutoscaling>,
}

impl Default for CaptureSpec {
    /// Keys required, as when the field is left out.
    fn default() -> Self {
        Self {
            workload: WorkloadSpec::default(),
            require_api_key: true,
            keyless_project_id: None,
            autoscaling: None,
        }
    }
}

impl Default for QuerySpec {
    /// Keys required, as when the field is left out.
    fn default() -> Self {
        Self {
            workload: WorkloadSpec::default(),
            require_api_key: true,
            keyless_project_id: None,
            autoscaling: None,
        }
    }
}

/// A HorizontalPodAutoscaler (`autoscaling/v2`) on CPU for a stateless
/// workload. Utilisation is measured against the CPU requests.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("minReplicas must not exceed maxReplicas"))]
pub struct CpuAutoscaling {
    /// Fewest replicas.
    #[serde(default = "two_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: i32,
    /// Most replicas.
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// Average CPU use, in percent of the requests, the autoscaler keeps
    /// the pods at.
    #[serde(default = "cpu_target", rename = "targetCPUUtilizationPercentage")]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percentage: i32,
}

fn two_replicas() -> i32 {
    2
}

fn cpu_target() -> i32 {
    70
}

/// The consumer workload. Its replicas never exceed the events topic's
/// partitions (a consumer beyond them would sit idle).
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.replicas) || !has(self.scaling)").message("give replicas or scaling, not both: with scaling, minReplicas and maxReplicas bound the replicas"))]
pub struct ConsumerSpec {
    #[serde(flatten)]
    pub workload: WorkloadSpec,
    /// Scaling on consumer lag; off when absent (`replicas` holds). With
    /// it the operator alone sets the consumer Deployment's replicas
    /// (server-side apply, forced): do not point an HPA or KEDA at it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<ConsumerScaling>,
}

/// Scaling of the consumer on its group's lag.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("minReplicas must not exceed maxReplicas"))]
pub struct ConsumerScaling {
    /// Fewest replicas.
    #[serde(default = "one_replica")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: i32,
    /// Most replicas (and never more than the partitions).
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// Lag (messages) one replica is expected to work off.
    #[serde(default = "lag_per_replica")]
    #[schemars(range(min = 1))]
    pub lag_per_replica: i64,
    /// Seconds a lower recommendation must hold before scaling down.
    #[serde(default = "stabilization")]
    #[schemars(range(min = 0, max = 86400))]
    pub stabilization_window_seconds: i64,
    /// Seconds between lag reads.
    #[serde(default = "poll_interval")]
    #[schemars(range(min = 5, max = 3600))]
    pub poll_interval_seconds: i64,
    /// Adding partitions to the events topic when the replicas sit at the
    /// partition count and lag keeps rising; off when absent. Where the
    /// broker cannot add partitions, the `ScalingLimited` condition says
    /// so. With it, `spec.kafka.events.partitions` is a floor: a topic with
    /// more partitions, up to `maxPartitions`, counts as grown by the
    /// operator, not as a shrink to refuse. New partitions change which
    /// partition a distinct id maps to, so one user's events may briefly be
    /// read out of order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_grow_partitions: Option<PartitionGrowth>,
}

/// How the operator may add partitions to the events topic.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PartitionGrowth {
    /// Most partitions the operator grows the events topic to.
    #[schemars(range(min = 1, max = 10000))]
    pub max_partitions: i32,
    /// Seconds the replicas must sit at the partition count with lag
    /// rising before partitions are added.
    #[serde(default = "growth_window")]
    #[schemars(range(min = 60, max = 86400))]
    pub window_seconds: i64,
}

fn growth_window() -> i64 {
    600
}

fn one_replica() -> i32 {
    1
}

fn lag_per_replica() -> i64 {
    10_000
}

fn stabilization() -> i64 {
    300
}

fn poll_interval() -> i64 {
    15
}

/// What the operator observed and did.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AnalyticsPipelineStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `TopicsReady`, `MigrationsComplete`, `Progressing` and
    /// `Degraded`, each with a reason and a message; one per type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Partitions of the events topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
    /// Consumer replicas asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_replicas: Option<i32>,
    /// Total lag of the consumer group, in messages, at the last read (read
    /// only with `spec.consumer.scaling`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_lag: Option<i64>,
    /// The schema version the last successful migration Job applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<String>,
    /// In-cluster URLs of the capture, query and auth Services.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub endpoints: BTreeMap<String, String>,
    /// Partitions the operator added to the events topic
    /// (`autoGrowPartitions`): a lower `spec.kafka.events.partitions` is
    /// not a shrink, even after scaling is turned off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grown_partitions: Option<i32>,
    /// What the lag autoscaler remembers (`spec.consumer.scaling`), kept
    /// here so a restarted operator goes on where it stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<ScalingStatus>,
}

/// The lag autoscaler's memory.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ScalingStatus {
    /// When the lag was last read (or a read was tried).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_poll_time: Option<Time>,
    /// When the operator last changed the consumer's replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<Time>,
    /// The recommendations of the stabilization window that can still be
    /// its highest, oldest first: replicas scale down no lower than the
    /// first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recommendations: Vec<ScalingRecommendation>,
    /// The largest lag of one partition at the last read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_partition_lag: Option<i64>,
    /// Since when the lag has asked for more replicas than partitions and
    /// kept rising (`autoGrowPartitions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saturated_since: Option<Time>,
    /// The lag at `saturatedSince`: partitions are added only if it is
    /// higher at the end of the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_when_saturated: Option<i64>,
}

/// One recommendation of the autoscaler.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
pub struct ScalingRecommendation {
    pub time: Time,
    pub replicas: i32,
}
