//! One pod run as a kubelet runs it: its container's process in the pod's
//! network namespace (`ip netns exec`), as the pod's user
//! (`runAsUser`/`runAsGroup` by `setpriv`, no capabilities, no extra
//! groups), with the environment built by [`super::env`]; probes as
//! declared, readiness gating its Service endpoints, liveness failures
//! restarting the container; on stop `SIGTERM`, then `SIGKILL` after
//! `terminationGracePeriodSeconds` (30 when unset).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::process::Command;
use tokio::sync::watch;

use super::env::EnvError;
use super::net::PodNet;
use super::probe::Probe;

/// What the pod is running.
#[derive(Debug, Clone)]
pub struct Launch {
    pub name: String,
    /// The Deployment or Job it belongs to.
    pub owner: String,
    /// Its template's labels (what Services select).
    pub labels: BTreeMap<String, String>,
    /// The pod's `spec`.
    pub spec: Value,
    /// The container's environment.
    pub env: BTreeMap<String, String>,
    /// The image's entrypoint (this build's `tributary`).
    pub entrypoint: PathBuf,
    /// Where its logs go (all runs of its container, appended).
    pub log: PathBuf,
}

/// How a container run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal,
}

/// What a pod's observers see, shared with its supervisor.
pub struct PodState {
    pub name: String,
    pub owner: String,
    pub labels: BTreeMap<String, String>,
    pub address: Ipv4Addr,
    /// Container ports by name.
    pub ports: BTreeMap<String, u16>,
    pub ready: AtomicBool,
    pub terminating: AtomicBool,
    pub restarts: AtomicU32,
    /// When the pod was started, and when its container last exited.
    pub started: Instant,
    pub exited_at: Mutex<Option<Instant>>,
    history: Mutex<Vec<String>>,
    exits: Mutex<Vec<Exit>>,
    pub log: PathBuf,
}

impl PodState {
    fn note(&self, what: String) {
        let at = self.started.elapsed().as_secs_f64();
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(format!("{at:7.2}s {what}"));
    }

    /// Readiness, liveness and process events, with their times.
    pub fn history(&self) -> Vec<String> {
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn exits(&self) -> Vec<Exit> {
        self.exits.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The last `n` lines of its logs.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The pod's name, readiness history and last log lines, for a failure.
    pub fn describe(&self, lines: usize) -> String {
        format!(
            "pod {} ({}) at {}: ready={} restarts={} exits={:?}\n  history:\n    {}\n  last log lines:\n{}",
            self.name,
            self.owner,
            self.address,
            self.ready.load(Ordering::Relaxed),
            self.restarts.load(Ordering::Relaxed),
            self.exits(),
            self.history().join("\n    "),
            self.log_tail(lines)
        )
    }
}

/// A running pod; stopped by [`RunningPod::stop`] (or killed on drop).
pub struct RunningPod {
    pub state: Arc<PodState>,
    pub net: PodNet,
    stop: watch::Sender<bool>,
    done: watch::Receiver<bool>,
    grace: Duration,
}

fn container(spec: &Value) -> Result<&Value, EnvError> {
    match spec["containers"].as_array().map(Vec::as_slice) {
        Some([c]) => Ok(c),
        _ => Err(EnvError::Unsupported(
            "a pod with other than one container".into(),
        )),
    }
}

impl RunningPod {
    /// Starts the pod's container in `net`.
    pub fn start(launch: Launch, net: PodNet) -> Result<Self, EnvError> {
        let c = container(&launch.spec)?.clone();
        if c.get("command").is_some() || c["args"].as_array().is_none() {
            return Err(EnvError::Unsupported(format!(
                "{}: only args after the image's entrypoint",
                launch.name
            )));
        }
        let args: Vec<String> = c["args"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect();
        let readiness = Probe::of(&c, "readinessProbe")?;
        let liveness = Probe::of(&c, "livenessProbe")?;
        let security = &launch.spec["securityContext"];
        let id = |key: &str| {
            c["securityContext"][key]
                .as_u64()
                .or_else(|| security[key].as_u64())
        };
        let (uid, gid) = (id("runAsUser"), id("runAsGroup"));
        let always = launch.spec["restartPolicy"].as_str().unwrap_or("Always") == "Always";
        let grace = Duration::from_secs(
            launch.spec["terminationGracePeriodSeconds"]
                .as_u64()
                .unwrap_or(30),
        );
        let ports = c["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| {
                Some((
                    p["name"].as_str()?.to_owned(),
                    u16::try_from(p["containerPort"].as_u64()?).ok()?,
                ))
            })
            .collect();
        let state = Arc::new(PodState {
            name: launch.name.clone(),
            owner: launch.owner.clone(),
            labels: launch.labels.clone(),
            address: net.address,
            ports,
            ready: AtomicBool::new(false),
            terminating: AtomicBool::new(false),
            restarts: AtomicU32::new(0),
            started: Instant::now(),
            exited_at: Mutex::new(None),
            history: Mutex::new(Vec::new()),
            exits: Mutex::new(Vec::new()),
            log: launch.log.clone(),
        });
        let (stop, stop_rx) = watch::channel(false);
        let (done_tx, done) = watch::channel(false);
        let run = Run {
            launch,
            args,
            uid,
            gid,
            namespace: net.namespace.clone(),
            state: Arc::clone(&state),
            readiness,
            liveness,
            always,
            grace,
        };
        tokio::spawn(async move {
            run.supervise(stop_rx).await;
            let _ = done_tx.send(true);
        });
        Ok(Self {
            state,
            net,
            stop,
            done,
            grace,
        })
    }

    /// Marks the pod terminating (out of its Services at once), sends
    /// `SIGTERM`, and `SIGKILL` after the grace period; returns when the
    /// process is gone.
    pub async fn stop(&mut self) {
        self.state.terminating.store(true, Ordering::SeqCst);
        let _ = self.stop.send(true);
        let deadline = self.grace + Duration::from_secs(10);
        let _ = tokio::time::timeout(deadline, self.done.wait_for(|d| *d)).await;
    }

    /// Whether its container has exited for good (a Job's pod).
    pub fn finished(&self) -> bool {
        *self.done.borrow()
    }
}

struct Run {
    launch: Launch,
    args: Vec<String>,
    uid: Option<u64>,
    gid: Option<u64>,
    namespace: String,
    state: Arc<PodState>,
    readiness: Option<Probe>,
    liveness: Option<Probe>,
    always: bool,
    grace: Duration,
}

impl Run {
    fn command(&self) -> std::io::Result<Command> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.launch.log)?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.namespace, "setpriv"]);
        if let Some(uid) = self.uid {
            cmd.arg(format!("--reuid={uid}"));
        }
        if let Some(gid) = self.gid {
            cmd.arg(format!("--regid={gid}"));
        }
        cmd.args(["--clear-groups", "--inh-caps=-all", "--"])
            .arg(&self.launch.entrypoint)
            .args(&self.args)
            .env_clear()
            .envs(&self.launch.env)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        Ok(cmd)
    }

    async fn supervise(self, mut stop: watch::Receiver<bool>) {
        let mut backoff = Duration::from_secs(1);
        loop {
            let mut child = match self.command().and_then(|mut c| c.spawn()) {
                Ok(child) => child,
                Err(e) => {
                    self.state.note(format!("cannot start: {e}"));
                    return;
                }
            };
            self.state.note("started".into());
            let (live_tx, mut live_rx) = watch::channel(false);
            let probes = tokio::spawn(probe_loop(
                Arc::clone(&self.state),
                self.readiness.clone(),
                self.liveness.clone(),
                live_tx,
            ));
            enum Woke {
                Exited(Option<std::process::ExitStatus>),
                Stop,
                Unlive,
            }
            let woke = tokio::select! {
                status = child.wait() => Woke::Exited(status.ok()),
                r = stop.wait_for(|s| *s) => { drop(r); Woke::Stop }
                r = live_rx.wait_for(|failed| *failed) => { drop(r); Woke::Unlive }
            };
            let exit = match woke {
                Woke::Exited(status) => status,
                Woke::Stop => self.terminate(&mut child).await,
                Woke::Unlive => {
                    self.state.note("liveness failed: restarting".into());
                    self.terminate(&mut child).await
                }
            };
            probes.abort();
            self.state.ready.store(false, Ordering::SeqCst);
            let exit = match exit.and_then(|s| s.code()) {
                Some(code) => Exit::Code(code),
                None => Exit::Signal,
            };
            self.state.note(format!("exited: {exit:?}"));
            *self
                .state
                .exited_at
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            self.state
                .exits
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(exit);
            let stopping = *stop.borrow();
            if stopping || !self.always {
                return;
            }
            self.state.restarts.fetch_add(1, Ordering::Relaxed);
            let stopped = tokio::select! {
                () = tokio::time::sleep(backoff) => false,
                r = stop.wait_for(|s| *s) => r.is_ok(),
            };
            if stopped {
                return;
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    async fn terminate(
        &self,
        child: &mut tokio::process::Child,
    ) -> Option<std::process::ExitStatus> {
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        match tokio::time::timeout(self.grace, child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                self.state.note("grace period over: SIGKILL".into());
                let _ = child.kill().await;
                child.wait().await.ok()
            }
        }
    }
}

/// Readiness and liveness probes on their periods; `live` turns true when
/// liveness failed `failureThreshold` times in a row.
async fn probe_loop(
    state: Arc<PodState>,
    readiness: Option<Probe>,
    liveness: Option<Probe>,
    live: watch::Sender<bool>,
) {
    let ready_task = {
        let state = Arc::clone(&state);
        async move {
            let Some(p) = readiness else {
                state.ready.store(true, Ordering::SeqCst);
                return;
            };
            tokio::time::sleep(p.initial_delay).await;
            let (mut ok, mut failed) = (0u32, 0u32);
            let mut last_error = String::new();
            loop {
                let answer = p.check(state.address).await;
                match &answer {
                    Ok(_) => {
                        ok += 1;
                        failed = 0;
                    }
                    Err(e) => {
                        failed += 1;
                        ok = 0;
                        // Each new reason a probe fails for, once.
                        if *e != last_error {
                            state.note(format!("readiness probe failed: {e}"));
                            last_error.clone_from(e);
                        }
                    }
                }
                let was = state.ready.load(Ordering::SeqCst);
                if !was && ok >= p.success_threshold {
                    state.ready.store(true, Ordering::SeqCst);
                    state.note("ready".into());
                } else if was && failed >= p.failure_threshold {
                    state.ready.store(false, Ordering::SeqCst);
                    state.note(format!("not ready: {}", answer.err().unwrap_or_default()));
                }
                tokio::time::sleep(p.period).await;
            }
        }
    };
    let live_task = async move {
        let Some(p) = liveness else {
            return std::future::pending::<()>().await;
        };
        tokio::time::sleep(p.initial_delay).await;
        let mut failed = 0u32;
        loop {
            match p.check(state.address).await {
                Ok(_) => failed = 0,
                Err(e) => {
                    failed += 1;
                    state.note(format!("liveness probe failed ({failed}): {e}"));
                    if failed >= p.failure_threshold {
                        let _ = live.send(true);
                        return std::future::pending::<()>().await;
                    }
                }
            }
            tokio::time::sleep(p.period).await;
        }
    };
    tokio::join!(ready_task, live_task);
}

/// A pod's log file under `dir`.
pub fn log_path(dir: &Path, pod: &str) -> PathBuf {
    dir.join(format!("{pod}.log"))
}
