//! Writing rows to ClickHouse: outage or bad data, and isolating bad rows.
//!
//! An unreachable, slow or overloaded ClickHouse is an **outage**: the batch
//! is retried with backoff and nothing goes to the DLQ. Only an answer that
//! blames the data (a parse or type error code) makes the batch split in
//! halves until the rejected rows are found; those alone go to the DLQ. An
//! unknown server error is treated as an outage: retrying a good batch costs
//! time, dead-lettering it would lose data from the pipeline's view.

use std::future::Future;
use std::ops::Range;
use std::time::Duration;

use tributary_core::clickhouse::exception_code;

use crate::row::EventRow;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertFailure {
    /// Retry later; the data is not at fault.
    Outage(String),
    /// ClickHouse refused these rows' data.
    Rejected(String),
}

/// Server exception codes that blame the inserted data. Not among them:
/// 32 (ATTEMPT_TO_READ_AFTER_EOF) and 33 (CANNOT_READ_ALL_DATA), which a
/// body cut short or rows of another shape than the table's columns give:
/// every row would fail alike, and dead-lettering them would empty the
/// pipeline into the DLQ. They are outages, retried until fixed.
const DATA_ERROR_CODES: [u32; 14] = [
    6,   // CANNOT_PARSE_TEXT
    26,  // CANNOT_PARSE_QUOTED_STRING
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    38,  // CANNOT_PARSE_DATE
    41,  // CANNOT_PARSE_DATETIME
    53,  // TYPE_MISMATCH
    69,  // ARGUMENT_OUT_OF_BOUND
    70,  // CANNOT_CONVERT_TYPE
    72,  // CANNOT_PARSE_NUMBER
    117, // INCORRECT_DATA
    131, // TOO_LARGE_STRING_SIZE
    321, // VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    469, // VIOLATED_CONSTRAINT
    691, // UNKNOWN_ELEMENT_OF_ENUM
];

pub fn classify(error: &clickhouse::error::Error) -> InsertFailure {
    match exception_code(error) {
        Some(code) if DATA_ERROR_CODES.contains(&code) => {
            InsertFailure::Rejected(error.to_string())
        }
        _ => InsertFailure::Outage(error.to_string()),
    }
}

/// One RowBinary insert of `rows` into `table`, bounded by `timeout`.
pub async fn insert_rows<'a>(
    client: &clickhouse::Client,
    table: &str,
    rows: impl IntoIterator<Item = &'a EventRow>,
    timeout: Duration,
) -> Result<(), InsertFailure> {
    let attempt = async {
        let mut insert = client.insert::<EventRow>(table).await?;
        for row in rows {
            insert.write(row).await?;
        }
        insert.end().await
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(classify(&e)),
        Err(_) => Err(InsertFailure::Outage(format!(
            "insert did not finish within {timeout:?}"
        ))),
    }
}

/// Inserts `rows`, splitting on rejection to isolate the bad ones.
///
/// Returns the indices of rejected rows with ClickHouse's reason, or the
/// outage that stopped the attempt (the caller retries the whole batch; rows
/// already written are written again and collapse by uuid).
/// `insert` is called with index ranges of the batch.
pub async fn insert_isolating<F, Fut>(
    len: usize,
    mut insert: F,
) -> Result<Vec<(usize, String)>, String>
where
    F: FnMut(Range<usize>) -> Fut,
    Fut: Future<Output = Result<(), InsertFailure>>,
{
    let mut rejected = Vec::new();
    let mut pending = vec![(0usize, len)];
    while let Some((start, end)) = pending.pop() {
        if start >= end {
            continue;
        }
        match insert(start..end).await {
            Ok(()) => {}
            Err(InsertFailure::Outage(reason)) => return Err(reason),
            Err(InsertFailure::Rejected(reason)) if end - start == 1 => {
                rejected.push((start, reason))
            }
            Err(InsertFailure::Rejected(_)) => {
                let mid = start + (end - start) / 2;
                // Second half pushed first so the first half is tried first.
                pending.push((mid, end));
                pending.push((start, mid));
            }
        }
    }
    rejected.sort_by_key(|(i, _)| *i);
    Ok(rejected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Inserts into a Vec, rejecting any slice holding a negative number.
    async fn run(
        rows: &[i32],
        outage_on_call: Option<usize>,
    ) -> (Result<Vec<(usize, String)>, String>, Vec<i32>, usize) {
        let stored = RefCell::new(Vec::new());
        let calls = RefCell::new(0usize);
        let result = insert_isolating(rows.len(), |range: Range<usize>| {
            let slice = &rows[range];
            *calls.borrow_mut() += 1;
            let n = *calls.borrow();
            let outcome = if Some(n) == outage_on_call {
                Err(InsertFailure::Outage("connection refused".into()))
            } else if slice.iter().any(|v| *v < 0) {
                Err(InsertFailure::Rejected(format!("bad value in {slice:?}")))
            } else {
                stored.borrow_mut().extend_from_slice(slice);
                Ok(())
            };
            std::future::ready(outcome)
        })
        .await;
        (result, stored.into_inner(), calls.into_inner())
    }

    #[tokio::test]
    async fn a_clean_batch_is_one_insert() {
        let (r, stored, calls) = run(&[1, 2, 3, 4], None).await;
        assert_eq!(r.unwrap(), vec![]);
        assert_eq!(stored, [1, 2, 3, 4]);
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn bad_rows_are_isolated_and_every_good_row_is_stored() {
        let rows: Vec<i32> = (0..100)
            .map(|i| if i == 7 || i == 63 { -i } else { i })
            .collect();
        let (r, mut stored, calls) = run(&rows, None).await;
        let rejected: Vec<usize> = r.unwrap().into_iter().map(|(i, _)| i).collect();
        assert_eq!(rejected, [7, 63]);
        stored.sort();
        let mut expected: Vec<i32> = rows.iter().copied().filter(|v| *v >= 0).collect();
        expected.sort();
        assert_eq!(stored, expected);
        assert!(
            calls <= 2 * 2 * 7 + 1,
            "{calls} inserts for 2 bad rows in 100"
        );
    }

    #[tokio::test]
    async fn an_outage_stops_the_attempt() {
        let (r, _, _) = run(&[1, -2, 3, 4], Some(2)).await;
        assert_eq!(r.unwrap_err(), "connection refused");
    }

    #[test]
    fn classification() {
        let data = clickhouse::error::Error::BadResponse(
            "Code: 27, e.displayText() = DB::Exception: Cannot parse input".into(),
        );
        assert!(matches!(classify(&data), InsertFailure::Rejected(_)));
        let missing = clickhouse::error::Error::BadResponse(
            "Code: 60, e.displayText() = DB::Exception: Table doesn't exist".into(),
        );
        assert!(matches!(classify(&missing), InsertFailure::Outage(_)));
        assert!(matches!(
            classify(&clickhouse::error::Error::TimedOut),
            InsertFailure::Outage(_)
        ));
    }
}
