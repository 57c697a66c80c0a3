//! Decodes funnel event rows ([`EventRow`], the columns of
//! [`crate::funnel::FunnelPlan::events_sql`]) from ClickHouse's Native
//! format as the bytes stream in.
//!
//! Native is ClickHouse's own block layout, so the server sends its column
//! arrays as they are instead of cutting them into rows: on 10 M events
//! ClickHouse answered the same 168 MB about 30 % sooner than as RowBinary
//! (BENCHMARKS.md). Over HTTP a block is: the number of columns and of rows
//! (LEB128), then per column its name and type (LEB128-length strings) and
//! its values, numbers as a little-endian array, strings each as a LEB128
//! length and bytes. Rows are handed out once their whole block has
//! arrived; each column's type is checked against the shape expected, so a
//! misread never turns into wrong numbers.

use crate::rowbinary::{Cursor, DecodeError, Pending, Widths};

/// Which columns an event row has, and how wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventShape {
    pub widths: Widths,
    /// An exclusion mask follows the step mask.
    pub exclusions: bool,
    /// A breakdown label comes last.
    pub labels: bool,
}

/// A user as event rows name them: `cityHash64` and `murmurHash2_32` of
/// the distinct id, 96 bits together. Two ids that agree on both are taken
/// for one user: by chance, among a million users, about once in 10^17
/// funnels; on purpose it takes
/// crafting ids that collide on both hashes, i.e. someone who can send the
/// project's events, who could fake its funnels anyway. The second hash
/// was 64 bits wide: at 32, ClickHouse answers a 10 M-event funnel a tenth
/// sooner (BENCHMARKS.md).
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

/// The values of one column of a block.
enum Column<'a> {
    /// Little-endian numbers of a fixed width.
    Fixed(&'a [u8]),
    /// The bytes of `rows` strings, each a LEB128 length and the bytes.
    Strings(&'a [u8]),
}

/// Event rows out of a stream of Native blocks.
#[derive(Debug)]
pub struct NativeEventDecoder {
    shape: EventShape,
    /// The columns' types, in order, as the shape has them.
    types: Vec<&'static str>,
    pending: Pending,
    /// Bytes the block being received needs at least, as far as its
    /// header told: no new attempt to read it before they are here.
    needed: usize,
    /// How far the block's strings were read: they are not read again.
    strings: Resume,
}

/// Where reading a block's string column stopped for want of bytes: the
/// strings whole so far, and the offset (from the block's start) of the
/// first one that was not.
#[derive(Debug, Default, Clone, Copy)]
struct Resume {
    rows: usize,
    offset: usize,
}

impl NativeEventDecoder {
    pub fn new(shape: EventShape) -> Self {
        Self {
            shape,
            types: types(shape),
            pending: Pending::default(),
            needed: 0,
            strings: Resume::default(),
        }
    }

    /// Adds the next bytes of the answer and hands every row of each
    /// complete block to `each`.
    pub fn push(
        &mut self,
        chunk: &[u8],
        mut each: impl FnMut(EventRow<'_>),
    ) -> Result<(), DecodeError> {
        self.pending.push(chunk);
        loop {
            let available = self.pending.buf.len() - self.pending.pos;
            if available == 0 || available < self.needed {
                return Ok(());
            }
            let mut c = self.pending.cursor();
            match block(&mut c, &self.types, &mut self.strings)? {
                Block::Whole(rows, columns) => {
                    self.emit(rows, &columns, &mut each)?;
                    self.pending.pos = c.pos;
                    self.needed = 0;
                    self.strings = Resume::default();
                }
                Block::Needs(n) => {
                    self.needed = n;
                    return Ok(());
                }
            }
        }
    }

    fn emit(
        &self,
        rows: usize,
        columns: &[Column<'_>],
        each: &mut impl FnMut(EventRow<'_>),
    ) -> Result<(), DecodeError> {
        let fixed = |i: usize| match columns.get(i) {
            Some(Column::Fixed(b)) => *b,
            _ => &[],
        };
        let (city, murmur, times, steps) = (fixed(0), fixed(1), fixed(2), fixed(3));
        let time_bytes = self.shape.widths.time_bytes();
        let mask_bytes = self.shape.widths.mask_bytes();
        let exclusions = self.shape.exclusions.then(|| fixed(4));
        let mut labels = match columns.last() {
            Some(Column::Strings(b)) if self.shape.labels => Some(Cursor { bytes: b, pos: 0 }),
            _ => None,
        };
        for i in 0..rows {
            let label = match labels.as_mut() {
                Some(c) => c.str()?.ok_or(DecodeError::Truncated(0))?,
                None => "",
            };
            each(EventRow {
                user: UserKey {
                    city: le(city, i, 8),
                    murmur: le(murmur, i, 4),
                },
                ts_ms: le(times, i, time_bytes),
                steps: le(steps, i, mask_bytes) as u16,
                exclusions: exclusions.map_or(0, |x| le(x, i, 2) as u16),
                label,
            });
        }
        Ok(())
    }

    /// Call at the end of the answer: bytes left over mean it was cut short.
    pub fn finish(&self) -> Result<(), DecodeError> {
        self.pending.finish()
    }
}

/// The columns' types of `shape`'s blocks, in order.
fn types(shape: EventShape) -> Vec<&'static str> {
    let w = shape.widths;
    let mut types = vec![
        "UInt64",
        "UInt32",
        if w.narrow_times { "UInt32" } else { "UInt64" },
        if w.narrow_steps { "UInt8" } else { "UInt16" },
    ];
    if shape.exclusions {
        types.push("UInt16");
    }
    if shape.labels {
        types.push("String");
    }
    types
}

/// The `i`th little-endian number of `width` bytes (1, 2, 4 or 8) of
/// `bytes`; the caller has checked that there are enough.
fn le(bytes: &[u8], i: usize, width: usize) -> u64 {
    let at = i * width;
    let b = bytes.get(at..at + width).unwrap_or(&[]);
    match width {
        8 => <[u8; 8]>::try_from(b).map_or(0, u64::from_le_bytes),
        4 => <[u8; 4]>::try_from(b).map_or(0, |b| u64::from(u32::from_le_bytes(b))),
        2 => <[u8; 2]>::try_from(b).map_or(0, |b| u64::from(u16::from_le_bytes(b))),
        _ => b.first().map_or(0, |&b| u64::from(b)),
    }
}

enum Block<'a> {
    /// A whole block: its rows and columns; the cursor is past it.
    Whole(usize, Vec<Column<'a>>),
    /// Not all here: at least this many bytes (from the block's start)
    /// are needed.
    Needs(usize),
}

/// Reads the block at the cursor; its strings from where `strings` says
/// an earlier attempt stopped.
fn block<'a>(
    c: &mut Cursor<'a>,
    types: &[&'static str],
    strings: &mut Resume,
) -> Result<Block<'a>, DecodeError> {
    let start = c.pos;
    let needs = |c: &Cursor<'_>, more: usize| Ok(Block::Needs(c.pos - start + more.max(1)));
    let Some(count) = c.len()? else {
        return needs(c, 1);
    };
    let Some(rows) = c.len()? else {
        return needs(c, 1);
    };
    if count != types.len() && !(count == 0 && rows == 0) {
        return Err(DecodeError::Columns {
            found: count,
            expected: types.len(),
        });
    }
    let mut columns = Vec::with_capacity(count);
    for (i, &expected) in types.iter().enumerate().take(count) {
        let Some(_name) = c.str()? else {
            return needs(c, 1);
        };
        let Some(found) = c.str()? else {
            return needs(c, 1);
        };
        let width = match found {
            "UInt8" => 1,
            "UInt16" => 2,
            "UInt32" => 4,
            "UInt64" => 8,
            _ => 0,
        };
        if found != expected {
            return Err(DecodeError::Column {
                column: i,
                found: found.to_owned(),
                expected,
            });
        }
        if width > 0 {
            let bytes = rows
                .checked_mul(width)
                .ok_or(DecodeError::Length(rows as u64))?;
            match c.take(bytes) {
                Some(b) => columns.push(Column::Fixed(b)),
                None => return needs(c, bytes),
            }
        } else {
            let from = c.pos;
            if strings.rows > 0 {
                c.pos = start + strings.offset;
            }
            for row in strings.rows..rows {
                let at = c.pos;
                let stop = |c: &Cursor<'_>, strings: &mut Resume, more: usize| {
                    *strings = Resume {
                        rows: row,
                        offset: at - start,
                    };
                    // Each string after this one takes a byte at least.
                    needs(c, more + (rows - row - 1))
                };
                let Some(n) = c.len()? else {
                    return stop(c, strings, 1);
                };
                if c.take(n).is_none() {
                    return stop(c, strings, n);
                }
            }
            columns.push(Column::Strings(c.bytes.get(from..c.pos).unwrap_or(&[])));
        }
    }
    Ok(Block::Whole(rows, columns))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rowbinary::encoding::{leb, string};

    #[derive(Debug, Clone, PartialEq)]
    struct Owned {
        user: UserKey,
        ts_ms: u64,
        steps: u16,
        exclusions: u16,
        label: String,
    }

    fn rows(n: usize) -> Vec<Owned> {
        (0..n)
            .map(|i| Owned {
                user: UserKey {
                    city: (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    murmur: u64::from(u32::MAX) - i as u64,
                },
                ts_ms: 1_000 + (i as u64) * 977,
                steps: (i % 7) as u16,
                exclusions: (i % 3) as u16,
                label: ["Chrome", "", "Fire\u{fc}fox", "x"][i % 4].to_owned(),
            })
            .collect()
    }

    /// Encodes rows as ClickHouse's Native blocks of at most `per_block`
    /// rows, independently of the decoder.
    fn encode(rows: &[Owned], shape: EventShape, per_block: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for block in rows.chunks(per_block) {
            let mut columns = 4;
            columns += usize::from(shape.exclusions) + usize::from(shape.labels);
            leb(columns, &mut out);
            leb(block.len(), &mut out);
            let fixed = |out: &mut Vec<u8>,
                         name: &str,
                         ty: &str,
                         width: usize,
                         f: &dyn Fn(&Owned) -> u64| {
                string(name, out);
                string(ty, out);
                for r in block {
                    out.extend_from_slice(&f(r).to_le_bytes()[..width]);
                }
            };
            fixed(&mut out, "cityHash64(distinct_id)", "UInt64", 8, &|r| {
                r.user.city
            });
            fixed(&mut out, "murmurHash2_32(distinct_id)", "UInt32", 4, &|r| {
                r.user.murmur
            });
            if shape.widths.narrow_times {
                fixed(&mut out, "t", "UInt32", 4, &|r| r.ts_ms);
            } else {
                fixed(&mut out, "t", "UInt64", 8, &|r| r.ts_ms);
            }
            if shape.widths.narrow_steps {
                fixed(&mut out, "s", "UInt8", 1, &|r| u64::from(r.steps));
            } else {
                fixed(&mut out, "s", "UInt16", 2, &|r| u64::from(r.steps));
            }
            if shape.exclusions {
                fixed(&mut out, "x", "UInt16", 2, &|r| u64::from(r.exclusions));
            }
            if shape.labels {
                string("bv", &mut out);
                string("String", &mut out);
                for r in block {
                    string(&r.label, &mut out);
                }
            }
        }
        out
    }

    fn expected(rows: &[Owned], shape: EventShape) -> Vec<Owned> {
        rows.iter()
            .map(|r| Owned {
                exclusions: if shape.exclusions { r.exclusions } else { 0 },
                label: if shape.labels {
                    r.label.clone()
                } else {
                    String::new()
                },
                ..r.clone()
            })
            .collect()
    }

    fn decode(bytes: &[u8], shape: EventShape, chunk: usize) -> Result<Vec<Owned>, DecodeError> {
        let mut decoder = NativeEventDecoder::new(shape);
        let mut got = Vec::new();
        for c in bytes.chunks(chunk.max(1)) {
            decoder.push(c, |r| {
                got.push(Owned {
                    user: r.user,
                    ts_ms: r.ts_ms,
                    steps: r.steps,
                    exclusions: r.exclusions,
                    label: r.label.to_owned(),
                })
            })?;
        }
        decoder.finish()?;
        Ok(got)
    }

    fn shapes() -> Vec<EventShape> {
        let mut shapes = Vec::new();
        for narrow_times in [true, false] {
            for narrow_steps in [true, false] {
                for exclusions in [false, true] {
                    for labels in [false, true] {
                        shapes.push(EventShape {
                            widths: Widths {
                                narrow_times,
                                narrow_steps,
                            },
                            exclusions,
                            labels,
                        });
                    }
                }
            }
        }
        shapes
    }

    #[test]
    fn rows_decode_whatever_the_shape_blocks_and_chunking() {
        let all = rows(1_000);
        let mut checked = 0;
        for shape in shapes() {
            for per_block in [1, 7, 1_000] {
                let bytes = encode(&all, shape, per_block);
                for chunk in [1, 3, 64, 4096, bytes.len()] {
                    assert_eq!(
                        decode(&bytes, shape, chunk).unwrap(),
                        expected(&all, shape),
                        "{shape:?}, {per_block} rows a block, chunks of {chunk}"
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 16 * 3 * 5);
    }

    /// Narrow times and steps, no exclusions, a breakdown label.
    fn labelled() -> EventShape {
        EventShape {
            widths: Widths {
                narrow_times: true,
                narrow_steps: true,
            },
            exclusions: false,
            labels: true,
        }
    }

    #[test]
    fn empty_blocks_give_no_rows_and_bad_bytes_are_errors() {
        let shape = labelled();
        // A block of no columns and no rows, and one with its header and
        // no rows, before a block of three rows.
        let mut bytes = vec![0, 0, 5, 0];
        for (name, ty) in [
            ("h", "UInt64"),
            ("g", "UInt32"),
            ("t", "UInt32"),
            ("s", "UInt8"),
            ("bv", "String"),
        ] {
            string(name, &mut bytes);
            string(ty, &mut bytes);
        }
        bytes.extend(encode(&rows(3), shape, 3));
        for chunk in [1, 7, bytes.len()] {
            assert_eq!(
                decode(&bytes, shape, chunk).unwrap(),
                expected(&rows(3), shape)
            );
        }
        // A label that is not UTF-8.
        let mut bad = encode(&rows(1), shape, 1);
        let last = bad.len() - 1;
        bad[last] = 0xff;
        assert_eq!(decode(&bad, shape, 64).unwrap_err(), DecodeError::Utf8);
        // A row count past belief.
        let mut huge = vec![5];
        huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        assert!(matches!(
            decode(&huge, shape, 64),
            Err(DecodeError::Length(_))
        ));
        // An error ClickHouse appends after some blocks: an error at once.
        let mut failed = encode(&rows(3), shape, 3);
        failed.extend_from_slice(b"Code: 241. DB::Exception: Memory limit exceeded");
        assert!(decode(&failed, shape, 5).is_err());
    }

    #[test]
    fn a_cut_answer_or_a_column_of_another_type_is_an_error() {
        let shape = labelled();
        let bytes = encode(&rows(10), shape, 10);
        for cut in [1, bytes.len() / 2, bytes.len() - 1] {
            assert!(
                matches!(
                    decode(&bytes[..cut], shape, 5),
                    Err(DecodeError::Truncated(n)) if n == cut
                ),
                "cut at {cut}"
            );
        }
        // The same bytes read as if the times were 64-bit.
        let wide = EventShape {
            widths: Widths {
                narrow_times: false,
                narrow_steps: true,
            },
            ..shape
        };
        assert_eq!(
            decode(&bytes, wide, 64).unwrap_err(),
            DecodeError::Column {
                column: 2,
                found: "UInt32".into(),
                expected: "UInt64"
            }
        );
        // A breakdown label expected, none sent.
        let unlabelled = encode(
            &rows(10),
            EventShape {
                labels: false,
                ..shape
            },
            10,
        );
        assert_eq!(
            decode(&unlabelled, shape, 64).unwrap_err(),
            DecodeError::Columns {
                found: 4,
                expected: 5
            }
        );
    }
}
