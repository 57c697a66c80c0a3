//! What reconcile needs of Kafka, as one seam ([`Kafka`]): bring a topic to
//! its spec, and read a consumer group's lag. [`Brokers`] does both against
//! real brokers; the reconcile tests stand in a broker kept in memory.

use std::collections::HashMap;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::crd::TopicSpec;
use crate::lag::{GroupLag, LagError, LagReader};
use crate::topics::{KafkaAdmin, TopicError, TopicOutcome};

pub trait Kafka: Send + Sync + 'static {
    /// Brings `spec`'s topic on the brokers of `bootstrap` to its
    /// partitions (see [`crate::topics`]).
    fn ensure(
        &self,
        bootstrap: &Bootstrap,
        spec: &TopicSpec,
    ) -> impl Future<Output = Result<TopicOutcome, TopicError>> + Send;

    /// The lag of `group` on `topic`'s partitions `0..partitions` (see
    /// [`crate::lag`]).
    fn lag(
        &self,
        bootstrap: &Bootstrap,
        group: &str,
        topic: &str,
        partitions: i32,
    ) -> impl Future<Output = Result<GroupLag, LagError>> + Send;

    /// Drops what is kept for brokers and groups no pipeline uses any more:
    /// `in_use` holds every pipeline's `(bootstrap, group)`.
    fn retain(&self, in_use: &[(Bootstrap, String)]);
}

/// A pipeline's brokers as its spec names them, and the namespace its pods
/// resolve those names from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Bootstrap {
    pub servers: String,
    pub namespace: String,
}

impl Bootstrap {
    pub fn new(servers: &str, namespace: &str) -> Self {
        Self {
            servers: servers.to_owned(),
            namespace: namespace.to_owned(),
        }
    }
}

impl std::fmt::Display for Bootstrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.servers)
    }
}

/// Whether a name resolves, as the operator's DNS answers it.
pub trait Resolve: Send + Sync + 'static {
    /// `host` is absolute (it ends with a dot): no search list applies.
    fn resolves<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>>;
}

/// The system's resolver (the cluster's DNS, in a pod).
pub struct SystemDns {
    /// Longest wait for one answer.
    pub timeout: Duration,
}

impl Resolve for SystemDns {
    fn resolves<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
        Box::pin(async move {
            match tokio::time::timeout(self.timeout, tokio::net::lookup_host((host, port))).await {
                Ok(Ok(mut addresses)) => addresses.next().is_some(),
                _ => false,
            }
        })
    }
}

/// Dots from which a name is tried as written before the search list
/// (Kubernetes pods' `ndots:5`).
const NDOTS: usize = 5;

/// The absolute names (trailing dot) a pod in `namespace` tries for `host`,
/// in its resolver's order: the search list of a pod
/// (`<ns>.svc.<domain>`, `svc.<domain>`, `<domain>`) and the name as
/// written, that one first when it has `NDOTS` dots or more.
pub fn candidates(host: &str, namespace: &str, domain: &str) -> Vec<String> {
    if let Some(absolute) = host.strip_suffix('.') {
        return vec![format!("{absolute}.")];
    }
    let searched = [
        format!("{host}.{namespace}.svc.{domain}."),
        format!("{host}.svc.{domain}."),
        format!("{host}.{domain}."),
    ];
    let as_written = format!("{host}.");
    if host.matches('.').count() >= NDOTS {
        std::iter::once(as_written).chain(searched).collect()
    } else {
        searched
            .into_iter()
            .chain(std::iter::once(as_written))
            .collect()
    }
}

/// `servers` as the operator must write them to reach what a pod of
/// `namespace` reaches: each host is looked up the way that pod's resolver
/// would (see [`candidates`]), and the first name that resolves is used,
/// fully qualified. `kafka`, `kafka.other-namespace`,
/// `kafka-0.kafka-headless` (a pod of a headless Service in the pipeline's
/// namespace) and FQDNs all reach the same brokers from the operator's
/// namespace. IP addresses and `localhost` are kept; a host nothing
/// resolves is qualified by the old rule (a host without a dot is a
/// Service of `namespace`) so the error names what a pod would use.
/// Brokers must advertise names the operator resolves too (FQDNs).
pub async fn resolve_bootstrap(
    servers: &str,
    namespace: &str,
    domain: &str,
    dns: &dyn Resolve,
) -> String {
    let mut out = Vec::new();
    for entry in servers.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (host, port) = match entry.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.starts_with('[') => match p.parse::<u16>() {
                Ok(port) => (h, Some(port)),
                // Not a port: left for the client to refuse, as written.
                Err(_) => {
                    out.push(entry.to_owned());
                    continue;
                }
            },
            _ => (entry, None),
        };
        let literal = host == "localhost"
            || host.starts_with('[')
            || host.parse::<std::net::IpAddr>().is_ok()
            || namespace.is_empty();
        if literal {
            out.push(entry.to_owned());
            continue;
        }
        let mut found = None;
        for candidate in candidates(host, namespace, domain) {
            if dns.resolves(&candidate, port.unwrap_or(9092)).await {
                found = Some(candidate.trim_end_matches('.').to_owned());
                break;
            }
        }
        let host = match found {
            Some(name) if name == host.trim_end_matches('.') => host.to_owned(),
            Some(name) => name,
            None => in_namespace(host, namespace),
        };
        out.push(match port {
            Some(port) => format!("{host}:{port}"),
            None => host,
        });
    }
    out.join(",")
}

/// `bootstrap` with every host without a dot (`kafka:9092`) qualified as a
/// Service of `namespace` (`kafka.analytics.svc:9092`); qualified names, IP
/// addresses and `localhost` are kept as written. The fallback of
/// [`resolve_bootstrap`] when nothing resolves.
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
/// an admin client per bootstrap list, a lag reader per list and group,
/// keyed by the list as the operator reaches it.
pub struct Brokers {
    timeout: Duration,
    domain: String,
    dns: Box<dyn Resolve>,
    /// Each pipeline's bootstrap as last resolved.
    resolved: Mutex<HashMap<Bootstrap, String>>,
    admins: Mutex<HashMap<String, Arc<KafkaAdmin>>>,
    readers: Mutex<HashMap<(String, String), Arc<LagReader>>>,
}

impl Brokers {
    /// Requests to the brokers time out after `timeout`; names are
    /// resolved by `dns` in the cluster domain `domain`.
    pub fn new(timeout: Duration, domain: &str, dns: Box<dyn Resolve>) -> Self {
        Self {
            timeout,
            domain: domain.to_owned(),
            dns,
            resolved: Mutex::new(HashMap::new()),
            admins: Mutex::new(HashMap::new()),
            readers: Mutex::new(HashMap::new()),
        }
    }

    /// Clients kept: admin clients, lag readers.
    pub fn cached(&self) -> (usize, usize) {
        (lock(&self.admins).len(), lock(&self.readers).len())
    }

    /// `bootstrap` as the operator reaches it (see [`resolve_bootstrap`]).
    /// When it resolves otherwise than before, the clients of the old
    /// address go unless another pipeline's bootstrap still leads there.
    pub async fn address(&self, bootstrap: &Bootstrap) -> String {
        let resolved = resolve_bootstrap(
            &bootstrap.servers,
            &bootstrap.namespace,
            &self.domain,
            self.dns.as_ref(),
        )
        .await;
        let superseded = {
            let mut all = lock(&self.resolved);
            let before = all.insert(bootstrap.clone(), resolved.clone());
            before.filter(|old| *old != resolved && !all.values().any(|a| a == old))
        };
        if let Some(old) = superseded {
            lock(&self.admins).remove(&old);
            lock(&self.readers).retain(|(address, _), _| *address != old);
        }
        resolved
    }
}

/// The client under `key`, made by `make` the first time.
fn cached<K: Eq + Hash, V, E>(
    clients: &Mutex<HashMap<K, Arc<V>>>,
    key: K,
    make: impl FnOnce() -> Result<V, E>,
) -> Result<Arc<V>, E> {
    let mut clients = lock(clients);
    if let Some(client) = clients.get(&key) {
        return Ok(Arc::clone(client));
    }
    let client = Arc::new(make()?);
    clients.insert(key, Arc::clone(&client));
    Ok(client)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Kafka for Brokers {
    fn retain(&self, in_use: &[(Bootstrap, String)]) {
        let mut resolved = lock(&self.resolved);
        resolved.retain(|b, _| in_use.iter().any(|(used, _)| used == b));
        let keep: Vec<(String, String)> = in_use
            .iter()
            .filter_map(|(b, group)| resolved.get(b).map(|r| (r.clone(), group.clone())))
            .collect();
        drop(resolved);
        lock(&self.admins).retain(|address, _| keep.iter().any(|(a, _)| a == address));
        lock(&self.readers).retain(|key, _| keep.contains(key));
    }

    async fn ensure(
        &self,
        bootstrap: &Bootstrap,
        spec: &TopicSpec,
    ) -> Result<TopicOutcome, TopicError> {
        let address = self.address(bootstrap).await;
        let admin = cached(&self.admins, address.clone(), || {
            KafkaAdmin::new(&address, self.timeout)
        })?;
        admin.ensure(&spec.topic()).await
    }

    async fn lag(
        &self,
        bootstrap: &Bootstrap,
        group: &str,
        topic: &str,
        partitions: i32,
    ) -> Result<GroupLag, LagError> {
        let address = self.address(bootstrap).await;
        let reader = cached(&self.readers, (address.clone(), group.to_owned()), || {
            LagReader::new(&address, group, self.timeout)
        })?;
        reader.read(topic, partitions).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// A cluster's DNS: the absolute names it knows.
    struct Cluster(BTreeSet<String>);

    impl Resolve for Cluster {
        fn resolves<'a>(
            &'a self,
            host: &'a str,
            _port: u16,
        ) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
            let known = self.0.contains(host);
            Box::pin(async move { known })
        }
    }

    fn cluster(names: &[&str]) -> Cluster {
        Cluster(names.iter().map(|n| (*n).to_owned()).collect())
    }

    async fn from_analytics(servers: &str, dns: &Cluster) -> String {
        resolve_bootstrap(servers, "analytics", "cluster.local", dns).await
    }

    #[tokio::test]
    async fn every_form_a_user_writes_reaches_what_the_pipelines_pods_reach() {
        let dns = cluster(&[
            // The pipeline's own Service, and one of the same name in the
            // operator's namespace that must not be picked.
            "kafka.analytics.svc.cluster.local.",
            "kafka.tributary-system.svc.cluster.local.",
            // A Service in another namespace.
            "kafka.platform.svc.cluster.local.",
            // A broker pod of a headless Service in the pipeline's namespace.
            "kafka-0.kafka-headless.analytics.svc.cluster.local.",
            // Outside the cluster.
            "broker.example.com.",
        ]);
        for (written, reached) in [
            ("kafka:9092", "kafka.analytics.svc.cluster.local:9092"),
            (
                "kafka.platform:9092",
                "kafka.platform.svc.cluster.local:9092",
            ),
            (
                "kafka-0.kafka-headless:9092",
                "kafka-0.kafka-headless.analytics.svc.cluster.local:9092",
            ),
            (
                "kafka.platform.svc.cluster.local:9092",
                "kafka.platform.svc.cluster.local:9092",
            ),
            ("broker.example.com:9093", "broker.example.com:9093"),
            ("10.0.0.7:9092", "10.0.0.7:9092"),
            ("[::1]:9092", "[::1]:9092"),
            ("localhost:9092", "localhost:9092"),
        ] {
            assert_eq!(from_analytics(written, &dns).await, reached, "{written}");
        }
        assert_eq!(
            from_analytics("kafka:9092, kafka-0.kafka-headless:9092", &dns).await,
            "kafka.analytics.svc.cluster.local:9092,kafka-0.kafka-headless.analytics.svc.cluster.local:9092"
        );
    }

    #[tokio::test]
    async fn names_nothing_resolves_fall_back_to_the_pipelines_namespace_for_short_hosts() {
        let dns = cluster(&[]);
        assert_eq!(
            from_analytics("kafka:9092,kafka-0.kafka:9092", &dns).await,
            "kafka.analytics.svc:9092,kafka-0.kafka:9092"
        );
    }

    #[test]
    fn a_pods_resolver_tries_the_search_list_first_below_five_dots() {
        assert_eq!(
            candidates("kafka", "ns", "cluster.local"),
            [
                "kafka.ns.svc.cluster.local.",
                "kafka.svc.cluster.local.",
                "kafka.cluster.local.",
                "kafka."
            ]
        );
        assert_eq!(candidates("a.b.c.d.e.f", "ns", "c.l")[0], "a.b.c.d.e.f.");
        assert_eq!(
            candidates("kafka.example.", "ns", "c.l"),
            ["kafka.example."]
        );
    }

    /// The system resolver, for real: what it can show here (no cluster
    /// DNS runs on this machine).
    #[tokio::test]
    async fn the_system_resolver_answers_for_names_it_knows_only() {
        let dns = SystemDns {
            timeout: Duration::from_secs(5),
        };
        assert!(dns.resolves("localhost", 9092).await);
        assert!(!dns.resolves("no-such-host.invalid.", 9092).await);
    }
}
