//! Large request buffers in memory mapped for them alone.
//!
//! A general allocator keeps what it frees for reuse: after many 20 MiB
//! bodies came and went, capture stayed resident at several times what the
//! byte budget allowed at once (measured: 370 MiB under a budget of 128).
//! A buffer mapped on its own is resident only in the pages written to it,
//! and all of them go back to the system when it is dropped, so resident
//! memory follows what the budget counts.

use bytes::Bytes;
use memmap2::MmapMut;

/// Buffers at least this large are mapped on their own; smaller ones come
/// from the allocator (a mapping costs system calls).
pub const MAPPED_FROM: usize = 256 * 1024;

/// A growable byte buffer: a `Vec` below [`MAPPED_FROM`], a mapping of its
/// own from there.
#[derive(Debug, Default)]
pub struct BigBuf {
    small: Vec<u8>,
    mapped: Option<MmapMut>,
    len: usize,
}

impl BigBuf {
    /// An empty buffer with room for `capacity` bytes (a mapping reserves
    /// addresses, not memory).
    pub fn with_capacity(capacity: usize) -> std::io::Result<Self> {
        if capacity >= MAPPED_FROM {
            Ok(Self {
                small: Vec::new(),
                mapped: Some(MmapMut::map_anon(capacity)?),
                len: 0,
            })
        } else {
            Ok(Self {
                small: Vec::with_capacity(capacity),
                mapped: None,
                len: 0,
            })
        }
    }

    pub fn capacity(&self) -> usize {
        match &self.mapped {
            Some(m) => m.len(),
            None => self.small.capacity(),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `data`, which must fit the capacity (the caller grows the
    /// buffer first: growth is what it charges).
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        let end = self.len + data.len();
        match &mut self.mapped {
            Some(m) => {
                debug_assert!(end <= m.len(), "grow the buffer first");
                if let Some(room) = m.get_mut(self.len..end) {
                    room.copy_from_slice(data);
                } else {
                    return;
                }
            }
            None => self.small.extend_from_slice(data),
        }
        self.len = end;
    }

    /// Memory resident for this buffer once `more` bytes are added: the
    /// capacity of a small one, what is written of a mapped one (what the
    /// byte budget is charged).
    pub fn resident_with(&self, more: usize) -> usize {
        match &self.mapped {
            Some(_) => self.len + more,
            None => self.small.capacity().max(self.len + more),
        }
    }

    /// What would be resident for a buffer of `capacity` holding `len` bytes.
    pub fn resident_of(capacity: usize, len: usize) -> usize {
        if capacity >= MAPPED_FROM {
            len
        } else {
            capacity
        }
    }

    /// Fills the buffer's first `len` bytes with `fill`, which answers how
    /// many it wrote (at most `len`); they are the buffer's bytes.
    pub fn fill<E>(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<(), E> {
        let room: &mut [u8] = match &mut self.mapped {
            Some(m) => {
                let end = len.min(m.len());
                m.get_mut(..end).unwrap_or_default()
            }
            None => {
                self.small.resize(len, 0);
                &mut self.small
            }
        };
        let written = fill(room)?;
        self.len = written.min(len);
        self.small.truncate(self.len);
        Ok(())
    }

    /// A buffer of `capacity` with this one's bytes.
    pub fn grown(&self, capacity: usize) -> std::io::Result<Self> {
        let mut bigger = Self::with_capacity(capacity)?;
        bigger.extend_from_slice(self.as_slice());
        Ok(bigger)
    }

    pub fn as_slice(&self) -> &[u8] {
        match &self.mapped {
            Some(m) => m.get(..self.len).unwrap_or_default(),
            None => &self.small,
        }
    }

    /// The bytes, without copying them.
    pub fn freeze(self) -> Bytes {
        match self.mapped {
            Some(_) => Bytes::from_owner(self),
            None => Bytes::from(self.small),
        }
    }
}

impl AsRef<[u8]> for BigBuf {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resident_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    #[test]
    fn small_and_mapped_buffers_hold_what_was_written() {
        for capacity in [16, MAPPED_FROM * 2] {
            let mut b = BigBuf::with_capacity(capacity).unwrap();
            b.extend_from_slice(b"hello ");
            b.extend_from_slice(b"world");
            assert_eq!(b.as_slice(), b"hello world");
            let mut b = b.grown(capacity * 2).unwrap();
            assert!(b.resident_with(1) >= 12);
            b.fill(4, |room| {
                room.copy_from_slice(b"abcd");
                Ok::<_, ()>(3)
            })
            .unwrap();
            assert_eq!(b.as_slice(), b"abc");
            b.extend_from_slice(b" world");
            assert!(b.capacity() >= capacity * 2);
            assert_eq!(&b.freeze()[..], b"abc world");
        }
    }

    /// What this module is for: a mapped buffer is resident only where
    /// written, and not at all once dropped. (Other tests in this process
    /// allocate too, so the margins are wide.)
    #[test]
    fn a_mapped_buffer_is_resident_only_where_written_and_gone_when_dropped() {
        const MIB: usize = 1024 * 1024;
        let before = resident_kib();
        let mut b = BigBuf::with_capacity(512 * MIB).unwrap();
        assert!(
            resident_kib() < before + 16 * 1024,
            "reserved, not resident"
        );
        let piece = vec![7u8; MIB];
        for _ in 0..64 {
            b.extend_from_slice(&piece);
        }
        let written = resident_kib();
        assert!(written >= before + 60 * 1024, "{before} -> {written} KiB");
        let frozen = b.freeze();
        assert_eq!(frozen.len(), 64 * MIB);
        drop(frozen);
        assert!(resident_kib() < written - 60 * 1024, "given back");
    }
}
