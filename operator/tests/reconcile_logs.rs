//! Every log line of a reconcile names the pipeline and namespace, from the
//! one span `reconcile` opens (the steps do not repeat them). Its own test
//! binary: it installs the process's global subscriber.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::MemoryBroker;
use support::harness::*;
use tributary_core::telemetry::{LogConfig, MemoryLog, init_with_writer};

#[tokio::test]
async fn a_step_s_warning_names_the_pipeline_from_the_reconcile_span() {
    let buffer = MemoryLog::default();
    let writer = buffer.clone();
    let config = LogConfig {
        level: "info".into(),
        json: true,
    };
    init_with_writer("tributary-operator", &config, writer).unwrap();

    let broker = MemoryBroker::new(true);
    // The lag cannot be read: the scaling step warns.
    broker.set_lag(None);
    let h = Harness::new(
        pipeline(|p| {
            p["spec"]["migrations"] = json!(false);
            p["spec"]["consumer"] = json!({"scaling": {"minReplicas": 1, "maxReplicas": 4}});
        }),
        broker,
    );
    h.reconcile().await.unwrap();

    let text = buffer.text();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let warning = lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("cannot read the consumer group's lag"))
        })
        .unwrap_or_else(|| panic!("no lag warning in {text}"));
    assert_eq!(warning["pipeline"], "shop", "{warning}");
    assert_eq!(warning["namespace"], NS, "{warning}");
    assert_eq!(warning["level"], "warn");
}
