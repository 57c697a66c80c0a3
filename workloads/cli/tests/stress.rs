//! The stress tool (`make stress-capture`, `make stress-query`) in a tiny
//! run, so it keeps working: load goes through the real pipeline, every
//! accepted event is stored, and the queries answer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use tributary_tests::Stack;
use tributary_tests::stress::capture::{self, CaptureOptions};
use tributary_tests::stress::pipeline::Pipeline;
use tributary_tests::stress::query::{self, QueryOptions};

#[tokio::test]
async fn a_short_capture_ramp_is_measured_and_fully_stored() {
    let stack = Stack::require();
    let p = Pipeline::start(Path::new(env!("CARGO_BIN_EXE_tributary")), &stack).unwrap();
    let keys = p.project().await.unwrap();
    let options = CaptureOptions {
        steps: vec![50, 100],
        step: Duration::from_secs(2),
        batch: 10,
    };
    let report = capture::run(&p, &keys, &options).await.unwrap();
    assert_eq!(report.steps.len(), 2);
    for step in &report.steps {
        let s = &step.summary;
        assert_eq!((s.error_rate, step.shed), (0.0, 0), "{step:?}");
        assert!(s.rate > step.target as f64 * 0.5, "{step:?}");
        assert!(s.p99 > Duration::ZERO, "{step:?}");
    }
    assert!(report.accepted >= 200, "{report:?}");
    assert!(report.max_lag.is_some(), "the consumer's lag was read");
    assert!(report.visible_after.is_some(), "{report:?}");
    assert_eq!(p.stored().await, report.accepted);
}

#[tokio::test]
async fn a_short_query_run_answers_every_query() {
    let stack = Stack::require();
    let p = Pipeline::start(Path::new(env!("CARGO_BIN_EXE_tributary")), &stack).unwrap();
    let keys = p.project().await.unwrap();
    let options = QueryOptions {
        events: 2000,
        duration: Duration::from_secs(2),
        concurrency: 2,
    };
    let report = query::run(&p, &keys, &options).await.unwrap();
    for s in [&report.trend, &report.funnel] {
        assert_eq!(s.error_rate, 0.0, "{s:?}");
        assert!(s.rate > 0.0 && s.p99 > Duration::ZERO, "{s:?}");
    }
}
