//! Every Kubernetes API call the operator makes, as RBAC sees it: the
//! Helm chart's Roles grant exactly these (`tests/chart.rs` compares them,
//! and checks the calls the reconcile and lease tests record are among
//! them).

/// `(API group, resource, verbs)` where pipelines are reconciled.
pub const PIPELINE_NAMESPACES: &[(&str, &str, &[&str])] = &[
    // The controller watches pipelines; startup reads them to check the CRD.
    (
        "tributary.dev",
        "analyticspipelines",
        &["get", "list", "watch"],
    ),
    // The status, replaced with the resourceVersion reconcile read (a
    // conflict means the pipeline changed since).
    ("tributary.dev", "analyticspipelines/status", &["update"]),
    // Children: watched (owned), server-side applied (create on first
    // apply, patch after), read (the Job), listed and deleted (prune).
    ("", "configmaps", CHILD),
    ("", "services", CHILD),
    ("apps", "deployments", CHILD),
    ("batch", "jobs", CHILD),
    ("policy", "poddisruptionbudgets", CHILD),
    // Autoscalers: applied, listed and deleted (prune); not watched.
    (
        "autoscaling",
        "horizontalpodautoscalers",
        &["list", "create", "patch", "delete"],
    ),
    // The migration Job's pods, listed while it runs to tell why one
    // cannot start (unschedulable, a missing Secret).
    ("", "pods", &["list"]),
    // Events; a repeat within the recorder's window patches the series.
    ("events.k8s.io", "events", &["create", "patch"]),
];

const CHILD: &[&str] = &["get", "list", "watch", "create", "patch", "delete"];

/// `(API group, resource, verbs)` in the operator's own namespace, for
/// leader election (`get` and `update` on its one Lease).
pub const LEADER_ELECTION: &[(&str, &str, &[&str])] = &[(
    "coordination.k8s.io",
    "leases",
    &["get", "create", "update"],
)];
