//! Reconcile with the lag autoscaler on, against the mocked API server and
//! the in-memory broker: a lag spike patches the consumer Deployment's
//! replicas and the status; a failed read changes nothing; a dip waits for
//! the stabilization window; partitions grow where the broker can.
//!
//! Time passes by moving the status's scaling times (and the operator's
//! memory of its last poll) back (`age`), as if the previous polls had
//! happened that long ago.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use serde_json::{Value, json};
use support::harness::*;
use support::{Call, MemoryBroker};
use tributary_operator::metrics::PipelineLabels;
use tributary_operator::reconcile::reconcile;

/// The minimal pipeline without migrations, its consumer scaled on lag.
fn scaled(scaling: Value) -> Value {
    pipeline(|p| {
        p["spec"]["migrations"] = json!(false);
        p["spec"]["consumer"] = json!({ "scaling": scaling });
    })
}

fn labels() -> PipelineLabels {
    PipelineLabels {
        namespace: NS.into(),
        pipeline: "shop".into(),
    }
}

/// Moves every time in `status.scaling` back by `seconds`.
fn age(h: &Harness, seconds: i64) {
    let mut p = h.fake.get(PIPELINE).unwrap();
    let scaling = &mut p["status"]["scaling"];
    let shift = |v: &mut Value| {
        if let Some(t) = v.as_str() {
            let t: Timestamp = t.parse().unwrap();
            *v = json!(
                Timestamp::from_second(t.as_second() - seconds)
                    .unwrap()
                    .to_string()
            );
        }
    };
    for key in ["lastPollTime", "lastScaleTime", "saturatedSince"] {
        shift(&mut scaling[key]);
    }
    for r in scaling["recommendations"].as_array_mut().unwrap() {
        shift(&mut r["time"]);
    }
    let last_poll: Timestamp = scaling["lastPollTime"].as_str().unwrap().parse().unwrap();
    h.fake.put(PIPELINE, p);
    // The operator's own memory of its last poll and of the status it
    // wrote move back with it.
    h.ctx.polled(&h.stored(), last_poll.as_second());
    h.ctx.remember_status(&h.stored());
}

fn status(h: &Harness) -> Value {
    h.fake.get(PIPELINE).unwrap()["status"].clone()
}

fn consumer_replicas(h: &Harness) -> i64 {
    h.fake.get(&format!("{DEPLOYMENTS}/shop-consumer")).unwrap()["spec"]["replicas"]
        .as_i64()
        .unwrap()
}

/// The replicas the reconcile's PATCH of the consumer Deployment carried.
fn patched_consumer_replicas(calls: &[Call]) -> Option<i64> {
    calls
        .iter()
        .find(|c| c.method == "PATCH" && c.path == format!("{DEPLOYMENTS}/shop-consumer"))
        .and_then(|c| c.body.as_ref()?["spec"]["replicas"].as_i64())
}

fn wrote_status(calls: &[Call]) -> bool {
    calls
        .iter()
        .any(|c| c.line() == format!("PUT {PIPELINE}/status"))
}

fn read_lag(h: &Harness) -> bool {
    h.ctx
        .kafka
        .take_calls()
        .iter()
        .any(|c| c == "lag event-consumers events")
}

#[tokio::test]
async fn a_lag_spike_patches_the_consumer_replicas_and_the_status_at_the_next_poll() {
    let h = Harness::new(
        scaled(json!({"maxReplicas": 10, "lagPerReplica": 1200})),
        MemoryBroker::new(true),
    );
    let (action, calls) = h.calls().await;
    assert_eq!(
        h.ctx.kafka.take_calls(),
        [
            "ensure events",
            "ensure events-dlq",
            "lag event-consumers events"
        ],
        "the lag is read once the topics stand"
    );
    assert_eq!(
        patched_consumer_replicas(&calls),
        Some(1),
        "no lag: minReplicas"
    );
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(15)),
        "the next poll"
    );
    assert_eq!(h.condition("ScalingActive").0, "True");
    assert_eq!(h.condition("ScalingLimited").1, "WithinBounds");
    h.roll_out_deployments();
    h.calls().await;
    h.ctx.kafka.take_calls();

    // Lag arrives, but the watches wake reconcile before the next poll:
    // the lag is not read and the status is not written.
    h.ctx.kafka.set_lag(Some(400));
    let (action, calls) = h.calls().await;
    assert!(!read_lag(&h));
    assert!(!wrote_status(&calls), "{:?}", lines(&calls));
    assert_eq!(patched_consumer_replicas(&calls), Some(1));
    assert!(
        [14, 15]
            .map(|s| Action::requeue(Duration::from_secs(s)))
            .contains(&action),
        "{action:?}"
    );

    // The poll is due: 400 × 12 = 4800 messages, 1200 per replica.
    age(&h, 15);
    let (_, calls) = h.calls().await;
    assert!(read_lag(&h));
    assert_eq!(patched_consumer_replicas(&calls), Some(4));
    assert_eq!(consumer_replicas(&h), 4);
    assert!(wrote_status(&calls));
    assert!(
        events(&calls).contains(&event("Normal", "ConsumerScaled")),
        "{:?}",
        events(&calls)
    );
    let s = status(&h);
    assert_eq!(s["consumerReplicas"], 4);
    assert_eq!(s["consumerLag"], 4800);
    assert_eq!(s["scaling"]["maxPartitionLag"], 400);
    assert_eq!(
        s["scaling"]["recommendations"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()["replicas"],
        4
    );
    assert!(s["scaling"]["lastScaleTime"].is_string(), "{s}");
    let (active, reason, message) = h.condition("ScalingActive");
    assert_eq!((active.as_str(), reason.as_str()), ("True", "ScaleUp"));
    assert!(
        message.contains("lag 4800") && message.contains("1 -> 4"),
        "{message}"
    );
    assert_eq!(
        h.ctx.metrics.consumer_lag.get_or_create(&labels()).get(),
        4800
    );
    assert_eq!(
        h.ctx
            .metrics
            .consumer_replicas_desired
            .get_or_create(&labels())
            .get(),
        4
    );
    assert_eq!(
        h.ctx
            .metrics
            .consumer_replicas_current
            .get_or_create(&labels())
            .get(),
        1,
        "the Deployment still runs one pod"
    );

    // The status write wakes reconcile again: no second poll, no write, and
    // the replicas asked for stand.
    let (_, calls) = h.calls().await;
    assert!(!read_lag(&h));
    assert!(!wrote_status(&calls), "{:?}", lines(&calls));
    assert_eq!(patched_consumer_replicas(&calls), Some(4));
}

#[tokio::test]
async fn a_failed_read_changes_nothing_and_a_dip_waits_for_the_window() {
    let h = Harness::new(
        scaled(
            json!({"maxReplicas": 10, "lagPerReplica": 1200, "stabilizationWindowSeconds": 300}),
        ),
        MemoryBroker::new(true),
    );
    h.ctx.kafka.set_lag(Some(400));
    h.calls().await;
    assert_eq!(consumer_replicas(&h), 4);
    h.roll_out_deployments();
    h.calls().await;
    assert_eq!(h.condition("Ready").0, "True");

    // The read fails: nothing moves, and the condition, an Event and the
    // metric say so.
    age(&h, 15);
    let before = status(&h)["scaling"]["recommendations"].clone();
    h.ctx.kafka.set_lag(None);
    let (_, calls) = h.calls().await;
    assert_eq!(patched_consumer_replicas(&calls), Some(4));
    let (active, reason, message) = h.condition("ScalingActive");
    assert_eq!(
        (active.as_str(), reason.as_str()),
        ("False", "LagUnavailable")
    );
    assert!(message.contains("event-consumers"), "{message}");
    assert!(events(&calls).contains(&event("Warning", "LagUnavailable")));
    assert_eq!(
        h.ctx.metrics.lag_read_errors.get_or_create(&labels()).get(),
        1
    );
    let s = status(&h);
    assert_eq!(s["consumerLag"], 4800, "the last reading stands");
    assert_eq!(
        s["scaling"]["recommendations"], before,
        "a failed read is not a recommendation"
    );
    assert_eq!(h.condition("Ready").0, "True", "the pipeline still works");

    // The lag is gone; the higher recommendation of the window holds.
    age(&h, 15);
    h.ctx.kafka.set_lag(Some(0));
    let (_, calls) = h.calls().await;
    assert_eq!(patched_consumer_replicas(&calls), Some(4));
    assert_eq!(h.condition("ScalingActive").1, "Stabilizing");
    assert!(!events(&calls).contains(&event("Normal", "ConsumerScaled")));

    // Once the window has passed, down to what the lag asks.
    age(&h, 300);
    let (_, calls) = h.calls().await;
    assert_eq!(patched_consumer_replicas(&calls), Some(1));
    assert_eq!(h.condition("ScalingActive").1, "ScaleDown");
    assert!(events(&calls).contains(&event("Normal", "ConsumerScaled")));
    assert_eq!(status(&h)["consumerReplicas"], 1);
}

fn growing() -> Value {
    scaled(json!({
        "maxReplicas": 48,
        "lagPerReplica": 1000,
        "autoGrowPartitions": {"maxPartitions": 24, "windowSeconds": 600},
    }))
}

#[tokio::test]
async fn partitions_grow_after_a_window_of_rising_lag_and_stay_grown() {
    let h = Harness::new(growing(), MemoryBroker::new(true));
    // 2000 × 12 partitions: the lag asks for 24 consumers.
    h.ctx.kafka.set_lag(Some(2000));
    h.calls().await;
    assert_eq!(consumer_replicas(&h), 5, "up at once, at most +4 from one");
    let (limited, reason, message) = h.condition("ScalingLimited");
    assert_eq!(
        (limited.as_str(), reason.as_str()),
        ("True", "TooFewPartitions")
    );
    assert!(message.contains("autoGrowPartitions"), "{message}");
    assert!(status(&h)["scaling"]["saturatedSince"].is_string());

    // Not yet a whole window: no partitions added.
    age(&h, 300);
    h.ctx.kafka.set_lag(Some(2050));
    h.calls().await;
    assert_eq!(h.ctx.kafka.topics.lock().unwrap().get("events"), Some(&12));

    // A whole window of rising lag: grown, to what the lag asks (capped).
    age(&h, 300);
    h.ctx.kafka.set_lag(Some(2100));
    let (_, calls) = h.calls().await;
    assert_eq!(h.ctx.kafka.topics.lock().unwrap().get("events"), Some(&24));
    assert!(
        events(&calls).contains(&event("Normal", "TopicGrown")),
        "{:?}",
        events(&calls)
    );
    let s = status(&h);
    assert_eq!(s["partitions"], 24);
    assert_eq!(s["grownPartitions"], 24);
    assert!(s["scaling"]["saturatedSince"].is_null(), "{s}");

    // The next poll: the spec's 12 is not a shrink, and the consumers may
    // now outnumber the old partitions.
    age(&h, 15);
    let (_, calls) = h.calls().await;
    let (ready, reason, _) = h.condition("TopicsReady");
    assert_eq!(
        (ready.as_str(), reason.as_str()),
        ("True", "TopicsAsSpecified")
    );
    assert_eq!(
        patched_consumer_replicas(&calls),
        Some(24),
        "the lag asks for 26; the 24 partitions bound it"
    );
    assert_eq!(h.ctx.kafka.topics.lock().unwrap().get("events"), Some(&24));

    // Scaling turned off: the partitions the operator added are still not
    // a shrink of the spec's 12.
    let mut p = h.fake.get(PIPELINE).unwrap();
    p["spec"]["consumer"] = json!({"replicas": 6});
    p["metadata"]["generation"] = json!(2);
    h.fake.put(PIPELINE, p);
    h.calls().await;
    let (ready, reason, _) = h.condition("TopicsReady");
    assert_eq!(
        (ready.as_str(), reason.as_str()),
        ("True", "TopicsAsSpecified")
    );
    assert_eq!(status(&h)["grownPartitions"], 24);
    assert_eq!(consumer_replicas(&h), 6);
}

#[tokio::test]
async fn a_broker_that_cannot_add_partitions_is_reported_and_tried_again_a_window_later() {
    let h = Harness::new(growing(), MemoryBroker::new(false));
    h.ctx.kafka.set_lag(Some(2000));
    h.calls().await;
    age(&h, 600);
    h.ctx.kafka.set_lag(Some(2100));
    let (_, calls) = h.calls().await;
    assert_eq!(h.ctx.kafka.topics.lock().unwrap().get("events"), Some(&12));
    let (limited, reason, message) = h.condition("ScalingLimited");
    assert_eq!(
        (limited.as_str(), reason.as_str()),
        ("True", "PartitionGrowthUnsupported")
    );
    assert!(message.contains("UnsupportedFeature"), "{message}");
    assert!(events(&calls).contains(&event("Warning", "PartitionGrowthUnsupported")));
    let s = status(&h);
    assert_eq!(s["partitions"], 12);
    assert!(s["grownPartitions"].is_null());
    assert_eq!(
        s["scaling"]["lagWhenSaturated"], 25_200,
        "a new window from now"
    );
    assert_eq!(
        h.condition("TopicsReady").0,
        "True",
        "the topic is as the spec says"
    );

    // Not asked again before another window of rising lag.
    h.ctx.kafka.take_calls();
    age(&h, 300);
    h.ctx.kafka.set_lag(Some(2200));
    h.calls().await;
    assert_eq!(
        h.ctx.kafka.take_calls(),
        [
            "ensure events",
            "ensure events-dlq",
            "lag event-consumers events"
        ]
    );
    age(&h, 300);
    h.ctx.kafka.set_lag(Some(2300));
    h.calls().await;
    let calls = h.ctx.kafka.take_calls();
    assert_eq!(
        calls.iter().filter(|c| *c == "ensure events").count(),
        2,
        "{calls:?}"
    );
}

#[tokio::test]
async fn a_scale_is_told_only_once_the_deployment_carries_it() {
    // Migrations on: the Job runs, so no workload is applied yet.
    let h = Harness::new(
        pipeline(|p| {
            p["spec"]["consumer"] = json!({"scaling": {"maxReplicas": 10, "lagPerReplica": 1200}})
        }),
        MemoryBroker::new(true),
    );
    h.ctx.kafka.set_lag(Some(400));
    let (_, calls) = h.calls().await;
    assert!(h.fake.keys(DEPLOYMENTS).is_empty());
    assert!(!events(&calls).contains(&event("Normal", "ConsumerScaled")));
    age(&h, 15);
    let (_, calls) = h.calls().await;
    assert!(
        !events(&calls).contains(&event("Normal", "ConsumerScaled")),
        "no repeat while held back"
    );
    assert!(status(&h)["scaling"]["lastScaleTime"].is_null());
    // The migration succeeds: the Deployment is applied with the decision.
    h.complete_job(&h.job_key());
    age(&h, 15);
    let (_, calls) = h.calls().await;
    assert_eq!(patched_consumer_replicas(&calls), Some(4));
    assert_eq!(status(&h)["consumerReplicas"], 4);
}

#[tokio::test]
async fn turning_scaling_off_drops_its_conditions_and_memory() {
    let h = Harness::new(
        scaled(json!({"maxReplicas": 10, "lagPerReplica": 1200})),
        MemoryBroker::new(true),
    );
    h.ctx.kafka.set_lag(Some(400));
    h.calls().await;
    assert!(status(&h)["scaling"].is_object());
    let mut p = h.fake.get(PIPELINE).unwrap();
    p["spec"]["consumer"] = json!({"replicas": 2});
    p["metadata"]["generation"] = json!(2);
    h.fake.put(PIPELINE, p);
    h.ctx.kafka.take_calls();
    let (_, calls) = h.calls().await;
    assert!(!read_lag(&h));
    assert_eq!(
        patched_consumer_replicas(&calls),
        Some(2),
        "the spec's replicas again"
    );
    let s = status(&h);
    assert!(s["scaling"].is_null(), "{s}");
    let types: Vec<&str> = s["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["type"].as_str())
        .collect();
    assert!(
        !types.contains(&"ScalingActive") && !types.contains(&"ScalingLimited"),
        "{types:?}"
    );
}

/// The controller hands reconcile the pipeline from its watch cache. Right
/// after a reconcile scaled the consumer and wrote the status, the
/// Deployment's event starts the next reconcile, usually before the status
/// write reached the cache: reconcile gets the object as it was before the
/// write. Here the mocked API server's stored object moves on while
/// reconcile is handed the older one, as the cache would.
///
/// What it cannot show: how long a real cache lags (here it lags for the
/// whole of one reconcile, the worst case).
#[tokio::test]
async fn a_reconcile_handed_the_object_from_before_its_own_status_write_reverts_nothing() {
    let h = Harness::new(
        scaled(json!({"maxReplicas": 10, "lagPerReplica": 1200})),
        MemoryBroker::new(true),
    );
    h.calls().await;
    h.roll_out_deployments();
    h.calls().await;
    h.ctx.kafka.set_lag(Some(400));
    age(&h, 15);
    let cached = h.stored();
    let (_, calls) = h.calls().await;
    assert_eq!(patched_consumer_replicas(&calls), Some(4), "scaled up");
    assert_eq!(status(&h)["consumerReplicas"], 4);
    let written = h.fake.get(PIPELINE).unwrap();

    // The Deployment's event: reconcile with the object from before.
    h.ctx.kafka.take_calls();
    let action = reconcile(Arc::new(cached.clone()), Arc::clone(&h.ctx))
        .await
        .expect("reconcile succeeds");
    let calls = h.fake.take_calls();
    assert_eq!(
        patched_consumer_replicas(&calls),
        Some(4),
        "the scale-up must stand: {:?}",
        lines(&calls)
    );
    assert!(!read_lag(&h), "no second poll within the interval");
    assert_eq!(
        h.fake.get(PIPELINE).unwrap(),
        written,
        "the status written stays"
    );
    assert!(events(&calls).is_empty(), "{:?}", events(&calls));
    assert!(
        (1..=15).any(|s| action == Action::requeue(Duration::from_secs(s))),
        "{action:?}"
    );

    // Something changed meanwhile (the Deployment rolled out): a status
    // write from the old object is refused (409) and reconcile runs again
    // soon, from the newer object, instead of overwriting it.
    h.roll_out_deployments();
    let action = reconcile(Arc::new(cached), Arc::clone(&h.ctx))
        .await
        .expect("a conflict is not a failure");
    let calls = h.fake.take_calls();
    assert!(
        calls
            .iter()
            .any(|c| c.line() == format!("PUT {PIPELINE}/status")),
        "{:?}",
        lines(&calls)
    );
    assert_eq!(action, Action::requeue(Duration::from_secs(1)));
    assert_eq!(h.fake.get(PIPELINE).unwrap()["status"], written["status"]);
    let (_, calls) = h.calls().await;
    assert!(wrote_status(&calls), "the newer object's reconcile writes");
    assert_eq!(status(&h)["consumerReplicas"], 4);
    assert_eq!(h.condition("Ready").0, "True");
}

#[tokio::test]
async fn partitions_the_operator_added_are_not_a_shrink_whatever_status_reconcile_is_handed() {
    let h = Harness::new(growing(), MemoryBroker::new(true));
    h.ctx.kafka.set_lag(Some(2000));
    h.calls().await;
    age(&h, 300);
    h.ctx.kafka.set_lag(Some(2050));
    h.calls().await;
    age(&h, 300);
    h.ctx.kafka.set_lag(Some(2100));
    let cached = h.stored();
    h.calls().await;
    assert_eq!(status(&h)["grownPartitions"], 24);

    // The object from before the growth was written (a stale cache).
    let (_, calls) = {
        let action = reconcile(Arc::new(cached), Arc::clone(&h.ctx))
            .await
            .expect("reconcile succeeds");
        (action, h.fake.take_calls())
    };
    assert!(
        !events(&calls).contains(&event("Warning", "ShrinkRefused")),
        "{:?}",
        events(&calls)
    );
    assert_eq!(h.condition("TopicsReady").1, "TopicsAsSpecified");
    assert_eq!(status(&h)["grownPartitions"], 24);

    // The status lost altogether (a restore from a backup drops it): the
    // topic's 24 partitions, within maxPartitions, read as grown.
    let mut p = h.fake.get(PIPELINE).unwrap();
    p.as_object_mut().unwrap().remove("status");
    h.fake.put(PIPELINE, p);
    let restarted = Harness {
        fake: Arc::clone(&h.fake),
        ctx: Arc::new(tributary_operator::reconcile::Context::new(
            h.fake.client(),
            MemoryBroker::new(true),
            kube::runtime::events::Reporter {
                controller: "tributary-operator".into(),
                instance: None,
            },
            tributary_operator::metrics::Metrics::default(),
        )),
    };
    restarted
        .ctx
        .kafka
        .topics
        .lock()
        .unwrap()
        .insert("events".into(), 24);
    let (_, calls) = restarted.calls().await;
    assert!(
        !events(&calls).contains(&event("Warning", "ShrinkRefused")),
        "{:?}",
        events(&calls)
    );
    assert_eq!(restarted.condition("TopicsReady").1, "TopicsAsSpecified");
    assert_eq!(status(&restarted)["grownPartitions"], 24);
    assert_eq!(status(&restarted)["partitions"], 24);
}

/// A reconcile whose status write conflicts (the pipeline changed since it
/// was read) still tells what it did to the topics: the next reconcile
/// finds them as they are and has nothing to tell.
#[tokio::test]
async fn what_a_reconcile_did_is_told_even_when_its_status_write_conflicts() {
    let h = Harness::new(growing(), MemoryBroker::new(true));
    h.ctx.kafka.set_lag(Some(2000));
    h.calls().await;
    age(&h, 300);
    h.ctx.kafka.set_lag(Some(2050));
    h.calls().await;
    age(&h, 300);
    h.ctx.kafka.set_lag(Some(2100));
    let read = h.stored();
    // Someone labels the pipeline meanwhile: a newer version, the same
    // status.
    let mut p = h.fake.get(PIPELINE).unwrap();
    p["metadata"]["labels"] = json!({"team": "shop"});
    h.fake.put(PIPELINE, p);

    let action = reconcile(Arc::new(read), Arc::clone(&h.ctx))
        .await
        .expect("a conflict is not a failure");
    let calls = h.fake.take_calls();
    assert_eq!(action, Action::requeue(Duration::from_secs(1)), "conflict");
    assert_eq!(h.ctx.kafka.topics.lock().unwrap().get("events"), Some(&24));
    assert!(
        events(&calls).contains(&event("Normal", "TopicGrown")),
        "{:?}",
        events(&calls)
    );
    let (_, calls) = h.calls().await;
    assert!(wrote_status(&calls));
    assert!(!events(&calls).contains(&event("Normal", "TopicGrown")));
    assert_eq!(status(&h)["grownPartitions"], 24);
}
