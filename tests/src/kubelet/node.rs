//! A one-node cluster's controllers and kubelet, for the objects a test
//! takes from the API server: Services get an address and forward to their
//! ready pods, Jobs run their pod to completion (a new pod per failure, up
//! to `backoffLimit`), Deployments keep `spec.replicas` pods of their
//! current template, replacing old ones by the rolling-update rules
//! (`maxSurge`, `maxUnavailable`); [`Node::sync`] answers the statuses a
//! cluster would write back.
//!
//! What it cannot show: the scheduler (nodeSelector, tolerations and
//! resources are not enforced), admission, cgroup limits, a read-only root
//! filesystem and volumes (the processes see this machine's files), image
//! pulls (every image is this build's binary).

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinHandle;

use super::env::{EnvError, Namespace, Pod};
use super::net::{NetError, Network};
use super::pod::{Exit, Launch, PodState, RunningPod, log_path};
use super::service::{Endpoints, ServicePort};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("{0}: {1}")]
    Pod(String, EnvError),
    #[error("service {0}: {1}")]
    Service(String, std::io::Error),
}

/// What the cluster holds that the node runs, as JSON objects.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    pub config_maps: Vec<Value>,
    pub services: Vec<Value>,
    pub jobs: Vec<Value>,
    pub deployments: Vec<Value>,
}

/// Statuses to write back, by object name.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub deployments: BTreeMap<String, Value>,
    pub jobs: BTreeMap<String, Value>,
}

/// What the node is told that a cluster would supply.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub namespace: String,
    /// The image's entrypoint: this build's `tributary`.
    pub entrypoint: PathBuf,
    /// The image's own environment (its `ENV` lines).
    pub image_env: BTreeMap<String, String>,
    /// Secret values by `(secret, key)`.
    pub secrets: BTreeMap<(String, String), String>,
    /// Where pods' logs go.
    pub logs: PathBuf,
}

struct Service {
    address: Ipv4Addr,
    object: Value,
    selector: Option<BTreeMap<String, String>>,
    /// `(endpoints, targetPort)` per port.
    routes: Vec<(Endpoints, Value)>,
    ports: Vec<ServicePort>,
    /// An external Service's targets, per port.
    targets: Vec<SocketAddr>,
    aliases: Vec<String>,
}

/// Each selecting Service's selector and `(endpoints, targetPort)` per port,
/// as kube-proxy keeps them.
type Routes = Arc<Mutex<Vec<(BTreeMap<String, String>, Vec<(Endpoints, Value)>)>>>;

struct JobRun {
    pods: Vec<RunningPod>,
    failed: u32,
    done: Option<bool>,
}

/// The node; everything it started is stopped when it is dropped.
pub struct Node {
    cfg: NodeConfig,
    net: Arc<Network>,
    services: BTreeMap<String, Service>,
    registry: Arc<Mutex<Vec<Arc<PodState>>>>,
    routes: Routes,
    deployments: BTreeMap<String, Vec<RunningPod>>,
    jobs: BTreeMap<String, JobRun>,
    stopping: Vec<JoinHandle<()>>,
    hosts: String,
    config_maps: Vec<Value>,
    endpoints_task: JoinHandle<()>,
    counter: u64,
}

fn labels(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect()
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn name_of(o: &Value) -> String {
    o["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A template's hash, as `pod-template-hash` tells ReplicaSets apart.
fn template_hash(template: &Value) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    template.to_string().hash(&mut h);
    format!("{:010x}", h.finish() & 0xff_ffff_ffff)
}

/// `intOrString` of a rolling update against `replicas`: percentages round
/// up for surge, down for unavailable.
fn int_or_percent(v: &Value, replicas: i64, default: &str, up: bool) -> i64 {
    let text = match v {
        Value::Number(n) => return n.as_i64().unwrap_or(0),
        Value::String(s) => s.clone(),
        _ => default.to_owned(),
    };
    let pct: i64 = text.trim_end_matches('%').parse().unwrap_or(25);
    let exact = replicas * pct;
    if up { (exact + 99) / 100 } else { exact / 100 }
}

/// One step of a Deployment's rolling update.
#[derive(Debug, PartialEq, Eq)]
struct Rollout {
    /// Pods to stop, by index.
    retire: Vec<usize>,
    /// New pods to start.
    start: i64,
}

/// What the Deployment controller does next for `replicas` with `surge`
/// and `unavailable`, given each pod's `(of the current template, ready)`
/// in start order: old pods that are not ready go; old ready ones while
/// enough stay available (all once the new ones are ready); new ones above
/// `replicas` (not-ready, then the newest, first); new ones start within
/// the surge.
fn rollout_step(replicas: i64, surge: i64, unavailable: i64, pods: &[(bool, bool)]) -> Rollout {
    let count = |f: &dyn Fn(&(bool, bool)) -> bool| pods.iter().filter(|p| f(p)).count() as i64;
    let indices = |f: &dyn Fn(&(bool, bool)) -> bool| -> Vec<usize> {
        (0..pods.len()).filter(|i| f(&pods[*i])).collect()
    };
    let mut retire = indices(&|&(new, ready)| !new && !ready);
    let available = count(&|&(_, ready)| ready);
    let new_ready = count(&|&(new, ready)| new && ready);
    let old_ready = indices(&|&(new, ready)| !new && ready);
    let removable = if new_ready >= replicas {
        old_ready.len()
    } else {
        usize::try_from((available - (replicas - unavailable)).max(0)).unwrap_or(0)
    };
    retire.extend(old_ready.iter().take(removable));
    let mut new = indices(&|&(new, _)| new);
    // Ready ones first, each group in start order: the tail goes.
    new.sort_by_key(|i| !pods[*i].1);
    let excess = (new.len() as i64 - replicas).max(0) as usize;
    retire.extend(new.iter().rev().take(excess));
    let total = (pods.len() - retire.len()) as i64;
    let new_left = (new.len() - excess) as i64;
    Rollout {
        retire,
        start: (replicas + surge - total).min(replicas - new_left).max(0),
    }
}

impl Node {
    pub fn start(cfg: NodeConfig) -> Result<Self, NodeError> {
        std::fs::create_dir_all(&cfg.logs).map_err(|e| NodeError::Service("logs".into(), e))?;
        let registry: Arc<Mutex<Vec<Arc<PodState>>>> = Arc::default();
        let routes: Routes = Arc::default();
        let (r, p) = (Arc::clone(&routes), Arc::clone(&registry));
        // kube-proxy: every 100 ms, each Service port's endpoints are its
        // selected pods that are ready and not terminating.
        let endpoints_task = tokio::spawn(async move {
            loop {
                let pods = p.lock().unwrap_or_else(|e| e.into_inner()).clone();
                for (selector, ports) in r.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                    for (endpoints, target) in ports {
                        let ready = pods
                            .iter()
                            .filter(|s| selects(selector, &s.labels))
                            .filter(|s| {
                                s.ready.load(Ordering::SeqCst)
                                    && !s.terminating.load(Ordering::SeqCst)
                            })
                            .filter_map(|s| {
                                let port = match target {
                                    Value::Number(n) => u16::try_from(n.as_u64()?).ok()?,
                                    Value::String(name) => *s.ports.get(name)?,
                                    _ => return None,
                                };
                                Some(SocketAddr::from((s.address, port)))
                            })
                            .collect();
                        endpoints.set(ready);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Ok(Self {
            cfg,
            net: Arc::new(Network::create()?),
            services: BTreeMap::new(),
            registry,
            routes,
            deployments: BTreeMap::new(),
            jobs: BTreeMap::new(),
            stopping: Vec::new(),
            hosts: String::new(),
            config_maps: Vec::new(),
            endpoints_task,
            counter: 0,
        })
    }

    /// A Service outside the applied objects (what the cluster already
    /// has: the examples' Kafka, ClickHouse, ...), named `name` and
    /// `aliases`; each `(port, target)` forwards to `target`, or, with
    /// `None`, is left for a server the caller binds on the address.
    pub async fn external(
        &mut self,
        name: &str,
        aliases: &[&str],
        ports: &[(u16, Option<SocketAddr>)],
    ) -> Result<Ipv4Addr, NodeError> {
        let address = self.net.service_address()?;
        let mut listeners = Vec::new();
        for (port, target) in ports {
            if let Some(target) = target {
                let eps = Endpoints::default();
                eps.set(vec![*target]);
                let sp = ServicePort::start(SocketAddr::from((address, *port)), eps)
                    .await
                    .map_err(|e| NodeError::Service(name.to_owned(), e))?;
                listeners.push(sp);
            }
        }
        let object = json!({"metadata": {"name": name}, "spec": {"clusterIP": address.to_string(),
            "ports": ports.iter().map(|(p, _)| json!({"port": p, "protocol": "TCP"})).collect::<Vec<_>>()}});
        self.services.insert(
            name.to_owned(),
            Service {
                address,
                object,
                selector: None,
                routes: Vec::new(),
                ports: listeners,
                targets: ports.iter().filter_map(|(_, t)| *t).collect(),
                aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
            },
        );
        self.write_hosts();
        Ok(address)
    }

    /// Every name the pods resolve, with its address (the hosts table).
    pub fn dns(&self) -> BTreeMap<String, Ipv4Addr> {
        self.names()
            .into_iter()
            .flat_map(|(ip, names)| names.into_iter().map(move |n| (n, ip)))
            .collect()
    }

    /// An external Service stops answering (`true`: its connections are
    /// cut and new ones refused) or answers again.
    pub fn block(&self, name: &str, blocked: bool) {
        let Some(s) = self.services.get(name) else {
            return;
        };
        for (port, target) in s.ports.iter().zip(&s.targets) {
            if blocked {
                port.endpoints.set(Vec::new());
                port.cut();
            } else {
                port.endpoints.set(vec![*target]);
            }
        }
    }

    /// A Service's address.
    pub fn service(&self, name: &str) -> Option<Ipv4Addr> {
        self.services.get(name).map(|s| s.address)
    }

    /// What the cluster's DNS answers a pod: every Service under its short
    /// and qualified names, and the aliases given.
    fn names(&self) -> Vec<(Ipv4Addr, Vec<String>)> {
        let ns = &self.cfg.namespace;
        self.services
            .iter()
            .map(|(name, s)| {
                let mut names = vec![
                    name.clone(),
                    format!("{name}.{ns}"),
                    format!("{name}.{ns}.svc"),
                    format!("{name}.{ns}.svc.cluster.local"),
                ];
                names.extend(s.aliases.iter().cloned());
                (s.address, names)
            })
            .collect()
    }

    fn hosts_table(&self) -> String {
        let mut out = String::from("127.0.0.1\tlocalhost\n");
        for (ip, names) in self.names() {
            out.push_str(&format!("{ip}\t{}\n", names.join(" ")));
        }
        out
    }

    /// Rewrites every pod's hosts file in place (the bind mount keeps the
    /// file, so a rewrite is seen; a rename would not be).
    fn write_hosts(&mut self) {
        let table = self.hosts_table();
        if table == self.hosts {
            return;
        }
        self.hosts = table;
        for pod in self.all_pods() {
            let _ = std::fs::write(
                PathBuf::from("/etc/netns")
                    .join(&pod.net.namespace)
                    .join("hosts"),
                self.pod_hosts(&pod.state.name, pod.state.address),
            );
        }
    }

    fn pod_hosts(&self, name: &str, address: Ipv4Addr) -> String {
        format!("{}{address}\t{name}\n", self.hosts)
    }

    fn all_pods(&self) -> Vec<&RunningPod> {
        self.deployments
            .values()
            .flatten()
            .chain(self.jobs.values().flat_map(|j| j.pods.iter()))
            .collect()
    }

    /// The pods running now (not terminating), by owner.
    pub fn pods(&self) -> Vec<Arc<PodState>> {
        self.registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|s| !s.terminating.load(Ordering::SeqCst))
            .cloned()
            .collect()
    }

    /// Every pod not yet stopped and removed, terminating ones too.
    pub fn started_pods(&self) -> Vec<Arc<PodState>> {
        self.registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every pod not yet removed (for a failure's description).
    pub fn describe_all(&self, lines: usize) -> String {
        self.registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|s| s.describe(lines))
            .collect::<Vec<_>>()
            .join("\n\n")
    }

    fn namespace(&self) -> Namespace {
        Namespace {
            name: self.cfg.namespace.clone(),
            services: self.services.values().map(|s| s.object.clone()).collect(),
            config_maps: self.config_maps.clone(),
            secrets: self.cfg.secrets.clone(),
        }
    }

    fn launch(
        &mut self,
        owner: &str,
        name: String,
        template: &Value,
    ) -> Result<RunningPod, NodeError> {
        let spec = template["spec"].clone();
        let pod_labels = labels(&template["metadata"]["labels"]);
        let net = self.net.pod(&self.hosts)?;
        let _ = std::fs::write(
            PathBuf::from("/etc/netns")
                .join(&net.namespace)
                .join("hosts"),
            self.pod_hosts(&name, net.address),
        );
        let containers = spec["containers"].as_array().cloned().unwrap_or_default();
        let Some(container) = containers.first() else {
            return Err(NodeError::Pod(
                name,
                EnvError::Unsupported("no container".into()),
            ));
        };
        let mut env = self.cfg.image_env.clone();
        let pod = Pod {
            name: name.clone(),
            ip: net.address.to_string(),
            spec: &spec,
        };
        env.extend(
            self.namespace()
                .container_env(&pod, container)
                .map_err(|e| NodeError::Pod(name.clone(), e))?,
        );
        let launch = Launch {
            log: log_path(&self.cfg.logs, &name),
            name: name.clone(),
            owner: owner.to_owned(),
            labels: pod_labels,
            spec,
            env,
            entrypoint: self.cfg.entrypoint.clone(),
        };
        let running = RunningPod::start(launch, net).map_err(|e| NodeError::Pod(name, e))?;
        self.registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::clone(&running.state));
        Ok(running)
    }

    fn suffix(&mut self) -> String {
        self.counter += 1;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.counter, std::process::id()).hash(&mut h);
        format!("{:05x}", h.finish() & 0xfffff)
    }

    /// Stops `pod` in the background (terminating at once), then frees its
    /// network.
    fn retire(&mut self, mut pod: RunningPod) {
        pod.state.terminating.store(true, Ordering::SeqCst);
        let (net, registry) = (Arc::clone(&self.net), Arc::clone(&self.registry));
        self.stopping.push(tokio::spawn(async move {
            pod.stop().await;
            net.remove_pod(&pod.net);
            registry
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|s| !Arc::ptr_eq(s, &pod.state));
        }));
    }

    /// Brings what runs in line with `applied`, one step, and answers the
    /// statuses a cluster would write back.
    pub async fn sync(&mut self, applied: &Applied) -> Result<Observed, NodeError> {
        self.config_maps = applied.config_maps.clone();
        self.sync_services(applied).await?;
        let mut observed = Observed::default();
        self.sync_jobs(applied, &mut observed)?;
        self.sync_deployments(applied, &mut observed)?;
        self.stopping.retain(|t| !t.is_finished());
        Ok(observed)
    }

    async fn sync_services(&mut self, applied: &Applied) -> Result<(), NodeError> {
        let wanted: BTreeSet<String> = applied.services.iter().map(name_of).collect();
        self.services
            .retain(|name, s| s.selector.is_none() || wanted.contains(name));
        for object in &applied.services {
            let name = name_of(object);
            if self.services.contains_key(&name) {
                continue;
            }
            let address = self.net.service_address()?;
            let mut ports = Vec::new();
            let mut routes = Vec::new();
            for p in object["spec"]["ports"].as_array().into_iter().flatten() {
                let port = p["port"]
                    .as_u64()
                    .and_then(|n| u16::try_from(n).ok())
                    .unwrap_or(0);
                let eps = Endpoints::default();
                let target = p.get("targetPort").cloned().unwrap_or(json!(port));
                ports.push(
                    ServicePort::start(SocketAddr::from((address, port)), eps.clone())
                        .await
                        .map_err(|e| NodeError::Service(name.clone(), e))?,
                );
                routes.push((eps, target));
            }
            let mut with_ip = object.clone();
            with_ip["spec"]["clusterIP"] = json!(address.to_string());
            self.services.insert(
                name,
                Service {
                    address,
                    object: with_ip,
                    selector: Some(labels(&object["spec"]["selector"])),
                    routes,
                    ports,
                    targets: Vec::new(),
                    aliases: Vec::new(),
                },
            );
        }
        *self.routes.lock().unwrap_or_else(|e| e.into_inner()) = self
            .services
            .values()
            .filter_map(|s| Some((s.selector.clone()?, s.routes.clone())))
            .collect();
        self.write_hosts();
        Ok(())
    }

    fn sync_jobs(&mut self, applied: &Applied, observed: &mut Observed) -> Result<(), NodeError> {
        let wanted: BTreeSet<String> = applied.jobs.iter().map(name_of).collect();
        let gone: Vec<String> = self
            .jobs
            .keys()
            .filter(|k| !wanted.contains(*k))
            .cloned()
            .collect();
        for name in gone {
            if let Some(run) = self.jobs.remove(&name) {
                for pod in run.pods {
                    self.retire(pod);
                }
            }
        }
        for job in &applied.jobs {
            let name = name_of(job);
            let backoff_limit = job["spec"]["backoffLimit"].as_u64().unwrap_or(6) as u32;
            if !self.jobs.contains_key(&name) {
                let pod = format!("{name}-{}", self.suffix());
                let running = self.launch(&name, pod, &job["spec"]["template"])?;
                self.jobs.insert(
                    name.clone(),
                    JobRun {
                        pods: vec![running],
                        failed: 0,
                        done: None,
                    },
                );
            }
            let Some(run) = self.jobs.get_mut(&name) else {
                continue;
            };
            let mut retry = false;
            if run.done.is_none()
                && let Some(last) = run.pods.last()
                && last.finished()
            {
                match last.state.exits().last() {
                    Some(Exit::Code(0)) => run.done = Some(true),
                    _ => {
                        run.failed += 1;
                        if run.failed > backoff_limit {
                            run.done = Some(false);
                        } else {
                            retry = true;
                        }
                    }
                }
            }
            let status = match run.done {
                Some(true) => json!({"succeeded": 1, "failed": run.failed,
                    "conditions": [{"type": "Complete", "status": "True"}]}),
                Some(false) => json!({"failed": run.failed,
                    "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}),
                None => json!({"active": 1, "failed": run.failed}),
            };
            observed.jobs.insert(name.clone(), status);
            if retry {
                let pod = format!("{name}-{}", self.suffix());
                let running = self.launch(&name, pod, &job["spec"]["template"])?;
                if let Some(run) = self.jobs.get_mut(&name) {
                    run.pods.push(running);
                }
            }
        }
        Ok(())
    }

    fn sync_deployments(
        &mut self,
        applied: &Applied,
        observed: &mut Observed,
    ) -> Result<(), NodeError> {
        let wanted: BTreeSet<String> = applied.deployments.iter().map(name_of).collect();
        let gone: Vec<String> = self
            .deployments
            .keys()
            .filter(|k| !wanted.contains(*k))
            .cloned()
            .collect();
        for name in gone {
            for pod in self.deployments.remove(&name).unwrap_or_default() {
                self.retire(pod);
            }
        }
        for d in &applied.deployments {
            let name = name_of(d);
            let template = &d["spec"]["template"];
            let hash = template_hash(template);
            let mut pods = self.deployments.remove(&name).unwrap_or_default();
            let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
            let rolling = &d["spec"]["strategy"]["rollingUpdate"];
            let surge = int_or_percent(&rolling["maxSurge"], replicas, "25%", true);
            let unavailable = int_or_percent(&rolling["maxUnavailable"], replicas, "25%", false)
                .max(if surge == 0 { 1 } else { 0 });
            let is_new = |p: &RunningPod| p.state.name.starts_with(&format!("{name}-{hash}-"));
            let ready = |p: &RunningPod| p.state.ready.load(Ordering::SeqCst);
            let seen: Vec<(bool, bool)> = pods.iter().map(|p| (is_new(p), ready(p))).collect();
            let step = rollout_step(replicas, surge, unavailable, &seen);
            let (mut new_pods, mut others) = (Vec::new(), Vec::new());
            for (i, p) in pods.drain(..).enumerate() {
                if step.retire.contains(&i) {
                    self.retire(p);
                } else if is_new(&p) {
                    new_pods.push(p);
                } else {
                    others.push(p);
                }
            }
            for _ in 0..step.start {
                let pod = format!("{name}-{hash}-{}", self.suffix());
                new_pods.push(self.launch(&name, pod, template)?);
            }
            let ready_count = new_pods
                .iter()
                .chain(others.iter())
                .filter(|p| ready(p))
                .count();
            let updated = new_pods.len();
            let all = new_pods.len() + others.len();
            observed.deployments.insert(
                name.clone(),
                json!({
                    "observedGeneration": d["metadata"]["generation"],
                    "replicas": all,
                    "updatedReplicas": updated,
                    "readyReplicas": ready_count,
                    "availableReplicas": ready_count,
                    "unavailableReplicas": (all as i64 - ready_count as i64).max(0),
                }),
            );
            new_pods.extend(others);
            self.deployments.insert(name, new_pods);
        }
        Ok(())
    }

    /// Stops every pod (grace periods honoured) and waits for them.
    pub async fn shutdown(&mut self) {
        let pods: Vec<RunningPod> = std::mem::take(&mut self.deployments)
            .into_values()
            .flatten()
            .chain(
                std::mem::take(&mut self.jobs)
                    .into_values()
                    .flat_map(|j| j.pods),
            )
            .collect();
        for p in pods {
            self.retire(p);
        }
        for t in std::mem::take(&mut self.stopping) {
            let _ = t.await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.endpoints_task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rolling_update_surges_then_retires_old_pods_as_new_ones_are_ready() {
        // One replica, surge 1, none unavailable: a new pod first.
        assert_eq!(
            rollout_step(1, 1, 0, &[(false, true)]),
            Rollout {
                retire: vec![],
                start: 1
            }
        );
        // The new one not ready yet: nothing more.
        let waiting = [(false, true), (true, false)];
        assert_eq!(
            rollout_step(1, 1, 0, &waiting),
            Rollout {
                retire: vec![],
                start: 0
            }
        );
        // Ready: the old one goes.
        let ready = [(false, true), (true, true)];
        assert_eq!(
            rollout_step(1, 1, 0, &ready),
            Rollout {
                retire: vec![0],
                start: 0
            }
        );
        // An old pod that is not ready goes at once.
        assert_eq!(
            rollout_step(2, 1, 0, &[(false, false), (false, true)]).retire,
            vec![0]
        );
        // Four replicas, 25 %: one old pod goes (one may be unavailable)
        // and two new ones start (three old plus two is the surge's five).
        let four = [(false, true); 4];
        assert_eq!(
            rollout_step(4, 1, 1, &four),
            Rollout {
                retire: vec![0],
                start: 2
            }
        );
    }

    #[test]
    fn a_scale_down_stops_not_ready_then_newest_pods_and_a_scale_up_starts_the_rest() {
        let pods = [(true, true), (true, false), (true, true), (true, true)];
        assert_eq!(
            rollout_step(2, 1, 0, &pods),
            Rollout {
                retire: vec![1, 3],
                start: 0
            }
        );
        assert_eq!(
            rollout_step(4, 1, 1, &[(true, true)]),
            Rollout {
                retire: vec![],
                start: 3
            }
        );
    }
}
