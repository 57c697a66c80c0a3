//! Decodes funnel path rows from ClickHouse's RowBinary format as the bytes
//! stream in. The `clickhouse` crate's typed cursor decodes element by
//! element through serde, which costs more than the transfer for the
//! millions of array elements a funnel reads; these rows have one fixed
//! shape, read here in bulk.
//!
//! A path row ([`PathDecoder`]) is `distinct_id String, times
//! Array(UInt32 | UInt64), steps Array(UInt8 | UInt16), exclusions
//! Array(UInt16), labels Array(String)`. Strings and array lengths are
//! LEB128 lengths, numbers little-endian. Funnel events one per row come
//! in ClickHouse's Native format instead (`crate::native`).

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
    #[error("a block of funnel rows has column {column} of type {found}, not {expected}")]
    Column {
        column: usize,
        found: String,
        expected: &'static str,
    },
    #[error("a block of funnel rows has {found} columns, not {expected}")]
    Columns { found: usize, expected: usize },
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
pub(crate) struct Pending {
    pub(crate) buf: Vec<u8>,
    pub(crate) pos: usize,
}

impl Pending {
    pub(crate) fn push(&mut self, chunk: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    pub(crate) fn cursor(&self) -> Cursor<'_> {
        Cursor {
            bytes: &self.buf,
            pos: self.pos,
        }
    }

    /// Bytes left over at the end of the answer mean it was cut short.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
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
pub(crate) struct Cursor<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    pub(crate) fn len(&mut self) -> Result<Option<usize>, DecodeError> {
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

    pub(crate) fn str(&mut self) -> Result<Option<&'a str>, DecodeError> {
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

/// ClickHouse's encodings of lengths and strings, written independently of
/// the decoders, for their tests (RowBinary's and Native's).
#[cfg(test)]
pub(crate) mod encoding {
    pub fn leb(mut n: usize, out: &mut Vec<u8>) {
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

    pub fn string(s: &str, out: &mut Vec<u8>) {
        leb(s.len(), out);
        out.extend_from_slice(s.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::encoding::{leb, string};
    use super::*;

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
}
