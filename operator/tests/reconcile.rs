//! Reconcile against a mocked Kubernetes API server (`support::FakeApi`,
//! served through `tower-test`) and an in-memory broker: each test asserts
//! the requests a reconcile made, in order, and what it wrote.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use serde_json::json;
use support::MemoryBroker;
use support::harness::*;
use tributary_operator::metrics::ErrorLabels;
use tributary_operator::reconcile::{Error, RESYNC, WHILE_PROGRESSING, error_policy};

#[tokio::test]
async fn first_creation_makes_topics_and_starts_the_migration_before_any_workload() {
    let h = Harness::new(pipeline(|_| {}), MemoryBroker::new(true));
    let (action, calls) = h.calls().await;
    let job = h.job_key();
    assert_eq!(
        lines(&calls),
        strings(&[
            &format!("PATCH {}", h.config_map_key()),
            &format!("GET {job}"),
            &format!("PATCH {job}"),
            &format!("GET {JOBS}"),
            // Running: whether its pod can start.
            &format!("GET {PODS}"),
            &format!("PUT {PIPELINE}/status"),
            &format!("POST {EVENTS}"),
            &format!("POST {EVENTS}"),
        ])
    );
    let pods = calls.iter().find(|c| c.path == PODS).unwrap();
    assert_eq!(
        pods.query.get("labelSelector").map(String::as_str),
        Some(
            format!(
                "batch.kubernetes.io/job-name={}",
                job.rsplit('/').next().unwrap()
            )
            .as_str()
        )
    );
    // Every write is a forced server-side apply by the operator.
    for c in calls.iter().filter(|c| c.method == "PATCH") {
        assert_eq!(
            c.query.get("fieldManager").map(String::as_str),
            Some("tributary-operator"),
            "{}",
            c.line()
        );
        assert_eq!(
            c.query.get("force").map(String::as_str),
            Some("true"),
            "{}",
            c.line()
        );
    }
    let job_body = calls[2].body.as_ref().unwrap();
    assert_eq!(
        job_body["spec"]["template"]["spec"]["containers"][0]["args"],
        json!(["migrate"])
    );
    assert_eq!(job_body["metadata"]["ownerReferences"][0]["uid"], UID);
    assert_eq!(
        job_body["metadata"]["ownerReferences"][0]["controller"],
        true
    );

    assert_eq!(
        events(&calls),
        [
            event("Normal", "TopicCreated"),
            event("Normal", "MigrationStarted")
        ]
    );
    let topic_note = calls[6].body.as_ref().unwrap()["note"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        topic_note.contains("events with 12") && topic_note.contains("events-dlq with 1 partition"),
        "{topic_note}"
    );
    let topics = h.ctx.kafka.topics.lock().unwrap().clone();
    assert_eq!(topics.get("events"), Some(&12));
    assert_eq!(topics.get("events-dlq"), Some(&1));
    assert_eq!(h.condition("MigrationsComplete").1, "Running");
    assert_eq!(h.condition("TopicsReady").0, "True");
    assert_eq!(h.condition("Ready").0, "False");
    assert_eq!(h.condition("Progressing").0, "True");
    assert_eq!(h.fake.get(PIPELINE).unwrap()["status"]["partitions"], 12);
    assert_eq!(action, Action::requeue(WHILE_PROGRESSING));
    assert!(
        h.fake.keys(DEPLOYMENTS).is_empty(),
        "no workload before the migration"
    );

    // While the Job runs, the Job, the pipeline's other Jobs (one that
    // never finished would go) and its pods are only read; nothing else
    // moves.
    let (_, calls) = h.calls().await;
    assert_eq!(
        lines(&calls),
        strings(&[
            &format!("PATCH {}", h.config_map_key()),
            &format!("GET {job}"),
            &format!("GET {JOBS}"),
            &format!("GET {PODS}"),
        ])
    );
}

#[tokio::test]
async fn workloads_roll_out_in_order_after_the_migration_and_a_settled_pipeline_writes_nothing() {
    let h = Harness::new(
        pipeline(|p| p["spec"]["consumer"] = json!({"replicas": 20})),
        MemoryBroker::new(true),
    );
    h.calls().await;
    let job = h.job_key();
    h.complete_job(&job);

    let (action, calls) = h.calls().await;
    assert_eq!(
        lines(&calls),
        concat(&[
            &strings(&[
                &format!("PATCH {}", h.config_map_key()),
                &format!("GET {job}")
            ]),
            &workload_applies(),
            &prune_lists(),
            &strings(&[&format!("PUT {PIPELINE}/status"), &format!("POST {EVENTS}")]),
        ])
    );
    assert_eq!(events(&calls), [event("Normal", "MigrationSucceeded")]);
    assert_eq!(action, Action::requeue(WHILE_PROGRESSING), "rolling out");
    let consumer = h.fake.get(&format!("{DEPLOYMENTS}/shop-consumer")).unwrap();
    assert_eq!(
        consumer["spec"]["replicas"], 12,
        "capped at the 12 partitions"
    );
    let status = h.fake.get(PIPELINE).unwrap()["status"].clone();
    assert_eq!(status["consumerReplicas"], 12);
    assert_eq!(status["schemaVersion"], h.ctx.schema_version.to_string());
    assert_eq!(
        status["endpoints"]["capture"],
        "http://shop-capture.analytics.svc:8000"
    );
    assert_eq!(h.condition("MigrationsComplete").0, "True");
    let (_, _, progress) = h.condition("Progressing");
    assert!(
        progress.contains("auth, capture, consumer, query"),
        "{progress}"
    );

    h.roll_out_deployments();
    let (action, calls) = h.calls().await;
    assert_eq!(events(&calls), [event("Normal", "Ready")]);
    assert_eq!(h.condition("Ready").0, "True");
    assert_eq!(action, Action::requeue(RESYNC));

    // Nothing changed: the children are re-applied (idempotent) but the
    // status is not written and no Event is published.
    let (_, calls) = h.calls().await;
    assert_eq!(
        lines(&calls),
        concat(&[
            &strings(&[
                &format!("PATCH {}", h.config_map_key()),
                &format!("GET {job}")
            ]),
            &workload_applies(),
            &prune_lists(),
            &strings(&[&format!("GET {CONFIG_MAPS}")]),
        ])
    );
}

#[tokio::test]
async fn a_spec_change_migrates_the_new_image_first_then_rolls_and_deletes_the_old_job() {
    let h = Harness::new(pipeline(|_| {}), MemoryBroker::new(true));
    h.calls().await;
    let old_job = h.job_key();
    h.complete_job(&old_job);
    h.calls().await;
    h.roll_out_deployments();
    h.calls().await;

    let mut p = h.fake.get(PIPELINE).unwrap();
    p["spec"]["image"] = json!("ghcr.io/tributary-dev/tributary:0.2.0");
    p["metadata"]["generation"] = json!(2);
    h.fake.put(PIPELINE, p);
    let new_job = h.job_key();
    assert_ne!(new_job, old_job);

    let (_, calls) = h.calls().await;
    assert_eq!(
        lines(&calls),
        strings(&[
            &format!("PATCH {}", h.config_map_key()),
            &format!("GET {new_job}"),
            &format!("PATCH {new_job}"),
            &format!("GET {JOBS}"),
            &format!("GET {PODS}"),
            &format!("PUT {PIPELINE}/status"),
            // The second MigrationStarted within minutes joins the first's series.
            &format!("PATCH {EVENTS}/*"),
        ])
    );
    assert_eq!(events(&calls), [event("Normal", "MigrationStarted")]);
    let image = |c: &str| {
        h.fake.get(&format!("{DEPLOYMENTS}/shop-{c}")).unwrap()["spec"]["template"]["spec"]
            ["containers"][0]["image"]
            .clone()
    };
    assert_eq!(
        image("query"),
        "ghcr.io/tributary-dev/tributary:0.1.0",
        "not before the migration"
    );
    assert_eq!(h.condition("Ready").1, "Progressing");
    assert_eq!(
        h.fake.get(PIPELINE).unwrap()["status"]["observedGeneration"],
        2
    );

    h.complete_job(&new_job);
    let (_, calls) = h.calls().await;
    assert!(
        lines(&calls).contains(&format!("DELETE {old_job}")),
        "{:#?}",
        lines(&calls)
    );
    assert!(!lines(&calls).contains(&format!("DELETE {new_job}")));
    for c in ["auth", "capture", "consumer", "query"] {
        assert_eq!(image(c), "ghcr.io/tributary-dev/tributary:0.2.0", "{c}");
    }
    assert!(h.fake.get(&old_job).is_none());
}

#[tokio::test]
async fn an_invalid_spec_is_a_condition_and_nothing_is_applied() {
    let h = Harness::new(
        pipeline(|p| p["spec"]["kafka"]["saslSecretRef"] = json!({"name": "kafka-sasl"})),
        MemoryBroker::new(true),
    );
    let (action, calls) = h.calls().await;
    assert_eq!(
        lines(&calls),
        strings(&[&format!("PUT {PIPELINE}/status"), &format!("POST {EVENTS}")])
    );
    assert_eq!(events(&calls), [event("Warning", "InvalidSpec")]);
    let (status, reason, message) = h.condition("Degraded");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "InvalidSpec"));
    assert!(message.starts_with("spec.kafka.saslSecretRef"), "{message}");
    assert_eq!(h.condition("TopicsReady").0, "Unknown");
    assert!(
        h.ctx.kafka.calls.lock().unwrap().is_empty(),
        "Kafka is not asked"
    );
    assert_eq!(action, Action::await_change());

    // Reconciling the same invalid spec again writes nothing.
    let (_, calls) = h.calls().await;
    assert!(calls.is_empty(), "{:#?}", lines(&calls));
}

/// A pipeline without migrations asking for `consumers` replicas, on a
/// broker (that can grow topics or not) already holding an events topic of
/// `partitions`.
fn with_events_topic(partitions: i32, can_grow: bool, consumers: i32) -> Harness {
    let broker = MemoryBroker::new(can_grow);
    broker
        .topics
        .lock()
        .unwrap()
        .insert("events".into(), partitions);
    Harness::new(
        pipeline(|p| {
            p["spec"]["migrations"] = json!(false);
            p["spec"]["consumer"] = json!({"replicas": consumers});
        }),
        broker,
    )
}

#[tokio::test]
async fn a_topic_shrink_is_refused_with_a_condition_and_the_pipeline_keeps_running() {
    let h = with_events_topic(24, true, 30);
    let (_, calls) = h.calls().await;
    assert_eq!(
        lines(&calls),
        concat(&[
            &strings(&[&format!("PATCH {}", h.config_map_key())]),
            &workload_applies(),
            &prune_lists(),
            &strings(&[
                &format!("PUT {PIPELINE}/status"),
                &format!("POST {EVENTS}"),
                &format!("POST {EVENTS}"),
            ]),
        ])
    );
    assert_eq!(
        events(&calls),
        [
            event("Normal", "TopicCreated"),
            event("Warning", "ShrinkRefused")
        ]
    );
    assert_eq!(
        h.ctx.kafka.topics.lock().unwrap().get("events"),
        Some(&24),
        "never shrunk"
    );
    let (status, reason, message) = h.condition("TopicsReady");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "ShrinkRefused")
    );
    assert!(message.contains("set 24 or more"), "{message}");
    assert_eq!(h.condition("Degraded").0, "True");
    assert_eq!(h.condition("MigrationsComplete").1, "Disabled");
    let consumer = h.fake.get(&format!("{DEPLOYMENTS}/shop-consumer")).unwrap();
    assert_eq!(
        consumer["spec"]["replicas"], 24,
        "capped at the topic's real partitions"
    );
}

#[tokio::test]
async fn a_broker_that_cannot_grow_partitions_is_a_condition_not_an_error_loop() {
    let h = with_events_topic(6, false, 12);
    let (action, _) = h.calls().await;
    let (status, reason, message) = h.condition("TopicsReady");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "GrowUnsupported")
    );
    assert!(message.contains("UnsupportedFeature"), "{message}");
    let consumer = h.fake.get(&format!("{DEPLOYMENTS}/shop-consumer")).unwrap();
    assert_eq!(consumer["spec"]["replicas"], 6);
    assert_eq!(h.fake.get(PIPELINE).unwrap()["status"]["partitions"], 6);
    assert_eq!(
        action,
        Action::requeue(WHILE_PROGRESSING),
        "rolling out as usual: a lasting state, not an error retry"
    );
}

#[tokio::test]
async fn a_failed_migration_is_a_condition_with_the_jobs_reason_and_nothing_rolls() {
    let h = Harness::new(pipeline(|_| {}), MemoryBroker::new(true));
    h.calls().await;
    let job = h.job_key();
    h.fake.set_status(
        &job,
        json!({"failed": 5, "conditions": [{"type": "Failed", "status": "True",
            "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}),
    );
    // Its last pod, as the kubelet leaves it (FallbackToLogsOnError).
    let job_name = job.rsplit('/').next().unwrap().to_owned();
    h.fake.put(
        &format!("{PODS}/{job_name}-x7k2p"),
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("{job_name}-x7k2p"), "namespace": "analytics",
                "labels": {"batch.kubernetes.io/job-name": job_name}},
            "status": {"phase": "Failed", "containerStatuses": [{"name": "tributary", "image": "i",
                "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 1, "finishedAt": "2026-12-07T10:00:00Z",
                    "message": "{\"level\":\"info\"}\ntributary migrate: ClickHouse at http://clickhouse:8123 has no cluster c in its remote_servers\n"}}}]}}),
    );
    let (action, calls) = h.calls().await;
    assert_eq!(
        lines(&calls),
        strings(&[
            &format!("PATCH {}", h.config_map_key()),
            &format!("GET {job}"),
            &format!("GET {JOBS}"),
            &format!("GET {PODS}"),
            &format!("PUT {PIPELINE}/status"),
            &format!("POST {EVENTS}"),
        ])
    );
    assert_eq!(events(&calls), [event("Warning", "MigrationFailed")]);
    let (status, reason, message) = h.condition("MigrationsComplete");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "Failed"));
    assert!(message.contains("BackoffLimitExceeded"), "{message}");
    assert!(
        message.ends_with(
            "the last attempt said: tributary migrate: ClickHouse at http://clickhouse:8123 has no cluster c in its remote_servers"
        ),
        "{message}"
    );
    assert_eq!(h.condition("Degraded").0, "True");
    assert!(h.fake.keys(DEPLOYMENTS).is_empty());
    assert_eq!(action, Action::requeue(RESYNC));
}

#[tokio::test]
async fn kafka_unreachable_is_reported_and_retried_with_a_growing_backoff() {
    let h = Harness::new(pipeline(|_| {}), MemoryBroker::new(true));
    *h.ctx.kafka.reachable.lock().unwrap() = false;
    let error = h.reconcile().await.expect_err("Kafka is down");
    assert!(matches!(error, Error::Kafka(_)), "{error}");
    let kafka_errors = h
        .ctx
        .metrics
        .errors
        .get_or_create(&ErrorLabels {
            kind: "kafka".into(),
        })
        .get();
    assert_eq!(kafka_errors, 1);
    assert_eq!(h.ctx.metrics.reconciles.get(), 1);
    let calls = h.fake.take_calls();
    assert_eq!(lines(&calls)[0], format!("PUT {PIPELINE}/status"));
    assert_eq!(events(&calls), [event("Warning", "KafkaUnavailable")]);
    assert!(h.fake.keys(CONFIG_MAPS).is_empty(), "nothing applied");
    let (status, reason, message) = h.condition("TopicsReady");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "KafkaUnavailable")
    );
    // The brokers as the spec names them (how the operator resolves them
    // from its own namespace is `Brokers`'; see kafka.rs).
    assert!(message.contains("kafka:9092"), "{message}");

    let p = Arc::new(h.stored());
    let first = error_policy(Arc::clone(&p), &error, Arc::clone(&h.ctx));
    let second = error_policy(Arc::clone(&p), &error, Arc::clone(&h.ctx));
    assert_eq!(first, Action::requeue(Duration::from_secs(5)));
    assert_eq!(second, Action::requeue(Duration::from_secs(10)));

    // Kafka back: the pipeline proceeds and the backoff starts over.
    *h.ctx.kafka.reachable.lock().unwrap() = true;
    h.calls().await;
    assert_eq!(h.condition("TopicsReady").0, "True");
    assert_eq!(
        error_policy(p, &error, Arc::clone(&h.ctx)),
        Action::requeue(Duration::from_secs(5))
    );
}

#[tokio::test]
async fn a_paused_pipeline_is_left_alone() {
    let h = Harness::new(
        pipeline(|p| p["spec"]["paused"] = json!(true)),
        MemoryBroker::new(true),
    );
    let (action, calls) = h.calls().await;
    assert_eq!(lines(&calls), strings(&[&format!("PUT {PIPELINE}/status")]));
    assert_eq!(h.condition("Progressing").1, "Paused");
    assert!(h.ctx.kafka.calls.lock().unwrap().is_empty());
    assert_eq!(action, Action::await_change());
    let (_, calls) = h.calls().await;
    assert!(calls.is_empty(), "{:#?}", lines(&calls));
}

#[tokio::test]
async fn children_no_longer_wanted_are_deleted_and_others_objects_are_not() {
    let h = Harness::new(
        pipeline(|p| p["spec"]["migrations"] = json!(false)),
        MemoryBroker::new(true),
    );
    let labels = json!({"app.kubernetes.io/instance": "shop", "app.kubernetes.io/managed-by": "tributary-operator"});
    let owned = |name: &str, uid: &str| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": NS, "labels": labels,
                "ownerReferences": [{"apiVersion": "tributary.dev/v1alpha1", "kind": "AnalyticsPipeline",
                    "name": "shop", "uid": uid, "controller": true}]},
            "spec": {"selector": {}, "template": {}}})
    };
    h.fake
        .put(&format!("{DEPLOYMENTS}/shop-old"), owned("shop-old", UID));
    h.fake.put(
        &format!("{DEPLOYMENTS}/someone-elses"),
        owned("someone-elses", "another-uid"),
    );
    let stale_job = format!("{JOBS}/shop-migrate-v1-00000000");
    h.fake.put(&stale_job, {
        let mut j = owned("shop-migrate-v1-00000000", UID);
        j["kind"] = json!("Job");
        j["apiVersion"] = json!("batch/v1");
        j
    });
    let (_, calls) = h.calls().await;
    let deletes: Vec<String> = lines(&calls)
        .into_iter()
        .filter(|l| l.starts_with("DELETE"))
        .collect();
    assert_eq!(
        deletes,
        [
            format!("DELETE {stale_job}"),
            format!("DELETE {DEPLOYMENTS}/shop-old")
        ]
    );
    assert!(
        h.fake
            .get(&format!("{DEPLOYMENTS}/someone-elses"))
            .is_some()
    );
    let propagation = calls
        .iter()
        .find(|c| c.method == "DELETE")
        .and_then(|c| c.body.clone())
        .unwrap_or_default();
    assert_eq!(propagation["propagationPolicy"], "Background");
}

#[tokio::test]
async fn a_pipeline_being_deleted_is_left_to_the_garbage_collector() {
    let h = Harness::new(
        pipeline(|p| p["metadata"]["deletionTimestamp"] = json!("2026-11-23T10:00:00Z")),
        MemoryBroker::new(true),
    );
    let (action, calls) = h.calls().await;
    assert!(calls.is_empty(), "{:#?}", lines(&calls));
    assert!(
        h.ctx.kafka.calls.lock().unwrap().is_empty(),
        "topics are kept"
    );
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn a_refused_write_degrades_the_pipeline_naming_the_object_and_is_retried() {
    let h = Harness::new(
        pipeline(|p| p["spec"]["migrations"] = json!(false)),
        MemoryBroker::new(true),
    );
    h.calls().await;
    h.roll_out_deployments();
    h.calls().await;
    assert_eq!(h.condition("Ready").0, "True");

    h.fake.refuse(
        &format!("{DEPLOYMENTS}/shop-query"),
        "admission webhook \"policy.example.com\" denied the request",
    );
    let error = h.reconcile().await.expect_err("the write was refused");
    assert!(matches!(error, Error::Apply { .. }), "{error}");
    let calls = h.fake.take_calls();
    assert_eq!(events(&calls), [event("Warning", "ApplyFailed")]);
    let (status, reason, message) = h.condition("Degraded");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "ApplyFailed"));
    assert!(
        message.contains("Deployment shop-query") && message.contains("denied"),
        "{message}"
    );
    assert_eq!(
        h.condition("Ready").0,
        "False",
        "an earlier Ready must not stand"
    );
}

/// The ConfigMap name each Deployment's pods read their settings from.
fn config_read_by_deployments(h: &Harness) -> Vec<String> {
    h.fake
        .keys(DEPLOYMENTS)
        .iter()
        .map(|k| {
            h.fake.get(k).unwrap()["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]
                ["configMapRef"]["name"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

fn name_of(key: &str) -> String {
    key.rsplit('/').next().unwrap().to_owned()
}

#[tokio::test]
async fn new_settings_reach_no_running_pod_before_their_migration_and_old_ones_go_after_the_rollout()
 {
    let h = Harness::new(pipeline(|_| {}), MemoryBroker::new(true));
    h.calls().await;
    h.complete_job(&h.job_key());
    h.calls().await;
    h.roll_out_deployments();
    h.calls().await;
    let old = h.config_map_key();
    let old_data = h.fake.get(&old).unwrap()["data"].clone();
    assert_eq!(h.fake.get(&old).unwrap()["immutable"], true);
    assert!(
        config_read_by_deployments(&h)
            .iter()
            .all(|n| *n == name_of(&old))
    );

    // A setting changes (the database): a new ConfigMap, read by the new
    // migration Job only. A pod of the running version that restarts now
    // still reads what it was started with.
    let mut p = h.fake.get(PIPELINE).unwrap();
    p["spec"]["clickhouse"]["database"] = json!("shop");
    p["metadata"]["generation"] = json!(2);
    h.fake.put(PIPELINE, p);
    let new = h.config_map_key();
    assert_ne!(new, old);
    h.calls().await;
    assert_eq!(h.fake.get(&old).unwrap()["data"], old_data, "untouched");
    assert_eq!(
        h.fake.get(&new).unwrap()["data"]["QUERY_CLICKHOUSE_DATABASE"],
        "shop"
    );
    assert!(
        config_read_by_deployments(&h)
            .iter()
            .all(|n| *n == name_of(&old)),
        "not before the migration: {:?}",
        config_read_by_deployments(&h)
    );
    let job = h.fake.get(&h.job_key()).unwrap();
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"],
        name_of(&new)
    );

    // Migrated: the pods roll to the new settings; the old ConfigMap
    // stays while pods of the old version may still run.
    h.complete_job(&h.job_key());
    h.calls().await;
    assert!(
        config_read_by_deployments(&h)
            .iter()
            .all(|n| *n == name_of(&new))
    );
    assert!(h.fake.get(&old).is_some(), "old pods still read it");

    // Rolled out: the old ConfigMap goes, the new one stays.
    h.roll_out_deployments();
    let (_, calls) = h.calls().await;
    assert!(
        lines(&calls).contains(&format!("DELETE {old}")),
        "{:#?}",
        lines(&calls)
    );
    assert!(h.fake.get(&old).is_none());
    assert!(h.fake.get(&new).is_some());
    assert_eq!(h.fake.keys(CONFIG_MAPS), [new]);
}

#[tokio::test]
async fn the_migration_runs_where_the_consumer_may_with_its_own_resources_and_a_stuck_pod_is_told()
{
    let h = Harness::new(
        pipeline(|p| {
            p["spec"]["consumer"] = json!({
                "nodeSelector": {"pool": "analytics"},
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "analytics",
                    "effect": "NoSchedule"}],
            });
            p["spec"]["migrationJob"] = json!({
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                    "limits": {"cpu": "1", "memory": "512Mi"}},
                "env": [{"name": "LOG_LEVEL", "value": "debug"}],
            });
        }),
        MemoryBroker::new(true),
    );
    h.calls().await;
    let job = h.job_key();
    let pod = &h.fake.get(&job).unwrap()["spec"]["template"]["spec"];
    assert_eq!(pod["nodeSelector"], json!({"pool": "analytics"}));
    assert_eq!(pod["tolerations"][0]["value"], "analytics");
    let container = &pod["containers"][0];
    assert_eq!(container["resources"]["limits"]["memory"], "512Mi");
    assert!(
        container["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "LOG_LEVEL" && e["value"] == "debug"),
        "{container}"
    );
    assert_eq!(h.condition("MigrationsComplete").1, "Running");

    // The scheduler cannot place the pod: told at the next look, with the
    // scheduler's words, and looked at again while progressing.
    let job_name = job.rsplit('/').next().unwrap();
    h.fake.put(
        &format!("{PODS}/{job_name}-x7k2p"),
        json!({"metadata": {"name": format!("{job_name}-x7k2p"), "namespace": NS,
            "labels": {"batch.kubernetes.io/job-name": job_name}},
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 node(s) had untolerated taint {gpu: true}."}]}}),
    );
    let (action, calls) = h.calls().await;
    let (status, reason, message) = h.condition("MigrationsComplete");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "Unschedulable")
    );
    assert!(
        message.contains("untolerated taint {gpu: true}"),
        "{message}"
    );
    assert!(
        h.condition("Ready").2.contains("untolerated taint"),
        "{:?}",
        h.condition("Ready")
    );
    assert_eq!(events(&calls), [event("Warning", "MigrationPending")]);
    assert_eq!(action, Action::requeue(WHILE_PROGRESSING));
    assert!(h.fake.keys(DEPLOYMENTS).is_empty(), "nothing rolls");

    // The spec is fixed (a toleration of the taint): a new Job, and the
    // old one, which never ran, goes with its pod.
    let mut p = h.fake.get(PIPELINE).unwrap();
    p["spec"]["migrationJob"]["tolerations"] =
        json!([{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]);
    p["metadata"]["generation"] = json!(2);
    h.fake.put(PIPELINE, p);
    let stuck = job.clone();
    let job = h.job_key();
    assert_ne!(job, stuck);
    let (_, calls) = h.calls().await;
    assert!(
        lines(&calls).contains(&format!("DELETE {stuck}")),
        "{:#?}",
        lines(&calls)
    );
    assert!(h.fake.get(&stuck).is_none());
    assert_eq!(
        h.fake.get(&job).unwrap()["spec"]["template"]["spec"]["tolerations"][0]["key"],
        "gpu"
    );
    assert_eq!(h.condition("MigrationsComplete").1, "Running");
    let job_name = job.rsplit('/').next().unwrap();

    // Another pipeline's pod, or a pod of another Job, does not count.
    h.fake.put(
        &format!("{PODS}/{job_name}-x7k2p"),
        json!({"metadata": {"name": format!("{job_name}-x7k2p"), "namespace": NS,
            "labels": {"batch.kubernetes.io/job-name": "someone-elses-job"}},
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "message": "0/3 nodes are available"}]}}),
    );
    h.calls().await;
    assert_eq!(h.condition("MigrationsComplete").1, "Running");

    // No pod at all a minute after the Job was made (a quota refused it).
    let mut stored = h.fake.get(&job).unwrap();
    stored["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
    h.fake.put(&job, stored);
    h.fake.put(
        &format!("{PODS}/{job_name}-x7k2p"),
        json!({"metadata": {"name": "x"}}),
    );
    h.calls().await;
    let (status, reason, message) = h.condition("MigrationsComplete");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "NoPod"));
    assert!(message.contains("kubectl describe job"), "{message}");
    // A stuck Job is not news at every look: the status stands, unwritten
    // (a write would wake reconcile again at once).
    let (_, calls) = h.calls().await;
    assert!(
        !calls
            .iter()
            .any(|c| c.line() == format!("PUT {PIPELINE}/status")),
        "{:?}",
        lines(&calls)
    );

    // Once it completes, the workloads roll.
    h.complete_job(&job);
    h.calls().await;
    assert_eq!(h.condition("MigrationsComplete").1, "Succeeded");
    assert_eq!(h.fake.keys(DEPLOYMENTS).len(), 4);
}

fn replicas_of(h: &Harness, component: &str) -> i64 {
    h.fake
        .get(&format!("{DEPLOYMENTS}/shop-{component}"))
        .unwrap()["spec"]["replicas"]
        .as_i64()
        .unwrap()
}

/// The mocked API server keeps server-side apply's ownership of
/// `spec.replicas` (a field its only owner stops applying is removed, and
/// the Deployment defaults to 1; `kubectl scale` takes the field over), so
/// the hand-over to an autoscaler is exercised as a real server would
/// answer it. What it cannot show: the HPA controller itself (here, its
/// writes are made by the test).
#[tokio::test]
async fn with_autoscaling_an_hpa_or_kubectl_scale_owns_capture_and_query_replicas_without_a_fight()
{
    let h = Harness::new(
        pipeline(|p| p["spec"]["migrations"] = json!(false)),
        MemoryBroker::new(true),
    );
    h.calls().await;
    let capture = format!("{DEPLOYMENTS}/shop-capture");
    let query = format!("{DEPLOYMENTS}/shop-query");
    assert_eq!(replicas_of(&h, "capture"), 2);

    // Without autoscaling the operator owns the replicas (documented).
    h.fake.scale(&capture, 5, "kubectl");
    h.calls().await;
    assert_eq!(replicas_of(&h, "capture"), 2, "the spec's replicas");

    // Autoscaling on: an HPA each, and the replicas are handed over as
    // they are, not dropped to the Deployment's default of 1.
    let mut p = h.fake.get(PIPELINE).unwrap();
    p["spec"]["capture"]["autoscaling"] =
        json!({"minReplicas": 2, "maxReplicas": 8, "targetCPUUtilizationPercentage": 60});
    p["spec"]["query"]["autoscaling"] = json!({"maxReplicas": 4});
    p["metadata"]["generation"] = json!(2);
    h.fake.put(PIPELINE, p);
    let (_, calls) = h.calls().await;
    let applied = calls
        .iter()
        .find(|c| {
            c.method == "PATCH"
                && c.path == capture
                && c.query["fieldManager"] == "tributary-operator"
        })
        .unwrap();
    assert!(
        applied.body.as_ref().unwrap()["spec"]
            .get("replicas")
            .is_none(),
        "the operator leaves the replicas out"
    );
    assert_eq!(replicas_of(&h, "capture"), 2, "handed over, not reset");
    assert_eq!(replicas_of(&h, "query"), 2);
    let hpa = h.fake.get(&format!("{AUTOSCALERS}/shop-capture")).unwrap();
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "shop-capture");
    assert_eq!(hpa["spec"]["minReplicas"], 2);
    assert_eq!(hpa["spec"]["maxReplicas"], 8);
    assert_eq!(
        hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        60
    );
    assert_eq!(hpa["metadata"]["ownerReferences"][0]["uid"], UID);
    let hpa = h.fake.get(&format!("{AUTOSCALERS}/shop-query")).unwrap();
    assert_eq!(
        hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        70
    );
    assert!(h.fake.get(&format!("{AUTOSCALERS}/shop-auth")).is_none());

    // The HPA scales capture, someone scales query by hand: both stand.
    h.fake.scale(&capture, 6, "kube-controller-manager");
    h.fake.scale(&query, 3, "kubectl");
    h.calls().await;
    h.calls().await;
    assert_eq!(replicas_of(&h, "capture"), 6);
    assert_eq!(replicas_of(&h, "query"), 3);

    // Autoscaling off: the HPAs go and the operator's replicas return.
    let mut p = h.fake.get(PIPELINE).unwrap();
    p["spec"]["capture"]
        .as_object_mut()
        .unwrap()
        .remove("autoscaling");
    p["spec"]["query"]
        .as_object_mut()
        .unwrap()
        .remove("autoscaling");
    p["metadata"]["generation"] = json!(3);
    h.fake.put(PIPELINE, p);
    h.roll_out_deployments();
    h.calls().await;
    assert!(h.fake.keys(AUTOSCALERS).is_empty());
    assert_eq!(replicas_of(&h, "capture"), 2);
    assert_eq!(replicas_of(&h, "query"), 2);
}
