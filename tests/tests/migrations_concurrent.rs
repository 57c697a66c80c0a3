//! Two `tributary migrate` runs at once (a retried Job) both succeed and leave
//! one schema; a third run has nothing to do.

use tributary_core::clickhouse::ClickHouseSettings;
use tributary_core::config::Env;
use tributary_core::schema::{EXTRACTED_PROPERTIES, clickhouse_schema_version, migrate_clickhouse};
use tributary_tests::clickhouse::{client, host_port};
use tributary_tests::{Stack, unique_name};

#[tokio::test]
async fn concurrent_runs_converge_and_a_rerun_does_nothing() {
    let stack = Stack::require();
    let db = unique_name("migrate_race");
    let (host, port) = host_port(&stack.clickhouse_url);
    let port = port.to_string();
    let vars = [
        ("CONSUMER_CLICKHOUSE_HOST", host.as_str()),
        ("CONSUMER_CLICKHOUSE_PORT", port.as_str()),
        ("CONSUMER_CLICKHOUSE_DATABASE", db.as_str()),
    ];
    let settings = ClickHouseSettings::from_env(&Env::new(&vars), "CONSUMER").unwrap();

    let (a, b) = tokio::join!(migrate_clickhouse(&settings), migrate_clickhouse(&settings));
    a.unwrap();
    b.unwrap();

    let again = migrate_clickhouse(&settings).await.unwrap();
    assert!(again.applied.is_empty(), "{again:?}");
    assert_eq!(
        again.already.last().copied(),
        Some(clickhouse_schema_version())
    );

    let ch = client(&stack.clickhouse_url);
    let columns: u64 = ch
        .query("SELECT count() FROM system.columns WHERE database = ? AND table = 'events' AND name LIKE 'mat\\_%'")
        .bind(&db)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(columns, EXTRACTED_PROPERTIES.len() as u64);
    ch.query(&format!("DROP DATABASE {db}"))
        .execute()
        .await
        .unwrap();
}
