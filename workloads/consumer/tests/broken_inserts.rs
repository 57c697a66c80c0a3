//! A request ClickHouse could not read to its end is not bad data: a body
//! cut short (codes 32, 33: ATTEMPT_TO_READ_AFTER_EOF, CANNOT_READ_ALL_DATA)
//! or rows that do not match the table's columns (a table of another
//! schema) make every row fail alike, and dead-lettering them one by one
//! would empty the pipeline into the DLQ. Both are outages: the batch is
//! retried, nothing goes to the DLQ. The errors here are the real server's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tributary_consumer::insert::{InsertFailure, classify, insert_rows};
use tributary_consumer::row::EventRow;
use tributary_tests::{Stack, unique_name};

async fn run(client: &clickhouse::Client, sql: &str) {
    client.query(sql).execute().await.unwrap();
}

fn row() -> EventRow {
    EventRow {
        uuid: uuid::Uuid::new_v4(),
        project_id: 1,
        event: "checkout".into(),
        distinct_id: "user-1".into(),
        properties: "{}".into(),
        timestamp: 1_790_000_000,
        timestamp_ms: 1_790_000_000_123,
        received_at: 1_790_000_001,
        ip: "127.0.0.1".into(),
        lib: "test".into(),
        lib_version: "1".into(),
    }
}

#[tokio::test]
async fn a_body_cut_short_is_an_outage_not_bad_rows() {
    let stack = Stack::require();
    let db = unique_name("broken_insert");
    let client = tributary_tests::clickhouse::client(&stack.clickhouse_url);
    run(&client, &format!("CREATE DATABASE {db}")).await;
    run(
        &client,
        &format!("CREATE TABLE {db}.t (uuid UUID, project_id UInt64) ENGINE = Memory"),
    )
    .await;
    // A RowBinary body that ends inside its first UUID, as when the
    // connection broke mid-request: what does the server answer?
    let response = reqwest::Client::new()
        .post(format!(
            "{}/?query={}",
            stack.clickhouse_url.trim_end_matches('/'),
            form_urlencoded::byte_serialize(
                format!("INSERT INTO {db}.t FORMAT RowBinary").as_bytes()
            )
            .collect::<String>()
        ))
        .body(vec![1u8; 10])
        .send()
        .await
        .unwrap();
    assert!(!response.status().is_success());
    let text = response.text().await.unwrap();
    let error = clickhouse::error::Error::BadResponse(text.clone());
    let code = tributary_core::clickhouse::exception_code(&error);
    assert!(matches!(code, Some(32 | 33)), "{text}");
    assert!(
        matches!(classify(&error), InsertFailure::Outage(_)),
        "{text}"
    );
    run(&client, &format!("DROP DATABASE {db}")).await;
}

#[tokio::test]
async fn rows_that_do_not_fit_the_tables_columns_are_an_outage_not_bad_rows() {
    let stack = Stack::require();
    let db = unique_name("drifted_insert");
    let client = tributary_tests::clickhouse::client(&stack.clickhouse_url);
    run(&client, &format!("CREATE DATABASE {db}")).await;
    // The events table of another schema: timestamp_ms is 32 bits wide.
    run(
        &client,
        &format!(
            "CREATE TABLE {db}.events (uuid UUID, project_id UInt64, event String, \
             distinct_id String, properties String, timestamp DateTime, timestamp_ms UInt32, \
             received_at DateTime, ip String, lib String, lib_version String) ENGINE = Memory"
        ),
    )
    .await;
    let rows = [row(), row()];
    let outcome = insert_rows(
        &client.clone().with_database(&db),
        "events",
        rows.iter(),
        Duration::from_secs(20),
    )
    .await;
    match outcome {
        Err(InsertFailure::Outage(reason)) => {
            assert!(reason.contains("Code:"), "the server's answer: {reason}")
        }
        other => panic!("not an outage: {other:?}"),
    }
    run(&client, &format!("DROP DATABASE {db}")).await;
}
