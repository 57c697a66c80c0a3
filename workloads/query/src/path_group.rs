//! Groups a funnel's events into users' paths as the rows stream in.
//!
//! ClickHouse 18.16 needs about twice as long to group millions of events
//! into per-user arrays as to send them row by row, and sends nothing until
//! it has grouped them all; grouping here overlaps the transfer. The price
//! is memory in this process ([`BYTES_PER_EVENT`]), which
//! [`crate::warehouse::Warehouse`] bounds.
//!
//! Users come named by a [`UserKey`], two hashes of the distinct id that
//! ClickHouse computes. As rows arrive, each event is appended to one of
//! [`BUCKETS`] arrays chosen by the top bits of its user's first hash: no
//! lookup of its user (only of its label, when there is a breakdown). At the end each array is sorted by user, and its runs
//! of one user's events are the paths; arrays can be handed to different
//! threads. (More arrays make the final sorts shorter but the appends
//! slower, each array's end a cache miss of its own; 1024 measured best on
//! the benchmark, with 256 as good and 4096 10 % slower.)

use std::collections::HashMap;
use std::sync::Arc;

use foldhash::fast::RandomState;

use crate::native::{EventRow, UserKey};
use crate::rows::PathRow;

/// Arrays the events are spread over.
pub const BUCKETS: usize = 1 << BUCKET_BITS;
const BUCKET_BITS: u32 = 10;

/// Memory held per event (up to twice that while the arrays grow).
pub const BYTES_PER_EVENT: usize = std::mem::size_of::<Event>();

#[derive(Debug, Clone, Copy)]
struct Event {
    user: UserKey,
    ts_ms: u64,
    steps: u16,
    exclusions: u16,
    label: u32,
}

/// Events being grouped into users' paths.
#[derive(Debug)]
pub struct PathGrouper {
    buckets: Vec<Vec<Event>>,
    /// Number of each breakdown label (seeded hashing: labels are user
    /// input); 0 is "".
    labels: HashMap<Box<str>, u32, RandomState>,
    events: usize,
    any_exclusion: bool,
}

impl Default for PathGrouper {
    fn default() -> Self {
        Self {
            buckets: vec![Vec::new(); BUCKETS],
            labels: HashMap::default(),
            events: 0,
            any_exclusion: false,
        }
    }
}

impl PathGrouper {
    /// Adds `event` to its user's path.
    pub fn add(&mut self, event: &EventRow<'_>) {
        let label = if event.label.is_empty() {
            0
        } else {
            match self.labels.get(event.label) {
                Some(&n) => n,
                None => {
                    let n = u32::try_from(self.labels.len() + 1).unwrap_or(u32::MAX);
                    self.labels.insert(event.label.into(), n);
                    n
                }
            }
        };
        self.any_exclusion |= event.exclusions != 0;
        let bucket = (event.user.city >> (u64::BITS - BUCKET_BITS)) as usize & (BUCKETS - 1);
        self.buckets[bucket].push(Event {
            user: event.user,
            ts_ms: event.ts_ms,
            steps: event.steps,
            exclusions: event.exclusions,
            label,
        });
        self.events += 1;
    }

    /// Events held.
    pub fn events(&self) -> usize {
        self.events
    }

    /// The paths, in `parts` shares of about equal size (for as many
    /// threads), each user's events in one share.
    pub fn finish(self, parts: usize) -> Vec<GroupedPaths> {
        let mut names: Vec<Box<str>> = vec![Box::from(""); self.labels.len() + 1];
        for (label, n) in self.labels {
            if let Some(slot) = names.get_mut(n as usize) {
                *slot = label;
            }
        }
        let names = Arc::new(names);
        let any_label = names.len() > 1;
        let per_part = self.events.div_ceil(parts.max(1)).max(1);
        let mut shares = Vec::new();
        let mut share = Vec::new();
        let mut size = 0;
        for bucket in self.buckets {
            size += bucket.len();
            share.push(bucket);
            if size >= per_part {
                shares.push(std::mem::take(&mut share));
                size = 0;
            }
        }
        if !share.is_empty() {
            shares.push(share);
        }
        shares
            .into_iter()
            .map(|buckets| GroupedPaths {
                buckets,
                names: Arc::clone(&names),
                any_exclusion: self.any_exclusion,
                any_label,
            })
            .collect()
    }
}

/// A share of the users' paths.
#[derive(Debug)]
pub struct GroupedPaths {
    buckets: Vec<Vec<Event>>,
    names: Arc<Vec<Box<str>>>,
    any_exclusion: bool,
    any_label: bool,
}

impl GroupedPaths {
    /// Hands each user's path to `each`, in no particular order, freeing
    /// memory as it goes. Exclusion masks and labels stay empty when no
    /// event had one (matching reads them as 0 and ""); the distinct id is
    /// unknown (empty).
    pub fn for_each(self, mut each: impl FnMut(UserKey, &PathRow)) {
        let mut row = PathRow {
            distinct_id: String::new(),
            times: Vec::new(),
            steps: Vec::new(),
            exclusions: Vec::new(),
            labels: Vec::new(),
        };
        for mut bucket in self.buckets {
            bucket.sort_unstable_by_key(|e| e.user);
            for path in bucket.chunk_by(|a, b| a.user == b.user) {
                let Some(first) = path.first() else {
                    continue;
                };
                row.times.clear();
                row.times.extend(path.iter().map(|e| e.ts_ms));
                row.steps.clear();
                row.steps.extend(path.iter().map(|e| e.steps));
                row.exclusions.clear();
                if self.any_exclusion {
                    row.exclusions.extend(path.iter().map(|e| e.exclusions));
                }
                row.labels.clear();
                if self.any_label {
                    row.labels.extend(path.iter().map(|e| {
                        self.names
                            .get(e.label as usize)
                            .map_or("", |l| l)
                            .to_owned()
                    }));
                }
                each(first.user, &row);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u64) -> UserKey {
        // Spread over the buckets like real hashes.
        UserKey {
            city: n.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            murmur: n,
        }
    }

    fn ev(user: u64, ts_ms: u64, exclusions: u16, label: &str) -> EventRow<'_> {
        EventRow {
            user: key(user),
            ts_ms,
            steps: 1,
            exclusions,
            label,
        }
    }

    fn paths(g: PathGrouper, parts: usize) -> Vec<(UserKey, PathRow)> {
        let mut out = Vec::new();
        for share in g.finish(parts) {
            share.for_each(|k, p| out.push((k, p.clone())));
        }
        out.sort_by_key(|(k, _)| *k);
        out
    }

    fn sorted(mut v: Vec<u64>) -> Vec<u64> {
        v.sort_unstable();
        v
    }

    #[test]
    fn events_land_in_their_users_paths() {
        let mut g = PathGrouper::default();
        for e in [
            ev(1, 3, 0, ""),
            ev(2, 1, 0, ""),
            ev(1, 2, 0, ""),
            ev(3, 9, 0, ""),
            ev(1, 7, 0, ""),
        ] {
            g.add(&e);
        }
        assert_eq!(g.events(), 5);
        let p = paths(g, 1);
        let mut times: Vec<(UserKey, Vec<u64>)> = p
            .iter()
            .map(|(k, r)| (*k, sorted(r.times.clone())))
            .collect();
        times.sort();
        let mut want = vec![
            (key(1), vec![2, 3, 7]),
            (key(2), vec![1]),
            (key(3), vec![9]),
        ];
        want.sort();
        assert_eq!(times, want);
        assert!(
            p.iter()
                .all(|(_, r)| r.exclusions.is_empty() && r.labels.is_empty())
        );
    }

    #[test]
    fn users_sharing_one_hash_stay_apart() {
        let mut g = PathGrouper::default();
        let twin = |murmur, ts_ms| EventRow {
            user: UserKey { city: 42, murmur },
            ..ev(0, ts_ms, 0, "")
        };
        for e in [twin(1, 10), twin(2, 20), twin(1, 30)] {
            g.add(&e);
        }
        let p = paths(g, 1);
        assert_eq!(p.len(), 2);
        assert_eq!(sorted(p[0].1.times.clone()), vec![10, 30]);
        assert_eq!(p[1].1.times, vec![20]);
    }

    #[test]
    fn exclusions_and_labels_stay_with_their_events() {
        let mut g = PathGrouper::default();
        for e in [
            ev(1, 1, 0, ""),
            ev(2, 2, 0, "Firefox"),
            ev(1, 3, 4, ""),
            ev(1, 4, 0, "Chrome"),
        ] {
            g.add(&e);
        }
        for (_, row) in paths(g, 1) {
            assert_eq!(row.exclusions.len(), row.times.len());
            assert_eq!(row.labels.len(), row.times.len());
            for ((t, x), l) in row.times.iter().zip(&row.exclusions).zip(&row.labels) {
                let want = match t {
                    1 => (0, ""),
                    2 => (0, "Firefox"),
                    3 => (4, ""),
                    _ => (0, "Chrome"),
                };
                assert_eq!((*x, l.as_str()), want, "event at {t}");
            }
        }
    }

    #[test]
    fn shares_cover_each_user_once_whatever_their_number() {
        let mut g = PathGrouper::default();
        for n in 0..10_000u64 {
            g.add(&ev(n % 700, n, 0, ""));
        }
        let mut g2 = PathGrouper::default();
        for n in 0..10_000u64 {
            g2.add(&ev(n % 700, n, 0, ""));
        }
        let one = paths(g, 1);
        let shares = g2.finish(3);
        assert!(shares.len() >= 2, "{} shares", shares.len());
        let mut three = Vec::new();
        for share in shares {
            share.for_each(|k, p| three.push((k, p.times.len())));
        }
        three.sort();
        let one: Vec<(UserKey, usize)> = one.iter().map(|(k, p)| (*k, p.times.len())).collect();
        assert_eq!(one.len(), 700);
        assert_eq!(three, one);
    }

    #[test]
    fn nothing_in_nothing_out() {
        assert!(paths(PathGrouper::default(), 2).is_empty());
    }
}
