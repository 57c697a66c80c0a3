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

impl Kafka for Brokers {
    async fn ensure(&self, bootstrap: &str, spec: &TopicSpec) -> Result<TopicOutcome, TopicError> {
        let admin = cached(&self.admins, bootstrap.to_owned(), || {
            KafkaAdmin::new(bootstrap, self.timeout)
        })?;
        admin.ensure(spec).await
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
