//! The fault suite (`tributary_tests::faults`): one fault at a time under a
//! steady load through the real processes. Nothing acknowledged is lost,
//! nothing is shown twice, nothing is dead-lettered by an outage. A short
//! form runs in `make test`; `make faults` runs the whole
//! (`TRIBUTARY_FAULTS=full`) and prints the table RELIABILITY.md records.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use tributary_tests::Stack;
use tributary_tests::faults::report::Figures;
use tributary_tests::faults::rig::{Keys, Rig};
use tributary_tests::faults::{Form, scenarios};

async fn run<F>(name: &str, scenario: F)
where
    F: for<'a> FnOnce(
        &'a mut Rig,
        Form,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Figures> + 'a>>,
{
    run_with(name, Keys::Static, scenario).await;
}

async fn run_with<F>(name: &str, keys: Keys, scenario: F)
where
    F: for<'a> FnOnce(
        &'a mut Rig,
        Form,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Figures> + 'a>>,
{
    let stack = Stack::require();
    let form = Form::from_env();
    let mut rig = Rig::start_with(Path::new(env!("CARGO_BIN_EXE_tributary")), &stack, keys).await;
    let figures = scenario(&mut rig, form).await;
    println!("{name} ({form:?})\n{}\n{}", Figures::HEADER, figures.row());
    if let Err(e) = figures.holds() {
        panic!("{e}\n{}", rig.log_tails(15));
    }
}

#[tokio::test]
async fn consumer_sigkilled_under_load() {
    run("consumer kills", |rig, form| {
        Box::pin(scenarios::consumer_kills(rig, form))
    })
    .await;
}

#[tokio::test]
async fn clickhouse_down_with_consumers_restarted_and_added() {
    run("ClickHouse outage", |rig, form| {
        Box::pin(scenarios::clickhouse_outage(rig, form))
    })
    .await;
}

#[tokio::test]
async fn broker_acknowledgements_held() {
    run("broker stall", |rig, form| {
        Box::pin(scenarios::broker_stall(rig, form))
    })
    .await;
}

#[tokio::test]
async fn consumers_churned_under_load() {
    run("consumer churn", |rig, form| {
        Box::pin(scenarios::consumer_churn(rig, form))
    })
    .await;
}

#[tokio::test]
async fn redis_down_for_query() {
    run("Redis down", |rig, form| {
        Box::pin(scenarios::redis_down(rig, form))
    })
    .await;
}

#[tokio::test]
async fn clickhouse_stalled_for_query() {
    run("ClickHouse stalled for query", |rig, form| {
        Box::pin(scenarios::clickhouse_stalls_for_query(rig, form))
    })
    .await;
}

#[tokio::test]
async fn clickhouse_read_only() {
    run("ClickHouse read-only", |rig, form| {
        Box::pin(scenarios::clickhouse_read_only(rig, form))
    })
    .await;
}

#[tokio::test]
async fn auth_down() {
    run_with("auth down", Keys::Auth, |rig, form| {
        Box::pin(scenarios::auth_down(rig, form))
    })
    .await;
}

#[tokio::test]
async fn postgres_down_for_auth() {
    run_with("Postgres down for auth", Keys::Auth, |rig, form| {
        Box::pin(scenarios::postgres_down_for_auth(rig, form))
    })
    .await;
}

#[tokio::test]
async fn broker_unreachable() {
    run("broker unreachable", |rig, form| {
        Box::pin(scenarios::broker_unreachable(rig, form))
    })
    .await;
}
