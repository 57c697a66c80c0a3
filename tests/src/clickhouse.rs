//! ClickHouse helpers for tests: a private server that can be stopped and
//! restarted, and clients.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::kafka::free_port;
use crate::unique_name;

/// A client for `url` the way the 18.16 test server needs it.
pub fn client(url: &str) -> clickhouse::Client {
    clickhouse::Client::default()
        .with_url(url)
        .with_validation(false)
        .with_compression(clickhouse::Compression::None)
}

/// `host` and `port` of an `http://host:port` URL.
pub fn host_port(url: &str) -> (String, u16) {
    let rest = url
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    let (host, port) = rest.split_once(':').unwrap_or((rest, "8123"));
    (
        host.to_owned(),
        port.trim_end_matches('/').parse().unwrap_or(8123),
    )
}

/// Settings for database `database` on the server at `url`, as the services
/// read them from their environment (no validation, no compression).
pub fn settings(url: &str, database: &str) -> tributary_core::clickhouse::ClickHouseSettings {
    let (host, port) = host_port(url);
    let port = port.to_string();
    let vars = [
        ("TEST_CLICKHOUSE_HOST", host.as_str()),
        ("TEST_CLICKHOUSE_PORT", port.as_str()),
        ("TEST_CLICKHOUSE_DATABASE", database),
    ];
    tributary_core::clickhouse::ClickHouseSettings::from_env(
        &tributary_core::config::Env::new(&vars),
        "TEST",
    )
    .unwrap_or_else(|e| panic!("ClickHouse settings for {url} / {database}: {e}"))
}

/// Drops `database` from the server at `url`, if it is there.
pub async fn drop_database(url: &str, database: &str) {
    client(url)
        .query(&format!("DROP DATABASE IF EXISTS {database}"))
        .execute()
        .await
        .unwrap_or_else(|e| panic!("dropping {database} on {url}: {e}"));
}

/// Settings for database `database` on cluster `cluster`, through the node
/// at `url`.
pub fn cluster_settings(
    url: &str,
    database: &str,
    cluster: &str,
) -> tributary_core::clickhouse::ClickHouseSettings {
    tributary_core::clickhouse::ClickHouseSettings {
        cluster: Some(cluster.to_owned()),
        ..settings(url, database)
    }
}

fn server_binary() -> PathBuf {
    ["/usr/bin/clickhouse-server", "/usr/sbin/clickhouse-server"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("clickhouse-server not installed (infrastructure/local-stack.sh up installs it)")
        })
}

/// A ClickHouse server of the test's own: own ports, own data, killed on drop.
pub struct PrivateClickHouse {
    dir: PathBuf,
    /// The address it listens on (127.0.0.1 unless [`ClickHouseOptions::host`]).
    pub host: String,
    pub http_port: u16,
    pub tcp_port: u16,
    /// With [`ClickHouseOptions::tls`].
    pub https_port: Option<u16>,
    child: Option<Child>,
}

/// How a [`PrivateClickHouse`] serves: HTTPS too, and users beyond
/// `default`.
#[derive(Debug, Clone, Default)]
pub struct ClickHouseOptions {
    /// `(certificate, private key)` PEM files: an HTTPS port as well.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `(user, password)` added to `default`.
    pub users: Vec<(String, String)>,
    /// A loopback address of its own (e.g. `127.9.0.2`), so that several
    /// servers share ports as a cluster's nodes do.
    pub host: Option<String>,
    /// `(http, native)` ports, instead of free ones.
    pub ports: Option<(u16, u16)>,
    /// More of config.xml (e.g. `<remote_servers>`).
    pub config: String,
}

/// Servers of the test's own making one cluster of `shards` shards (one
/// replica each), on loopback addresses of their own sharing two ports.
pub struct PrivateCluster {
    pub name: String,
    pub nodes: Vec<PrivateClickHouse>,
}

impl PrivateCluster {
    /// `shards` shards of one replica each.
    pub fn start(shards: usize) -> Self {
        Self::make(shards, 1, None)
    }

    /// One shard of `replicas` replicas, replicated through the ZooKeeper
    /// at `zookeeper` (`host:port`) with a 3 s session, so that a killed
    /// replica is taken for gone, and catches up, within seconds.
    pub fn start_replicated(replicas: usize, zookeeper: &str) -> Self {
        Self::make(1, replicas, Some(zookeeper))
    }

    fn make(shards: usize, replicas: usize, zookeeper: Option<&str>) -> Self {
        let name = unique_name("cluster");
        let (http_port, tcp_port, interserver) = (free_port(), free_port(), free_port());
        // A /24 of loopback of its own: 127.<pid>.<n>.x.
        let net = format!(
            "127.{}.{}",
            std::process::id() % 250 + 1,
            free_port() % 250 + 1
        );
        // (shard, host) of every node, shard by shard.
        let nodes: Vec<(usize, String)> = (0..shards * replicas)
            .map(|i| (i / replicas + 1, format!("{net}.{}", i + 1)))
            .collect();
        let replicated = zookeeper.is_some();
        let layout: String = (1..=shards)
            .map(|shard| {
                let hosts: String = nodes
                    .iter()
                    .filter(|(s, _)| *s == shard)
                    .map(|(_, h)| format!("<replica><host>{h}</host><port>{tcp_port}</port></replica>"))
                    .collect();
                format!("<shard><internal_replication>{replicated}</internal_replication>{hosts}</shard>")
            })
            .collect();
        let remote = format!("<remote_servers><{name}>{layout}</{name}></remote_servers>");
        let nodes = nodes
            .iter()
            .map(|(shard, host)| {
                let mut config = remote.clone();
                if let Some(zookeeper) = zookeeper {
                    let (zk_host, zk_port) = zookeeper.rsplit_once(':').unwrap_or((zookeeper, "2181"));
                    config.push_str(&format!(
                        "<zookeeper><node><host>{zk_host}</host><port>{zk_port}</port></node><session_timeout_ms>3000</session_timeout_ms></zookeeper>\
<macros><shard>{shard}</shard><replica>{host}</replica></macros>\
<interserver_http_host>{host}</interserver_http_host><interserver_http_port>{interserver}</interserver_http_port>"
                    ));
                }
                PrivateClickHouse::start_with(&ClickHouseOptions {
                    host: Some(host.clone()),
                    ports: Some((http_port, tcp_port)),
                    config,
                    ..ClickHouseOptions::default()
                })
            })
            .collect();
        Self { name, nodes }
    }
}

impl PrivateClickHouse {
    pub fn start() -> Self {
        Self::start_with(&ClickHouseOptions::default())
    }

    pub fn start_with(options: &ClickHouseOptions) -> Self {
        let dir = std::env::temp_dir().join(unique_name("tributary_ch"));
        std::fs::create_dir_all(dir.join("data/tmp")).unwrap();
        let (http_port, tcp_port) = options.ports.unwrap_or_else(|| (free_port(), free_port()));
        let https_port = free_port();
        let host = options
            .host
            .clone()
            .unwrap_or_else(|| "127.0.0.1".to_owned());
        let more = &options.config;
        let d = dir.display();
        let tls = match &options.tls {
            Some((cert, key)) => format!(
                "<https_port>{https_port}</https_port><openSSL><server><certificateFile>{}</certificateFile>\
<privateKeyFile>{}</privateKeyFile><verificationMode>none</verificationMode><loadDefaultCAFile>false</loadDefaultCAFile>\
<cacheSessions>true</cacheSessions><disableProtocols>sslv2,sslv3</disableProtocols><preferServerCiphers>true</preferServerCiphers>\
</server></openSSL>",
                cert.display(),
                key.display()
            ),
            None => String::new(),
        };
        std::fs::write(
            dir.join("config.xml"),
            format!(
                r#"<?xml version="1.0"?><yandex>
<logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/err.log</errorlog></logger>
<http_port>{http_port}</http_port><tcp_port>{tcp_port}</tcp_port><listen_host>{host}</listen_host>{tls}{more}
<path>{d}/data/</path><tmp_path>{d}/data/tmp/</tmp_path><user_files_path>{d}/data/user_files/</user_files_path>
<format_schema_path>{d}/data/format_schemas/</format_schema_path>
<users_config>{d}/users.xml</users_config><default_profile>default</default_profile><default_database>default</default_database>
<mark_cache_size>67108864</mark_cache_size><timezone>UTC</timezone><mlock_executable>false</mlock_executable>
</yandex>"#
            ),
        )
        .unwrap();
        let extra: String = options
            .users
            .iter()
            .map(|(user, password)| {
                format!(
                    "<{user}><password>{password}</password><networks><ip>127.0.0.0/8</ip></networks><profile>default</profile><quota>default</quota></{user}>"
                )
            })
            .collect();
        std::fs::write(
            dir.join("users.xml"),
            format!(
                r#"<?xml version="1.0"?><yandex><profiles><default></default></profiles>
<users><default><password></password><networks><ip>127.0.0.0/8</ip></networks><profile>default</profile><quota>default</quota></default>{extra}</users>
<quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas></yandex>"#
            ),
        )
        .unwrap();
        let mut server = Self {
            dir,
            host,
            http_port,
            tcp_port,
            https_port: options.tls.as_ref().map(|_| https_port),
            child: None,
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("http://{}:{}", self.host, self.http_port)
    }

    /// Starts the server (again) on the same ports and data, and waits until
    /// it answers a query.
    pub fn restart(&mut self) {
        let child = Command::new(server_binary())
            .arg(format!(
                "--config-file={}",
                self.dir.join("config.xml").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let ok = std::process::Command::new("curl")
                .args([
                    "-fsS",
                    "--max-time",
                    "2",
                    &format!("{}/?query=SELECT%201", self.url()),
                ])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ok {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "private ClickHouse did not answer within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Makes the server refuse writes (`true`: the users' profile turns
    /// `readonly`, as a full or read-only disk refuses them) or take them
    /// again. ClickHouse reads the users file again by itself within
    /// seconds.
    pub fn set_read_only(&self, read_only: bool) {
        let profile = if read_only {
            "<default><readonly>1</readonly></default>"
        } else {
            "<default></default>"
        };
        std::fs::write(
            self.dir.join("users.xml"),
            format!(
                r#"<?xml version="1.0"?><yandex><profiles>{profile}</profiles>
<users><default><password></password><networks><ip>127.0.0.0/8</ip></networks><profile>default</profile><quota>default</quota></default></users>
<quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas></yandex>"#
            ),
        )
        .unwrap_or_else(|e| panic!("rewriting users.xml: {e}"));
    }

    /// Kills the server and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateClickHouse {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
