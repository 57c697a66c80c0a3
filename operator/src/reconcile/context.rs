//! What reconcile works with ([`Context`]) and what this process keeps per
//! pipeline between reconciles: backoff counts, lag polls, the status it
//! last wrote, the Kafka clients in use.

use std::collections::HashMap;
use std::sync::Mutex;

use kube::runtime::events::{Recorder, Reporter};
use kube::{Client, ResourceExt};

use super::error::Error;
use super::{apply, bootstrap};
use crate::build::meta;
use crate::crd::{AnalyticsPipeline, AnalyticsPipelineStatus};
use crate::kafka::{self, Kafka};
use crate::metrics::{Metrics, PipelineLabels};

/// What reconcile works with.
pub struct Context<T> {
    pub client: Client,
    pub kafka: T,
    pub recorder: Recorder,
    pub metrics: Metrics,
    /// The ClickHouse schema version this build migrates to.
    pub schema_version: u32,
    /// Consecutive failures per pipeline, for backoff.
    failures: Mutex<HashMap<PipelineLabels, u32>>,
    /// The unix second of each pipeline's last lag poll by this process.
    polls: Mutex<HashMap<PipelineLabels, i64>>,
    /// The last status this process wrote for each pipeline.
    pub(super) written: Mutex<HashMap<PipelineLabels, Written>>,
    /// The brokers and consumer group each pipeline uses.
    kafka_uses: Mutex<HashMap<PipelineLabels, (kafka::Bootstrap, String)>>,
}

/// A status this process wrote, and the object version the write made.
#[derive(Debug, Clone)]
pub(super) struct Written {
    pub(super) uid: Option<String>,
    pub(super) resource_version: Option<String>,
    pub(super) status: AnalyticsPipelineStatus,
}

impl<T: Kafka> Context<T> {
    pub fn new(client: Client, kafka: T, reporter: Reporter, metrics: Metrics) -> Self {
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            kafka,
            metrics,
            schema_version: tributary_core::schema::clickhouse_schema_version(),
            failures: Mutex::new(HashMap::new()),
            polls: Mutex::new(HashMap::new()),
            written: Mutex::new(HashMap::new()),
            kafka_uses: Mutex::new(HashMap::new()),
        }
    }

    /// Drops everything this process keeps for the pipeline `key` (its
    /// backoff, poll and status memory, its metric series, and the Kafka
    /// clients no other pipeline uses): it was deleted. A pipeline deleted
    /// without a finalizer never reaches reconcile again; the controller
    /// reports it as not found, and `run` calls this.
    pub fn forget(&self, key: &PipelineLabels) {
        lock(&self.failures).remove(key);
        lock(&self.polls).remove(key);
        lock(&self.written).remove(key);
        self.metrics.forget(key, false);
        let in_use: Vec<(kafka::Bootstrap, String)> = {
            let mut uses = lock(&self.kafka_uses);
            uses.remove(key);
            uses.values().cloned().collect()
        };
        self.kafka.retain(&in_use);
        tracing::info!(pipeline = %key.pipeline, namespace = %key.namespace, "pipeline gone; its state, metrics and unused Kafka clients are dropped");
    }

    /// Whether this process keeps anything for `key` (tests).
    pub fn remembers(&self, key: &PipelineLabels) -> bool {
        lock(&self.failures).contains_key(key)
            || lock(&self.polls).contains_key(key)
            || lock(&self.written).contains_key(key)
            || lock(&self.kafka_uses).contains_key(key)
    }

    /// Notes the brokers and group `p` uses now, dropping clients of ones
    /// it used before and no one uses any more.
    pub(super) fn uses_kafka(&self, p: &AnalyticsPipeline) {
        let now = (bootstrap(p), p.spec.kafka.consumer_group.clone());
        let in_use: Option<Vec<(kafka::Bootstrap, String)>> = {
            let mut uses = lock(&self.kafka_uses);
            let before = uses.insert(key(p), now.clone());
            (before.is_some_and(|b| b != now)).then(|| uses.values().cloned().collect())
        };
        if let Some(in_use) = in_use {
            self.kafka.retain(&in_use);
        }
    }

    /// Takes `p`'s status as the last one this process wrote (tests that
    /// move time by rewriting the status make it the operator's own).
    pub fn remember_status(&self, p: &AnalyticsPipeline) {
        if let Some(status) = &p.status {
            lock(&self.written).insert(
                key(p),
                Written {
                    uid: p.metadata.uid.clone(),
                    resource_version: p.metadata.resource_version.clone(),
                    status: status.clone(),
                },
            );
        }
    }

    /// `p` with the status reconcile should start from. The controller
    /// hands reconcile the object from its watch cache, which lags this
    /// process's own writes: right after a status write, the next event (a
    /// Deployment this reconcile patched) usually brings the object as it
    /// was before the write. When `p` is not the version this process
    /// last wrote and carries another status, that status is taken to be
    /// stale and the one written stands in for it (no one else writes it).
    /// `p`'s `resourceVersion` is kept: the status write is conditional on
    /// it, so a stale object can never overwrite a newer status.
    pub fn in_effect(&self, p: &AnalyticsPipeline) -> AnalyticsPipeline {
        let written = lock(&self.written).get(&key(p)).cloned();
        let mut p = p.clone();
        if let Some(w) = written
            && w.uid == p.metadata.uid
            && w.resource_version != p.metadata.resource_version
            && p.status.as_ref() != Some(&w.status)
        {
            tracing::debug!(cached = ?p.metadata.resource_version, written = ?w.resource_version, "the cached pipeline predates this process's last status write; starting from that status");
            p.status = Some(w.status);
        }
        p
    }

    /// When this process last polled `p`'s lag.
    pub fn last_poll(&self, p: &AnalyticsPipeline) -> Option<i64> {
        lock(&self.polls).get(&key(p)).copied()
    }

    /// Notes a poll of `p`'s lag at unix second `at`.
    pub fn polled(&self, p: &AnalyticsPipeline, at: i64) {
        lock(&self.polls).insert(key(p), at);
    }

    pub(super) fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<PipelineLabels, u32>> {
        lock(&self.failures)
    }

    /// Server-side applies `object`, naming it in the error.
    pub(super) async fn put<K: apply::Child>(
        &self,
        namespace: &str,
        object: &K,
    ) -> Result<K, Error> {
        apply::apply(&self.client, namespace, object)
            .await
            .map_err(|source| Error::Apply {
                kind: K::kind(&()).into_owned(),
                name: object.name_any(),
                source,
            })
    }

    /// The children `p` controls in `namespace` (`None` before the pipeline
    /// has a uid, as when rendered without a cluster).
    pub(super) fn owned<'a>(
        &'a self,
        p: &AnalyticsPipeline,
        namespace: &'a str,
    ) -> Option<apply::Owned<'a>> {
        Some(apply::Owned {
            client: &self.client,
            namespace,
            selector: format!(
                "app.kubernetes.io/instance={},app.kubernetes.io/managed-by={}",
                p.name_any(),
                meta::MANAGER
            ),
            owner: p.uid()?,
        })
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A pipeline's namespace and name: the key of the per-pipeline state
/// and the labels of its metrics.
pub fn key(p: &AnalyticsPipeline) -> PipelineLabels {
    PipelineLabels {
        namespace: meta::namespace(p),
        pipeline: p.name_any(),
    }
}
