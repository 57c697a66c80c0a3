//! Starts a real capture server against a Kafka-protocol broker.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use tributary_capture::memory_sink::MemorySink;
use tributary_capture::{Capture, CaptureConfig};
use tributary_core::config::Env;
use tributary_core::keys::StaticKeys;
use tributary_tests::poll_until;

pub struct Running {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub handle: tokio::task::JoinHandle<()>,
    pub http: reqwest::Client,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `GET path`, answered.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    /// The `/metrics` page.
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn wait_ready(&self, timeout: Duration) {
        let http = self.http.clone();
        let url = self.url("/ready");
        poll_until("capture /ready to answer 200", timeout, || {
            let http = http.clone();
            let url = url.clone();
            async move {
                let r = http.get(&url).send().await.ok()?;
                (r.status() == 200).then_some(())
            }
        })
        .await;
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("capture did not stop within 30 s")
            .unwrap();
    }
}

/// Config for a test: loopback, port 0, the given broker and topic, plus
/// `extra` variables. Unless `extra` says otherwise, keyless events are
/// taken (the explicit opt-in) into project 1, so format tests need no key.
pub fn config(bootstrap: &str, topic: &str, extra: &[(&str, &str)]) -> CaptureConfig {
    let mut vars: HashMap<String, String> = HashMap::from([
        ("CAPTURE_REQUIRE_API_KEY".into(), "false".into()),
        ("CAPTURE_KEYLESS_PROJECT_ID".into(), "1".into()),
        ("CAPTURE_HOST".into(), "127.0.0.1".into()),
        ("CAPTURE_PORT".into(), "1".into()),
        ("CAPTURE_KAFKA_BOOTSTRAP_SERVERS".into(), bootstrap.into()),
        ("CAPTURE_KAFKA_TOPIC".into(), topic.into()),
        ("CAPTURE_KAFKA_READY_INTERVAL_MS".into(), "200".into()),
    ]);
    for (k, v) in extra {
        vars.insert((*k).into(), (*v).into());
    }
    let keyed = extra
        .iter()
        .any(|(k, v)| *k == "CAPTURE_REQUIRE_API_KEY" && *v == "true");
    if keyed
        && !extra
            .iter()
            .any(|(k, _)| *k == "CAPTURE_KEYLESS_PROJECT_ID")
    {
        vars.remove("CAPTURE_KEYLESS_PROJECT_ID");
    }
    let mut config = CaptureConfig::from_env(&Env::new(&vars)).unwrap();
    config.listen.set_port(0);
    config
}

/// A fresh topic on the stack's broker and a capture producing to it,
/// ready: `(capture, topic)`.
pub async fn start_on_new_topic(
    stack: &tributary_tests::Stack,
    prefix: &str,
    partitions: i32,
    extra: &[(&str, &str)],
) -> (Running, String) {
    let topic = tributary_tests::unique_name(prefix);
    tributary_tests::kafka::create_topic(&stack.kafka_bootstrap, &topic, partitions).await;
    let capture = start(config(&stack.kafka_bootstrap, &topic, extra)).await;
    capture.wait_ready(Duration::from_secs(30)).await;
    (capture, topic)
}

pub async fn start(config: CaptureConfig) -> Running {
    run(Capture::bind(&config).await.unwrap())
}

/// A capture whose events go to memory, no broker involved, with `config`'s
/// settings and `CAPTURE_API_KEYS`: `(capture, sink)`.
pub async fn start_in_memory(extra: &[(&str, &str)]) -> (Running, Arc<MemorySink>) {
    let config = config("127.0.0.1:9", "unused", extra);
    let keys = Arc::new(StaticKeys::new(config.api_keys.clone()));
    let sink = Arc::new(MemorySink::new());
    let capture = Capture::bind_with_sink(&config, keys, sink.clone())
        .await
        .unwrap();
    (run(capture), sink)
}

fn run(capture: Capture) -> Running {
    let addr = capture.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let handle = tokio::spawn(async move {
        capture.serve(token).await.unwrap();
    });
    Running {
        addr,
        shutdown,
        handle,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
    }
}

/// A form body of `data=` (and `compression=`), as SDKs send.
pub fn form(data: &str, compression: Option<&str>) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    s.append_pair("data", data);
    if let Some(c) = compression {
        s.append_pair("compression", c);
    }
    s.finish()
}

/// `s` percent-encoded for a query string.
pub fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
