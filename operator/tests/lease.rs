//! Leader election against a mocked API server: one holder at a time, a
//! standby takes over only once it has seen no renewal for a whole
//! duration (or the Lease was released), a write based on a stale read
//! loses, and a leader steps down when it loses the Lease or cannot renew.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use serde_json::json;
use support::FakeApi;
use tokio_util::sync::CancellationToken;
use tributary_operator::lease::{Kept, LeaseLock};

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/tributary-operator";

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap()
}

fn lock(fake: &Arc<FakeApi>, who: &str, duration: Duration) -> LeaseLock {
    LeaseLock::new(fake.client(), "ops", "tributary-operator", who, duration)
}

#[tokio::test]
async fn one_replica_leads_and_a_standby_takes_over_only_when_the_lease_lapses() {
    let fake = FakeApi::new();
    let fifteen = Duration::from_secs(15);
    let (a, b) = (lock(&fake, "a", fifteen), lock(&fake, "b", fifteen));

    assert!(a.try_hold(at(100)).await.unwrap(), "a creates the Lease");
    assert!(!b.try_hold(at(101)).await.unwrap(), "b waits");
    assert!(a.try_hold(at(105)).await.unwrap(), "a renews");
    assert!(
        !b.try_hold(at(110)).await.unwrap(),
        "b sees the renewal at 110"
    );
    assert!(
        !b.try_hold(at(124)).await.unwrap(),
        "held until 110 + 15 by b's clock"
    );
    let lease = fake.get(LEASE).unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "a");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 15);

    assert!(
        b.try_hold(at(125)).await.unwrap(),
        "a stopped renewing: b takes over"
    );
    assert!(!a.try_hold(at(126)).await.unwrap(), "a no longer leads");
    let lease = fake.get(LEASE).unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "b");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);

    a.release().await.unwrap();
    assert_eq!(
        fake.get(LEASE).unwrap()["spec"]["holderIdentity"],
        "b",
        "a cannot release b's Lease"
    );
    b.release().await.unwrap();
    assert!(
        a.try_hold(at(127)).await.unwrap(),
        "released: a takes over at once"
    );
    assert_eq!(fake.get(LEASE).unwrap()["spec"]["leaseTransitions"], 2);
}

#[tokio::test]
async fn a_candidate_that_loses_the_race_for_an_expired_lease_stands_by() {
    let fake = FakeApi::new();
    let fifteen = Duration::from_secs(15);
    let (a, b) = (lock(&fake, "a", fifteen), lock(&fake, "b", fifteen));
    assert!(a.try_hold(at(100)).await.unwrap());
    assert!(
        !b.try_hold(at(150)).await.unwrap(),
        "b first sees a's Lease"
    );
    // Between b's read of the expired Lease and its write, another
    // candidate wrote it: the API server refuses b's stale write.
    fake.conflict_next_replace();
    assert!(
        !b.try_hold(at(200)).await.unwrap(),
        "a lost race is not an error"
    );
    let calls = fake.take_calls();
    assert_eq!(calls.last().map(|c| c.method.as_str()), Some("PUT"));
    assert_eq!(fake.get(LEASE).unwrap()["spec"]["holderIdentity"], "a");
    assert!(b.try_hold(at(201)).await.unwrap(), "the next try wins");
}

#[tokio::test]
async fn a_leader_steps_down_when_another_replica_holds_the_lease() {
    let fake = FakeApi::new();
    let a = lock(&fake, "a", Duration::from_millis(300));
    let shutdown = CancellationToken::new();
    assert!(a.acquire(&shutdown).await);
    let mut lease = fake.get(LEASE).unwrap();
    lease["spec"]["holderIdentity"] = json!("b");
    lease["spec"]["leaseDurationSeconds"] = json!(15);
    fake.put(LEASE, lease);
    let kept = tokio::time::timeout(Duration::from_secs(5), a.keep(&shutdown))
        .await
        .expect("keep returns once the Lease is lost");
    assert_eq!(kept, Kept::Lost);
}

#[tokio::test]
async fn a_leader_that_cannot_renew_steps_down_before_a_standby_may_take_over() {
    let fake = FakeApi::new();
    let duration = Duration::from_millis(600);
    let a = lock(&fake, "a", duration);
    let shutdown = CancellationToken::new();
    assert!(a.acquire(&shutdown).await);
    fake.set_unavailable(true);
    let started = tokio::time::Instant::now();
    let kept = tokio::time::timeout(Duration::from_secs(5), a.keep(&shutdown))
        .await
        .expect("keep returns once renewals fail for too long");
    assert_eq!(kept, Kept::Lost);
    assert!(
        started.elapsed() < duration + duration / 3,
        "stepped down after {:?}; a standby may lead after {duration:?}",
        started.elapsed()
    );

    // While renewals succeed, keep holds until shutdown.
    fake.set_unavailable(false);
    let b = lock(&fake, "b", duration);
    let stop = CancellationToken::new();
    assert!(b.acquire(&stop).await, "a stopped renewing: b takes over");
    let keeping = tokio::spawn({
        let stop = stop.clone();
        async move { b.keep(&stop).await }
    });
    tokio::time::sleep(duration * 2).await;
    assert!(!keeping.is_finished(), "a healthy leader keeps the Lease");
    assert_eq!(fake.get(LEASE).unwrap()["spec"]["holderIdentity"], "b");
    stop.cancel();
    assert_eq!(keeping.await.unwrap(), Kept::Shutdown);
}
