//! The PostHog-like event the consumer's benchmarks decode and insert: a
//! page view or sign-up with six properties, the page and user varying.

use chrono::{DateTime, Utc};
use tributary_core::Event;

/// The `i`-th event of a sample, happening `at`.
pub fn shop_event(i: usize, at: DateTime<Utc>) -> Event {
    let mut e = Event::new(
        1,
        if i.is_multiple_of(3) {
            "signed_up"
        } else {
            "$pageview"
        },
        format!("user-{}", i % 5000),
        at,
    );
    for (k, v) in [
        (
            "$current_url",
            format!("https://shop.example.com/products/{}", i % 700),
        ),
        ("$browser", "Chrome".to_owned()),
        ("$os", "Mac OS X".to_owned()),
        ("$device_type", "Desktop".to_owned()),
        ("$referrer", "https://news.example.org/".to_owned()),
        ("plan", "pro".to_owned()),
    ] {
        e.properties.insert(k.into(), v.into());
    }
    e
}
