//! Decodes funnel path rows from ClickHouse's RowBinary format as the bytes
//! stream in. The `clickhouse` crate's typed cursor decodes element by
//! element through serde, which costs more than the transfer for the
//! millions of array elements a funnel reads; these rows have one fixed
//! shape, read here in bulk.
//!
//! A path row ([`PathDecoder`]) is `distinct_id String, times
//! Array(UInt32 | UInt64), steps Array(UInt8 | UInt16), exclusions
//! Array(UInt16), labels Array(String)`. An event row ([`EventDecoder`]) is
//! `UInt64, UInt64, t UInt32 | UInt64, s UInt8 | UInt16` (`h`, `g`: two
//! hashes of the distinct id, see [`UserKey`]), then
//! `x UInt16` when the funnel has exclusions and `bv String` when it has a
//! breakdown. Strings and array lengths are LEB128 lengths, numbers
//! little-endian.

use crate::rows::PathRow;

/// Longest string or array accepted (a guard against a misread length).
const MAX_LEN: u64 = 1 << 30;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("a length of {0} in a funnel row is not believable")]
    Length(u64),
    #[error("a funnel row holds a string that is not UTF-8")]
    Utf8,
    #[error("the answer ended inside a funnel row ({0} bytes left over)")]
    Truncated(usize),
}

/// Integer widths of the times and step masks of the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Widths {
    /// `u32` when true, `u64` otherwise.
    pub narrow_times: bool,
    /// `u8` when true, `u16` otherwise.
    pub narrow_steps: bool,
}

impl Widths {
    /// Bytes of a time: 4 or 8.
    pub fn time_bytes(self) -> usize {
        if self.narrow_times { 4 } else { 8 }
    }

    /// Bytes of a step mask: 1 or 2.
    pub fn mask_bytes(self) -> usize {
        if self.narrow_steps { 1 } else { 2 }
    }
}

/// Bytes received and not yet decoded.
#[derive(Debug, Default)]
struct Pending {
    buf: Vec<u8>,
    pos: usize,
}

impl Pending {
    fn push(&mut self, chunk: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    fn cursor(&self) -> Cursor<'_> {
        Cursor {
            bytes: &self.buf,
            pos: self.pos,
        }
    }

    /// Bytes left over at the end of the answer mean it was cut short.
    fn finish(&self) -> Result<(), DecodeError> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            n => Err(DecodeError::Truncated(n)),
        }
    }
}

/// Path rows out of a stream of chunks.
#[derive(Debug)]
pub struct PathDecoder {
    widths: Widths,
    pending: Pending,
}

/// A cursor over a byte slice; `None` means "not enough bytes yet".
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    fn len(&mut self) -> Result<Option<usize>, DecodeError> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let Some(&b) = self.bytes.get(self.pos) else {
                return Ok(None);
            };
            self.pos += 1;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                if value > MAX_LEN {
                    return Err(DecodeError::Length(value));
                }
                return Ok(usize::try_from(value).ok());
            }
        }
        Err(DecodeError::Length(value))
    }

    fn str(&mut self) -> Result<Option<&'a str>, DecodeError> {
        let Some(n) = self.len()? else {
            return Ok(None);
        };
        let Some(bytes) = self.take(n) else {
            return Ok(None);
        };
        std::str::from_utf8(bytes)
            .map(Some)
            .map_err(|_| DecodeError::Utf8)
    }

    fn string(&mut self) -> Result<Option<String>, DecodeError> {
        Ok(self.str()?.map(str::to_owned))
    }

    /// A little-endian `u64`.
    fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        <[u8; 8]>::try_from(b).ok().map(u64::from_le_bytes)
    }

    /// A little-endian time of `width` bytes (8, else 4) as a `u64`.
    fn time(&mut self, width: usize) -> Option<u64> {
        if width == 8 {
            self.u64()
        } else {
            let b = self.take(4)?;
            <[u8; 4]>::try_from(b)
                .ok()
                .map(|b| u64::from(u32::from_le_bytes(b)))
        }
    }

    /// A little-endian mask of `width` bytes (2, else 1).
    fn mask(&mut self, width: usize) -> Option<u16> {
        if width == 2 {
            let b = self.take(2)?;
            <[u8; 2]>::try_from(b).ok().map(u16::from_le_bytes)
        } else {
            self.take(1).map(|b| u16::from(b[0]))
        }
    }

    /// The bytes of an array of `width`-byte numbers.
    fn array(&mut self, width: usize) -> Result<Option<&'a [u8]>, DecodeError> {
        let Some(n) = self.len()? else {
            return Ok(None);
        };
        Ok(n.checked_mul(width).and_then(|b| self.take(b)))
    }

    /// An array of little-endian times of `width` bytes (8, else 4).
    fn times(&mut self, width: usize) -> Result<Option<Vec<u64>>, DecodeError> {
        let wide = width == 8;
        Ok(self.array(if wide { 8 } else { 4 })?.map(|bytes| {
            if wide {
                bytes
                    .chunks_exact(8)
                    .map(|c| <[u8; 8]>::try_from(c).map_or(0, u64::from_le_bytes))
                    .collect()
            } else {
                bytes
                    .chunks_exact(4)
                    .map(|c| <[u8; 4]>::try_from(c).map_or(0, |b| u64::from(u32::from_le_bytes(b))))
                    .collect()
            }
        }))
    }

    /// An array of little-endian masks of `width` bytes (2, else 1).
    fn masks(&mut self, width: usize) -> Result<Option<Vec<u16>>, DecodeError> {
        let wide = width == 2;
        Ok(self.array(if wide { 2 } else { 1 })?.map(|bytes| {
            if wide {
                bytes
                    .chunks_exact(2)
                    .map(|c| <[u8; 2]>::try_from(c).map_or(0, u16::from_le_bytes))
                    .collect()
            } else {
                bytes.iter().map(|&b| u16::from(b)).collect()
            }
        }))
    }

    fn strings(&mut self) -> Result<Option<Vec<String>>, DecodeError> {
        let Some(n) = self.len()? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            match self.string()? {
                Some(s) => out.push(s),
                None => return Ok(None),
            }
        }
        Ok(Some(out))
    }
}

impl PathDecoder {
    pub fn new(widths: Widths) -> Self {
        Self {
            widths,
            pending: Pending::default(),
        }
    }

    /// Adds the next bytes of the answer.
    pub fn push(&mut self, chunk: &[u8]) {
        self.pending.push(chunk);
    }

    /// The next complete row, or `None` until more bytes arrive.
    pub fn next_row(&mut self) -> Result<Option<PathRow>, DecodeError> {
        let mut c = self.pending.cursor();
        let Some(distinct_id) = c.string()? else {
            return Ok(None);
        };
        let Some(times) = c.times(self.widths.time_bytes())? else {
            return Ok(None);
        };
        let Some(steps) = c.masks(self.widths.mask_bytes())? else {
            return Ok(None);
        };
        let Some(exclusions) = c.masks(2)? else {
            return Ok(None);
        };
        let Some(labels) = c.strings()? else {
            return Ok(None);
        };
        self.pending.pos = c.pos;
        Ok(Some(PathRow {
            distinct_id,
            times,
            steps,
            exclusions,
            labels,
        }))
    }

    /// Call at the end of the answer: bytes left over mean it was cut short.
    pub fn finish(&self) -> Result<(), DecodeError> {
        self.pending.finish()
    }
}

/// Which columns an event row has, and how wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventShape {
    pub widths: Widths,
    /// An exclusion mask follows the step mask.
    pub exclusions: bool,
    /// A breakdown label comes last.
    pub labels: bool,
}

/// A user as event rows name them: `cityHash64` and `murmurHash2_64` of
/// the distinct id, 128 bits together (like ClickHouse's own `uniqExact`,
/// which counts strings by a 128-bit hash). Two ids that agree on both are
/// taken for one user: by chance that is about as likely as two random
/// UUIDs colliding; on purpose it takes crafting ids that collide on both
/// hashes, i.e. someone who can send the project's events, who could fake
/// its funnels anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserKey {
    pub city: u64,
    pub murmur: u64,
}

/// One event of a funnel, borrowed from the bytes received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRow<'a> {
    pub user: UserKey,
    pub ts_ms: u64,
    pub steps: u16,
    pub exclusions: u16,
    pub label: &'a str,
}

/// Event rows out of a stream of chunks.
#[derive(Debug)]
pub struct EventDecoder {
    shape: EventShape,
    pending: Pending,
}

impl EventDecoder {
    pub fn new(shape: EventShape) -> Self {
        Self {
            shape,
            pending: Pending::default(),
        }
    }

    /// Adds the next bytes of the answer and hands every complete row to
    /// `each`.
    pub fn push(
        &mut self,
        chunk: &[u8],
        mut each: impl FnMut(EventRow<'_>),
    ) -> Result<(), DecodeError> {
        self.pending.push(chunk);
        let mut c = self.pending.cursor();
        match self.fixed_len() {
            // Every row has this length: take the whole ones at once.
            Some(len) => {
                let whole = (c.bytes.len() - c.pos) / len * len;
                for row in c.take(whole).unwrap_or_default().chunks_exact(len) {
                    let mut r = Cursor { bytes: row, pos: 0 };
                    if let Some(row) = self.fields(&mut r)? {
                        each(row);
                    }
                }
            }
            None => {
                while let Some(row) = self.row(&mut c)? {
                    each(row);
                }
            }
        }
        self.pending.pos = c.pos;
        Ok(())
    }

    /// The length of every row, when they have no label.
    fn fixed_len(&self) -> Option<usize> {
        let w = self.shape.widths;
        (!self.shape.labels).then_some(
            16 + w.time_bytes() + w.mask_bytes() + if self.shape.exclusions { 2 } else { 0 },
        )
    }

    /// The row at the cursor, moving past it; `None` (cursor left where
    /// it was) until all of it has arrived.
    fn row<'a>(&self, c: &mut Cursor<'a>) -> Result<Option<EventRow<'a>>, DecodeError> {
        let start = c.pos;
        let row = self.fields(c)?;
        if row.is_none() {
            c.pos = start;
        }
        Ok(row)
    }

    fn fields<'a>(&self, c: &mut Cursor<'a>) -> Result<Option<EventRow<'a>>, DecodeError> {
        let (Some(city), Some(murmur)) = (c.u64(), c.u64()) else {
            return Ok(None);
        };
        let Some(ts_ms) = c.time(self.shape.widths.time_bytes()) else {
            return Ok(None);
        };
        let Some(steps) = c.mask(self.shape.widths.mask_bytes()) else {
            return Ok(None);
        };
        let exclusions = if self.shape.exclusions {
            match c.mask(2) {
                Some(x) => x,
                None => return Ok(None),
            }
        } else {
            0
        };
        let label = if self.shape.labels {
            match c.str()? {
                Some(l) => l,
                None => return Ok(None),
            }
        } else {
            ""
        };
        Ok(Some(EventRow {
            user: UserKey { city, murmur },
            ts_ms,
            steps,
            exclusions,
            label,
        }))
    }

    /// Call at the end of the answer: bytes left over mean it was cut short.
    pub fn finish(&self) -> Result<(), DecodeError> {
        self.pending.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn string(s: &str, out: &mut Vec<u8>) {
        leb(s.len(), out);
        out.extend_from_slice(s.as_bytes());
    }

    /// Encodes a row the way ClickHouse does, independently of the decoder.
    fn encode(row: &PathRow, w: Widths) -> Vec<u8> {
        let mut out = Vec::new();
        string(&row.distinct_id, &mut out);
        leb(row.times.len(), &mut out);
        for &t in &row.times {
            if w.narrow_times {
                out.extend_from_slice(&(t as u32).to_le_bytes());
            } else {
                out.extend_from_slice(&t.to_le_bytes());
            }
        }
        leb(row.steps.len(), &mut out);
        for &s in &row.steps {
            if w.narrow_steps {
                out.push(s as u8);
            } else {
                out.extend_from_slice(&s.to_le_bytes());
            }
        }
        leb(row.exclusions.len(), &mut out);
        for &x in &row.exclusions {
            out.extend_from_slice(&x.to_le_bytes());
        }
        leb(row.labels.len(), &mut out);
        for l in &row.labels {
            string(l, &mut out);
        }
        out
    }

    fn rows() -> Vec<PathRow> {
        vec![
            PathRow {
                distinct_id: "ünïcødé user".into(),
                times: vec![1, 300, 70_000],
                steps: vec![1, 2, 4],
                exclusions: vec![],
                labels: vec![],
            },
            PathRow {
                // 200 bytes: a two-byte length.
                distinct_id: "x".repeat(200),
                times: (0..150).map(|i| i * 1_000).collect(),
                steps: vec![3; 150],
                exclusions: vec![1; 150],
                labels: (0..150).map(|i| format!("label {i}")).collect(),
            },
            PathRow {
                distinct_id: String::new(),
                times: vec![],
                steps: vec![],
                exclusions: vec![],
                labels: vec![],
            },
        ]
    }

    #[test]
    fn rows_decode_whatever_the_chunking_and_widths() {
        for narrow_times in [true, false] {
            for narrow_steps in [true, false] {
                let w = Widths {
                    narrow_times,
                    narrow_steps,
                };
                let bytes: Vec<u8> = rows().iter().flat_map(|r| encode(r, w)).collect();
                for chunk in [1, 3, 7, 64, bytes.len()] {
                    let mut d = PathDecoder::new(w);
                    let mut got = Vec::new();
                    for part in bytes.chunks(chunk) {
                        d.push(part);
                        while let Some(row) = d.next_row().unwrap() {
                            got.push(row);
                        }
                    }
                    d.finish().unwrap();
                    let want = rows();
                    assert_eq!(got.len(), want.len(), "{w:?} chunk {chunk}");
                    for (g, w) in got.iter().zip(&want) {
                        assert_eq!(g.distinct_id, w.distinct_id);
                        assert_eq!(g.times, w.times);
                        assert_eq!(g.steps, w.steps);
                        assert_eq!(g.exclusions, w.exclusions);
                        assert_eq!(g.labels, w.labels);
                    }
                }
            }
        }
    }

    #[test]
    fn cut_and_corrupt_answers_are_errors() {
        let w = Widths {
            narrow_times: true,
            narrow_steps: true,
        };
        let bytes = encode(&rows()[0], w);
        let mut d = PathDecoder::new(w);
        d.push(&bytes[..bytes.len() - 1]);
        assert_eq!(d.next_row(), Ok(None));
        assert_eq!(d.finish(), Err(DecodeError::Truncated(bytes.len() - 1)));

        let mut d = PathDecoder::new(w);
        d.push(&[0xff; 12]);
        assert!(matches!(d.next_row(), Err(DecodeError::Length(_))));

        let mut d = PathDecoder::new(w);
        d.push(&[2, 0xff, 0xfe]);
        assert_eq!(d.next_row(), Err(DecodeError::Utf8));
    }

    /// Encodes an event row the way ClickHouse does.
    fn encode_event(e: &EventRow<'_>, shape: EventShape, out: &mut Vec<u8>) {
        out.extend_from_slice(&e.user.city.to_le_bytes());
        out.extend_from_slice(&e.user.murmur.to_le_bytes());
        if shape.widths.narrow_times {
            out.extend_from_slice(&(e.ts_ms as u32).to_le_bytes());
        } else {
            out.extend_from_slice(&e.ts_ms.to_le_bytes());
        }
        if shape.widths.narrow_steps {
            out.push(e.steps as u8);
        } else {
            out.extend_from_slice(&e.steps.to_le_bytes());
        }
        if shape.exclusions {
            out.extend_from_slice(&e.exclusions.to_le_bytes());
        }
        if shape.labels {
            string(e.label, out);
        }
    }

    fn shapes() -> Vec<EventShape> {
        let mut all = Vec::new();
        for bits in 0..16u8 {
            all.push(EventShape {
                widths: Widths {
                    narrow_times: bits & 1 != 0,
                    narrow_steps: bits & 2 != 0,
                },
                exclusions: bits & 4 != 0,
                labels: bits & 8 != 0,
            });
        }
        all
    }

    #[test]
    fn event_rows_decode_whatever_the_chunking_and_shape() {
        let long = "y".repeat(300);
        for shape in shapes() {
            let events: Vec<EventRow<'_>> = (0..40u64)
                .map(|i| EventRow {
                    user: UserKey {
                        city: i % 3 * 0x0102_0304_0506_0708,
                        murmur: u64::MAX - i,
                    },
                    ts_ms: i * 86_400_123,
                    steps: (i % 200) as u16,
                    exclusions: if shape.exclusions { i as u16 } else { 0 },
                    label: if shape.labels && i % 2 == 0 {
                        &long
                    } else if shape.labels && i % 5 == 0 {
                        "Chrome ✓"
                    } else {
                        ""
                    },
                })
                .collect();
            let mut bytes = Vec::new();
            for e in &events {
                encode_event(e, shape, &mut bytes);
            }
            for chunk in [1, 2, 5, 64, bytes.len()] {
                let mut d = EventDecoder::new(shape);
                let mut got: Vec<(UserKey, u64, u16, u16, String)> = Vec::new();
                for part in bytes.chunks(chunk) {
                    d.push(part, |e| {
                        got.push((e.user, e.ts_ms, e.steps, e.exclusions, e.label.to_owned()));
                    })
                    .unwrap();
                }
                d.finish().unwrap();
                let want: Vec<(UserKey, u64, u16, u16, String)> = events
                    .iter()
                    .map(|e| (e.user, e.ts_ms, e.steps, e.exclusions, e.label.to_owned()))
                    .collect();
                assert_eq!(got, want, "{shape:?} chunk {chunk}");
            }
        }
    }

    #[test]
    fn cut_and_corrupt_event_answers_are_errors() {
        let shape = EventShape {
            widths: Widths {
                narrow_times: true,
                narrow_steps: true,
            },
            exclusions: true,
            labels: true,
        };
        let e = EventRow {
            user: UserKey { city: 1, murmur: 2 },
            ts_ms: 5,
            steps: 1,
            exclusions: 2,
            label: "l",
        };
        let mut bytes = Vec::new();
        encode_event(&e, shape, &mut bytes);
        let mut d = EventDecoder::new(shape);
        let mut n = 0;
        d.push(&bytes[..bytes.len() - 1], |_| n += 1).unwrap();
        assert_eq!(n, 0);
        assert_eq!(d.finish(), Err(DecodeError::Truncated(bytes.len() - 1)));

        // A label that is not UTF-8, then one with an impossible length.
        let head = &bytes[..16 + 4 + 1 + 2];
        let mut d = EventDecoder::new(shape);
        let bad: Vec<u8> = head.iter().copied().chain([2, 0xff, 0xfe]).collect();
        assert_eq!(d.push(&bad, |_| ()), Err(DecodeError::Utf8));
        let mut d = EventDecoder::new(shape);
        let bad: Vec<u8> = head.iter().copied().chain([0xff; 12]).collect();
        assert!(matches!(d.push(&bad, |_| ()), Err(DecodeError::Length(_))));
    }
}
