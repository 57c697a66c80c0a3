//! Builder properties over variations of the example pipelines: what must
//! hold whatever the spec says (consumers within partitions, secrets only as
//! references, labels and owners, names that change with what they hold).
//! What the examples themselves become, object by object, is the golden
//! files' (`tests/render_golden.rs`).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, EnvVar};
use kube::api::ObjectMeta;

use super::*;
use crate::crd::AnalyticsPipeline;

fn minimal() -> AnalyticsPipeline {
    serde_yaml::from_str(include_str!("../../../crds/examples/minimal.yaml"))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn full() -> AnalyticsPipeline {
    serde_yaml::from_str(include_str!("../../../crds/examples/full.yaml"))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn sized(partitions: i32, schema_version: u32) -> Sizing {
    Sizing {
        partitions,
        consumer_replicas: None,
        schema_version,
    }
}

fn built(p: &AnalyticsPipeline) -> Children {
    children(p, sized(p.spec.kafka.events.partitions, 2)).unwrap_or_else(|e| panic!("{e}"))
}

fn container(d: &Deployment) -> &Container {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|s| &s.containers[0])
        .unwrap_or_else(|| panic!("no container"))
}

fn deployment<'a>(c: &'a Children, name: &str) -> &'a Deployment {
    c.deployments
        .iter()
        .find(|d| d.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no deployment {name}"))
}

fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(-1)
}

#[test]
fn without_migrations_there_is_no_job() {
    assert!(built(&minimal()).migration_job.is_some());
    let mut off = minimal();
    off.spec.migrations = false;
    assert!(built(&off).migration_job.is_none());
}

#[test]
fn consumers_never_outnumber_partitions() {
    let mut p = minimal();
    p.spec.consumer.workload.replicas = Some(30);
    let c = children(&p, sized(12, 2)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(replicas(deployment(&c, "analytics-consumer")), 12);
    let c = children(&p, sized(40, 2)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(replicas(deployment(&c, "analytics-consumer")), 30);
    assert_eq!(workload::consumer_replicas(&p, &sized(0, 2)), 0);
}

#[test]
fn the_autoscaler_decides_the_consumer_replicas_within_the_partitions() {
    let mut p = minimal();
    p.spec.consumer.workload.replicas = Some(3);
    p.spec.consumer.scaling = Some(crate::crd::ConsumerScaling {
        min_replicas: 2,
        max_replicas: 10,
        lag_per_replica: 10_000,
        stabilization_window_seconds: 300,
        poll_interval_seconds: 15,
        auto_grow_partitions: None,
    });
    let c = children(&p, sized(12, 2)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        replicas(deployment(&c, "analytics-consumer")),
        2,
        "with scaling on, minReplicas until the first decision"
    );
    let decided = Sizing {
        consumer_replicas: Some(7),
        ..sized(12, 2)
    };
    let c = children(&p, decided).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(replicas(deployment(&c, "analytics-consumer")), 7);
    assert_eq!(
        replicas(deployment(&c, "analytics-capture")),
        2,
        "others keep theirs"
    );
    let c = children(
        &p,
        Sizing {
            partitions: 4,
            ..decided
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(replicas(deployment(&c, "analytics-consumer")), 4);
}

#[test]
fn secrets_travel_only_as_references() {
    let p = full();
    let c = built(&p);
    let data = c.config_map.data.clone().unwrap_or_default();
    for key in data.keys() {
        assert!(
            !["POSTGRES_DSN", "JWT_SECRET", "REDIS_URL"].contains(&key.as_str())
                && !key.contains("PASSWORD"),
            "{key} in the ConfigMap"
        );
    }
    let mut env: Vec<&EnvVar> = Vec::new();
    for d in &c.deployments {
        env.extend(container(d).env.iter().flatten());
    }
    let job = c
        .migration_job
        .as_ref()
        .and_then(|j| j.spec.as_ref())
        .and_then(|s| s.template.spec.as_ref());
    env.extend(
        job.iter()
            .flat_map(|s| s.containers[0].env.iter().flatten()),
    );
    let secret_names = [
        "POSTGRES_DSN",
        "JWT_SECRET",
        "REDIS_URL",
        "CONSUMER_CLICKHOUSE_PASSWORD",
        "QUERY_CLICKHOUSE_PASSWORD",
    ];
    for name in secret_names {
        let found: Vec<&&EnvVar> = env.iter().filter(|e| e.name == name).collect();
        assert!(!found.is_empty(), "{name} is set somewhere");
        for e in found {
            assert!(e.value.is_none(), "{name} as a literal");
            let r = e
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref());
            assert!(r.is_some(), "{name} not from a Secret");
        }
    }
    // A Redis URL without a password may sit in the ConfigMap.
    let c = built(&minimal());
    assert_eq!(
        c.config_map
            .data
            .unwrap_or_default()
            .get("REDIS_URL")
            .map(String::as_str),
        Some("redis://redis:6379")
    );
}

#[test]
fn children_carry_labels_and_their_owner() {
    let mut p = minimal();
    p.metadata = ObjectMeta {
        name: Some("analytics".into()),
        namespace: Some("team".into()),
        uid: Some("8d3f-uid".into()),
        ..ObjectMeta::default()
    };
    let c = built(&p);
    let mut metas = vec![&c.config_map.metadata];
    metas.extend(c.deployments.iter().map(|d| &d.metadata));
    metas.extend(c.services.iter().map(|d| &d.metadata));
    metas.extend(c.disruption_budgets.iter().map(|d| &d.metadata));
    metas.extend(c.migration_job.iter().map(|d| &d.metadata));
    for m in metas {
        let name = m.name.clone().unwrap_or_default();
        assert_eq!(m.namespace.as_deref(), Some("team"), "{name}");
        let labels = m.labels.clone().unwrap_or_default();
        for key in [
            "name",
            "instance",
            "component",
            "part-of",
            "managed-by",
            "version",
        ] {
            assert!(
                labels.contains_key(&format!("app.kubernetes.io/{key}")),
                "{name}: {key}"
            );
        }
        let owners = m.owner_references.clone().unwrap_or_default();
        assert_eq!(owners.len(), 1, "{name}");
        assert_eq!(owners[0].uid, "8d3f-uid");
        assert_eq!(owners[0].controller, Some(true));
        assert_eq!(owners[0].kind, "AnalyticsPipeline");
    }
}

#[test]
fn a_settings_change_is_a_new_immutable_config_map_the_pods_and_the_job_read() {
    let config_of = |c: &Children| -> Vec<String> {
        let mut names: Vec<String> = c
            .deployments
            .iter()
            .map(|d| {
                container(d).env_from.as_ref().unwrap()[0]
                    .config_map_ref
                    .as_ref()
                    .unwrap()
                    .name
                    .clone()
            })
            .collect();
        let job = c.migration_job.as_ref().unwrap();
        let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        names.push(
            pod.containers[0].env_from.as_ref().unwrap()[0]
                .config_map_ref
                .as_ref()
                .unwrap()
                .name
                .clone(),
        );
        names
    };
    let p = built(&minimal());
    let name = p.config_map.metadata.name.clone().unwrap();
    assert!(name.starts_with("analytics-config-"), "{name}");
    assert_eq!(p.config_map.immutable, Some(true));
    assert!(
        config_of(&p).iter().all(|n| *n == name),
        "{:?}",
        config_of(&p)
    );
    assert_eq!(
        built(&minimal()).config_map.metadata.name.as_deref(),
        Some(name.as_str()),
        "stable"
    );
    let mut q = minimal();
    q.spec.clickhouse.database = "shop".to_owned();
    let q = built(&q);
    let other = q.config_map.metadata.name.clone().unwrap();
    assert_ne!(other, name, "new settings, a new ConfigMap");
    assert!(config_of(&q).iter().all(|n| *n == other));
    assert_ne!(
        q.migration_job.as_ref().unwrap().metadata.name,
        p.migration_job.as_ref().unwrap().metadata.name,
        "and a new migration"
    );
}

fn job_name(p: &AnalyticsPipeline, version: u32) -> String {
    children(p, sized(12, version))
        .ok()
        .and_then(|c| c.migration_job)
        .and_then(|j| j.metadata.name)
        .unwrap_or_default()
}

#[test]
fn migration_jobs_are_named_for_version_image_and_settings() {
    let p = minimal();
    let name = job_name(&p, 2);
    assert!(name.starts_with("analytics-migrate-v2-"), "{name}");
    assert_eq!(name, job_name(&minimal(), 2), "stable");
    assert_ne!(name, job_name(&p, 3));
    let mut other = minimal();
    other.spec.image = "ghcr.io/tributary-dev/tributary:0.2.0".into();
    assert_ne!(name, job_name(&other, 2), "a new image migrates again");
    // A fixed setting gets a new Job (a failed one is never re-run as is).
    let mut fixed = minimal();
    fixed.spec.clickhouse.url = "http://clickhouse.data:8123".into();
    assert_ne!(name, job_name(&fixed, 2));
    let mut secret = minimal();
    secret.spec.postgres_dsn_secret_ref.name = "other-postgres".into();
    assert_ne!(name, job_name(&secret, 2));
    let mut long = minimal();
    long.metadata.name = Some("a".repeat(60));
    let n = job::migration_job_name(&long, 12, b"x");
    assert!(n.len() <= 63 && n.contains("-migrate-v12-"), "{n}");
    assert_eq!(n, job::migration_job_name(&long, 12, b"x"));
}

#[test]
fn what_the_schema_cannot_refuse_names_its_field() {
    let mut p = minimal();
    p.spec.clickhouse.url = "http://clickhouse:8123/tributary".into();
    let e = children(&p, sized(12, 2))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.starts_with("spec.clickhouse.url:"), "{e}");
    let e = render(&p).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("spec.clickhouse.url"), "{e}");
    // Settings the workloads cannot honour are refused, not dropped.
    let mut p = minimal();
    p.spec.kafka.sasl_secret_ref = Some(crate::crd::SecretRef {
        name: "sasl".into(),
    });
    let e = children(&p, sized(12, 2))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.starts_with("spec.kafka.saslSecretRef:"), "{e}");
    let mut p = minimal();
    p.spec.kafka.tls_secret_ref = Some(crate::crd::SecretRef { name: "tls".into() });
    let e = children(&p, sized(12, 2))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.starts_with("spec.kafka.tlsSecretRef:"), "{e}");
}

#[test]
fn user_env_overrides_the_operators() {
    let mut p = minimal();
    p.spec.auth.env.push(EnvVar {
        name: "JWT_SECRET".into(),
        value_from: None,
        value: None,
    });
    let c = built(&p);
    let env: Vec<&EnvVar> = container(deployment(&c, "analytics-auth"))
        .env
        .iter()
        .flatten()
        .filter(|e| e.name == "JWT_SECRET")
        .collect();
    assert_eq!(env.len(), 1, "one variable of a name");
    assert!(env[0].value_from.is_none(), "the user's wins");
}

/// A DNS-1035 label (Service names): `[a-z]([-a-z0-9]*[a-z0-9])?`, ≤ 63.
fn dns_label(s: &str) -> bool {
    s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A DNS-1123 subdomain (other object names), ≤ 253.
fn dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|part| {
            !part.is_empty()
                && part.starts_with(|c: char| c.is_ascii_alphanumeric())
                && part.ends_with(|c: char| c.is_ascii_alphanumeric())
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

/// A label value: ≤ 63, alphanumerics with `-_.` inside.
fn label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
}

fn named(name: &str) -> AnalyticsPipeline {
    let mut p = full();
    p.metadata.name = Some(name.to_owned());
    p
}

/// Every name and label value of `c` as the API server checks them.
fn names_the_cluster_accepts(c: &Children) -> Result<(), String> {
    let mut metas: Vec<(&str, &ObjectMeta)> = vec![("ConfigMap", &c.config_map.metadata)];
    metas.extend(c.migration_job.iter().map(|j| ("Job", &j.metadata)));
    metas.extend(c.deployments.iter().map(|d| ("Deployment", &d.metadata)));
    metas.extend(c.services.iter().map(|s| ("Service", &s.metadata)));
    metas.extend(
        c.disruption_budgets
            .iter()
            .map(|b| ("PodDisruptionBudget", &b.metadata)),
    );
    for (kind, m) in metas {
        let name = m.name.as_deref().unwrap_or_default();
        let ok = if kind == "Service" || kind == "Job" {
            dns_label(name)
        } else {
            dns_subdomain(name)
        };
        if !ok {
            return Err(format!("{kind} name {name:?}"));
        }
        for (k, v) in m.labels.iter().flatten() {
            if !label_value(v) {
                return Err(format!("{kind} {name} label {k}={v:?}"));
            }
        }
    }
    Ok(())
}

#[test]
fn names_the_crd_admits_make_children_the_cluster_accepts_and_others_are_refused() {
    assert!(names_the_cluster_accepts(&built(&named(&"a".repeat(55)))).is_ok());
    for bad in [
        "a".repeat(56),
        "shop.eu".to_owned(),
        "1shop".to_owned(),
        "shop-".to_owned(),
        "Shop".to_owned(),
    ] {
        let e = children(&named(&bad), sized(12, 2))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with("metadata.name: "), "{bad}: {e}");
    }
}

proptest::proptest! {
    #[test]
    fn any_admitted_name_makes_valid_children(name in "[a-z0-9.-]{1,70}") {
        match children(&named(&name), sized(12, 2)) {
            Ok(c) => {
                proptest::prop_assert!(meta::check_pipeline_name(&name).is_ok());
                proptest::prop_assert_eq!(names_the_cluster_accepts(&c), Ok(()));
            }
            Err(e) => proptest::prop_assert!(e.to_string().starts_with("metadata.name")),
        }
    }
}

#[test]
fn keys_are_required_unless_keyless_traffic_names_its_project() {
    let data = |p: &AnalyticsPipeline| built(p).config_map.data.unwrap_or_default();
    let d = data(&minimal());
    assert_eq!(d["CAPTURE_REQUIRE_API_KEY"], "true", "the minimal example");
    assert_eq!(d["QUERY_REQUIRE_API_KEY"], "true");
    assert_eq!(
        d["CAPTURE_AUTH_URL"],
        "http://analytics-auth.default.svc:8002"
    );
    assert!(!d.contains_key("CAPTURE_KEYLESS_PROJECT_ID"));

    let mut p = minimal();
    p.spec.capture.require_api_key = false;
    p.spec.capture.keyless_project_id = Some(7);
    let d = data(&p);
    assert_eq!(d["CAPTURE_REQUIRE_API_KEY"], "false");
    assert_eq!(d["CAPTURE_KEYLESS_PROJECT_ID"], "7");
    assert_eq!(d["QUERY_REQUIRE_API_KEY"], "true");

    p.spec.capture.keyless_project_id = None;
    let e = children(&p, sized(12, 2)).err().map(|e| e.to_string());
    assert!(
        e.as_deref()
            .is_some_and(|e| e.starts_with("spec.capture.keylessProjectId")),
        "{e:?}"
    );
}

/// Reconcile validates with `validate` before the topics are known, and
/// builds with `children` after: the two refuse the same specs, naming
/// the same field.
#[test]
fn validate_refuses_what_children_refuses() {
    let mut specs = vec![minimal(), full(), named("shop-")];
    let mut sasl = minimal();
    sasl.spec.kafka.sasl_secret_ref = Some(crate::crd::SecretRef { name: "s".into() });
    specs.push(sasl);
    let mut tls = minimal();
    tls.spec.kafka.tls_secret_ref = Some(crate::crd::SecretRef { name: "t".into() });
    specs.push(tls);
    let mut keyless = minimal();
    keyless.spec.capture.require_api_key = false;
    specs.push(keyless);
    let mut clickhouse = minimal();
    clickhouse.spec.clickhouse.url = "ftp://clickhouse".into();
    specs.push(clickhouse);
    let mut refused = 0;
    for p in &specs {
        let validated = validate(p).err().map(|e| e.to_string());
        let built = children(p, sized(12, 2)).err().map(|e| e.to_string());
        assert_eq!(validated, built);
        refused += usize::from(validated.is_some());
    }
    assert_eq!(refused, 5, "every spec past the first two is refused");
}
