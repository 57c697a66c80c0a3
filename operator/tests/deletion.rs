//! A pipeline deleted without a finalizer never reaches reconcile again:
//! kube-runtime's controller drops it from its store, and the next request
//! for it (a requeue, or its children being garbage-collected, which wake
//! their owner) ends as "object not found". Here the real controller runs
//! over a store the test feeds as the watch would (`Controller::for_stream`),
//! reconciling against the mocked API server; the test then deletes the
//! pipeline and asks for it as a child's deletion would.
//!
//! What it cannot show: the watch itself (the test plays its events).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::channel::mpsc;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use serde_json::json;
use support::MemoryBroker;
use support::harness::*;
use tributary_operator::kafka::{Bootstrap, Brokers, Kafka, SystemDns};
use tributary_operator::metrics::PipelineLabels;
use tributary_operator::reconcile::{error_policy, reconcile};
use tributary_operator::run::outcome;
use tributary_tests::poll_until;

fn key() -> PipelineLabels {
    PipelineLabels {
        namespace: NS.into(),
        pipeline: "shop".into(),
    }
}

fn series(h: &Harness) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = &h.ctx.metrics;
    registry.register("lag", "", metrics.consumer_lag.clone());
    registry.register("desired", "", metrics.consumer_replicas_desired.clone());
    registry.register("current", "", metrics.consumer_replicas_current.clone());
    registry.register("lag_errors", "", metrics.lag_read_errors.clone());
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text
}

#[tokio::test]
async fn a_deleted_pipeline_leaves_no_metric_series_state_or_kafka_clients_behind() {
    let h = Harness::new(
        pipeline(|p| {
            p["spec"]["migrations"] = json!(false);
            p["spec"]["consumer"] = json!({"scaling": {"maxReplicas": 6}});
        }),
        MemoryBroker::new(true),
    );
    let (reader, writer) = reflector::store();
    let (events, watch) = mpsc::unbounded::<Result<watcher::Event<_>, watcher::Error>>();
    let (asks, requests) = mpsc::unbounded::<ObjectRef<_>>();
    let ctx = Arc::clone(&h.ctx);
    let seen = Arc::clone(&h.ctx);
    let controller = tokio::spawn(
        Controller::for_stream(watch.reflect(writer).applied_objects(), reader)
            .reconcile_on(requests)
            .run(reconcile, error_policy, ctx)
            .for_each(move |result| {
                outcome(&seen, result);
                async {}
            }),
    );

    // The watch lists the pipeline: it is reconciled, with a lag poll.
    let stored = h.stored();
    events.unbounded_send(Ok(watcher::Event::Init)).unwrap();
    events
        .unbounded_send(Ok(watcher::Event::InitApply(stored.clone())))
        .unwrap();
    events.unbounded_send(Ok(watcher::Event::InitDone)).unwrap();
    poll_until(
        "the pipeline reconciled",
        Duration::from_secs(20),
        || async {
            (series(&h).contains("pipeline=\"shop\"") && h.ctx.remembers(&key())).then_some(())
        },
    )
    .await;
    assert!(series(&h).contains("lag{"), "{}", series(&h));

    // Deleted (no finalizer): gone from the API server and from the watch.
    h.fake.delete(PIPELINE);
    events
        .unbounded_send(Ok(watcher::Event::Delete(stored.clone())))
        .unwrap();
    // Its Deployments going wake it once more: not found.
    asks.unbounded_send(ObjectRef::from_obj(&stored)).unwrap();
    poll_until(
        "the pipeline forgotten",
        Duration::from_secs(20),
        || async { (!h.ctx.remembers(&key())).then_some(()) },
    )
    .await;
    assert!(
        !series(&h).contains("pipeline=\"shop\""),
        "series left: {}",
        series(&h)
    );
    assert_eq!(
        *h.ctx.kafka.kept.lock().unwrap(),
        Some(vec![]),
        "no pipeline uses any broker: every client goes"
    );
    controller.abort();
}

/// `Brokers` drops the clients of brokers and groups no pipeline uses.
#[tokio::test]
async fn brokers_drop_the_clients_no_pipeline_uses() {
    let brokers = Brokers::new(
        Duration::from_millis(200),
        "cluster.local",
        Box::new(SystemDns {
            timeout: Duration::from_secs(2),
        }),
    );
    // Clients are made on first use, whether or not the broker answers.
    for (bootstrap, group) in [("127.0.0.1:1", "a"), ("127.0.0.1:2", "b")] {
        let bootstrap = Bootstrap::new(bootstrap, "analytics");
        let _ = brokers.lag(&bootstrap, group, "events", 1).await;
        let spec: tributary_operator::crd::TopicSpec =
            serde_json::from_value(json!({"name": "events", "partitions": 1})).unwrap();
        let _ = brokers.ensure(&bootstrap, &spec).await;
    }
    assert_eq!(brokers.cached(), (2, 2));
    brokers.retain(&[(Bootstrap::new("127.0.0.1:2", "analytics"), "b".into())]);
    assert_eq!(brokers.cached(), (1, 1));
    brokers.retain(&[]);
    assert_eq!(brokers.cached(), (0, 0));
}
