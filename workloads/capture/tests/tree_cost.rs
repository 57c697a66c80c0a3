//! Capture charges its byte budget for an event's tree before parsing it,
//! from `tree_cost::tree_bytes`. This measures, for hostile shapes of
//! events near Kafka's 1 MB message limit, the bytes parsing, normalising and
//! serialising one event actually request (`peakmem-alloc` counting the
//! peak of bytes live above those live before), and checks each against
//! the charge. Before, the charge was 32 bytes per byte of text: an event of
//! many one-entry objects took six times that (191 bytes per byte of text,
//! 97 since the uuid's digest stopped copying the properties).
//!
//! What it cannot show: the allocator's own rounding and retention (requests
//! are counted, not the pages behind them; a vector's growth counts only its
//! new part, not the moment both copies exist; `tree_bytes` adds a quarter for
//! rounding, and `workloads/cli/tests/capture_memory.rs` measures the whole
//! process's resident memory).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::System;
use std::sync::Mutex;

use chrono::Utc;
use peakmem_alloc::{INSTRUMENTED_SYSTEM, PeakMemAlloc, PeakMemAllocTrait};
use serde_json::{Map, Value};
use tributary_capture::normalize::{Context, Normalizer};
use tributary_capture::tree_cost::tree_bytes;

#[global_allocator]
static GLOBAL: &PeakMemAlloc<System> = &INSTRUMENTED_SYSTEM;

/// One measurement at a time: the counters are global.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Peak bytes requested, above those live before, while `text` becomes an
/// event and its Kafka payload, as capture's `records` does it.
fn measured(text: &str) -> usize {
    let ctx = Context {
        project_id: 1,
        received_at: Utc::now(),
        ip: Some("192.0.2.1".into()),
    };
    GLOBAL.reset_peak_memory();
    {
        let obj: Map<String, Value> = serde_json::from_str(text).unwrap();
        let mut normalizer = Normalizer::new(None, &ctx).unwrap();
        let event = normalizer.event(obj, 0).unwrap();
        let payload = event.to_kafka_payload().unwrap();
        assert!(!payload.is_empty());
    }
    GLOBAL.get_peak_memory()
}

/// An event whose `p` property is `value`, with `value` repeated to about
/// 900 KB of text.
fn event(one: &str, sep: &str, open: &str, close: &str) -> String {
    let n = 900_000 / (one.len() + sep.len());
    let items = vec![one; n].join(sep);
    format!(r#"{{"event":"e","distinct_id":"d","properties":{{"p":{open}{items}{close}}}}}"#)
}

#[test]
fn the_charge_covers_what_hostile_events_allocate() {
    let _one = ONE_AT_A_TIME.lock().unwrap();
    let many_keys = {
        let entries: Vec<String> = (0..60_000).map(|i| format!(r#""k{i}":0"#)).collect();
        format!(
            r#"{{"event":"e","distinct_id":"d","properties":{{{}}}}}"#,
            entries.join(",")
        )
    };
    let nested = {
        let depth = 120;
        format!(
            r#"{{"event":"e","distinct_id":"d","properties":{{"p":[{}]}}}}"#,
            vec![format!("{}0{}", r#"{"a":"#.repeat(depth), "}".repeat(depth)); 1000].join(",")
        )
    };
    let ordinary = r#"{"event":"$pageview","distinct_id":"user-1","properties":{"$current_url":"https://shop.example/cart","$browser":"Firefox","$os":"Linux","$screen_width":1920,"plan":"pro","items":[1,2,3],"$set":{"email":"a@example.com"}}}"#;
    let cases = [
        ("zeros", event("0", ",", "[", "]")),
        ("one-entry objects", event(r#"{"":0}"#, ",", "[", "]")),
        ("empty objects", event("{}", ",", "[", "]")),
        ("empty arrays", event("[]", ",", "[", "]")),
        ("one-character strings", event(r#""a""#, ",", "[", "]")),
        ("escaped strings", event(r#""\u00e9\n""#, ",", "[", "]")),
        ("nulls", event("null", ",", "[", "]")),
        ("one long string", event("x", "", "\"", "\"")),
        ("many keys", many_keys),
        ("nested objects", nested),
        ("ordinary", ordinary.to_owned()),
    ];
    let mut report = Vec::new();
    for (name, text) in &cases {
        assert!(text.len() < 1_000_000, "{name} is {} bytes", text.len());
        let used = measured(text);
        let charged = tree_bytes(text.as_bytes());
        report.push(format!(
            "{name:>22}: text {:>7} B, used {:>9} B ({:>5.1}x), charged {:>9} B ({:.2} of it)",
            text.len(),
            used,
            used as f64 / text.len() as f64,
            charged,
            used as f64 / charged as f64
        ));
        assert!(
            used <= charged,
            "{name}: {used} bytes used, {charged} charged\n{}",
            report.join("\n")
        );
    }
    println!("{}", report.join("\n"));
    // And the old charge, 32 bytes per byte of text, did not cover them.
    let objects = &cases[1].1;
    assert!(measured(objects) > 32 * objects.len());
}
