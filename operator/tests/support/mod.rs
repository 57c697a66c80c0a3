//! A stand-in Kubernetes API server for reconcile tests, served through
//! `tower-test`'s mock pair (the kube-rs pattern): it records every request
//! and answers from an in-memory store, so a test asserts the requests a
//! reconcile made and can play the cluster's part between reconciles (a
//! Job completing, a Deployment becoming available).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tributary_operator::crd::{AnalyticsPipeline, TopicSpec};
use tributary_operator::kafka::{Bootstrap, Kafka};
use tributary_operator::lag::{GroupLag, LagError, PartitionLag};
use tributary_operator::topics::{TopicError, TopicOutcome, TopicStep, plan};

pub mod harness;

/// Resource plurals the operator touches.
const PLURALS: &[&str] = &[
    "configmaps",
    "jobs",
    "deployments",
    "services",
    "poddisruptionbudgets",
    "events",
    "analyticspipelines",
    "leases",
    "pods",
    "horizontalpodautoscalers",
];

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub body: Option<Value>,
}

impl Call {
    /// `METHOD path`, as the tests compare them.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    calls: Vec<Call>,
    version: u64,
    /// Refuse the next replace with 409, as when another writer got there
    /// between a read and a write.
    conflict_next_replace: bool,
    /// Answer every request with 503, as an unreachable API server would.
    unavailable: bool,
    /// Writes to these keys are refused with this message (422), as an
    /// admission webhook or a quota would.
    refused: BTreeMap<String, String>,
    /// Who owns each Deployment's `spec.replicas`: manager → `Apply` or
    /// `Update` (server-side apply's field ownership, for that one field).
    replica_owners: BTreeMap<String, BTreeMap<String, &'static str>>,
    /// How long the server takes before it handles a request, and after
    /// (the write is made between the two).
    latency: (std::time::Duration, std::time::Duration),
    /// When each write to a Lease was made (the server's clock).
    lease_writes: Vec<tokio::time::Instant>,
    /// How the next requests go, one each, before `latency` applies again.
    faults: std::collections::VecDeque<Fault>,
}

/// How one request goes: a wait before it is handled, a wait before the
/// answer is sent, or 503 instead of an answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fault {
    pub before: std::time::Duration,
    pub after: std::time::Duration,
    pub unavailable: bool,
}

/// The operator's field manager.
const OPERATOR: &str = "tributary-operator";

/// A Deployment's `spec.replicas` after an apply of `new` by `manager`, as
/// server-side apply decides it, with `owners` updated and written into
/// `metadata.managedFields`:
/// - the operator's applies are whole objects: a `replicas` in them is set
///   (forced: its value taken over from other owners unless equal, when
///   they share it); one left out is released, and removed (the
///   Deployment's default, 1) when nobody else owns it;
/// - another manager's apply (a hand-over) carries only `replicas`: it is
///   merged into the live object.
fn apply_replicas(
    old: Option<&Value>,
    mut new: Value,
    manager: &str,
    owners: &mut BTreeMap<String, &'static str>,
) -> Value {
    let current = old
        .map(|o| o["spec"]["replicas"].clone())
        .unwrap_or(Value::Null);
    let asked = new["spec"]["replicas"].clone();
    if manager != OPERATOR {
        let mut merged = old.cloned().unwrap_or_else(|| json!({}));
        if !asked.is_null() {
            if asked != current {
                owners.clear();
            }
            owners.insert(manager.to_owned(), "Apply");
            merged["spec"]["replicas"] = asked;
        }
        new = merged;
    } else if asked.is_null() {
        owners.remove(manager);
        new["spec"]["replicas"] = if owners.is_empty() { json!(1) } else { current };
    } else {
        if asked != current {
            owners.clear();
        }
        owners.insert(manager.to_owned(), "Apply");
    }
    new["metadata"]["managedFields"] = managed_fields(owners);
    new
}

fn managed_fields(owners: &BTreeMap<String, &'static str>) -> Value {
    Value::Array(
        owners
            .iter()
            .map(|(manager, operation)| {
                json!({"manager": manager, "operation": operation, "apiVersion": "apps/v1",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}})
            })
            .collect(),
    )
}

#[derive(Default)]
pub struct FakeApi {
    state: Mutex<State>,
}

/// Where a path points.
enum Target {
    Collection(String),
    Item(String),
    Status(String),
}

fn target(path: &str) -> Target {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let at = segments
        .iter()
        .rposition(|s| PLURALS.contains(s))
        .unwrap_or_else(|| panic!("the fake API does not know {path}"));
    let upto = |n: usize| segments[..n].join("/");
    match segments.len() - at {
        1 => Target::Collection(upto(at + 1)),
        2 => Target::Item(upto(at + 2)),
        _ => Target::Status(upto(at + 2)),
    }
}

fn reply(code: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

fn failure(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    reply(
        code,
        &json!({
            "apiVersion": "v1", "kind": "Status", "status": "Failure",
            "code": code.as_u16(), "reason": reason, "message": message,
        }),
    )
}

fn labels_match(object: &Value, selector: Option<&String>) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    let labels = &object["metadata"]["labels"];
    selector.split(',').all(|term| match term.split_once('=') {
        Some((k, v)) => labels[k].as_str() == Some(v),
        None => labels.get(term).is_some(),
    })
}

impl FakeApi {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A client whose requests this fake answers.
    pub fn client(self: &Arc<Self>) -> Client {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let fake = Arc::clone(self);
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let fake = Arc::clone(&fake);
                // Each request on its own, so a slow one (latency) does
                // not hold up the others, as on a real server.
                tokio::spawn(async move {
                    let fault = {
                        let mut state = fake.state.lock().unwrap();
                        state.faults.pop_front().unwrap_or(Fault {
                            before: state.latency.0,
                            after: state.latency.1,
                            unavailable: false,
                        })
                    };
                    tokio::time::sleep(fault.before).await;
                    let response = if fault.unavailable {
                        failure(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "ServiceUnavailable",
                            "the fake API is down",
                        )
                    } else {
                        fake.answer(request).await
                    };
                    tokio::time::sleep(fault.after).await;
                    send.send_response(response);
                });
            }
        });
        Client::new(service, "default")
    }

    async fn answer(&self, request: Request<Body>) -> Response<Body> {
        let method = request.method().as_str().to_owned();
        let path = request.uri().path().to_owned();
        let query: BTreeMap<String, String> =
            form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body: Option<Value> = if bytes.is_empty() {
            None
        } else {
            Some(serde_json::from_slice(&bytes).expect("request bodies are JSON"))
        };
        let mut state = self.state.lock().unwrap();
        if state.unavailable {
            return failure(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "the fake API is down",
            );
        }
        if method != "GET" && path.contains("/leases") {
            state.lease_writes.push(tokio::time::Instant::now());
        }
        state.calls.push(Call {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            body: body.clone(),
        });
        state.version += 1;
        let version = state.version;
        match (method.as_str(), target(&path)) {
            ("GET", Target::Item(key)) => match state.objects.get(&key) {
                Some(o) => reply(StatusCode::OK, o),
                None => failure(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    &format!("{key} not found"),
                ),
            },
            ("GET", Target::Collection(prefix)) => {
                let items: Vec<Value> = state
                    .objects
                    .iter()
                    .filter(|(k, _)| {
                        k.strip_prefix(&format!("{prefix}/"))
                            .is_some_and(|rest| !rest.contains('/'))
                    })
                    .map(|(_, o)| o.clone())
                    .filter(|o| labels_match(o, query.get("labelSelector")))
                    .collect();
                reply(
                    StatusCode::OK,
                    &json!({"apiVersion": "v1", "kind": "List",
                        "metadata": {"resourceVersion": version.to_string()}, "items": items}),
                )
            }
            ("PATCH", Target::Status(key)) => {
                let Some(object) = state.objects.get_mut(&key) else {
                    return failure(StatusCode::NOT_FOUND, "NotFound", &key);
                };
                object["status"] = body.unwrap_or_default()["status"].clone();
                object["metadata"]["resourceVersion"] = json!(version.to_string());
                reply(StatusCode::OK, object)
            }
            // A status replace: only the status changes, and a
            // resourceVersion in the body is a precondition (409 when the
            // object changed since it was read), as on a real API server.
            ("PUT", Target::Status(key)) => {
                let body = body.unwrap_or_default();
                let Some(object) = state.objects.get_mut(&key) else {
                    return failure(StatusCode::NOT_FOUND, "NotFound", &key);
                };
                let wanted = &body["metadata"]["resourceVersion"];
                if !wanted.is_null() && wanted != &object["metadata"]["resourceVersion"] {
                    return failure(
                        StatusCode::CONFLICT,
                        "Conflict",
                        &format!(
                            "{key}: the object has been modified; please apply your changes to the latest version and try again"
                        ),
                    );
                }
                object["status"] = body["status"].clone();
                object["metadata"]["resourceVersion"] = json!(version.to_string());
                reply(StatusCode::OK, object)
            }
            ("PATCH", Target::Item(key)) => {
                let mut new = body.unwrap_or_default();
                let old = state.objects.get(&key).cloned();
                if let Some(message) = state.refused.get(&key) {
                    return failure(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message);
                }
                // What the real API server refuses to change.
                if let Some(old) = &old {
                    if key.contains("/configmaps/")
                        && old["immutable"] == json!(true)
                        && (new["data"] != old["data"] || new["immutable"] != json!(true))
                    {
                        return failure(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "Invalid",
                            &format!(
                                "{key}: data: Forbidden: field is immutable when `immutable` is set"
                            ),
                        );
                    }
                    let immutable = if key.contains("/jobs/") {
                        Some((
                            "spec.template",
                            &old["spec"]["template"],
                            &new["spec"]["template"],
                        ))
                    } else if key.contains("/deployments/") {
                        Some((
                            "spec.selector",
                            &old["spec"]["selector"],
                            &new["spec"]["selector"],
                        ))
                    } else {
                        None
                    };
                    if let Some((field, before, after)) = immutable
                        && !after.is_null()
                        && before != after
                    {
                        return failure(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "Invalid",
                            &format!("{key}: {field}: field is immutable"),
                        );
                    }
                }
                if key.contains("/deployments/") {
                    let manager = query.get("fieldManager").cloned().unwrap_or_default();
                    let owners = state.replica_owners.entry(key.clone()).or_default();
                    new = apply_replicas(old.as_ref(), new, &manager, owners);
                }
                let generation = match &old {
                    None => 1,
                    Some(old) => {
                        let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
                        if old.get("spec") == new.get("spec") {
                            g
                        } else {
                            g + 1
                        }
                    }
                };
                let uid = old
                    .as_ref()
                    .and_then(|o| o["metadata"]["uid"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| format!("uid-{version}"));
                new["metadata"]["uid"] = json!(uid);
                let created = old
                    .as_ref()
                    .map(|o| o["metadata"]["creationTimestamp"].clone())
                    .filter(|t| !t.is_null())
                    .unwrap_or_else(|| json!(k8s_openapi::jiff::Timestamp::now().to_string()));
                new["metadata"]["creationTimestamp"] = created;
                new["metadata"]["generation"] = json!(generation);
                new["metadata"]["resourceVersion"] = json!(version.to_string());
                if let Some(status) = old.and_then(|o| o.get("status").cloned()) {
                    new["status"] = status;
                }
                state.objects.insert(key, new.clone());
                reply(StatusCode::OK, &new)
            }
            ("POST", Target::Collection(prefix)) => {
                let mut object = body.unwrap_or_default();
                let name = object["metadata"]["name"].as_str().unwrap_or("").to_owned();
                let key = format!("{prefix}/{name}");
                if state.objects.contains_key(&key) {
                    return failure(StatusCode::CONFLICT, "AlreadyExists", &key);
                }
                object["metadata"]["resourceVersion"] = json!(version.to_string());
                state.objects.insert(key, object.clone());
                reply(StatusCode::CREATED, &object)
            }
            // Replace, with optimistic concurrency on resourceVersion.
            ("PUT", Target::Item(key)) => {
                let mut object = body.unwrap_or_default();
                if !state.objects.contains_key(&key) {
                    return failure(StatusCode::NOT_FOUND, "NotFound", &key);
                }
                let raced = std::mem::take(&mut state.conflict_next_replace);
                let stored = &state.objects[&key];
                if raced
                    || object["metadata"]["resourceVersion"]
                        != stored["metadata"]["resourceVersion"]
                {
                    return failure(
                        StatusCode::CONFLICT,
                        "Conflict",
                        &format!("{key}: the object has been modified"),
                    );
                }
                object["metadata"]["resourceVersion"] = json!(version.to_string());
                state.objects.insert(key, object.clone());
                reply(StatusCode::OK, &object)
            }
            ("DELETE", Target::Item(key)) => match state.objects.remove(&key) {
                Some(_) => reply(
                    StatusCode::OK,
                    &json!({"apiVersion": "v1", "kind": "Status", "status": "Success", "code": 200}),
                ),
                None => failure(StatusCode::NOT_FOUND, "NotFound", &key),
            },
            (m, _) => failure(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                &format!("the fake API does not answer {m} {path}"),
            ),
        }
    }

    /// Puts `object` at `key` (a path without query), as another actor in
    /// the cluster would.
    /// Every stored object has a resourceVersion, new with each write.
    pub fn put(&self, key: &str, mut object: Value) {
        let mut state = self.state.lock().unwrap();
        state.version += 1;
        object["metadata"]["resourceVersion"] = json!(state.version.to_string());
        state.objects.insert(key.to_owned(), object);
    }

    /// `kubectl scale` (or an HPA) sets a Deployment's replicas through the
    /// scale subresource: an update that takes the field's ownership.
    pub fn scale(&self, key: &str, replicas: i64, manager: &str) {
        let mut state = self.state.lock().unwrap();
        state.version += 1;
        let version = state.version;
        let owners = state.replica_owners.entry(key.to_owned()).or_default();
        owners.clear();
        owners.insert(manager.to_owned(), "Update");
        let fields = managed_fields(owners);
        let object = state
            .objects
            .get_mut(key)
            .unwrap_or_else(|| panic!("no object at {key}"));
        object["spec"]["replicas"] = json!(replicas);
        object["metadata"]["managedFields"] = fields;
        object["metadata"]["resourceVersion"] = json!(version.to_string());
        let g = object["metadata"]["generation"].as_i64().unwrap_or(1);
        object["metadata"]["generation"] = json!(g + 1);
    }

    /// Deletes the object at `key`, as another actor would.
    pub fn delete(&self, key: &str) {
        self.state.lock().unwrap().objects.remove(key);
    }

    /// Refuse writes to `key` with 422 and `message`.
    pub fn refuse(&self, key: &str, message: &str) {
        self.state
            .lock()
            .unwrap()
            .refused
            .insert(key.to_owned(), message.to_owned());
    }

    /// The next requests go as `faults` say, one each.
    pub fn script(&self, faults: &[Fault]) {
        self.state
            .lock()
            .unwrap()
            .faults
            .extend(faults.iter().copied());
    }

    /// Every request waits `before` to be handled and `after` to be
    /// answered.
    pub fn set_latency(&self, before: std::time::Duration, after: std::time::Duration) {
        self.state.lock().unwrap().latency = (before, after);
    }

    /// When writes to a Lease were made, oldest first (attempts included:
    /// a refused one changes nothing, so only the last successful one
    /// counts; the tests make failing writes fail before this point).
    pub fn lease_writes(&self) -> Vec<tokio::time::Instant> {
        self.state.lock().unwrap().lease_writes.clone()
    }

    /// Answer every request with 503 (`true`) or as usual.
    pub fn set_unavailable(&self, down: bool) {
        self.state.lock().unwrap().unavailable = down;
    }

    /// The next replace (PUT) loses a race: 409 Conflict.
    pub fn conflict_next_replace(&self) {
        self.state.lock().unwrap().conflict_next_replace = true;
    }

    /// Sets the status of the object at `key`.
    pub fn set_status(&self, key: &str, status: Value) {
        let mut state = self.state.lock().unwrap();
        let object = state
            .objects
            .get_mut(key)
            .unwrap_or_else(|| panic!("no object at {key}"));
        object["status"] = status;
    }

    pub fn get(&self, key: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.get(key).cloned()
    }

    /// Keys of every stored object under `prefix`.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .objects
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// The requests since the last call, oldest first.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.state.lock().unwrap().calls)
    }

    /// The pipeline stored at `key`, as the controller's watch would hand
    /// it to reconcile.
    pub fn pipeline(&self, key: &str) -> AnalyticsPipeline {
        serde_json::from_value(self.get(key).expect("the pipeline is stored")).unwrap()
    }
}

/// A broker that keeps topics in memory and follows the same plan as the
/// real admin: create, grow (when it can), never shrink. Its consumer group
/// lags by `lag` messages on each partition (`None`: the read fails).
pub struct MemoryBroker {
    pub topics: Mutex<HashMap<String, i32>>,
    pub can_grow: bool,
    pub reachable: Mutex<bool>,
    pub lag_per_partition: Mutex<Option<i64>>,
    /// `ensure <topic>` and `lag <group> <topic>`, in order.
    pub calls: Mutex<Vec<String>>,
    /// What the last `retain` kept.
    pub kept: Mutex<Option<Vec<(String, String)>>>,
}

impl MemoryBroker {
    pub fn new(can_grow: bool) -> Self {
        Self {
            topics: Mutex::new(HashMap::new()),
            can_grow,
            reachable: Mutex::new(true),
            lag_per_partition: Mutex::new(Some(0)),
            calls: Mutex::new(Vec::new()),
            kept: Mutex::new(None),
        }
    }
}

impl MemoryBroker {
    /// Every partition of the group lags by `lag` (`None`: reads fail).
    pub fn set_lag(&self, lag: Option<i64>) {
        *self.lag_per_partition.lock().unwrap() = lag;
    }

    pub fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

impl Kafka for MemoryBroker {
    fn retain(&self, in_use: &[(Bootstrap, String)]) {
        *self.kept.lock().unwrap() = Some(
            in_use
                .iter()
                .map(|(b, g)| (b.servers.clone(), g.clone()))
                .collect(),
        );
    }

    async fn lag(
        &self,
        _bootstrap: &Bootstrap,
        group: &str,
        topic: &str,
        partitions: i32,
    ) -> Result<GroupLag, LagError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("lag {group} {topic}"));
        let Some(lag) = *self.lag_per_partition.lock().unwrap() else {
            return Err(LagError::Committed {
                group: group.to_owned(),
                topic: topic.to_owned(),
                message: "coordinator not available".into(),
            });
        };
        Ok(GroupLag {
            partitions: (0..partitions)
                .map(|partition| PartitionLag {
                    partition,
                    low: 0,
                    high: lag,
                    committed: Some(0),
                    lag,
                })
                .collect(),
        })
    }

    async fn ensure(
        &self,
        bootstrap: &Bootstrap,
        spec: &TopicSpec,
    ) -> Result<TopicOutcome, TopicError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("ensure {}", spec.name));
        if !*self.reachable.lock().unwrap() {
            return Err(TopicError::Unreachable {
                bootstrap: bootstrap.servers.clone(),
                message: "connection refused".into(),
            });
        }
        let mut topics = self.topics.lock().unwrap();
        let topic = spec.topic();
        let step = plan(&topic, topics.get(&spec.name).copied());
        let grown = match step {
            TopicStep::Create => {
                topics.insert(spec.name.clone(), spec.partitions);
                Ok(())
            }
            TopicStep::Grow { .. } if self.can_grow => {
                topics.insert(spec.name.clone(), spec.partitions);
                Ok(())
            }
            TopicStep::Grow { .. } => Err("UnsupportedFeature".to_owned()),
            TopicStep::RefuseShrink { .. } | TopicStep::Keep => Ok(()),
        };
        Ok(step.outcome(&topic, grown))
    }
}
