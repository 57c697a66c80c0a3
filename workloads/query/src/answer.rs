//! A streamed answer, read chunk by chunk, and the error ClickHouse may
//! append to it.
//!
//! An error that happens after the answer began (a time limit reached while
//! rows stream out) cannot change the HTTP status any more: ClickHouse 18.16
//! appends its message to the rows already sent (`Code: 159,
//! e.displayText() = DB::Exception: Timeout exceeded ..., e.what() =
//! DB::Exception\n`) and ends the answer. The `clickhouse` crate recognises
//! only newer servers' form of this, so the rows would pass for a complete
//! answer cut short, or be misread. Here the end of every answer is checked.

use bytes::Bytes;
use clickhouse::error::Error;
use clickhouse::query::BytesCursor;

/// Bytes kept from the end of an answer: more than any error message.
const TAIL: usize = 4096;

/// Most bytes [`Answer::end`] reads looking for the end: an error comes
/// last, so an answer that goes on is not ending with one soon.
const MAX_DRAIN: usize = 1 << 20;

/// How ClickHouse 18.16 ends an error message.
const END_OF_ERROR: &[u8] = b"DB::Exception\n";

pub struct Answer {
    cursor: BytesCursor,
    tail: Vec<u8>,
}

impl Answer {
    pub fn new(cursor: BytesCursor) -> Self {
        Self {
            cursor,
            tail: Vec::new(),
        }
    }

    /// The next chunk, `None` at the end.
    pub async fn next(&mut self) -> Result<Option<Bytes>, Error> {
        let chunk = self.cursor.next().await?;
        if let Some(bytes) = &chunk {
            keep_tail(&mut self.tail, bytes);
        }
        Ok(chunk)
    }

    /// Reads what is left of the answer (up to [`MAX_DRAIN`] bytes); the
    /// server's error when it ends with one. Call at the end, and when the
    /// rows could not be read (the error may be why).
    pub async fn end(mut self) -> Result<(), Error> {
        let mut drained = 0;
        while let Some(chunk) = self.next().await? {
            drained += chunk.len();
            if drained > MAX_DRAIN {
                return Ok(());
            }
        }
        match appended_error(&self.tail) {
            Some(message) => Err(Error::BadResponse(message)),
            None => Ok(()),
        }
    }
}

/// Keeps the last [`TAIL`] bytes of the answer in `tail`.
fn keep_tail(tail: &mut Vec<u8>, chunk: &[u8]) {
    if chunk.len() >= TAIL {
        tail.clear();
        tail.extend_from_slice(&chunk[chunk.len() - TAIL..]);
        return;
    }
    tail.extend_from_slice(chunk);
    if tail.len() > TAIL {
        tail.drain(..tail.len() - TAIL);
    }
}

/// The error message an answer ends with, if it ends with one. (Rows
/// ending in those very bytes, a label chosen to, would be taken for an
/// error: the query fails, no answer is made up.)
fn appended_error(tail: &[u8]) -> Option<String> {
    if !tail.ends_with(END_OF_ERROR) {
        return None;
    }
    let start = tail.windows(6).rposition(|w| w == b"Code: ").unwrap_or(0);
    let message = String::from_utf8_lossy(&tail[start..]);
    Some(message.trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ERROR: &str = "Code: 159, e.displayText() = DB::Exception: Timeout exceeded: elapsed 1.003999952 seconds, maximum: 1, e.what() = DB::Exception\n";

    fn streamed(chunks: &[&[u8]]) -> Vec<u8> {
        let mut tail = Vec::new();
        for c in chunks {
            keep_tail(&mut tail, c);
        }
        tail
    }

    #[test]
    fn an_error_after_rows_is_found_however_the_answer_was_cut() {
        let mut answer = vec![7u8; 10_000];
        answer.extend_from_slice(ERROR.as_bytes());
        for size in [1, 13, 100, 4096, 5000, answer.len()] {
            let chunks: Vec<&[u8]> = answer.chunks(size).collect();
            let tail = streamed(&chunks);
            assert!(tail.len() <= TAIL);
            assert_eq!(
                appended_error(&tail).as_deref(),
                Some(ERROR.trim_end()),
                "chunks of {size}"
            );
        }
    }

    #[test]
    fn rows_alone_are_no_error() {
        assert_eq!(appended_error(&streamed(&[&[1, 2, 3], b"Code: 5"])), None);
        assert_eq!(appended_error(&streamed(&[])), None);
        // An error whose start is out of reach is still one.
        assert_eq!(
            appended_error(b"xxxx DB::Exception\n").as_deref(),
            Some("xxxx DB::Exception")
        );
    }

    #[test]
    fn the_crate_reads_the_code_of_the_error_found() {
        let tail = streamed(&[b"rows", ERROR.as_bytes()]);
        let e = Error::BadResponse(appended_error(&tail).unwrap_or_default());
        assert_eq!(tributary_core::clickhouse::exception_code(&e), Some(159));
    }
}
