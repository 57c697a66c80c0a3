//! The pipeline's settings as the workloads read them: non-secret ones in a
//! ConfigMap, secrets only as references to the user's Secrets.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, EnvVar, EnvVarSource, SecretKeySelector};
use sha2::{Digest, Sha256};

use super::BuildError;
use super::component::Component;
use super::meta;
use crate::crd::{AnalyticsPipeline, SecretKeyRef};

/// Name suffix of the ConfigMaps (and their component label).
pub const CONFIG: &str = "config";

/// Where ClickHouse listens, as the workloads' `*_CLICKHOUSE_*` variables
/// spell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickHouseAddress {
    pub host: String,
    pub port: u16,
    pub secure: bool,
}

/// `http(s)://host[:port]` → host, port (8123 or 8443 by default), TLS.
pub fn clickhouse_address(raw: &str) -> Result<ClickHouseAddress, BuildError> {
    let bad = |why: &str| BuildError::Invalid {
        field: "spec.clickhouse.url",
        message: format!("{raw:?}: {why}"),
    };
    let url = url::Url::parse(raw).map_err(|e| bad(&e.to_string()))?;
    let secure = match url.scheme() {
        "http" => false,
        "https" => true,
        other => return Err(bad(&format!("scheme {other} is not http or https"))),
    };
    let host = url.host_str().ok_or_else(|| bad("no host"))?.to_owned();
    if !matches!(url.path(), "" | "/") || url.query().is_some() {
        return Err(bad(
            "give only scheme, host and port; the database is spec.clickhouse.database",
        ));
    }
    let port = url.port().unwrap_or(if secure { 8443 } else { 8123 });
    Ok(ClickHouseAddress { host, port, secure })
}

/// The in-cluster URL of a component's Service.
pub fn service_url(p: &AnalyticsPipeline, component: Component) -> String {
    format!(
        "http://{}.{}.svc:{}",
        meta::child_name(p, component.name()),
        meta::namespace(p),
        component.port()
    )
}

/// The non-secret settings of every workload.
pub fn config_data(p: &AnalyticsPipeline) -> Result<BTreeMap<String, String>, BuildError> {
    let spec = &p.spec;
    // What the CRD's rules refuse at admission, refused here too.
    for (field, require, keyless) in [
        (
            "spec.capture.keylessProjectId",
            spec.capture.require_api_key,
            spec.capture.keyless_project_id,
        ),
        (
            "spec.query.keylessProjectId",
            spec.query.require_api_key,
            spec.query.keyless_project_id,
        ),
    ] {
        match (require, keyless) {
            (false, None) => {
                return Err(BuildError::Invalid {
                    field,
                    message:
                        "requireApiKey is false: name the project made for traffic without a key"
                            .into(),
                });
            }
            (true, Some(_)) => {
                return Err(BuildError::Invalid {
                    field,
                    message: "set only with requireApiKey: false".into(),
                });
            }
            _ => {}
        }
    }
    let ch = clickhouse_address(&spec.clickhouse.url)?;
    let kafka = &spec.kafka;
    let mut data = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        data.insert(k.to_owned(), v);
    };
    set("LOG_FORMAT", "json".into());
    set(
        "CAPTURE_KAFKA_BOOTSTRAP_SERVERS",
        kafka.bootstrap_servers.clone(),
    );
    set("CAPTURE_KAFKA_TOPIC", kafka.events.name.clone());
    set(
        "CAPTURE_REQUIRE_API_KEY",
        spec.capture.require_api_key.to_string(),
    );
    set("CAPTURE_AUTH_URL", service_url(p, Component::Auth));
    if let Some(project) = spec.capture.keyless_project_id {
        set("CAPTURE_KEYLESS_PROJECT_ID", project.to_string());
    }
    set(
        "CONSUMER_KAFKA_BOOTSTRAP_SERVERS",
        kafka.bootstrap_servers.clone(),
    );
    set("CONSUMER_KAFKA_TOPIC", kafka.events.name.clone());
    set("CONSUMER_KAFKA_GROUP_ID", kafka.consumer_group.clone());
    set("CONSUMER_DLQ_TOPIC", kafka.dlq.name.clone());
    for prefix in ["CONSUMER", "QUERY"] {
        set(&format!("{prefix}_CLICKHOUSE_HOST"), ch.host.clone());
        set(&format!("{prefix}_CLICKHOUSE_PORT"), ch.port.to_string());
        set(
            &format!("{prefix}_CLICKHOUSE_SECURE"),
            ch.secure.to_string(),
        );
        set(
            &format!("{prefix}_CLICKHOUSE_DATABASE"),
            spec.clickhouse.database.clone(),
        );
        if let Some(cluster) = &spec.clickhouse.cluster {
            set(&format!("{prefix}_CLICKHOUSE_CLUSTER"), cluster.clone());
        }
    }
    set(
        "QUERY_REQUIRE_API_KEY",
        spec.query.require_api_key.to_string(),
    );
    set("QUERY_AUTH_URL", service_url(p, Component::Auth));
    if let Some(project) = spec.query.keyless_project_id {
        set("QUERY_KEYLESS_PROJECT_ID", project.to_string());
    }
    if let Some(url) = &spec.redis.url {
        set("REDIS_URL", url.clone());
    }
    // With the operator's migration Job, auth need not migrate on start.
    set("AUTH_MIGRATE_ON_START", (!spec.migrations).to_string());
    // Nor query, whose saved insights live in the same Postgres.
    set("QUERY_MIGRATE_ON_START", (!spec.migrations).to_string());
    Ok(data)
}

/// The settings as an immutable ConfigMap named after a digest of its
/// data, `{pipeline}-config-{digest}`: a change of settings is a new
/// ConfigMap, which only the new migration Job and, once it succeeded, the
/// new pods read. Pods of the running version keep reading theirs (a
/// restart included) until the rollout replaced them; reconcile deletes old
/// ones after that.
pub fn config_map(p: &AnalyticsPipeline) -> Result<ConfigMap, BuildError> {
    let data = config_data(p)?;
    let name = meta::child_name(p, &format!("{CONFIG}-{}", data_digest(&data)));
    Ok(ConfigMap {
        metadata: meta::meta(p, name, CONFIG),
        data: Some(data),
        immutable: Some(true),
        ..ConfigMap::default()
    })
}

/// 16 hex digits of a digest of `data` (sorted keys: stable across runs).
pub fn data_digest(data: &BTreeMap<String, String>) -> String {
    let mut hash = Sha256::new();
    for (k, v) in data {
        hash.update(k.as_bytes());
        hash.update([0]);
        hash.update(v.as_bytes());
        hash.update([0]);
    }
    hash.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An environment variable read from a Secret key.
fn from_secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn from_ref(name: &str, r: &SecretKeyRef) -> EnvVar {
    from_secret(name, &r.name, &r.key)
}

/// What reads secrets: a workload, or the migration Job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    Workload(Component),
    Migrate,
}

/// The secrets `reader` needs, by reference.
pub fn secret_env(p: &AnalyticsPipeline, reader: Reader) -> Vec<EnvVar> {
    let spec = &p.spec;
    let clickhouse = |prefix: &str| -> Vec<EnvVar> {
        spec.clickhouse
            .credentials_secret_ref
            .iter()
            .flat_map(|s| {
                [
                    from_secret(&format!("{prefix}_CLICKHOUSE_USER"), &s.name, "username"),
                    from_secret(
                        &format!("{prefix}_CLICKHOUSE_PASSWORD"),
                        &s.name,
                        "password",
                    ),
                ]
            })
            .collect()
    };
    match reader {
        Reader::Workload(Component::Auth) => vec![
            from_ref("POSTGRES_DSN", &spec.postgres_dsn_secret_ref),
            from_ref("JWT_SECRET", &spec.jwt_secret_ref),
        ],
        Reader::Workload(Component::Capture) => Vec::new(),
        Reader::Workload(Component::Consumer) => clickhouse("CONSUMER"),
        Reader::Workload(Component::Query) => {
            let mut env = clickhouse("QUERY");
            // Saved insights and dashboards.
            env.push(from_ref("POSTGRES_DSN", &spec.postgres_dsn_secret_ref));
            if let Some(r) = &spec.redis.url_secret_ref {
                env.push(from_ref("REDIS_URL", r));
            }
            env
        }
        Reader::Migrate => {
            let mut env = clickhouse("CONSUMER");
            env.push(from_ref("POSTGRES_DSN", &spec.postgres_dsn_secret_ref));
            env
        }
    }
}

/// `base` with `extra` laid over it: a variable of `extra` replaces the one
/// of the same name (a list of unique names, as server-side apply wants).
pub fn merge_env(mut base: Vec<EnvVar>, extra: &[EnvVar]) -> Vec<EnvVar> {
    for e in extra {
        match base.iter_mut().find(|b| b.name == e.name) {
            Some(b) => *b = e.clone(),
            None => base.push(e.clone()),
        }
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clickhouse_urls_become_host_port_and_tls() {
        let a = clickhouse_address("http://clickhouse:8123").unwrap();
        assert_eq!(
            (a.host.as_str(), a.port, a.secure),
            ("clickhouse", 8123, false)
        );
        let a = clickhouse_address("https://ch.example.com").unwrap();
        assert_eq!(
            (a.host.as_str(), a.port, a.secure),
            ("ch.example.com", 8443, true)
        );
        let a = clickhouse_address("http://ch/").unwrap();
        assert_eq!(a.port, 8123);
        for bad in [
            "clickhouse:8123",
            "tcp://ch:9000",
            "http://ch:8123/db",
            "http://",
            "http://ch?x=1",
        ] {
            let e = clickhouse_address(bad).unwrap_err();
            assert!(e.to_string().contains("spec.clickhouse.url"), "{bad}: {e}");
        }
    }

    #[test]
    fn extra_env_replaces_by_name_and_adds_the_rest() {
        let v = |n: &str, x: &str| EnvVar {
            name: n.into(),
            value: Some(x.into()),
            ..EnvVar::default()
        };
        let merged = merge_env(vec![v("A", "1"), v("B", "2")], &[v("B", "3"), v("C", "4")]);
        let pairs: Vec<(String, Option<String>)> =
            merged.into_iter().map(|e| (e.name, e.value)).collect();
        assert_eq!(
            pairs,
            vec![
                ("A".into(), Some("1".into())),
                ("B".into(), Some("3".into())),
                ("C".into(), Some("4".into()))
            ]
        );
    }
}
