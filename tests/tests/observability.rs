//! The alert rules (`infrastructure/prometheus/alerts.yaml`) and the
//! dashboard (`infrastructure/grafana/tributary.json`) watch metrics that
//! exist: every metric they name is one the workloads or the operator
//! expose (read from their registries, as `/metrics` renders them). The
//! alerts the issue asks for are there with the seeds' thresholds, each
//! links a runbook section that exists, and the dashboard has the panels
//! seed 000 lists.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use prometheus_client::registry::Registry;
use serde_json::Value;
use tributary_tests::repo_root;

/// The sample names of a family: counters render with `_total`,
/// histograms as `_bucket`, `_sum` and `_count`.
fn samples(name: &str, kind: &str) -> Vec<String> {
    let suffixes: &[&str] = match kind {
        "counter" => &["_total"],
        "histogram" => &["_bucket", "_sum", "_count"],
        _ => &[""],
    };
    suffixes.iter().map(|s| format!("{name}{s}")).collect()
}

/// Every sample name the workloads and the operator expose. A family
/// renders nothing until it has a label set, so the registrations are read
/// from the metrics modules (`registry.register("name", "help",
/// m.field.clone())`, the field's declared type giving the kind), and what
/// the registries render is added.
fn exposed() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for file in [
        "workloads/capture/src/metrics.rs",
        "workloads/consumer/src/metrics.rs",
        "workloads/query/src/metrics.rs",
        "workloads/auth/src/metrics.rs",
        "operator/src/metrics.rs",
    ] {
        let source = read(file);
        let calls: Vec<&str> = source.split("registry.register(").skip(1).collect();
        assert!(calls.len() >= 3, "{file}: no registrations found");
        for call in calls {
            let call = call.split(");").next().unwrap();
            let name = call.split('"').nth(1).unwrap();
            let field = call
                .trim_end()
                .trim_end_matches(',')
                .trim_end_matches(".clone()")
                .rsplit('.')
                .next()
                .unwrap()
                .trim();
            let declared = source
                .lines()
                .find_map(|l| l.trim().strip_prefix(&format!("pub {field}: ")))
                .unwrap_or_else(|| panic!("{file}: no field {field} for {name}"));
            let kind = if declared.contains("Histogram") {
                "histogram"
            } else if declared.contains("Counter") {
                "counter"
            } else {
                "gauge"
            };
            names.extend(samples(name, kind));
        }
    }
    let mut registry = Registry::default();
    tributary_capture::metrics::CaptureMetrics::register(&mut registry);
    tributary_consumer::metrics::ConsumerMetrics::register(&mut registry);
    tributary_query::metrics::QueryMetrics::register(&mut registry);
    tributary_auth::metrics::AuthMetrics::register(&mut registry);
    tributary_operator::metrics::Metrics::register(&mut registry);
    let text = tributary_core::metrics::render(&registry).unwrap();
    for line in text.lines() {
        if let Some((name, kind)) = line.strip_prefix("# TYPE ").and_then(|r| r.split_once(' ')) {
            let rendered = samples(name, kind);
            assert!(
                rendered.iter().all(|n| names.contains(n)),
                "{name} ({kind}) is rendered but not found in the sources"
            );
        }
    }
    names
}

/// The metric names an expression uses (ours all start with these).
fn metrics_in(expr: &str) -> Vec<String> {
    const OURS: [&str; 5] = [
        "capture_",
        "consumer_",
        "query_",
        "auth_",
        "tributary_operator_",
    ];
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| OURS.iter().any(|p| w.starts_with(p)))
        .map(str::to_owned)
        .collect()
}

/// Asserts `expr` (of `what`) names our metrics, and only exposed ones.
fn assert_watches_exposed(exposed: &BTreeSet<String>, what: &str, expr: &str) {
    let used = metrics_in(expr);
    assert!(!used.is_empty(), "{what}: {expr}");
    for metric in used {
        assert!(
            exposed.contains(&metric),
            "{what} uses {metric}, which nothing exposes"
        );
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap()
}

/// GitHub's anchor of a Markdown heading.
fn anchor(heading: &str) -> String {
    heading
        .trim_start_matches('#')
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn the_alerts_watch_real_metrics_with_the_seed_thresholds_and_link_runbooks() {
    let exposed = exposed();
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&read("infrastructure/prometheus/alerts.yaml")).unwrap();
    let runbooks = read("RUNBOOKS.md");
    let anchors: BTreeSet<String> = runbooks
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(anchor)
        .collect();
    let mut alerts = Vec::new();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let name = rule["alert"].as_str().expect("every rule is an alert");
            let expr = rule["expr"].as_str().unwrap();
            assert_watches_exposed(&exposed, name, expr);
            assert!(
                ["warning", "critical"].contains(&rule["labels"]["severity"].as_str().unwrap()),
                "{name}"
            );
            assert!(
                rule["annotations"]["summary"]
                    .as_str()
                    .is_some_and(|s| !s.is_empty())
            );
            let link = rule["annotations"]["runbook"].as_str().unwrap();
            let (file, section) = link.split_once('#').unwrap();
            assert_eq!(file, "RUNBOOKS.md", "{name}");
            assert!(
                anchors.contains(section),
                "{name}: RUNBOOKS.md has no section #{section}"
            );
            alerts.push((
                name.to_owned(),
                expr.split_whitespace().collect::<Vec<_>>().join(" "),
            ));
        }
    }
    let has = |what: &str, test: &dyn Fn(&str) -> bool| {
        assert!(
            alerts.iter().any(|(_, e)| test(e)),
            "no alert for {what}: {alerts:#?}"
        );
    };
    has("lag over 10k per partition", &|e| {
        e.contains("(consumer_lag) > 10000") && e.contains("partition")
    });
    has("any DLQ increase", &|e| {
        e.contains("increase(consumer_dlq_messages_total") && e.ends_with("> 0")
    });
    has("the capture error rate", &|e| {
        e.contains(r#"capture_requests_total{status=~"5.."}"#)
    });
    has("capture not ready", &|e| {
        e.contains("(capture_kafka_ready) == 0")
    });
}

#[test]
fn the_dashboard_has_the_seed_panels_over_real_metrics() {
    let exposed = exposed();
    let dashboard: Value =
        serde_json::from_str(&read("infrastructure/grafana/tributary.json")).unwrap();
    assert_eq!(dashboard["uid"], "tributary");
    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    for panel in panels {
        assert!(
            ids.insert(panel["id"].as_i64().unwrap()),
            "duplicate panel id"
        );
        let title = panel["title"].as_str().unwrap();
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}");
        for target in targets {
            let expr = target["expr"].as_str().unwrap();
            assert_watches_exposed(&exposed, &format!("panel {title:?}"), expr);
        }
    }
    let titles: Vec<String> = panels
        .iter()
        .map(|p| p["title"].as_str().unwrap().to_lowercase())
        .collect();
    for wanted in [
        "capture request rate",
        "kafka produce latency",
        "consumer lag",
        "insert errors",
        "dead-lettered",
        "query latency",
        "event visibility",
    ] {
        assert!(
            titles.iter().any(|t| t.contains(wanted)),
            "no panel for {wanted}: {titles:?}"
        );
    }
}

#[test]
fn a_made_up_metric_would_be_caught() {
    let exposed = exposed();
    assert!(exposed.contains("capture_requests_total"), "{exposed:?}");
    assert!(exposed.contains("tributary_operator_consumer_lag"));
    assert!(exposed.contains("consumer_event_visibility_seconds_bucket"));
    assert!(
        !exposed.contains("capture_requests"),
        "counters render with _total"
    );
    assert_eq!(
        metrics_in("max by (p) (consumer_lagg) > 1"),
        ["consumer_lagg"]
    );
}
