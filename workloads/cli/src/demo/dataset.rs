//! The demo's synthetic shop: users visiting over the last days, reading
//! pages, some signing up, some of those buying. Deterministic for a seed
//! and a clock, so what the query API answers can be checked against what
//! was sent ([`Expected`]).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::{Value, json};

/// The funnel the demo asks for, in order.
pub const FUNNEL: [&str; 3] = ["$pageview", "sign_up", "purchase"];
const PAGES: [&str; 5] = ["/", "/pricing", "/features", "/blog", "/docs"];
const BROWSERS: [&str; 4] = ["Chrome", "Chrome", "Firefox", "Safari"];

/// How big a shop, and which one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub users: usize,
    /// Days of history, today included.
    pub days: u32,
    pub seed: u64,
}

/// One event as the demo sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoEvent {
    pub event: &'static str,
    pub distinct_id: String,
    pub timestamp: DateTime<Utc>,
    pub properties: Value,
}

impl DemoEvent {
    /// The event in the PostHog batch format.
    pub fn to_json(&self) -> Value {
        json!({
            "event": self.event,
            "distinct_id": self.distinct_id,
            "timestamp": self.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "properties": self.properties,
        })
    }
}

/// SplitMix64: a tiny, fixed generator, so a seed names the same shop on
/// every machine and version.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with probability `percent`%.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as u64) as usize]
    }
}

/// The first day of `shape`'s history when it ends at `now` (UTC).
pub fn first_day(shape: &Shape, now: DateTime<Utc>) -> NaiveDate {
    now.date_naive() - Duration::days(i64::from(shape.days.max(1)) - 1)
}

/// The shop's events, each user's in time order, all between the start of
/// [`first_day`] and a minute before `now`.
pub fn generate(shape: &Shape, now: DateTime<Utc>) -> Vec<DemoEvent> {
    let start = first_day(shape, now)
        .and_hms_opt(0, 1, 0)
        .map_or(now, |t| t.and_utc());
    // Sessions start early enough to end before `now`.
    let latest_start = now - Duration::minutes(20);
    let span = (latest_start - start).num_seconds().max(1) as u64;
    let mut rng = Rng(shape.seed);
    let mut events = Vec::new();
    for user in 0..shape.users {
        let distinct_id = format!("demo-{}-{user:05}", shape.seed);
        let browser = rng.pick(&BROWSERS);
        let mut sessions: Vec<DateTime<Utc>> = (0..1 + rng.below(3))
            .map(|_| start + Duration::seconds(rng.below(span) as i64))
            .collect();
        sessions.sort();
        let signs_up = rng.chance(40);
        let sign_up_session = rng.below(sessions.len() as u64) as usize;
        let buys = signs_up && rng.chance(45);
        let plan = if rng.chance(30) { "pro" } else { "free" };
        let mut signed_up = false;
        for (n, &session) in sessions.iter().enumerate() {
            // Sessions may overlap in time: never go back on this user's clock.
            let mut at = events
                .last()
                .filter(|e: &&DemoEvent| e.distinct_id == distinct_id)
                .map_or(session, |e| e.timestamp.max(session) + Duration::seconds(1));
            let mut event = |name: &'static str, properties: Value, at: DateTime<Utc>| {
                events.push(DemoEvent {
                    event: name,
                    distinct_id: distinct_id.clone(),
                    timestamp: at,
                    properties,
                });
            };
            for _ in 0..1 + rng.below(5) {
                let page = rng.pick(&PAGES);
                let props = json!({"$current_url": format!("https://shop.example{page}"), "$browser": browser});
                event("$pageview", props, at);
                at += Duration::seconds(20 + rng.below(100) as i64);
            }
            if signs_up && n == sign_up_session {
                event("sign_up", json!({"plan": plan, "$browser": browser}), at);
                at += Duration::seconds(30 + rng.below(60) as i64);
                signed_up = true;
            }
            if buys && signed_up && (n + 1 == sessions.len()) {
                let amount = if plan == "pro" {
                    99
                } else {
                    [9, 29][rng.below(2) as usize]
                };
                event(
                    "purchase",
                    json!({"plan": plan, "amount": amount, "$browser": browser}),
                    at,
                );
            }
        }
    }
    events
}

/// What the query API must answer for a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Per UTC day: page views, and users with a page view.
    pub days: Vec<(NaiveDate, u64, u64)>,
    /// Users reaching each step of [`FUNNEL`], in order.
    pub funnel: [u64; 3],
    /// Events of each [`FUNNEL`] name, whenever done.
    pub totals: [u64; 3],
}

impl Expected {
    /// Counts `events` over `shape`'s days ending on `now`'s date.
    pub fn of(events: &[DemoEvent], shape: &Shape, now: DateTime<Utc>) -> Self {
        let first = first_day(shape, now);
        let mut days: BTreeMap<NaiveDate, (u64, BTreeSet<&str>)> = (0..shape.days.max(1))
            .map(|d| (first + Duration::days(i64::from(d)), (0, BTreeSet::new())))
            .collect();
        for e in events.iter().filter(|e| e.event == FUNNEL[0]) {
            if let Some((views, users)) = days.get_mut(&e.timestamp.date_naive()) {
                *views += 1;
                users.insert(&e.distinct_id);
            }
        }
        // Ordered funnel: a step counts once the user did it after the
        // previous one (each user's events are in time order).
        let mut reached: BTreeMap<&str, usize> = BTreeMap::new();
        for e in events {
            let step = reached.entry(&e.distinct_id).or_insert(0);
            if *step < FUNNEL.len() && e.event == FUNNEL[*step] {
                *step += 1;
            }
        }
        let mut funnel = [0; 3];
        for &step in reached.values() {
            for count in funnel.iter_mut().take(step) {
                *count += 1;
            }
        }
        let totals = FUNNEL.map(|name| events.iter().filter(|e| e.event == name).count() as u64);
        Self {
            totals,
            days: days
                .into_iter()
                .map(|(day, (views, users))| (day, views, users.len() as u64))
                .collect(),
            funnel,
        }
    }

    pub fn page_views(&self) -> u64 {
        self.days.iter().map(|d| d.1).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-30T10:30:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    const SHAPE: Shape = Shape {
        users: 300,
        days: 7,
        seed: 7,
    };

    #[test]
    fn a_seed_names_one_dataset() {
        assert_eq!(generate(&SHAPE, now()), generate(&SHAPE, now()));
        let other = Shape { seed: 8, ..SHAPE };
        assert_ne!(generate(&SHAPE, now()), generate(&other, now()));
    }

    #[test]
    fn events_stay_in_the_window_and_in_each_users_order() {
        let events = generate(&SHAPE, now());
        let start = first_day(&SHAPE, now())
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc();
        let mut last: BTreeMap<&str, DateTime<Utc>> = BTreeMap::new();
        for e in &events {
            assert!(e.timestamp >= start && e.timestamp < now(), "{e:?}");
            if let Some(previous) = last.insert(&e.distinct_id, e.timestamp) {
                assert!(previous < e.timestamp, "{e:?} not after {previous}");
            }
        }
    }

    #[test]
    fn the_shop_has_a_funnel_worth_showing() {
        let events = generate(&SHAPE, now());
        let expected = Expected::of(&events, &SHAPE, now());
        let [visitors, signups, buyers] = expected.funnel;
        assert_eq!(visitors, 300);
        assert!((80..=160).contains(&signups), "{signups}");
        assert!(buyers > 20 && buyers < signups, "{buyers}");
        assert_eq!(expected.days.len(), 7);
        assert!(
            expected
                .days
                .iter()
                .all(|d| d.1 > 0 && d.2 > 0 && d.2 <= d.1)
        );
        let views = events.iter().filter(|e| e.event == "$pageview").count() as u64;
        assert_eq!(expected.page_views(), views);
    }

    #[test]
    fn only_ordered_steps_count() {
        let at = |s: i64| now() - Duration::hours(1) + Duration::seconds(s);
        let e = |event, id: &str, s| DemoEvent {
            event,
            distinct_id: id.into(),
            timestamp: at(s),
            properties: json!({}),
        };
        let events = [
            e("$pageview", "a", 0),
            e("sign_up", "a", 1),
            e("purchase", "a", 2),
            e("sign_up", "b", 0), // signed up before any page view
            e("$pageview", "b", 1),
            e("purchase", "b", 2),
            e("$pageview", "c", 0),
            e("purchase", "c", 1),
        ];
        let expected = Expected::of(&events, &SHAPE, now());
        assert_eq!(expected.funnel, [3, 1, 1]);
    }
}
