//! What reconcile needs of Kafka, as one seam ([`Kafka`]): bring a topic to
//! its spec, and read a consumer group's lag. [`Brokers`] does both against
//! real brokers; the reconcile tests stand in a broker kept in memory.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::crd::TopicSpec;
use crate::lag::{GroupLag, LagError, LagReader};
use crate::topics::{KafkaAdmin, TopicError, TopicOutcome};

pub trait Kafka: Send + Sync + 'static {
    /// Brings `spec`'s topic on the brokers at `bootstrap` to its
    /// partitions (see [`crate::topics`]).
    fn ensure(
        &self,
        bootstrap: &str,
        spec: &TopicSpec,
    ) -> impl Future<Output = Result<TopicOutcome, TopicError>> + Send;

    /// The lag of `group` on `topic`'s partitions `0..partitions` (see
    /// [`crate::lag`]).
    fn lag(
        &self,
        bootstrap: &str,
        group: &str,
        topic: &str,
        partitions: i32,
    ) -> impl Future<Output = Result<GroupLag, LagError>> + Send;

    /// Drops what is kept for brokers and groups no pipeline uses any more:
    /// `in_use` holds every pipeline's `(bootstrap, group)`.
    fn retain(&self, in_use: &[(String, String)]);
}

/// `bootstrap` as the pipeline's pods resolve it. A host without a dot
/// (`kafka:9092`) names a Service in the pipeline's namespace, where the
/// workloads run; the operator runs in another, so it qualifies such hosts
/// (`kafka.analytics.svc:9092`). Qualified names, IP addresses and
/// `localhost` are kept as written (and all of it, without a namespace).
pub fn in_namespace(bootstrap: &str, namespace: &str) -> String {
    bootstrap
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let (host, port) = match entry.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (entry, None),
            };
            let short = !namespace.is_empty()
                && !host.is_empty()
                && host != "localhost"
                && !host.contains(['.', ':', '[']);
            match (short, port) {
                (true, Some(port)) => format!("{host}.{namespace}.svc:{port}"),
                (true, None) => format!("{host}.{namespace}.svc"),
                (false, _) => entry.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Clients made on first use and kept (each holds its broker connections):
/// an admin client per bootstrap list, a lag reader per list and group.
pub struct Brokers {
    timeout: Duration,
    admins: Mutex<HashMap<String, Arc<KafkaAdmin>>>,
    readers: Mutex<HashMap<(String, String), Arc<LagReader>>>,
}

impl Brokers {
    /// Requests to the brokers time out after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            admins: Mutex::new(HashMap::new()),
            readers: Mutex::new(HashMap::new()),
        }
    }
}

/// The client under `key`, made by `make` the first time.
fn cached<K: Eq + Hash, V, E>(
    clients: &Mutex<HashMap<K, Arc<V>>>,
    key: K,
    make: impl FnOnce() -> Result<V, E>,
) -> Result<Arc<V>, E> {
    let mut clients = clients
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(client) = clients.get(&key) {
        return Ok(Arc::clone(client));
    }
    let client = Arc::new(make()?);
    clients.insert(key, Arc::clone(&client));
    Ok(client)
}

impl Brokers {
    /// Clients kept: admin clients, lag readers.
    pub fn cached(&self) -> (usize, usize) {
        (lock(&self.admins).len(), lock(&self.readers).len())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Kafka for Brokers {
    fn retain(&self, in_use: &[(String, String)]) {
        lock(&self.admins).retain(|bootstrap, _| in_use.iter().any(|(b, _)| b == bootstrap));
        lock(&self.readers).retain(|key, _| in_use.contains(key));
    }

    async fn ensure(&self, bootstrap: &str, spec: &TopicSpec) -> Result<TopicOutcome, TopicError> {
        let admin = cached(&self.admins, bootstrap.to_owned(), || {
            KafkaAdmin::new(bootstrap, self.timeout)
        })?;
        admin.ensure(&spec.topic()).await
    }

    async fn lag(
        &self,
        bootstrap: &str,
        group: &str,
        topic: &str,
        partitions: i32,
    ) -> Result<GroupLag, LagError> {
        let reader = cached(
            &self.readers,
            (bootstrap.to_owned(), group.to_owned()),
            || LagReader::new(bootstrap, group, self.timeout),
        )?;
        reader.read(topic, partitions).await
    }
}

#[cfg(test)]
mod tests {
    use super::in_namespace;

    #[test]
    fn short_hosts_are_qualified_with_the_pipelines_namespace() {
        assert_eq!(
            in_namespace("kafka:9092", "analytics"),
            "kafka.analytics.svc:9092"
        );
        assert_eq!(
            in_namespace("kafka-0.kafka:9092, kafka-1:9092,kafka", "a"),
            "kafka-0.kafka:9092,kafka-1.a.svc:9092,kafka.a.svc"
        );
    }

    #[test]
    fn qualified_names_addresses_and_localhost_are_kept() {
        for kept in [
            "kafka.other.svc.cluster.local:9092",
            "10.0.0.7:9092",
            "[::1]:9092",
            "localhost:9092",
            "broker.example.com",
        ] {
            assert_eq!(in_namespace(kept, "analytics"), kept);
        }
    }
}
