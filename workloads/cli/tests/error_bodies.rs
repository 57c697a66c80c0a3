//! What a caller learns when a server behind a workload fails: which one,
//! never where it is or its own error text. Each workload runs (the real
//! binary) with its Kafka, ClickHouse, Redis, Postgres or auth service at an
//! address nothing listens on, or cut away by a proxy, and every answer a
//! caller can get, `/ready` included (it needs no key), must not carry that
//! address. The log, which only the operator reads, keeps it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tributary_tests::kafka::free_port;
use tributary_tests::process::Guarded;
use tributary_tests::tcp_proxy::TcpProxy;
use tributary_tests::{Stack, poll_until, unique_name};

fn start(workload: &str, env: &[(&str, String)]) -> Guarded {
    Guarded(
        Command::new(env!("CARGO_BIN_EXE_tributary"))
            .arg(workload)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// `(status, body)` of a request, once the server listens.
async fn answer(method: &str, url: &str, key: Option<&str>, body: Option<Value>) -> (u16, String) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    poll_until(&format!("{method} {url}"), Duration::from_secs(60), || {
        let (http, body) = (http.clone(), body.clone());
        async move {
            let mut request = match method {
                "GET" => http.get(url),
                _ => http.post(url),
            };
            if let Some(key) = key {
                request = request.header("x-api-key", key);
            }
            if let Some(body) = body {
                request = request.json(&body);
            }
            let r = request.send().await.ok()?;
            Some((r.status().as_u16(), r.text().await.ok()?))
        }
    })
    .await
}

/// Fails when `body` names `secret` (an address, a port).
fn tells_nothing_of(what: &str, (status, body): &(u16, String), secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !body.contains(secret),
            "{what}: {status} body names {secret:?}: {body}"
        );
    }
}

const KEY: &str = "trb_0123456789abcdef0123456789abcdef0123456789a";

#[tokio::test]
async fn failures_behind_a_workload_never_show_its_servers_addresses() {
    let stack = Stack::require();
    // Ports nothing listens on, distinctive in a body.
    let (kafka, clickhouse, redis, auth) = (free_port(), free_port(), free_port(), free_port());
    let event = json!({"event": "e", "distinct_id": "d"});

    // Capture: Kafka and the auth service unreachable.
    let port = free_port();
    let _capture = start(
        "capture",
        &[
            ("CAPTURE_PORT", port.to_string()),
            (
                "CAPTURE_KAFKA_BOOTSTRAP_SERVERS",
                format!("127.0.0.1:{kafka}"),
            ),
            ("CAPTURE_AUTH_URL", format!("http://127.0.0.1:{auth}")),
        ],
    );
    let base = format!("http://127.0.0.1:{port}");
    let secrets = [&*kafka.to_string(), &*auth.to_string(), "127.0.0.1"];
    let ready = answer("GET", &format!("{base}/ready"), None, None).await;
    assert_eq!(ready.0, 503, "{ready:?}");
    tells_nothing_of("capture /ready", &ready, &secrets);
    let refused = answer(
        "POST",
        &format!("{base}/capture"),
        Some(KEY),
        Some(event.clone()),
    )
    .await;
    assert_eq!(refused.0, 503, "{refused:?}");
    assert!(refused.1.contains("auth"), "says what failed: {refused:?}");
    tells_nothing_of("capture, auth down", &refused, &secrets);

    // Capture with keyless traffic (no auth asked): Kafka down.
    let port = free_port();
    let _keyless = start(
        "capture",
        &[
            ("CAPTURE_PORT", port.to_string()),
            (
                "CAPTURE_KAFKA_BOOTSTRAP_SERVERS",
                format!("127.0.0.1:{kafka}"),
            ),
            ("CAPTURE_REQUIRE_API_KEY", "false".into()),
            ("CAPTURE_KEYLESS_PROJECT_ID", "1".into()),
        ],
    );
    let refused = answer(
        "POST",
        &format!("http://127.0.0.1:{port}/capture"),
        None,
        Some(event),
    )
    .await;
    assert_eq!(refused.0, 503, "{refused:?}");
    assert!(refused.1.contains("Kafka"), "says what failed: {refused:?}");
    tells_nothing_of("capture, Kafka down", &refused, &secrets);

    // Query: ClickHouse and Redis unreachable, keyless reads (no auth).
    let port = free_port();
    let _query = start(
        "query",
        &[
            ("QUERY_PORT", port.to_string()),
            ("QUERY_CLICKHOUSE_HOST", "127.0.0.1".into()),
            ("QUERY_CLICKHOUSE_PORT", clickhouse.to_string()),
            ("REDIS_URL", format!("redis://127.0.0.1:{redis}")),
            ("QUERY_REQUIRE_API_KEY", "false".into()),
            ("QUERY_KEYLESS_PROJECT_ID", "1".into()),
        ],
    );
    let base = format!("http://127.0.0.1:{port}");
    let secrets = [&*clickhouse.to_string(), &*redis.to_string(), "127.0.0.1"];
    let ready = answer("GET", &format!("{base}/ready"), None, None).await;
    assert_eq!(ready.0, 503, "{ready:?}");
    tells_nothing_of("query /ready", &ready, &secrets);
    let trend = json!({"series": [{"event": "e"}], "date_from": "-7d"});
    let failed = answer(
        "POST",
        &format!("{base}/api/query/trend"),
        None,
        Some(trend),
    )
    .await;
    assert!(failed.0 >= 500, "{failed:?}");
    assert!(
        failed.1.contains("ClickHouse"),
        "says what failed: {failed:?}"
    );
    tells_nothing_of("query, ClickHouse down", &failed, &secrets);

    // Query whose ClickHouse answers but refuses (no such database): the
    // code, not ClickHouse's words.
    let (host, ch_port) = tributary_tests::clickhouse::host_port(&stack.clickhouse_url);
    let port = free_port();
    let database = unique_name("no_such_database");
    let _refused = start(
        "query",
        &[
            ("QUERY_PORT", port.to_string()),
            ("QUERY_CLICKHOUSE_HOST", host.clone()),
            ("QUERY_CLICKHOUSE_PORT", ch_port.to_string()),
            ("QUERY_CLICKHOUSE_DATABASE", database.clone()),
            ("REDIS_URL", stack.redis_url.clone()),
            ("QUERY_REQUIRE_API_KEY", "false".into()),
            ("QUERY_KEYLESS_PROJECT_ID", "1".into()),
        ],
    );
    let trend = json!({"series": [{"event": "e"}], "date_from": "-7d"});
    let refused = answer(
        "POST",
        &format!("http://127.0.0.1:{port}/api/query/trend?refresh=true"),
        None,
        Some(trend),
    )
    .await;
    assert_eq!(refused.0, 502, "{refused:?}");
    tells_nothing_of(
        "query, ClickHouse refusing",
        &refused,
        &[&ch_port.to_string(), "DB::Exception", "e.what()"],
    );

    // Auth: Postgres cut away once auth is up.
    let (pg_host, pg_port) = stack.postgres_address();
    let upstream: SocketAddr = (pg_host.as_str(), pg_port)
        .to_socket_addrs()
        .unwrap()
        .next()
        .unwrap();
    let postgres = TcpProxy::start(upstream, None).unwrap();
    let dsn = stack.postgres_dsn_via(&postgres.addr().to_string());
    let port = free_port();
    let _auth = start(
        "auth",
        &[
            ("AUTH_PORT", port.to_string()),
            ("POSTGRES_DSN", dsn),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef".into()),
        ],
    );
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(
        answer("GET", &format!("{base}/ready"), None, None).await.0,
        200
    );
    postgres.cut();
    let proxy_port = postgres.addr().port().to_string();
    let secrets = [proxy_port.as_str(), "127.0.0.1", "postgres://"];
    let ready = poll_until("auth not ready", Duration::from_secs(30), || {
        let url = format!("{base}/ready");
        async move {
            let r = answer("GET", &url, None, None).await;
            (r.0 == 503).then_some(r)
        }
    })
    .await;
    tells_nothing_of("auth /ready", &ready, &secrets);
    let user =
        json!({"email": format!("{}@example.test", unique_name("u")), "password": "long-password"});
    let failed = answer("POST", &format!("{base}/api/signup"), None, Some(user)).await;
    assert!(failed.0 >= 500, "{failed:?}");
    tells_nothing_of("auth, Postgres down", &failed, &secrets);
}
