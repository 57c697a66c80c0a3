//! The batch being assembled: decoded rows, poison messages, and the offsets
//! to commit once it is written. Pure: no I/O, the clock is passed in.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::row::EventRow;

/// A message as read from Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
}

/// A message that cannot become a row; it goes to the DLQ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poison {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub raw: Vec<u8>,
    pub kind: &'static str,
    pub message: String,
}

/// A decoded row with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub row: EventRow,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub raw: Vec<u8>,
    pub received_at_ms: i64,
}

#[derive(Debug, Default)]
pub struct Batch {
    pub entries: Vec<Entry>,
    pub poison: Vec<Poison>,
    /// Per partition, the offset to commit once this batch is written (last + 1).
    next_offsets: BTreeMap<i32, i64>,
    started: Option<Instant>,
    /// Bytes of the messages held (each is kept as read and as a row:
    /// about twice this in memory).
    bytes: usize,
}

impl Batch {
    /// Messages in the batch (rows and poison).
    pub fn len(&self) -> usize {
        self.entries.len() + self.poison.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the messages held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// At `batch_size` messages or `max_bytes` bytes: no more may join.
    pub fn is_full(&self, batch_size: usize, max_bytes: usize) -> bool {
        self.len() >= batch_size || self.bytes >= max_bytes
    }

    /// Decodes and adds a message.
    pub fn push(&mut self, msg: Incoming, now: Instant) {
        self.started.get_or_insert(now);
        self.bytes = self.bytes.saturating_add(
            msg.payload.as_ref().map_or(0, Vec::len) + msg.key.as_ref().map_or(0, Vec::len),
        );
        let next = self
            .next_offsets
            .entry(msg.partition)
            .or_insert(msg.offset + 1);
        *next = (*next).max(msg.offset + 1);
        match decode(&msg) {
            Ok((row, received_at_ms)) => self.entries.push(Entry {
                row,
                partition: msg.partition,
                offset: msg.offset,
                key: msg.key,
                raw: msg.payload.unwrap_or_default(),
                received_at_ms,
            }),
            Err((kind, message)) => self.poison.push(Poison {
                partition: msg.partition,
                offset: msg.offset,
                key: msg.key,
                raw: msg.payload.unwrap_or_default(),
                kind,
                message,
            }),
        }
    }

    /// When the batch must be flushed by time, if it has started.
    pub fn deadline(&self, interval: Duration) -> Option<Instant> {
        self.started.map(|s| s + interval)
    }

    /// Full (by messages or bytes), or old enough.
    pub fn is_due(
        &self,
        now: Instant,
        batch_size: usize,
        max_bytes: usize,
        interval: Duration,
    ) -> bool {
        self.is_full(batch_size, max_bytes) || self.deadline(interval).is_some_and(|d| now >= d)
    }

    /// Forgets everything from partitions this consumer no longer owns: their
    /// new owner reads those messages again from the last commit.
    pub fn drop_partitions(&mut self, revoked: &[i32]) -> usize {
        let before = self.len();
        self.entries.retain(|e| !revoked.contains(&e.partition));
        self.poison.retain(|p| !revoked.contains(&p.partition));
        self.next_offsets.retain(|p, _| !revoked.contains(p));
        self.bytes = self
            .entries
            .iter()
            .map(|e| e.raw.len() + e.key.as_ref().map_or(0, Vec::len))
            .chain(
                self.poison
                    .iter()
                    .map(|p| p.raw.len() + p.key.as_ref().map_or(0, Vec::len)),
            )
            .sum();
        if self.is_empty() {
            self.started = None;
        }
        before - self.len()
    }

    /// `(partition, next offset)` to commit after the batch is written.
    pub fn offsets(&self) -> impl Iterator<Item = (i32, i64)> + '_ {
        self.next_offsets.iter().map(|(p, o)| (*p, *o))
    }
}

/// Message → row, or the DLQ error kind and message.
fn decode(msg: &Incoming) -> Result<(EventRow, i64), (&'static str, String)> {
    let payload = msg
        .payload
        .as_deref()
        .ok_or(("empty_message", "message has no value".to_owned()))?;
    crate::wire::decode(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use tributary_core::Event;

    fn good(partition: i32, offset: i64) -> Incoming {
        let e = Event::new(1, "a", format!("u{offset}"), Utc::now());
        Incoming {
            partition,
            offset,
            key: Some(e.distinct_id.clone().into_bytes()),
            payload: Some(e.to_kafka_payload().unwrap()),
        }
    }

    #[test]
    fn sorts_rows_and_poison_and_tracks_offsets() {
        let now = Instant::now();
        let mut b = Batch::default();
        b.push(good(0, 10), now);
        b.push(good(1, 5), now);
        b.push(
            Incoming {
                partition: 0,
                offset: 11,
                key: None,
                payload: Some(b"{not json".to_vec()),
            },
            now,
        );
        b.push(
            Incoming {
                partition: 1,
                offset: 6,
                key: None,
                payload: None,
            },
            now,
        );
        b.push(
            Incoming {
                partition: 2,
                offset: 0,
                key: None,
                payload: Some(vec![0xff, 0xfe]),
            },
            now,
        );
        assert_eq!(b.entries.len(), 2);
        let kinds: Vec<_> = b.poison.iter().map(|p| p.kind).collect();
        assert_eq!(kinds, ["invalid_event", "empty_message", "not_utf8"]);
        assert_eq!(b.offsets().collect::<Vec<_>>(), [(0, 12), (1, 7), (2, 1)]);
    }

    #[test]
    fn due_by_size_or_by_time() {
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        let mut b = Batch::default();
        assert!(!b.is_due(t0 + Duration::from_secs(99), 2, usize::MAX, second));
        b.push(good(0, 0), t0);
        assert!(!b.is_due(t0, 2, usize::MAX, second));
        assert!(b.is_due(t0 + second, 2, usize::MAX, second));
        b.push(good(0, 1), t0);
        assert!(b.is_due(t0, 2, usize::MAX, second));
    }

    #[test]
    fn due_by_bytes_whatever_the_count() {
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        let mut b = Batch::default();
        let mut big = good(0, 0);
        big.payload = Some(vec![b'x'; 900_000]);
        b.push(big.clone(), t0);
        assert_eq!(b.bytes(), 900_000 + big.key.as_ref().map_or(0, Vec::len));
        assert!(!b.is_due(t0, 10_000, 2_000_000, second));
        big.offset = 1;
        b.push(big.clone(), t0);
        assert!(b.is_full(10_000, 1_800_000));
        assert!(b.is_due(t0, 10_000, 1_800_000, second), "two of 900 kB");
        b.drop_partitions(&[0]);
        assert_eq!(b.bytes(), 0);
    }

    #[test]
    fn revoked_partitions_are_forgotten() {
        let t0 = Instant::now();
        let mut b = Batch::default();
        b.push(good(0, 0), t0);
        b.push(good(1, 0), t0);
        assert_eq!(b.drop_partitions(&[0]), 1);
        assert_eq!(b.entries.len(), 1);
        assert_eq!(b.offsets().collect::<Vec<_>>(), [(1, 1)]);
        assert_eq!(b.drop_partitions(&[1]), 1);
        assert!(b.is_empty());
        assert_eq!(b.deadline(Duration::from_secs(1)), None);
    }

    #[test]
    fn offsets_never_go_backwards() {
        let t0 = Instant::now();
        let mut b = Batch::default();
        b.push(good(0, 9), t0);
        b.push(good(0, 3), t0);
        assert_eq!(b.offsets().collect::<Vec<_>>(), [(0, 10)]);
    }
}
