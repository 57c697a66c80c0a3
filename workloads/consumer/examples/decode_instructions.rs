//! Decodes `N` wire events (the consumer bench's PostHog-like events, six
//! properties) with the consumer's decoder, for an instruction count that
//! stays repeatable on a noisy machine: run it under callgrind with two
//! sizes and divide the difference by the difference of the sizes
//! (BENCHMARKS.md, "Consumer decode instructions").
//!
//! `cargo build --release -p tributary-consumer --example decode_instructions`
//! `valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/decode_instructions 1000`
#![allow(clippy::unwrap_used, clippy::expect_used)]

// The allocator of the `tributary` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;

use chrono::TimeZone;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .expect("usage: decode_instructions N");
    let t = chrono::Utc.timestamp_millis_opt(1_765_000_000_123).unwrap();
    let payloads: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let e = tributary_tests::sample::shop_event(i, t);
            e.to_kafka_payload().unwrap()
        })
        .collect();
    let mut sum = 0u64;
    let started = std::time::Instant::now();
    for p in &payloads {
        let (row, received_ms) = tributary_consumer::wire::decode(black_box(p)).unwrap();
        sum = sum.wrapping_add(row.timestamp_ms ^ received_ms as u64 ^ row.properties.len() as u64);
        black_box(row);
    }
    let elapsed = started.elapsed();
    println!(
        "{n} events decoded in {elapsed:?}, {:.0} ns an event ({sum})",
        elapsed.as_nanos() as f64 / n.max(1) as f64
    );
}
