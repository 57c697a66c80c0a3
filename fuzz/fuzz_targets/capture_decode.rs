//! Capture's request path below HTTP, on arbitrary bytes: decoding (JSON,
//! gzip, base64, form `data=`, the query string's `data`), checking, the
//! outline, key probing and normalisation, exactly as `api::accept` chains
//! them, under a small byte budget.
//!
//! Besides "no panic, no sanitizer report" it checks what the service relies
//! on: decoded text never exceeds the limit; text `checked_json` lets through
//! parses; every byte taken from the budget is given back; and an event's
//! tree is only built once its cost fits the budget.
#![no_main]

use chrono::Utc;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use tributary_capture::budget::ByteBudget;
use tributary_capture::decode::{self, BodyHints};
use tributary_capture::normalize::{Context, Normalizer};
use tributary_capture::outline;
use tributary_capture::tree_cost::tree_bytes;

const LIMIT: usize = 64 * 1024;
const BUDGET: usize = 4 * 1024 * 1024;

fuzz_target!(|input: &[u8]| {
    let Some((&mode, body)) = input.split_first() else {
        return;
    };
    let budget = ByteBudget::new(BUDGET);
    {
        let mut charge = budget.charge();
        let text = if mode & 1 == 0 {
            let hints = BodyHints {
                form: mode & 2 != 0,
            };
            decode::decode_text(body, &hints, LIMIT, &mut charge)
        } else {
            decode::decode_query_text(body, LIMIT, &mut charge)
        };
        let Ok(text) = text else { return };
        assert!(
            text.len() <= LIMIT,
            "decoded {} bytes past the limit",
            text.len()
        );
        let Ok(json) = decode::checked_json(&text) else {
            return;
        };
        assert!(
            serde_json::from_str::<serde::de::IgnoredAny>(json).is_ok(),
            "checked text does not parse"
        );
        let Ok(outline) = outline::outline(json, 100) else {
            return;
        };
        if outline::request_key(&outline).is_err() {
            return;
        }
        let ctx = Context {
            project_id: 1,
            received_at: Utc::now(),
            ip: None,
        };
        let Ok(mut normalizer) = Normalizer::from_raw(outline.sent_at.map(|raw| raw.get()), &ctx) else {
            return;
        };
        for (index, raw) in outline.events.iter().enumerate() {
            let tree = tree_bytes(raw.get().as_bytes());
            if charge.take(tree).is_err() {
                return;
            }
            if let Ok(obj) = serde_json::from_str::<Map<String, Value>>(raw.get()) {
                if let Ok(event) = normalizer.event(obj, index) {
                    assert!(
                        event.to_kafka_payload().is_ok(),
                        "an event does not serialise"
                    );
                }
            }
            charge.give_back(tree);
        }
    }
    assert_eq!(budget.used(), 0, "bytes still charged after the request");
});
