//! Sends `N` single-event `POST /capture` requests through capture's routes
//! in-process (a static key, events kept in memory: no socket, no broker),
//! for an instruction count that stays repeatable on a noisy machine: run
//! it under callgrind with two sizes and divide the difference by the
//! difference of the sizes (BENCHMARKS.md, "Capture request
//! instructions"). What it leaves out: hyper's HTTP parsing and the Kafka
//! client, which the wrk benchmark includes.
//!
//! `cargo build --release -p tributary-capture --example request_instructions`
#![allow(clippy::unwrap_used, clippy::expect_used)]

// The allocator of the `tributary` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use tower::ServiceExt;
use tributary_capture::memory_sink::MemorySink;
use tributary_capture::{Capture, CaptureConfig};
use tributary_core::config::Env;
use tributary_core::keys::StaticKeys;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .expect("usage: request_instructions N");
    let vars: HashMap<String, String> = [
        ("CAPTURE_HOST", "127.0.0.1"),
        ("CAPTURE_PORT", "1"),
        ("CAPTURE_KAFKA_BOOTSTRAP_SERVERS", "unused:9092"),
        ("CAPTURE_API_KEYS", "phc_bench=1"),
        ("CAPTURE_RATE_LIMIT_PER_KEY", "0"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let mut config = CaptureConfig::from_env(&Env::new(&vars)).unwrap();
    // Bound but never served: any free port.
    config.listen.set_port(0);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let keys = Arc::new(StaticKeys::new(config.api_keys.clone()));
        let sink = Arc::new(MemorySink::new());
        let capture = Capture::bind_with_sink(&config, keys, sink.clone())
            .await
            .unwrap();
        let router = capture.router();
        let peer: SocketAddr = "203.0.113.7:40000".parse().unwrap();
        let mut accepted = 0;
        for i in 0..n {
            let body = format!(
                r#"{{"event":"$pageview","distinct_id":"user-{}","properties":{{"$current_url":"https://shop.example.com/products/{}","$browser":"Chrome"}}}}"#,
                i % 5000,
                i % 700
            );
            let mut request = Request::post("/capture")
                .header("content-type", "application/json")
                .header("x-api-key", "phc_bench")
                .body(Body::from(body))
                .unwrap();
            request.extensions_mut().insert(ConnectInfo(peer));
            let response = router.clone().oneshot(request).await.unwrap();
            if response.status().is_success() {
                accepted += 1;
            }
            if i % 1000 == 999 {
                sink.take();
            }
        }
        println!("{accepted} of {n} requests accepted");
        assert_eq!(accepted, n);
    });
}
