//! An error ClickHouse 18.16 appends to rows it already streamed (status
//! 200) must surface as that error, not pass for the end of the rows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tributary_core::clickhouse::exception_code;
use tributary_query::answer::Answer;
use tributary_tests::Stack;

fn answer(stack: &Stack, sql: &str) -> Answer {
    let client = tributary_tests::clickhouse::client(&stack.clickhouse_url);
    Answer::new(client.query(sql).fetch_bytes("RowBinary").unwrap())
}

#[tokio::test]
async fn an_error_after_the_first_rows_is_reported_at_the_end() {
    let stack = Stack::require();
    let mut a = answer(
        &stack,
        "SELECT number, throwIf(number = 300000) FROM system.numbers LIMIT 1000000 SETTINGS max_block_size = 8192",
    );
    let mut bytes = 0;
    while let Some(chunk) = a.next().await.unwrap() {
        bytes += chunk.len();
    }
    assert!(
        bytes > 8192 * 9,
        "rows streamed before the error: {bytes} bytes"
    );
    let e = a.end().await.expect_err("the appended error");
    assert_eq!(exception_code(&e), Some(395), "{e}");
}

#[tokio::test]
async fn a_whole_answer_ends_cleanly() {
    let stack = Stack::require();
    let mut a = answer(&stack, "SELECT number FROM system.numbers LIMIT 100000");
    let mut bytes = 0;
    while let Some(chunk) = a.next().await.unwrap() {
        bytes += chunk.len();
    }
    assert_eq!(bytes, 100_000 * 8);
    a.end().await.unwrap();
}
