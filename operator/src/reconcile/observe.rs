//! Reading the cluster's answers: where the migration Job stands, whether a
//! Deployment has rolled out, and the pipeline's endpoints. Pure.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::build::{Component, meta};
use crate::crd::AnalyticsPipeline;
use crate::status::{Migration, Reason};

/// Where `job` stands: its `Complete` or `Failed` condition, else running.
pub fn migration(job: &Job) -> Migration {
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let holds = |type_: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == "True")
    };
    if holds("Complete").is_some() {
        return Migration::Succeeded;
    }
    match holds("Failed") {
        Some(c) => Migration::Failed {
            reason: match (c.reason.as_deref(), c.message.as_deref()) {
                (Some(r), Some(m)) if !m.is_empty() => format!("{r}: {m}"),
                (Some(r), _) => r.to_owned(),
                (None, Some(m)) => m.to_owned(),
                (None, None) => "the Job reports Failed without a reason".to_owned(),
            },
        },
        None => Migration::Running,
    }
}

/// How long a Job may have no pod before that is reported: the Job
/// controller makes one within seconds unless admission refuses it (a
/// ResourceQuota, a policy), which it tells only in the Job's Events.
pub const NO_POD_AFTER: SignedDuration = SignedDuration::from_secs(60);

/// Container waiting reasons that keep a pod from starting until someone
/// acts (the image, a missing Secret or ConfigMap key).
const STUCK: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// Why the running Job `job`'s pod cannot start, from its `pods`, at `now`:
/// `(reason, message)` with what the scheduler or the kubelet says, `None`
/// while it runs or may yet start. A pod that ran and failed is the Job's
/// to retry and report.
pub fn migration_pending(job: &Job, pods: &[Pod], now: Timestamp) -> Option<(Reason, String)> {
    let waiting = |pod: &Pod| {
        let status = pod.status.as_ref()?;
        if status.phase.as_deref() != Some("Pending") {
            return None;
        }
        if let Some(c) = status.conditions.iter().flatten().find(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
        }) {
            return Some((
                Reason::Unschedulable,
                c.message
                    .clone()
                    .unwrap_or_else(|| "the scheduler found no node".to_owned()),
            ));
        }
        status
            .container_statuses
            .iter()
            .flatten()
            .chain(status.init_container_statuses.iter().flatten())
            .filter_map(|c| c.state.as_ref()?.waiting.as_ref())
            .find(|w| w.reason.as_deref().is_some_and(|r| STUCK.contains(&r)))
            .map(|w| {
                let reason = w.reason.clone().unwrap_or_default();
                (
                    Reason::PodNotStarting,
                    match w.message.as_deref() {
                        Some(m) if !m.is_empty() => format!("{reason}: {m}"),
                        _ => reason,
                    },
                )
            })
    };
    if let Some(found) = pods.iter().find_map(waiting) {
        return Some(found);
    }
    let created = job.metadata.creation_timestamp.as_ref()?.0;
    let old = now.duration_since(created) >= NO_POD_AFTER;
    // The message stays the same from one look to the next: a status
    // that changes with the clock would be written, and wake reconcile,
    // every time.
    (pods.is_empty() && old).then(|| {
        let name = job.metadata.name.as_deref().unwrap_or_default();
        (
            Reason::NoPod,
            format!(
                "Job {name} has made no pod for over {}s; `kubectl describe job {name}` shows why (a ResourceQuota or an admission policy refusing it)",
                NO_POD_AFTER.as_secs(),
            ),
        )
    })
}

/// Longest part of a termination message carried into a condition.
const LAST_WORDS: usize = 600;

/// What the newest failed attempt among `pods` said as it exited: the last
/// line of its termination message (its last log lines, the containers
/// being `FallbackToLogsOnError`), e.g. `tributary migrate: ClickHouse at
/// http://ch:8123 has no cluster c in its remote_servers`.
pub fn last_words(pods: &[Pod]) -> Option<String> {
    pods.iter()
        .flat_map(|pod| {
            pod.status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
        })
        .flat_map(|c| {
            [c.state.as_ref(), c.last_state.as_ref()]
                .into_iter()
                .flatten()
                .filter_map(|s| s.terminated.as_ref())
        })
        .filter(|t| t.exit_code != 0)
        .filter_map(|t| {
            let line = t
                .message
                .as_deref()?
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())?;
            Some((t.finished_at.as_ref().map(|f| f.0), line.trim()))
        })
        .max_by_key(|(finished, _)| *finished)
        .map(|(_, line)| match line.char_indices().nth(LAST_WORDS) {
            Some((cut, _)) => format!("{}…", &line[..cut]),
            None => line.to_owned(),
        })
}

/// Whether the Deployment the API server returned has rolled out: the
/// controller saw the latest spec, and every wanted replica runs it and is
/// available, with no old pods left.
pub fn rolled_out(d: &Deployment) -> bool {
    let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(status) = &d.status else {
        return false;
    };
    let generation = d.metadata.generation.unwrap_or(0);
    status.observed_generation.unwrap_or(0) >= generation
        && status.updated_replicas.unwrap_or(0) == wanted
        && status.available_replicas.unwrap_or(0) >= wanted
        && status.replicas.unwrap_or(0) == wanted
}

/// Why the Deployment's rollout stopped, when it passed its progress
/// deadline (`Progressing=False`, reason `ProgressDeadlineExceeded`: an
/// image that cannot be pulled, pods that never become ready).
pub fn stalled(d: &Deployment) -> Option<String> {
    d.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| {
            c.type_ == "Progressing"
                && c.status == "False"
                && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
        })
        .map(|c| match c.message.as_deref() {
            Some(m) if !m.is_empty() => format!("ProgressDeadlineExceeded: {m}"),
            _ => "ProgressDeadlineExceeded".to_owned(),
        })
}

/// In-cluster URLs of the components that serve HTTP, by component name.
pub fn endpoints(p: &AnalyticsPipeline) -> BTreeMap<String, String> {
    let namespace = meta::namespace(p);
    Component::ALL
        .iter()
        .filter(|c| c.serves())
        .map(|c| {
            (
                c.name().to_owned(),
                format!(
                    "http://{}.{namespace}.svc:{}",
                    meta::child_name(p, c.name()),
                    c.port()
                ),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus};
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};

    fn job(conditions: Vec<(&str, &str, Option<&str>, Option<&str>)>) -> Job {
        Job {
            status: Some(JobStatus {
                conditions: Some(
                    conditions
                        .into_iter()
                        .map(|(t, s, r, m)| JobCondition {
                            type_: t.into(),
                            status: s.into(),
                            reason: r.map(Into::into),
                            message: m.map(Into::into),
                            ..JobCondition::default()
                        })
                        .collect(),
                ),
                ..JobStatus::default()
            }),
            ..Job::default()
        }
    }

    #[test]
    fn a_job_is_running_until_it_completes_or_fails_with_its_reason() {
        assert_eq!(migration(&Job::default()), Migration::Running);
        assert_eq!(
            migration(&job(vec![("Suspended", "True", None, None)])),
            Migration::Running
        );
        assert_eq!(
            migration(&job(vec![("Complete", "True", None, None)])),
            Migration::Succeeded
        );
        assert_eq!(
            migration(&job(vec![("Failed", "False", None, None)])),
            Migration::Running
        );
        assert_eq!(
            migration(&job(vec![(
                "Failed",
                "True",
                Some("BackoffLimitExceeded"),
                Some("Job has reached the specified backoff limit")
            )])),
            Migration::Failed {
                reason: "BackoffLimitExceeded: Job has reached the specified backoff limit".into()
            }
        );
    }

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"status": status})).unwrap_or_default()
    }

    fn created_at(secs: i64) -> Job {
        serde_json::from_value(serde_json::json!({"metadata": {
            "name": "shop-migrate-v2-abcd1234",
            "creationTimestamp": Timestamp::from_second(secs).unwrap_or_default().to_string(),
        }}))
        .unwrap_or_default()
    }

    #[test]
    fn the_newest_failed_attempt_tells_why_in_its_last_line() {
        let failed = |at: &str, message: &str| {
            pod(serde_json::json!({"containerStatuses": [{
                "name": "tributary", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 1, "finishedAt": at, "message": message}},
            }]}))
        };
        let older = failed("2026-12-07T10:00:00Z", "tributary migrate: earlier\n");
        let newer = failed(
            "2026-12-07T10:01:00Z",
            "{\"level\":\"info\"}\ntributary migrate: ClickHouse at http://ch:8123 has no cluster c in its remote_servers\n\n",
        );
        assert_eq!(
            last_words(&[older.clone(), newer]).as_deref(),
            Some(
                "tributary migrate: ClickHouse at http://ch:8123 has no cluster c in its remote_servers"
            )
        );
        assert_eq!(
            last_words(&[older]).as_deref(),
            Some("tributary migrate: earlier")
        );
        let ok = pod(serde_json::json!({"containerStatuses": [{
            "name": "tributary", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "message": "done"}},
        }]}));
        assert_eq!(last_words(&[ok]), None);
        let long = failed("2026-12-07T10:00:00Z", &"x".repeat(5000));
        assert_eq!(
            last_words(&[long]).map(|w| w.chars().count()),
            Some(LAST_WORDS + 1)
        );
    }

    #[test]
    fn a_migration_pod_that_cannot_start_is_told_with_what_kubernetes_says() {
        let job = created_at(1_000);
        let at = |s| Timestamp::from_second(s).unwrap_or_default();
        let unschedulable = pod(serde_json::json!({
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 node(s) had untolerated taint {dedicated: analytics}."}]
        }));
        let (reason, message) =
            migration_pending(&job, &[unschedulable], at(1_005)).expect("pending");
        assert_eq!(reason, Reason::Unschedulable);
        assert!(message.contains("untolerated taint"), "{message}");

        let secret_missing = pod(serde_json::json!({
            "phase": "Pending",
            "containerStatuses": [{"name": "tributary", "image": "x", "imageID": "", "ready": false,
                "restartCount": 0, "state": {"waiting": {"reason": "CreateContainerConfigError",
                "message": "secret \"tributary-postgres\" not found"}}}]
        }));
        let (reason, message) =
            migration_pending(&job, &[secret_missing], at(1_005)).expect("pending");
        assert_eq!(reason, Reason::PodNotStarting);
        assert!(
            message.starts_with("CreateContainerConfigError: secret"),
            "{message}"
        );

        // Starting up (pulling the image, no verdict yet) or running.
        let creating = pod(serde_json::json!({"phase": "Pending",
            "containerStatuses": [{"name": "tributary", "image": "x", "imageID": "", "ready": false,
                "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]}));
        assert_eq!(migration_pending(&job, &[creating], at(2_000)), None);
        let running = pod(serde_json::json!({"phase": "Running"}));
        assert_eq!(migration_pending(&job, &[running], at(2_000)), None);

        // No pod: told once the Job controller had time to make one.
        assert_eq!(migration_pending(&job, &[], at(1_059)), None);
        let (reason, message) = migration_pending(&job, &[], at(1_060)).expect("pending");
        assert_eq!(reason, Reason::NoPod);
        assert!(message.contains("ResourceQuota"), "{message}");
        assert_eq!(
            migration_pending(&job, &[], at(1_060)),
            migration_pending(&job, &[], at(9_000)),
            "the same at every look: a status that moves with the clock is rewritten each time"
        );
    }

    fn deployment(generation: i64, replicas: i32, status: DeploymentStatus) -> Deployment {
        Deployment {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                generation: Some(generation),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                ..DeploymentSpec::default()
            }),
            status: Some(status),
        }
    }

    #[test]
    fn a_deployment_has_rolled_out_when_every_replica_is_new_and_available() {
        let done = DeploymentStatus {
            observed_generation: Some(2),
            replicas: Some(3),
            updated_replicas: Some(3),
            available_replicas: Some(3),
            ..DeploymentStatus::default()
        };
        assert!(rolled_out(&deployment(2, 3, done.clone())));
        assert!(
            !rolled_out(&deployment(3, 3, done.clone())),
            "spec not seen"
        );
        assert!(!rolled_out(&deployment(2, 4, done.clone())), "scaling up");
        let old_pods_left = DeploymentStatus {
            replicas: Some(4),
            ..done.clone()
        };
        assert!(!rolled_out(&deployment(2, 3, old_pods_left)));
        let unavailable = DeploymentStatus {
            available_replicas: Some(2),
            ..done
        };
        assert!(!rolled_out(&deployment(2, 3, unavailable)));
        assert!(!rolled_out(&Deployment::default()), "no status yet");
    }

    #[test]
    fn a_rollout_past_its_deadline_is_stalled_with_its_message() {
        use k8s_openapi::api::apps::v1::DeploymentCondition;
        let with = |status: &str, reason: &str| DeploymentStatus {
            conditions: Some(vec![DeploymentCondition {
                type_: "Progressing".into(),
                status: status.into(),
                reason: Some(reason.into()),
                message: Some("ReplicaSet \"shop-query-7d9\" has timed out progressing.".into()),
                ..DeploymentCondition::default()
            }]),
            ..DeploymentStatus::default()
        };
        let stuck = deployment(1, 2, with("False", "ProgressDeadlineExceeded"));
        assert!(stalled(&stuck).is_some_and(|m| m.contains("timed out progressing")));
        assert_eq!(
            stalled(&deployment(1, 2, with("True", "ReplicaSetUpdated"))),
            None
        );
        assert_eq!(stalled(&Deployment::default()), None);
    }
}
