//! Leader election against a mocked API server: one holder at a time, a
//! standby takes over only once the Lease expired or was released, and a
//! write based on a stale read loses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use support::FakeApi;
use tributary_operator::lease::LeaseLock;

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/tributary-operator";

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap()
}

#[tokio::test]
async fn one_replica_leads_and_a_standby_takes_over_only_when_the_lease_lapses() {
    let fake = FakeApi::new();
    let lock = |who: &str| {
        LeaseLock::new(
            fake.client(),
            "ops",
            "tributary-operator",
            who,
            Duration::from_secs(15),
        )
    };
    let (a, b) = (lock("a"), lock("b"));

    assert!(a.try_hold(at(100)).await.unwrap(), "a creates the Lease");
    assert!(!b.try_hold(at(101)).await.unwrap(), "b waits");
    assert!(a.try_hold(at(105)).await.unwrap(), "a renews");
    assert!(
        !b.try_hold(at(119)).await.unwrap(),
        "renewed at 105: held until 120"
    );
    let lease = fake.get(LEASE).unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "a");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 15);

    assert!(
        b.try_hold(at(120)).await.unwrap(),
        "a stopped renewing: b takes over"
    );
    assert!(!a.try_hold(at(121)).await.unwrap(), "a no longer leads");
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
        a.try_hold(at(122)).await.unwrap(),
        "released: a takes over at once"
    );
    assert_eq!(fake.get(LEASE).unwrap()["spec"]["leaseTransitions"], 2);
}

#[tokio::test]
async fn a_candidate_that_loses_the_race_for_an_expired_lease_stands_by() {
    let fake = FakeApi::new();
    let lock = |who: &str| {
        LeaseLock::new(
            fake.client(),
            "ops",
            "tributary-operator",
            who,
            Duration::from_secs(15),
        )
    };
    let (a, b) = (lock("a"), lock("b"));
    assert!(a.try_hold(at(100)).await.unwrap());
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
