//! Every migration statement runs on ClickHouse 18.16 (the stack's server) and
//! on a current ClickHouse (chdb), and both extract the same properties.

use tributary_core::schema::{EXTRACTED_PROPERTIES, Layout, clickhouse_migrations, render};
use tributary_tests::chdb::{self, Outcome};
use tributary_tests::{Stack, unique_name};

const SAMPLE: &str = r#"{"$current_url":"https://example.com/a?b=1","$pathname":"/a","$host":"example.com","$referrer":"https://ref.example/","$browser":"Firefox","$os":"Linux","$device_type":"Desktop","$session_id":"s-1","n":3}"#;

fn statements(db: &str) -> Vec<String> {
    let mut out = vec![format!("CREATE DATABASE IF NOT EXISTS {db}")];
    for m in clickhouse_migrations(&Layout::Single) {
        out.extend(m.steps.iter().map(|s| render(s, db)));
    }
    out.push(format!(
        "INSERT INTO {db}.events (uuid, project_id, event, distinct_id, properties, timestamp, timestamp_ms, received_at, ip, lib, lib_version) \
         VALUES ('01890a5d-ac96-774b-bcce-b302099a8057', 1, '$pageview', 'u1', '{}', 1700000000, 1700000000123, 1700000001, '', 'web', '1.0')",
        SAMPLE.replace('\'', "\\'")
    ));
    out
}

fn select(db: &str) -> String {
    let columns: Vec<&str> = EXTRACTED_PROPERTIES.iter().map(|(c, _)| *c).collect();
    format!("SELECT {} FROM {db}.events", columns.join(", "))
}

#[tokio::test]
async fn migrations_run_on_18_16_and_on_current_clickhouse_with_equal_results() {
    let stack = Stack::require();
    let db = unique_name("schema_check");

    // ClickHouse 18.16
    let ch = tributary_tests::clickhouse::client(&stack.clickhouse_url);
    for sql in statements(&db) {
        // The clickhouse crate binds `?`; `??` is a literal question mark.
        ch.query(&sql.replace('?', "??"))
            .execute()
            .await
            .unwrap_or_else(|e| panic!("18.16 refused: {sql}\n{e}"));
    }
    type Extracted = (
        String,
        String,
        String,
        String,
        String,
        String,
        String,
        String,
    );
    let old: Vec<Extracted> = ch.query(&select(&db)).fetch_all().await.unwrap();
    ch.query(&format!("DROP DATABASE {db}"))
        .execute()
        .await
        .unwrap();

    // Current ClickHouse (chdb)
    let python = stack
        .python
        .clone()
        .expect("TRIBUTARY_PYTHON not set by local-stack.sh");
    let mut all = statements(&db);
    all.push(select(&db));
    let outcomes = chdb::run(&python, &all);
    for (sql, outcome) in all.iter().zip(&outcomes) {
        if let Outcome::Failed(e) = outcome {
            panic!("current ClickHouse refused: {sql}\n{e}");
        }
    }
    let Some(Outcome::Ok(Some(rows))) = outcomes.last() else {
        panic!("no rows from chdb: {outcomes:?}")
    };
    let new: Vec<String> = rows[0]
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect();

    let (a, b, c, d, e, f, g, h) = &old[0];
    assert_eq!(new, [a, b, c, d, e, f, g, h].map(String::clone));
    assert_eq!(a, "https://example.com/a?b=1");
    assert_eq!(e, "Firefox");
}
