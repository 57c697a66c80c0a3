//! A ClickHouse cluster as its servers describe it (`system.clusters`):
//! read from the configured server, checked against what every other node
//! says, and the [`Layout`] that follows from it.
//!
//! Every node is reached over HTTP at the host `system.clusters` names and
//! at the configured server's port, scheme and credentials: the nodes of a
//! cluster serve HTTP alike (on Kubernetes, one Service port).

use crate::clickhouse::ClickHouseSettings;

use super::Layout;

/// One server of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Node {
    /// `shard_num`, from 1.
    pub shard: u32,
    /// `replica_num`, from 1.
    pub replica: u32,
    /// `host_name`, where its HTTP interface is reached.
    pub host: String,
    /// Its native protocol port, which is what other servers (and their
    /// errors) name it by.
    pub port: u16,
}

impl Node {
    /// `host:port` as ClickHouse's errors name the server.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// A cluster's shards and replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub name: String,
    /// Sorted by shard, then replica.
    pub nodes: Vec<Node>,
}

/// Why a cluster cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    #[error("ClickHouse at {server} has no cluster {cluster} in its remote_servers")]
    Missing { cluster: String, server: String },
    #[error("cluster {cluster} as {server} describes it: {problem}")]
    Inconsistent {
        cluster: String,
        server: String,
        problem: String,
    },
    #[error("cannot read cluster {cluster} from ClickHouse at {server}: {message}")]
    Unreachable {
        cluster: String,
        server: String,
        message: String,
    },
}

impl Topology {
    /// The cluster `name` from `system.clusters` rows (shard, replica,
    /// host, port) as `server` reported them: shards numbered 1 to N, each
    /// with at least one replica, no server twice.
    pub fn from_rows(
        name: &str,
        server: &str,
        rows: Vec<(u32, u32, String, u16)>,
    ) -> Result<Self, ClusterError> {
        let problem = |problem: String| ClusterError::Inconsistent {
            cluster: name.to_owned(),
            server: server.to_owned(),
            problem,
        };
        if rows.is_empty() {
            return Err(ClusterError::Missing {
                cluster: name.to_owned(),
                server: server.to_owned(),
            });
        }
        let mut nodes: Vec<Node> = rows
            .into_iter()
            .map(|(shard, replica, host, port)| Node {
                shard,
                replica,
                host,
                port,
            })
            .collect();
        nodes.sort();
        let shards = nodes.iter().map(|n| n.shard).max().unwrap_or(0);
        for shard in 1..=shards {
            if !nodes.iter().any(|n| n.shard == shard) {
                return Err(problem(format!(
                    "shard {shard} of 1..{shards} has no server"
                )));
            }
        }
        for pair in nodes.windows(2) {
            if pair[0].address() == pair[1].address() {
                return Err(problem(format!(
                    "{} is listed twice (shards {} and {})",
                    pair[0].address(),
                    pair[0].shard,
                    pair[1].shard
                )));
            }
        }
        Ok(Self {
            name: name.to_owned(),
            nodes,
        })
    }

    pub fn shards(&self) -> u32 {
        self.nodes.iter().map(|n| n.shard).max().unwrap_or(0)
    }

    /// Whether any shard has more than one replica.
    pub fn replicated(&self) -> bool {
        self.nodes.iter().any(|n| n.replica > 1)
    }

    pub fn layout(&self) -> Layout {
        Layout::Cluster {
            name: self.name.clone(),
            replicated: self.replicated(),
        }
    }

    /// The shard of the server ClickHouse names `host:port` in an error.
    pub fn shard_of(&self, address: &str) -> Option<u32> {
        self.nodes
            .iter()
            .find(|n| n.address() == address)
            .map(|n| n.shard)
    }

    /// The shards whose servers an error names, as ClickHouse names them:
    /// `(host:port)` (e.g. `Connection refused (ch-2:9000)`), in order,
    /// each once.
    pub fn shards_named(&self, message: &str) -> Vec<u32> {
        let mut shards = Vec::new();
        for piece in message.split('(').skip(1) {
            let Some(address) = piece.split(')').next() else {
                continue;
            };
            if let Some(shard) = self.shard_of(address)
                && !shards.contains(&shard)
            {
                shards.push(shard);
            }
        }
        shards
    }
}

/// Reads the cluster `name` from the server `client` talks to (`server`,
/// its URL, for messages).
pub async fn read_topology(
    client: &clickhouse::Client,
    server: &str,
    name: &str,
) -> Result<Topology, ClusterError> {
    let rows: Vec<(u32, u32, String, u16)> = client
        .query(
            "SELECT toUInt32(shard_num), toUInt32(replica_num), host_name, toUInt16(port) \
             FROM system.clusters WHERE cluster = ?",
        )
        .bind(name)
        .fetch_all()
        .await
        .map_err(|e| ClusterError::Unreachable {
            cluster: name.to_owned(),
            server: server.to_owned(),
            message: e.to_string(),
        })?;
    Topology::from_rows(name, server, rows)
}

async fn read(settings: &ClickHouseSettings, name: &str) -> Result<Topology, ClusterError> {
    read_topology(&settings.client_without_database(), &settings.url(), name).await
}

/// The cluster `settings.cluster` names, as the configured server describes
/// it, after checking that every node describes it alike. `None` without a
/// cluster.
pub async fn discover(settings: &ClickHouseSettings) -> Result<Option<Topology>, ClusterError> {
    let Some(name) = settings.cluster.as_deref() else {
        return Ok(None);
    };
    let topology = read(settings, name).await?;
    for node in &topology.nodes {
        let seen = read(&settings.on_host(&node.host), name).await?;
        if seen.nodes != topology.nodes {
            return Err(ClusterError::Inconsistent {
                cluster: name.to_owned(),
                server: settings.on_host(&node.host).url(),
                problem: format!(
                    "it lists {} where {} lists {}",
                    describe(&seen),
                    settings.url(),
                    describe(&topology)
                ),
            });
        }
    }
    Ok(Some(topology))
}

/// `shard 1: a:9000, shard 2: b:9000` for messages.
pub fn describe(topology: &Topology) -> String {
    topology
        .nodes
        .iter()
        .map(|n| format!("shard {} replica {}: {}", n.shard, n.replica, n.address()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(shard: u32, replica: u32, host: &str) -> (u32, u32, String, u16) {
        (shard, replica, host.to_owned(), 9000)
    }

    #[test]
    fn shards_and_replicas_make_the_layout() {
        let t = Topology::from_rows("c", "http://a:8123", vec![row(2, 1, "b"), row(1, 1, "a")])
            .unwrap();
        assert_eq!(t.shards(), 2);
        assert_eq!(t.nodes[0].host, "a");
        assert_eq!(
            t.layout(),
            Layout::Cluster {
                name: "c".into(),
                replicated: false
            }
        );
        assert_eq!(t.shard_of("b:9000"), Some(2));
        assert_eq!(t.shard_of("c:9000"), None);
        let r = Topology::from_rows("c", "http://a:8123", vec![row(1, 1, "a"), row(1, 2, "a2")])
            .unwrap();
        assert!(r.replicated());
    }

    #[test]
    fn the_shards_an_error_names_are_found() {
        let t = Topology::from_rows(
            "c",
            "http://a:8123",
            vec![row(1, 1, "127.0.0.2"), row(2, 1, "127.0.0.3")],
        )
        .unwrap();
        // As ClickHouse 18.16 answered with shard 2 killed.
        let message = "Code: 279, e.displayText() = DB::NetException: All connection tries failed. Log: \n\n\
            Code: 210, e.displayText() = DB::NetException: Connection reset by peer, while reading from socket (127.0.0.3:9000), e.what() = DB::NetException\n\
            Code: 210, e.displayText() = DB::NetException: Connection refused (127.0.0.3:9000), e.what() = DB::NetException\n";
        assert_eq!(t.shards_named(message), [2]);
        assert_eq!(
            t.shards_named("Connection refused (elsewhere:9000)"),
            Vec::<u32>::new()
        );
    }

    #[test]
    fn a_missing_or_broken_cluster_is_named() {
        let e = Topology::from_rows("c", "http://a:8123", vec![]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "ClickHouse at http://a:8123 has no cluster c in its remote_servers"
        );
        let e = Topology::from_rows("c", "http://a:8123", vec![row(1, 1, "a"), row(3, 1, "c")])
            .unwrap_err();
        assert!(
            e.to_string().contains("shard 2 of 1..3 has no server"),
            "{e}"
        );
        let e = Topology::from_rows("c", "http://a:8123", vec![row(1, 1, "a"), row(2, 1, "a")])
            .unwrap_err();
        assert!(e.to_string().contains("a:9000 is listed twice"), "{e}");
    }
}
