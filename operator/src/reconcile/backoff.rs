//! After a failed reconcile: when to try again.

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::context::{Context, key};
use super::error::Error;
use crate::build::meta;
use crate::crd::AnalyticsPipeline;
use crate::kafka::Kafka;

/// After a failed reconcile: try again after a backoff that doubles with
/// each consecutive failure of the same pipeline.
pub fn error_policy<T: Kafka>(
    p: Arc<AnalyticsPipeline>,
    error: &Error,
    ctx: Arc<Context<T>>,
) -> Action {
    let failures = {
        let mut all = ctx.failures();
        let n = all.entry(key(&p)).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let wait = backoff(failures);
    tracing::warn!(
        pipeline = %p.name_any(),
        namespace = %meta::namespace(&p),
        failures,
        retry_in_secs = wait.as_secs(),
        error = %error,
        "reconcile failed"
    );
    Action::requeue(wait)
}

/// 5 s after the first failure, doubling up to 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(6);
    Duration::from_secs(5 * 2u64.pow(exponent)).min(Duration::from_secs(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_five_seconds_to_five_minutes() {
        let waits: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(backoff(0).as_secs(), 5);
        assert_eq!(backoff(u32::MAX).as_secs(), 300);
    }
}
