//! The CRD's CEL rules (`x-kubernetes-validations`) evaluated as the API
//! server evaluates them at admission (`kube-cel`'s validator: each rule at
//! its schema node, absent fields skipped, schema defaults applied first):
//! the examples are admitted, and each rule refuses what it is for with its
//! message. The pipeline-name rules agree with the builders' own check.
//!
//! What it cannot show: the OpenAPI checks the API server makes besides
//! CEL (types, patterns, bounds; `kubernetes_schemas.rs` covers the
//! rendered objects), and the API server's cost limits on rules.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kube_cel::Validator;
use serde_json::{Value, json};
use tributary_operator::build::meta::check_pipeline_name;

fn schema() -> Value {
    let crd: Value =
        serde_yaml::from_str(include_str!("../../crds/analyticspipeline.yaml")).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn example(name: &str) -> Value {
    let text = match name {
        "minimal" => include_str!("../../crds/examples/minimal.yaml"),
        "cluster" => include_str!("../../crds/examples/cluster.yaml"),
        _ => include_str!("../../crds/examples/full.yaml"),
    };
    serde_yaml::from_str(text).unwrap()
}

/// `Ok`, or the `(field, message)` of every rule that refused `object`.
fn admit(object: &Value) -> Result<(), Vec<(String, String)>> {
    Validator::new()
        .validate(&schema(), object, None)
        .map_err(|errors| {
            errors
                .iter()
                .map(|e| (e.field_path.clone(), e.message.clone()))
                .collect()
        })
}

fn with(change: impl FnOnce(&mut Value)) -> Value {
    let mut p = example("minimal");
    change(&mut p);
    p
}

#[test]
fn the_examples_are_admitted() {
    for name in ["minimal", "full", "cluster"] {
        assert_eq!(admit(&example(name)), Ok(()), "{name}");
    }
}

#[test]
fn names_that_cannot_name_services_are_refused_at_admission_as_the_builders_refuse_them() {
    let cases = [
        ("analytics", true),
        ("a", true),
        ("shop-2", true),
        (&*"a".repeat(55), true),
        (&*"a".repeat(56), false),
        ("shop.eu", false),
        ("1shop", false),
        ("shop-", false),
        ("Shop", false),
        ("shop_eu", false),
    ];
    for (name, admitted) in cases {
        let verdict = admit(&with(|p| p["metadata"]["name"] = json!(name)));
        assert_eq!(verdict.is_ok(), admitted, "{name}: {verdict:?}");
        assert_eq!(
            check_pipeline_name(name).is_ok(),
            admitted,
            "{name}: the builders disagree with the CRD"
        );
        if let Err(refusals) = verdict {
            assert!(
                refusals
                    .iter()
                    .all(|(_, m)| m.starts_with("metadata.name: ")),
                "{name}: {refusals:?}"
            );
        }
    }
}

#[test]
fn each_field_rule_refuses_what_it_is_for_with_its_message() {
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "ftp ClickHouse",
            with(|p| p["spec"]["clickhouse"]["url"] = json!("ftp://ch:21")),
            "must be an http:// or https:// URL",
        ),
        (
            "two Redis sources",
            with(|p| p["spec"]["redis"]["urlSecretRef"] = json!({"name": "r", "key": "url"})),
            "give exactly one of url and urlSecretRef",
        ),
        (
            "no Redis source",
            with(|p| p["spec"]["redis"] = json!({})),
            "give exactly one of url and urlSecretRef",
        ),
        (
            "replicas and scaling",
            with(|p| p["spec"]["consumer"] = json!({"replicas": 2, "scaling": {"maxReplicas": 4}})),
            "give replicas or scaling, not both",
        ),
        (
            "min above max",
            with(|p| {
                p["spec"]["consumer"] = json!({"scaling": {"minReplicas": 5, "maxReplicas": 4}})
            }),
            "minReplicas must not exceed maxReplicas",
        ),
        (
            "keyless capture without its project",
            with(|p| p["spec"]["capture"] = json!({"requireApiKey": false})),
            "keylessProjectId goes with requireApiKey: false",
        ),
        (
            "a keyless project while keys are required",
            with(|p| p["spec"]["query"] = json!({"keylessProjectId": 7})),
            "keylessProjectId goes with requireApiKey: false",
        ),
        (
            "capture replicas and autoscaling",
            with(|p| {
                p["spec"]["capture"] = json!({"replicas": 2, "autoscaling": {"maxReplicas": 4}})
            }),
            "give replicas or autoscaling, not both",
        ),
        (
            "query autoscaling min above max",
            with(|p| {
                p["spec"]["query"] = json!({"autoscaling": {"minReplicas": 5, "maxReplicas": 4}})
            }),
            "minReplicas must not exceed maxReplicas",
        ),
    ];
    for (what, object, message) in cases {
        let refusals = admit(&object).expect_err(what);
        assert!(
            refusals.iter().any(|(_, m)| m.contains(message)),
            "{what}: {refusals:?}"
        );
    }
    assert_eq!(
        admit(&with(|p| {
            p["spec"]["capture"] = json!({"requireApiKey": false, "keylessProjectId": 7})
        })),
        Ok(()),
        "keyless capture into its own project"
    );
    // A default fills what a rule reads: minReplicas defaults to 1.
    assert_eq!(
        admit(&with(
            |p| p["spec"]["consumer"] = json!({"scaling": {"maxReplicas": 4}})
        )),
        Ok(())
    );
}

#[test]
fn conditions_are_a_map_keyed_by_type() {
    let conditions = &schema()["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(conditions["x-kubernetes-list-map-keys"], json!(["type"]));
}
