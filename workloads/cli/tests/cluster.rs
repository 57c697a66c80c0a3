//! `kubectl apply` of an example pipeline, then a working pipeline: the
//! operator's reconcile runs against the stand-in API server
//! (`operator/tests/support`), and what it applied (ConfigMap, migration
//! Job, Deployments, Services) runs on a one-node cluster of this machine
//! (`tributary_tests::kubelet`: a network namespace per pod, Service
//! addresses forwarding to ready pods, probes as declared, Jobs before
//! the Deployments that wait for them); the node's statuses go back to the
//! API server, so reconcile proceeds as on a cluster. Then real traffic:
//! a user, project and keys made through the auth Service, events sent by
//! posthog-python to the capture Service, the query Service's trend and
//! funnel checked against what was sent, a poison message to the DLQ.
//!
//! What a cluster supplies is written in [`Supplied`], in one place.
//!
//! What it cannot show: admission (webhooks, CEL rules are checked by
//! `operator/tests/admission.rs`), the scheduler (nodeSelector,
//! tolerations, resources), the real API server's watch caches and
//! conflicts, cgroup limits, a read-only root filesystem, image pulls
//! (every image is this build's binary). `infrastructure/kind/` is the
//! path for those.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../operator/tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::runtime::events::Reporter;
use serde_json::{Value, json};
use support::FakeApi;
use tributary_cli::demo::api::{Api, Project, Urls};
use tributary_cli::demo::series_total;
use tributary_operator::crd::TopicSpec;
use tributary_operator::kafka::{Bootstrap, Brokers, Kafka, SystemDns, candidates};
use tributary_operator::lag::{GroupLag, LagError};
use tributary_operator::metrics::Metrics;
use tributary_operator::reconcile::{Context, reconcile};
use tributary_operator::topics::{TopicError, TopicOutcome};
use tributary_tests::clickhouse::{ClickHouseOptions, PrivateClickHouse};
use tributary_tests::kafka::{PrivateBroker, free_port};
use tributary_tests::kubelet::node::{Applied, Node, NodeConfig};
use tributary_tests::{Stack, wait_listening};

/// What the cluster around an example pipeline supplies, that the
/// operator does not make, all of it here: the Secrets' values, the
/// dependencies as the Services the example names, the image.
struct Supplied {
    /// `(secret, key) → value`: the example's Secrets.
    secrets: BTreeMap<(String, String), String>,
    /// The image's `ENV` lines (distroless `cc-debian12`), its CA bundle
    /// holding the cluster's CA (as trust-manager would put it there).
    image_env: BTreeMap<String, String>,
    /// Other DNS names of the one broker: the example's bootstrap hosts
    /// (a StatefulSet's pods, on a cluster).
    kafka_aliases: Vec<String>,
    /// The ClickHouse Service (its name, port, and whether it serves
    /// HTTPS with a certificate for `clickhouse_names`), and the user the
    /// credentials Secret names (`None`: `default`, no password).
    clickhouse: (String, u16, bool),
    clickhouse_names: Vec<String>,
    clickhouse_user: Option<(String, String)>,
    /// Redis's password when the example's URL comes from a Secret.
    redis_password: Option<String>,
}

const REDIS_PASSWORD: &str = "redis-secret";
const CLICKHOUSE_PASSWORD: &str = "clickhouse-secret";

impl Supplied {
    fn for_pipeline(stack: &Stack, p: &Value, ca_bundle: &Path) -> Self {
        let spec = &p["spec"];
        let ns = p["metadata"]["namespace"].as_str().unwrap_or("default");
        let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let mut secrets = vec![
            (
                s(&spec["postgresDsnSecretRef"]["name"]),
                s(&spec["postgresDsnSecretRef"]["key"]),
                // The stack's Postgres, reached as the `postgres` Service.
                stack.postgres_dsn_via("postgres:5432"),
            ),
            (
                s(&spec["jwtSecretRef"]["name"]),
                s(&spec["jwtSecretRef"]["key"]),
                "0123456789abcdef0123456789abcdef0123456789abcdef".to_owned(),
            ),
        ];
        let redis_password = spec["redis"].get("urlSecretRef").map(|r| {
            secrets.push((
                s(&r["name"]),
                s(&r["key"]),
                format!("redis://:{REDIS_PASSWORD}@redis:6379/0"),
            ));
            REDIS_PASSWORD.to_owned()
        });
        let clickhouse_user = spec["clickhouse"].get("credentialsSecretRef").map(|r| {
            secrets.push((s(&r["name"]), "username".into(), "tributary".into()));
            secrets.push((s(&r["name"]), "password".into(), CLICKHOUSE_PASSWORD.into()));
            ("tributary".to_owned(), CLICKHOUSE_PASSWORD.to_owned())
        });
        let url = s(&spec["clickhouse"]["url"]);
        let (scheme, rest) = url.split_once("://").unwrap();
        let (host, port) = rest.trim_end_matches('/').rsplit_once(':').unwrap();
        let service = host.split('.').next().unwrap().to_owned();
        let kafka_aliases = s(&spec["kafka"]["bootstrapServers"])
            .split(',')
            .filter_map(|e| e.trim().rsplit_once(':').map(|(h, _)| h.to_owned()))
            .filter(|h| h != "kafka")
            .flat_map(|h| {
                [
                    format!("{h}.{ns}.svc"),
                    format!("{h}.{ns}.svc.cluster.local"),
                    h,
                ]
            })
            .collect();
        Self {
            secrets: secrets.into_iter().map(|(s, k, v)| ((s, k), v)).collect(),
            image_env: BTreeMap::from([
                (
                    "PATH".to_owned(),
                    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
                ),
                ("SSL_CERT_FILE".to_owned(), ca_bundle.display().to_string()),
            ]),
            kafka_aliases,
            clickhouse_names: vec![
                service.clone(),
                format!("{service}.{ns}.svc"),
                format!("{service}.{ns}.svc.cluster.local"),
            ],
            clickhouse: (service, port.parse().unwrap(), scheme == "https"),
            clickhouse_user,
            redis_password,
        }
    }
}

/// A CA and a server certificate it signed for `names`, with `openssl`;
/// the image's CA bundle (this machine's, plus the CA). Returns
/// `(bundle, certificate, key)`.
fn certificates(dir: &Path, names: &[String]) -> (PathBuf, PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=cluster test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        &format!("/CN={}", names[0]),
    ]);
    let san: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
    std::fs::write(
        dir.join("ext.cnf"),
        format!("subjectAltName={}\n", san.join(",")),
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    let mut bundle =
        std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
    bundle.push_str(&std::fs::read_to_string(dir.join("ca.crt")).unwrap());
    std::fs::write(dir.join("bundle.crt"), bundle).unwrap();
    // The pods run as their own users: the files must be readable.
    for f in ["bundle.crt", "server.crt", "server.key"] {
        let _ = Command::new("chmod")
            .args(["a+r", &dir.join(f).display().to_string()])
            .status();
    }
    (
        dir.join("bundle.crt"),
        dir.join("server.crt"),
        dir.join("server.key"),
    )
}

/// The operator's Kafka connections from the node: the bootstrap's names
/// resolved as the pods' DNS answers them, in the order a pod's resolver
/// tries them (`tributary_operator::kafka::candidates`), since this process
/// cannot use the pods' hosts files.
struct NodeKafka {
    brokers: Brokers,
    dns: BTreeMap<String, Ipv4Addr>,
}

impl NodeKafka {
    fn rewrite(&self, b: &Bootstrap) -> Bootstrap {
        let servers = b
            .servers
            .split(',')
            .map(|entry| {
                let (host, port) = entry.trim().rsplit_once(':').unwrap_or((entry, "9092"));
                let found = candidates(host, &b.namespace, "cluster.local")
                    .iter()
                    .find_map(|n| self.dns.get(n.trim_end_matches('.')).copied());
                match found {
                    Some(ip) => format!("{ip}:{port}"),
                    None => entry.to_owned(),
                }
            })
            .collect::<Vec<_>>()
            .join(",");
        Bootstrap::new(&servers, &b.namespace)
    }
}

impl Kafka for NodeKafka {
    async fn ensure(&self, b: &Bootstrap, spec: &TopicSpec) -> Result<TopicOutcome, TopicError> {
        self.brokers.ensure(&self.rewrite(b), spec).await
    }

    async fn lag(
        &self,
        b: &Bootstrap,
        group: &str,
        topic: &str,
        partitions: i32,
    ) -> Result<GroupLag, LagError> {
        self.brokers
            .lag(&self.rewrite(b), group, topic, partitions)
            .await
    }

    fn retain(&self, in_use: &[(Bootstrap, String)]) {
        let mapped: Vec<(Bootstrap, String)> = in_use
            .iter()
            .map(|(b, g)| (self.rewrite(b), g.clone()))
            .collect();
        self.brokers.retain(&mapped);
    }
}

/// A process of the test's own, killed on drop.
struct Owned(Child);

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One example pipeline on its own node, with its own broker, ClickHouse
/// and Redis.
struct Cluster {
    fake: Arc<FakeApi>,
    ctx: Arc<Context<NodeKafka>>,
    node: Node,
    ns: String,
    name: String,
    _broker: PrivateBroker,
    _redis: Owned,
    clickhouse: PrivateClickHouse,
    kafka: Ipv4Addr,
    logs: PathBuf,
}

fn pipeline_key(ns: &str, name: &str) -> String {
    format!("/apis/tributary.dev/v1alpha1/namespaces/{ns}/analyticspipelines/{name}")
}

impl Cluster {
    async fn start(example: &str) -> Self {
        Self::start_changed(example, |_| {}).await
    }

    /// `example` as a user would change it before applying.
    async fn start_changed(example: &str, change: impl FnOnce(&mut Value)) -> Self {
        let stack = Stack::require();
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../crds/examples")
                .join(example),
        )
        .unwrap();
        let mut p: Value = serde_yaml::from_str(&text).unwrap();
        // `kubectl apply`: the namespace of the context when unset, a uid
        // and the first generation.
        if p["metadata"]["namespace"].is_null() {
            p["metadata"]["namespace"] = json!("default");
        }
        p["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
        p["metadata"]["generation"] = json!(1);
        change(&mut p);
        let ns = p["metadata"]["namespace"].as_str().unwrap().to_owned();
        let name = p["metadata"]["name"].as_str().unwrap().to_owned();

        let logs = std::env::temp_dir().join(tributary_tests::unique_name("cluster-logs"));
        let tls_dir = logs.join("tls");
        let names = vec![
            "clickhouse".to_owned(),
            format!("clickhouse.{ns}.svc"),
            format!("clickhouse.{ns}.svc.cluster.local"),
        ];
        let (bundle, cert, key) = certificates(&tls_dir, &names);
        let supplied = Supplied::for_pipeline(&stack, &p, &bundle);
        let mut node = Node::start(NodeConfig {
            namespace: ns.clone(),
            entrypoint: PathBuf::from(env!("CARGO_BIN_EXE_tributary")),
            image_env: supplied.image_env.clone(),
            secrets: supplied.secrets.clone(),
            logs: logs.clone(),
        })
        .unwrap();

        // Kafka: a broker of this cluster's own on the Service's address.
        let aliases: Vec<&str> = supplied.kafka_aliases.iter().map(String::as_str).collect();
        let kafka = node
            .external("kafka", &aliases, &[(9092, None)])
            .await
            .unwrap();
        let tansu = stack.tansu_bin.clone().expect("the stack's tansu");
        let broker = PrivateBroker::start_on(&tansu, SocketAddr::from((kafka, 9092)));

        let (ch_service, ch_port, https) = supplied.clickhouse.clone();
        assert_eq!(supplied.clickhouse_names[0], ch_service);
        let clickhouse = PrivateClickHouse::start_with(&ClickHouseOptions {
            tls: https.then(|| (cert.clone(), key.clone())),
            users: supplied.clickhouse_user.iter().cloned().collect(),
            ..ClickHouseOptions::default()
        });
        let target = if https {
            clickhouse.https_port.unwrap()
        } else {
            clickhouse.http_port
        };
        node.external(
            &ch_service,
            &[],
            &[(ch_port, Some(SocketAddr::from(([127, 0, 0, 1], target))))],
        )
        .await
        .unwrap();
        let (_, pg_port) = stack.postgres_address();
        node.external(
            "postgres",
            &[],
            &[(5432, Some(SocketAddr::from(([127, 0, 0, 1], pg_port))))],
        )
        .await
        .unwrap();
        let redis_port = free_port();
        let mut redis = Command::new("redis-server");
        if let Some(password) = &supplied.redis_password {
            redis.args(["--requirepass", password]);
        }
        let redis = Owned(
            redis
                .args(["--port", &redis_port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let redis_addr = SocketAddr::from(([127, 0, 0, 1], redis_port));
        wait_listening(redis_addr, "redis", Duration::from_secs(30));
        node.external("redis", &[], &[(6379, Some(redis_addr))])
            .await
            .unwrap();

        let fake = FakeApi::new();
        fake.put(&pipeline_key(&ns, &name), p);
        let kafka_client = NodeKafka {
            brokers: Brokers::new(
                Duration::from_secs(10),
                "cluster.local",
                Box::new(SystemDns {
                    timeout: Duration::from_secs(1),
                }),
            ),
            dns: node.dns(),
        };
        let reporter = Reporter {
            controller: "tributary-operator".into(),
            instance: None,
        };
        let ctx = Arc::new(Context::new(
            fake.client(),
            kafka_client,
            reporter,
            Metrics::default(),
        ));
        Self {
            fake,
            ctx,
            node,
            ns,
            name,
            _broker: broker,
            _redis: redis,
            clickhouse,
            kafka,
            logs,
        }
    }

    fn key(&self) -> String {
        pipeline_key(&self.ns, &self.name)
    }

    fn objects(&self, group: &str, plural: &str) -> Vec<Value> {
        let prefix = format!("{group}/namespaces/{}/{plural}", self.ns);
        self.fake
            .keys(&prefix)
            .iter()
            .filter_map(|k| self.fake.get(k))
            .collect()
    }

    /// One reconcile, then the node brought in line with what is applied,
    /// and its statuses written back.
    async fn step(&mut self) {
        let p = self.fake.pipeline(&self.key());
        if let Err(e) = reconcile(Arc::new(p), Arc::clone(&self.ctx)).await {
            eprintln!("reconcile: {e}");
        }
        let _ = self.fake.take_calls();
        self.autoscale();
        let applied = Applied {
            config_maps: self.objects("/api/v1", "configmaps"),
            services: self.objects("/api/v1", "services"),
            jobs: self.objects("/apis/batch/v1", "jobs"),
            deployments: self.objects("/apis/apps/v1", "deployments"),
        };
        let observed = match self.node.sync(&applied).await {
            Ok(o) => o,
            Err(e) => panic!(
                "the node cannot run what was applied: {e}\n{}",
                self.node.describe_all(20)
            ),
        };
        for (name, status) in observed.deployments {
            self.fake.set_status(
                &format!("/apis/apps/v1/namespaces/{}/deployments/{name}", self.ns),
                status,
            );
        }
        for (name, status) in observed.jobs {
            self.fake.set_status(
                &format!("/apis/batch/v1/namespaces/{}/jobs/{name}", self.ns),
                status,
            );
        }
    }

    /// The HorizontalPodAutoscaler controller: it holds each target's
    /// replicas within `[minReplicas, maxReplicas]` through the scale
    /// subresource (no CPU metrics here, so it never goes above what
    /// there is).
    fn autoscale(&self) {
        for h in self.objects("/apis/autoscaling/v2", "horizontalpodautoscalers") {
            let target = h["spec"]["scaleTargetRef"]["name"]
                .as_str()
                .unwrap_or_default();
            let key = format!("/apis/apps/v1/namespaces/{}/deployments/{target}", self.ns);
            let Some(d) = self.fake.get(&key) else {
                continue;
            };
            let min = h["spec"]["minReplicas"].as_i64().unwrap_or(1);
            let max = h["spec"]["maxReplicas"].as_i64().unwrap_or(min);
            let current = d["spec"]["replicas"].as_i64().unwrap_or(1);
            let wanted = current.clamp(min, max);
            if wanted != current {
                self.fake.scale(&key, wanted, "horizontal-pod-autoscaler");
            }
        }
    }

    fn condition(&self, type_: &str) -> (String, String, String) {
        let status = self.fake.get(&self.key()).unwrap()["status"].clone();
        let c = status["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == type_).cloned())
            .unwrap_or_default();
        let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
        (s("status"), s("reason"), s("message"))
    }

    /// Steps until `done` holds, or fails naming every pod.
    async fn until(&mut self, what: &str, timeout: Duration, done: impl Fn(&Self) -> bool) {
        let (started, deadline) = (Instant::now(), Instant::now() + timeout);
        let mut last = (String::new(), String::new(), String::new());
        loop {
            self.step().await;
            // Each change of the Progressing condition, timed (what a slow
            // start waited for).
            let now = self.condition("Progressing");
            if now != last {
                eprintln!("{:6.1?} {what}: Progressing {now:?}", started.elapsed());
                last = now;
            }
            if done(self) {
                // A slow start is explained by the pods' histories.
                if started.elapsed() > Duration::from_secs(20) {
                    eprintln!(
                        "{what} took {:.1?}:\n{}",
                        started.elapsed(),
                        self.node.describe_all(0)
                    );
                }
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{what}: not within {timeout:?}; Ready={:?} Progressing={:?}\n{}",
                    self.condition("Ready"),
                    self.condition("Progressing"),
                    self.node.describe_all(25)
                );
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    fn ready(&self) -> bool {
        let p = self.fake.get(&self.key()).unwrap();
        self.condition("Ready").0 == "True"
            && p["status"]["observedGeneration"] == p["metadata"]["generation"]
    }

    /// `http://<address>:<port>` of the applied Service of `component`.
    fn url(&self, component: &str) -> String {
        let name = format!("{}-{component}", self.name);
        let service = self
            .fake
            .get(&format!("/api/v1/namespaces/{}/services/{name}", self.ns))
            .unwrap_or_else(|| panic!("no Service {name}"));
        let port = service["spec"]["ports"][0]["port"].as_u64().unwrap();
        let ip = self.node.service(&name).unwrap();
        format!("http://{ip}:{port}")
    }

    /// Pods running now, per owner.
    fn pods_per_owner(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for p in self.node.pods() {
            *out.entry(p.owner.clone()).or_default() += 1;
        }
        out
    }
}

/// The SDK's sender: events with their uuids and times, `sync_mode` so
/// each batch's answer is known; exit 1 on any error the SDK reports.
const SENDER: &str = r#"
import json, sys, datetime
from posthog import Posthog
errors = []
key, host, events = sys.argv[1], sys.argv[2], json.loads(sys.stdin.read())
client = Posthog(key, host=host, sync_mode=True, max_retries=0,
                 on_error=lambda e, batch: errors.append(str(e)))
for e in events:
    client.capture(e["event"], distinct_id=e["distinct_id"], properties=e["properties"],
                   timestamp=datetime.datetime.fromisoformat(e["timestamp"]), uuid=e["uuid"])
client.flush()
client.shutdown()
if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
print(len(events))
"#;

/// `users` users sign up; every other one pays: the funnel's two steps.
fn events(users: usize, tag: &str) -> Vec<Value> {
    let now = chrono::Utc::now() - chrono::Duration::minutes(5);
    let mut out = Vec::new();
    for u in 0..users {
        let id = format!("{tag}-user-{u}");
        out.push(
            json!({"event": "signed up", "distinct_id": id, "properties": {"plan": "free"},
            "timestamp": (now + chrono::Duration::seconds(u as i64)).to_rfc3339(),
            "uuid": uuid::Uuid::new_v4().to_string()}),
        );
        if u % 2 == 0 {
            out.push(
                json!({"event": "paid", "distinct_id": id, "properties": {"amount": 10},
                "timestamp": (now + chrono::Duration::seconds(u as i64 + 60)).to_rfc3339(),
                "uuid": uuid::Uuid::new_v4().to_string()}),
            );
        }
    }
    out
}

fn send_with_sdk(key: &str, capture: &str, batch: &[Value]) -> usize {
    let stack = Stack::require();
    let python = stack.python.expect("the stack's Python (with posthog)");
    let mut child = Command::new(python)
        .args(["-c", SENDER, key, capture])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(batch).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "posthog-python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn trend_request() -> Value {
    let today = chrono::Utc::now().date_naive();
    json!({
        "series": [{"event": "signed up", "math": "total"}, {"event": "paid", "math": "total"}],
        "date_from": (today - chrono::Duration::days(1)).to_string(),
        "date_to": (today + chrono::Duration::days(1)).to_string(),
        "interval": "day",
        "timezone": "UTC",
    })
}

struct Figures {
    sent: usize,
    acknowledged: usize,
    visible_after: Duration,
}

/// A project through auth, events through capture with posthog-python,
/// then the trend and funnel polled until they show exactly what was sent.
async fn traffic(c: &Cluster, users: usize) -> (Project, Figures) {
    let api = Api::new(Urls {
        auth: c.url("auth"),
        capture: c.url("capture"),
        query: c.url("query"),
    })
    .unwrap();
    let tag = tributary_tests::unique_name("team");
    let project = api
        .project(&format!("{tag}@example.com"), "correct horse battery", &tag)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "a project through the auth Service: {e}\n{}",
                c.node.describe_all(15)
            )
        });
    let batch = events(users, &tag);
    let (key, capture) = (project.capture_key.clone(), c.url("capture"));
    let sent_at = Instant::now();
    let to_send = batch.clone();
    let acknowledged = tokio::task::spawn_blocking(move || send_with_sdk(&key, &capture, &to_send))
        .await
        .unwrap();
    let signed = users as u64;
    let paid = users.div_ceil(2) as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = api
            .query(&project.query_key, "trend", &trend_request())
            .await;
        if let Ok(a) = &answer
            && (series_total(a, 0), series_total(a, 1)) == (signed, paid)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the trend never showed {signed} sign-ups and {paid} payments: {answer:?}\n{}",
            c.node.describe_all(15)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let visible_after = sent_at.elapsed();
    let today = chrono::Utc::now().date_naive();
    let funnel = api
        .query(
            &project.query_key,
            "funnel",
            &json!({"steps": [{"event": "signed up"}, {"event": "paid"}],
                "date_from": (today - chrono::Duration::days(1)).to_string(),
                "date_to": (today + chrono::Duration::days(1)).to_string(), "timezone": "UTC"}),
        )
        .await
        .unwrap();
    assert_eq!(
        (
            funnel["steps"][0]["count"].as_u64(),
            funnel["steps"][1]["count"].as_u64()
        ),
        (Some(signed), Some(paid)),
        "{funnel}"
    );
    (
        project,
        Figures {
            sent: batch.len(),
            acknowledged,
            visible_after,
        },
    )
}

/// Rows in the pipeline's events table: all, and distinct uuids.
async fn stored(c: &Cluster, database: &str) -> (u64, u64) {
    let client = tributary_tests::clickhouse::client(&c.clickhouse.url()).with_database(database);
    client
        .query("SELECT count(), uniqExact(uuid) FROM events")
        .fetch_one::<(u64, u64)>()
        .await
        .unwrap()
}

/// A record no consumer can decode, straight onto the events topic; it
/// must reach the DLQ.
async fn poison_reaches_the_dlq(c: &Cluster, topic: &str, dlq: &str) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let bootstrap = format!("{}:9092", c.kafka);
    let producer: FutureProducer = tributary_tests::kafka::client_config(&bootstrap)
        .create()
        .unwrap();
    let marker = tributary_tests::unique_name("poison");
    producer
        .send(
            FutureRecord::to(topic)
                .key("poison")
                .payload(&format!("{{not json {marker}")),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let seen = tributary_tests::kafka::read_topic(&bootstrap, dlq, 1, Duration::ZERO).await;
    assert!(
        seen.iter()
            .any(|r| String::from_utf8_lossy(&r.payload).contains(&marker)),
        "the poison record is not on {dlq}: {seen:?}"
    );
}

/// Applies `example`, runs it until Ready, checks the Job ran first, sends
/// traffic, checks what was stored, a poison record; prints the figures.
async fn run_example(example: &str) -> Cluster {
    let started = Instant::now();
    let mut c = Cluster::start(example).await;
    let supplied_after = started.elapsed();
    c.until(
        "the pipeline Ready",
        Duration::from_secs(120),
        Cluster::ready,
    )
    .await;
    let up_after = started.elapsed() - supplied_after;

    // The migration Job ran to completion before any Deployment's pod.
    c.assert_migration_first(started);

    let p = c.fake.get(&c.key()).unwrap();
    let kafka = &p["spec"]["kafka"];
    let topic = kafka["events"]["name"]
        .as_str()
        .unwrap_or("events")
        .to_owned();
    let dlq = kafka["dlq"]["name"]
        .as_str()
        .unwrap_or("events-dlq")
        .to_owned();
    let database = p["spec"]["clickhouse"]["database"]
        .as_str()
        .unwrap_or("tributary")
        .to_owned();

    let (_project, figures) = traffic(&c, 40).await;
    let (rows, uuids) = stored(&c, &database).await;
    assert_eq!((rows, uuids), (figures.sent as u64, figures.sent as u64));
    poison_reaches_the_dlq(&c, &topic, &dlq).await;

    println!(
        "{example}: dependencies up in {supplied_after:.1?}, then Ready in {:.1?}; pods {:?}; \
         events sent {}, acknowledged {}, stored {rows} ({uuids} distinct), visible in the trend \
         after {:.1?}",
        up_after,
        c.pods_per_owner(),
        figures.sent,
        figures.acknowledged,
        figures.visible_after
    );
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_minimal_example_runs_as_applied_and_answers() {
    let mut c = run_example("minimal.yaml").await;
    c.node.shutdown().await;
    let _ = std::fs::remove_dir_all(&c.logs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_full_example_runs_as_applied_and_answers() {
    let mut c = run_example("full.yaml").await;
    let pods = c.pods_per_owner();
    // The HorizontalPodAutoscaler's minimum for capture; the consumer's
    // scaling minimum.
    assert_eq!(pods.get("analytics-capture"), Some(&3), "{pods:?}");
    assert_eq!(pods.get("analytics-consumer"), Some(&2), "{pods:?}");
    c.node.shutdown().await;
    let _ = std::fs::remove_dir_all(&c.logs);
}

/// Members of `group` as the group coordinator answers.
fn group_members(bootstrap: &str, group: &str) -> usize {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let client: BaseConsumer = tributary_tests::kafka::client_config(bootstrap)
        .create()
        .unwrap();
    client
        .fetch_group_list(Some(group), Duration::from_secs(10))
        .map(|l| l.groups().first().map_or(0, |g| g.members().len()))
        .unwrap_or(0)
}

/// Waits until `group` has `n` members; returns `n`.
async fn until_members(bootstrap: &str, group: &str, n: usize) -> usize {
    tributary_tests::poll_until(
        &format!("{n} members in {group}"),
        Duration::from_secs(60),
        || {
            let (b, g) = (bootstrap.to_owned(), group.to_owned());
            async move {
                let seen = tokio::task::spawn_blocking(move || group_members(&b, &g))
                    .await
                    .unwrap_or(0);
                (seen == n).then_some(n)
            }
        },
    )
    .await
}

impl Cluster {
    fn deployment(&self, component: &str) -> Value {
        self.fake
            .get(&format!(
                "/apis/apps/v1/namespaces/{}/deployments/{}-{component}",
                self.ns, self.name
            ))
            .unwrap_or_default()
    }

    /// Ready pods of `component`'s Deployment on the node.
    fn ready_pods(&self, component: &str) -> usize {
        let owner = format!("{}-{component}", self.name);
        self.node
            .pods()
            .iter()
            .filter(|p| p.owner == owner && p.ready.load(std::sync::atomic::Ordering::SeqCst))
            .count()
    }

    /// The last migration pod started after `since` exited before any
    /// other pod started after `since`: the Job ran to completion first.
    fn assert_migration_first(&self, since: Instant) {
        let all = self.node.started_pods();
        let is_job =
            |p: &&Arc<tributary_tests::kubelet::pod::PodState>| p.owner.contains("-migrate-");
        let job = all
            .iter()
            .filter(is_job)
            .filter(|p| p.started > since)
            .max_by_key(|p| p.started)
            .unwrap_or_else(|| panic!("no migration pod ran:\n{}", self.node.describe_all(10)));
        let finished = job.exited_at.lock().unwrap().expect("the Job's pod exited");
        for p in all.iter().filter(|p| !is_job(p) && p.started > since) {
            assert!(
                p.started > finished,
                "{} started before the migration finished",
                p.name
            );
        }
    }

    /// Changes the stored pipeline as `kubectl apply` of an edited file
    /// would: a new generation.
    fn apply_change(&self, change: impl FnOnce(&mut Value)) {
        let mut p = self.fake.get(&self.key()).unwrap();
        change(&mut p);
        let g = p["metadata"]["generation"].as_i64().unwrap_or(1);
        p["metadata"]["generation"] = json!(g + 1);
        self.fake.put(&self.key(), p);
    }

    /// Steps until the events table holds `n` distinct events (and no
    /// other); returns the rows written, duplicates of a redelivery
    /// included (the table collapses them, queries count by uuid).
    async fn until_stored(&mut self, n: u64, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            self.step().await;
            let (rows, uuids) = stored(self, "tributary").await;
            if uuids >= n {
                assert_eq!(uuids, n, "only the events sent are stored");
                return rows;
            }
            assert!(
                Instant::now() < deadline,
                "{rows} of {n} events stored within {within:?}\n{}",
                self.node.describe_all(15)
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// Events with uuids through capture's `/batch`, `per` at a time, until
/// `stop`; returns the uuids capture acknowledged.
async fn send_until(
    api: Arc<Api>,
    key: String,
    tag: String,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<String> {
    let mut acked = Vec::new();
    let mut n = 0usize;
    while !*stop.borrow() {
        let batch: Vec<Value> = (0..20)
            .map(|i| {
                n += 1;
                json!({"event": "rolled", "distinct_id": format!("{tag}-{}", (n + i) % 50),
                    "uuid": uuid::Uuid::new_v4().to_string(), "properties": {}})
            })
            .collect();
        let uuids: Vec<String> = batch
            .iter()
            .map(|e| e["uuid"].as_str().unwrap().to_owned())
            .collect();
        if api.capture(&key, batch).await.is_ok() {
            acked.extend(uuids);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    acked
}

/// The minimal example with lag scaling on, as a user would turn it on:
/// a ClickHouse stall builds real lag, the operator scales the consumer
/// up, the node runs the new pods and the group has that many members;
/// lag drains, every event is stored once, and the replicas come back
/// down. Then an upgrade (image tag and a setting): the new migration Job
/// runs before any new pod, and every event capture acknowledged during
/// the rollout is on the topic, then stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scaling_and_an_upgrade_run_as_applied() {
    let mut c = Cluster::start_changed("minimal.yaml", |p| {
        p["spec"]["consumer"]["scaling"] = json!({"minReplicas": 1, "maxReplicas": 4,
            "lagPerReplica": 300, "stabilizationWindowSeconds": 0, "pollIntervalSeconds": 5});
        // The stack's broker (tansu 0.6) keeps a leader that leaves the
        // group in the middle of a rebalance and assigns no partition
        // again, however long one waits: seen here for over three minutes
        // when the rollout replaced the consumers while lag scaled them.
        // Real Kafka picks a new leader. Consumers that exit without
        // leaving are dropped after the session timeout, leader or not.
        p["spec"]["consumer"]["env"] =
            json!([{"name": "CONSUMER_LEAVE_GROUP_ON_STOP", "value": "false"}]);
    })
    .await;
    c.until(
        "the pipeline Ready",
        Duration::from_secs(120),
        Cluster::ready,
    )
    .await;
    assert_eq!(c.ready_pods("consumer"), 1);
    let bootstrap = format!("{}:9092", c.kafka);
    let api = Arc::new(
        Api::new(Urls {
            auth: c.url("auth"),
            capture: c.url("capture"),
            query: c.url("query"),
        })
        .unwrap(),
    );
    let tag = tributary_tests::unique_name("scale");
    let project = api
        .project(&format!("{tag}@example.com"), "correct horse battery", &tag)
        .await
        .unwrap();
    // Commits first, so the lag is counted from them.
    let first = events(10, &tag);
    let acked = {
        let (k, u, b) = (project.capture_key.clone(), c.url("capture"), first.clone());
        tokio::task::spawn_blocking(move || send_with_sdk(&k, &u, &b))
            .await
            .unwrap()
    };
    c.until_stored(acked as u64, Duration::from_secs(60)).await;

    // ClickHouse stalls: the consumers cannot write, lag builds.
    c.node.block("clickhouse", true);
    let spike = events(1400, &tag);
    let spiked = {
        let (k, u, b) = (project.capture_key.clone(), c.url("capture"), spike.clone());
        tokio::task::spawn_blocking(move || send_with_sdk(&k, &u, &b))
            .await
            .unwrap()
    };
    let up = Instant::now();
    c.until("the consumer scaled to 4", Duration::from_secs(90), |c| {
        c.deployment("consumer")["spec"]["replicas"] == 4 && c.ready_pods("consumer") == 4
    })
    .await;
    let scaled_after = up.elapsed();
    let members_up = until_members(&bootstrap, "event-consumers", 4).await;

    c.node.block("clickhouse", false);
    let total = (acked + spiked) as u64;
    c.until_stored(total, Duration::from_secs(120)).await;
    let down = Instant::now();
    c.until("the consumer back to 1", Duration::from_secs(90), |c| {
        c.deployment("consumer")["spec"]["replicas"] == 1
            && c.node
                .pods()
                .iter()
                .filter(|p| p.owner.ends_with("-consumer"))
                .count()
                == 1
    })
    .await;
    let scaled_down_after = down.elapsed();
    let members_down = until_members(&bootstrap, "event-consumers", 1).await;

    // The upgrade, with traffic all along.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sender = tokio::spawn(send_until(
        Arc::clone(&api),
        project.capture_key.clone(),
        tag.clone(),
        stop_rx,
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let old_pods: Vec<String> = c.node.pods().iter().map(|p| p.name.clone()).collect();
    let rollout = Instant::now();
    c.apply_change(|p| {
        p["spec"]["image"] = json!("ghcr.io/tributary-dev/tributary:0.1.1");
        p["spec"]["query"]["env"] = json!([{"name": "QUERY_TIMEOUT_SECS", "value": "20"}]);
    });
    c.until("the upgrade rolled out", Duration::from_secs(180), |c| {
        c.ready() && c.node.pods().iter().all(|p| !old_pods.contains(&p.name))
    })
    .await;
    let rolled_after = rollout.elapsed();
    let _ = stop_tx.send(true);
    let during = sender.await.unwrap();
    assert!(
        during.len() > 100,
        "only {} events acknowledged during the rollout",
        during.len()
    );

    // The new Job ran to completion before any pod of the new templates.
    c.assert_migration_first(rollout);

    // Nothing capture acknowledged during its rollout is lost: every
    // acknowledged event is on the events topic.
    let expected = total + during.len() as u64;
    let on_topic = tributary_tests::kafka::read_topic(
        &bootstrap,
        "events",
        usize::try_from(expected).unwrap(),
        Duration::from_secs(1),
    )
    .await;
    let payloads: std::collections::HashSet<String> = on_topic
        .iter()
        .filter_map(|r| {
            let v: Value = serde_json::from_slice(&r.payload).ok()?;
            v["uuid"].as_str().map(str::to_owned)
        })
        .collect();
    let missing: Vec<&String> = during.iter().filter(|u| !payloads.contains(*u)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} events acknowledged during the rollout are not on the topic: {:?}",
        missing.len(),
        during.len(),
        &missing[..missing.len().min(5)]
    );
    // ... and stored, each once as the query API counts them. The lag of
    // the rollout scales the consumer up and down while it runs: members
    // stop in the middle of rebalances, each moving its partitions after
    // the session timeout (10 s), in turn: seen to take under a minute; the
    // window leaves room for a loaded machine.
    let rows = c.until_stored(expected, Duration::from_secs(180)).await;
    let today = chrono::Utc::now().date_naive();
    let trend = api
        .query(
            &project.query_key,
            "trend",
            &json!({"series": [{"event": "signed up"}, {"event": "paid"}, {"event": "rolled"}],
                "date_from": (today - chrono::Duration::days(1)).to_string(),
                "date_to": (today + chrono::Duration::days(1)).to_string(),
                "interval": "day", "timezone": "UTC"}),
        )
        .await
        .unwrap();
    let shown: u64 = (0..3).map(|i| series_total(&trend, i)).sum();
    assert_eq!(
        shown, expected,
        "the query API counts each event once: {trend}"
    );
    println!(
        "scaling: 1 -> 4 consumers {scaled_after:.1?} after the lag spike ({spiked} events), \
         {members_up} group members, back to {members_down} in {scaled_down_after:.1?}; \
         upgrade rolled out in {rolled_after:.1?} with {} events acknowledged during it; \
         {expected} events stored ({rows} rows written, redeliveries collapse), {shown} shown; \
         pods {:?}",
        during.len(),
        c.pods_per_owner()
    );
    c.node.shutdown().await;
    let _ = std::fs::remove_dir_all(&c.logs);
}
