//! A container's environment as a kubelet builds it, from the objects
//! Kubernetes would hold: what a process started by a test gets must be
//! what it would get in a pod, not a hand-written copy.
//!
//! The rules followed (kubelet `makeEnvironmentVariables`):
//! 1. `KUBERNETES_SERVICE_HOST`/`_PORT` (and the `KUBERNETES_PORT*` links)
//!    are always set; with `enableServiceLinks` unset or `true`, every
//!    Service of the pod's namespace that has a cluster IP adds
//!    `{NAME}_SERVICE_HOST`, `{NAME}_SERVICE_PORT[_{PORT_NAME}]`,
//!    `{NAME}_PORT` and `{NAME}_PORT_{port}_{PROTO}[_PROTO|_PORT|_ADDR]`
//!    (the name upper-cased, `-` as `_`).
//! 2. `envFrom` sources in order (a later one wins), keys prefixed; keys
//!    that are not valid variable names are skipped.
//! 3. `env` in order (a later one wins, and wins over 1 and 2): `value`
//!    exactly as written (an empty string sets an empty variable),
//!    `$(VAR)` expanded from what is defined before it, `valueFrom` from
//!    the downward API (`metadata.name`, `metadata.namespace`,
//!    `status.podIP`), Secrets and ConfigMaps.
//! 4. `HOSTNAME` is the pod's name.
//!
//! What it cannot show: the image's own `ENV` lines (the caller adds what
//! the image sets), and `resourceFieldRef` (refused, so a test using it
//! fails loudly rather than guessing).

use std::collections::BTreeMap;

use serde_json::Value;

/// What the cluster holds around one pod.
#[derive(Debug, Clone, Default)]
pub struct Namespace {
    pub name: String,
    /// Services (as JSON objects) of the namespace; cluster IPs are
    /// assigned in order (`10.96.0.10`, `.11`, ...) unless set.
    pub services: Vec<Value>,
    /// ConfigMaps (as JSON objects) of the namespace.
    pub config_maps: Vec<Value>,
    /// Secret values by `(secret, key)`.
    pub secrets: BTreeMap<(String, String), String>,
}

/// The pod a container runs in.
#[derive(Debug, Clone)]
pub struct Pod<'a> {
    pub name: String,
    pub ip: String,
    /// The pod's `spec` (JSON).
    pub spec: &'a Value,
}

/// Why an environment cannot be built (a pod a kubelet would not start).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("{0}")]
    Missing(String),
    #[error("{0}: not supported by this test kubelet")]
    Unsupported(String),
}

/// The API server's own Service, always linked.
const KUBERNETES_HOST: &str = "10.96.0.1";

fn env_name(service: &str) -> String {
    service.to_ascii_uppercase().replace('-', "_")
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// The variables one Service links into pods of its namespace.
fn links(name: &str, ip: &str, ports: &[Value]) -> Vec<(String, String)> {
    let n = env_name(name);
    let mut out = Vec::new();
    let Some(first) = ports.first() else {
        return out;
    };
    let port = |p: &Value| p["port"].as_i64().unwrap_or(0);
    let proto = |p: &Value| p["protocol"].as_str().unwrap_or("TCP").to_owned();
    out.push((format!("{n}_SERVICE_HOST"), ip.to_owned()));
    out.push((format!("{n}_SERVICE_PORT"), port(first).to_string()));
    for p in ports {
        if let Some(port_name) = p["name"].as_str() {
            out.push((
                format!("{n}_SERVICE_PORT_{}", env_name(port_name)),
                port(p).to_string(),
            ));
        }
    }
    out.push((
        format!("{n}_PORT"),
        format!(
            "{}://{ip}:{}",
            proto(first).to_ascii_lowercase(),
            port(first)
        ),
    ));
    for p in ports {
        let (number, protocol) = (port(p), proto(p));
        let prefix = format!("{n}_PORT_{number}_{protocol}");
        out.push((
            prefix.clone(),
            format!("{}://{ip}:{number}", protocol.to_ascii_lowercase()),
        ));
        out.push((format!("{prefix}_PROTO"), protocol.to_ascii_lowercase()));
        out.push((format!("{prefix}_PORT"), number.to_string()));
        out.push((format!("{prefix}_ADDR"), ip.to_owned()));
    }
    out
}

/// `$(VAR)` replaced by `VAR`'s value where defined (kept as written
/// otherwise); `$$` is a literal `$`.
fn expand(value: &str, defined: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(inner) = tail.strip_prefix("$(")
            && let Some(end) = inner.find(')')
            && let Some(v) = defined.get(&inner[..end])
        {
            out.push_str(v);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

impl Namespace {
    fn config_map(&self, name: &str) -> Option<&Value> {
        self.config_maps
            .iter()
            .find(|c| c["metadata"]["name"].as_str() == Some(name))
    }

    /// The service links every pod of this namespace gets.
    pub fn service_links(&self) -> Vec<(String, String)> {
        let mut out = links(
            "kubernetes",
            KUBERNETES_HOST,
            &[serde_json::json!({"name": "https", "port": 443, "protocol": "TCP"})],
        );
        for (i, s) in self.services.iter().enumerate() {
            let ip = match s["spec"]["clusterIP"].as_str() {
                Some("None") => continue,
                Some(ip) => ip.to_owned(),
                None => format!("10.96.0.{}", 10 + i),
            };
            let name = s["metadata"]["name"].as_str().unwrap_or_default();
            let ports = s["spec"]["ports"].as_array().cloned().unwrap_or_default();
            out.extend(links(name, &ip, &ports));
        }
        out
    }

    /// The environment of `container` in `pod`, as a kubelet sets it.
    pub fn container_env(
        &self,
        pod: &Pod<'_>,
        container: &Value,
    ) -> Result<BTreeMap<String, String>, EnvError> {
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        let all_links = pod.spec["enableServiceLinks"].as_bool() != Some(false);
        for (k, v) in self.service_links() {
            if all_links || k.starts_with("KUBERNETES_") {
                env.insert(k, v);
            }
        }
        for source in container["envFrom"].as_array().into_iter().flatten() {
            let prefix = source["prefix"].as_str().unwrap_or("");
            if let Some(r) = source.get("configMapRef") {
                let name = r["name"].as_str().unwrap_or_default();
                let Some(cm) = self.config_map(name) else {
                    if r["optional"].as_bool() == Some(true) {
                        continue;
                    }
                    return Err(EnvError::Missing(format!("configmap {name:?} not found")));
                };
                for (k, v) in cm["data"].as_object().into_iter().flatten() {
                    let key = format!("{prefix}{k}");
                    if valid_name(&key) {
                        env.insert(key, v.as_str().unwrap_or_default().to_owned());
                    }
                }
            } else if let Some(r) = source.get("secretRef") {
                let name = r["name"].as_str().unwrap_or_default();
                let keys: Vec<(&String, &String)> = self
                    .secrets
                    .iter()
                    .filter(|((s, _), _)| s == name)
                    .map(|((_, k), v)| (k, v))
                    .collect();
                if keys.is_empty() && r["optional"].as_bool() != Some(true) {
                    return Err(EnvError::Missing(format!("secret {name:?} not found")));
                }
                for (k, v) in keys {
                    let key = format!("{prefix}{k}");
                    if valid_name(&key) {
                        env.insert(key, v.clone());
                    }
                }
            } else {
                return Err(EnvError::Unsupported(format!("envFrom {source}")));
            }
        }
        let mut defined: BTreeMap<String, String> = BTreeMap::new();
        for var in container["env"].as_array().into_iter().flatten() {
            let name = var["name"].as_str().unwrap_or_default().to_owned();
            let value = if let Some(v) = var.get("value") {
                expand(v.as_str().unwrap_or_default(), &defined)
            } else if let Some(from) = var.get("valueFrom") {
                self.value_from(pod, &name, from)?
            } else {
                // Neither: the variable is set, empty.
                String::new()
            };
            defined.insert(name.clone(), value.clone());
            env.insert(name, value);
        }
        env.insert("HOSTNAME".to_owned(), pod.name.clone());
        Ok(env)
    }

    fn value_from(&self, pod: &Pod<'_>, var: &str, from: &Value) -> Result<String, EnvError> {
        if let Some(field) = from["fieldRef"]["fieldPath"].as_str() {
            return match field {
                "metadata.name" => Ok(pod.name.clone()),
                "metadata.namespace" => Ok(self.name.clone()),
                "status.podIP" => Ok(pod.ip.clone()),
                other => Err(EnvError::Unsupported(format!("{var}: fieldRef {other}"))),
            };
        }
        let optional = |r: &Value| r["optional"].as_bool() == Some(true);
        if let Some(r) = from.get("secretKeyRef") {
            let (name, key) = (
                r["name"].as_str().unwrap_or_default(),
                r["key"].as_str().unwrap_or_default(),
            );
            return match self.secrets.get(&(name.to_owned(), key.to_owned())) {
                Some(v) => Ok(v.clone()),
                None if optional(r) => Ok(String::new()),
                None => Err(EnvError::Missing(format!(
                    "{var}: secret {name:?} has no key {key:?}"
                ))),
            };
        }
        if let Some(r) = from.get("configMapKeyRef") {
            let (name, key) = (
                r["name"].as_str().unwrap_or_default(),
                r["key"].as_str().unwrap_or_default(),
            );
            return match self.config_map(name).and_then(|c| c["data"][key].as_str()) {
                Some(v) => Ok(v.to_owned()),
                None if optional(r) => Ok(String::new()),
                None => Err(EnvError::Missing(format!(
                    "{var}: configmap {name:?} has no key {key:?}"
                ))),
            };
        }
        Err(EnvError::Unsupported(format!("{var}: valueFrom {from}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn links_envfrom_env_and_the_downward_api_in_the_kubelets_order() {
        let ns = Namespace {
            name: "analytics".into(),
            services: vec![json!({"metadata": {"name": "auth"},
                "spec": {"ports": [{"name": "http", "port": 80}]}})],
            config_maps: vec![json!({"metadata": {"name": "cfg"},
                "data": {"A": "from-cm", "AUTH_PORT": "8002", "bad-key!": "x"}})],
            secrets: BTreeMap::from([(("s".into(), "k".into()), "secret".into())]),
        };
        let spec = json!({});
        let pod = Pod {
            name: "p-1".into(),
            ip: "10.0.0.5".into(),
            spec: &spec,
        };
        let container = json!({
            "envFrom": [{"configMapRef": {"name": "cfg"}}],
            "env": [
                {"name": "EMPTY", "value": ""},
                {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "BOTH", "value": "$(S)-$(NS)-$(UNDEFINED)-$$"},
            ]
        });
        let env = ns.container_env(&pod, &container).unwrap_or_default();
        assert_eq!(env["EMPTY"], "", "an empty value is set, not left out");
        assert_eq!(env["S"], "secret");
        assert_eq!(env["BOTH"], "secret-analytics-$(UNDEFINED)-$");
        assert_eq!(env["A"], "from-cm");
        assert_eq!(env["AUTH_PORT"], "8002", "envFrom wins over a link");
        assert_eq!(env["AUTH_SERVICE_PORT_HTTP"], "80");
        assert_eq!(env["AUTH_PORT_80_TCP_ADDR"], "10.96.0.10");
        assert_eq!(env["KUBERNETES_SERVICE_HOST"], KUBERNETES_HOST);
        assert_eq!(env["HOSTNAME"], "p-1");
        assert!(!env.contains_key("bad-key!"));

        let without = json!({"enableServiceLinks": false});
        let pod = Pod {
            spec: &without,
            ..pod
        };
        let env = ns.container_env(&pod, &json!({})).unwrap_or_default();
        assert!(!env.contains_key("AUTH_SERVICE_HOST"));
        assert!(env.contains_key("KUBERNETES_SERVICE_HOST"), "always linked");
        let missing = json!({"env": [{"name": "X",
            "valueFrom": {"secretKeyRef": {"name": "s", "key": "nope"}}}]});
        assert!(ns.container_env(&pod, &missing).is_err());
    }
}
