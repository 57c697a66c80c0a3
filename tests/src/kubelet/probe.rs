//! Probes as declared in a container (`httpGet` only: what the operator
//! renders): the kubelet's defaults for what is left out, the port by
//! number or by the container port's name, success on 200-399 within the
//! timeout.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::env::EnvError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub path: String,
    pub port: u16,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

fn seconds(v: &Value, default: u64) -> Duration {
    Duration::from_secs(v.as_u64().unwrap_or(default))
}

impl Probe {
    /// `container[kind]` (`readinessProbe`, `livenessProbe`), if declared.
    pub fn of(container: &Value, kind: &str) -> Result<Option<Self>, EnvError> {
        let Some(p) = container.get(kind) else {
            return Ok(None);
        };
        let Some(get) = p.get("httpGet") else {
            return Err(EnvError::Unsupported(format!("{kind} {p}")));
        };
        let port = match &get["port"] {
            Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            Value::String(name) => container["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|cp| cp["name"].as_str() == Some(name))
                .and_then(|cp| cp["containerPort"].as_u64())
                .and_then(|n| u16::try_from(n).ok()),
            _ => None,
        }
        .ok_or_else(|| EnvError::Missing(format!("{kind}: port {}", get["port"])))?;
        Ok(Some(Self {
            path: get["path"].as_str().unwrap_or("/").to_owned(),
            port,
            initial_delay: seconds(&p["initialDelaySeconds"], 0),
            period: seconds(&p["periodSeconds"], 10),
            timeout: seconds(&p["timeoutSeconds"], 1),
            success_threshold: p["successThreshold"].as_u64().unwrap_or(1) as u32,
            failure_threshold: p["failureThreshold"].as_u64().unwrap_or(3) as u32,
        }))
    }

    /// One probe of the pod at `ip`: `Ok` on 200-399, else what was seen.
    pub async fn check(&self, ip: Ipv4Addr) -> Result<u16, String> {
        let attempt = async {
            let mut s = tokio::net::TcpStream::connect(SocketAddr::from((ip, self.port)))
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let request = format!(
                "GET {} HTTP/1.1\r\nHost: {ip}:{}\r\nUser-Agent: kube-probe/1.33\r\nConnection: close\r\n\r\n",
                self.path, self.port
            );
            s.write_all(request.as_bytes())
                .await
                .map_err(|e| format!("write: {e}"))?;
            let mut head = vec![0u8; 64];
            let n = s.read(&mut head).await.map_err(|e| format!("read: {e}"))?;
            let line = String::from_utf8_lossy(&head[..n]).into_owned();
            line.split_whitespace()
                .nth(1)
                .and_then(|c| c.parse::<u16>().ok())
                .ok_or_else(|| format!("not HTTP: {line:?}"))
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(code)) if (200..400).contains(&code) => Ok(code),
            Ok(Ok(code)) => Err(format!("HTTP {code}")),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("timeout after {:?}", self.timeout)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn named_ports_and_the_kubelets_defaults() {
        let c = json!({"ports": [{"name": "http", "containerPort": 8002}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 5}});
        let p = Probe::of(&c, "readinessProbe").ok().flatten();
        assert_eq!(
            p,
            Some(Probe {
                path: "/ready".into(),
                port: 8002,
                initial_delay: Duration::ZERO,
                period: Duration::from_secs(5),
                timeout: Duration::from_secs(1),
                success_threshold: 1,
                failure_threshold: 3,
            })
        );
        assert_eq!(Probe::of(&c, "livenessProbe").ok(), Some(None));
        let exec = json!({"livenessProbe": {"exec": {"command": ["true"]}}});
        assert!(Probe::of(&exec, "livenessProbe").is_err());
    }
}
