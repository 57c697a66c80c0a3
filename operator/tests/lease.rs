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
use support::{FakeApi, Fault};
use tokio::time::Instant;
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

/// Runs a leader of a 15 s Lease against `faults` (after it acquired the
/// Lease) until it steps down; returns how long after the last write of
/// the Lease the server made it stopped, and its renew deadline.
async fn stopped_after_last_write(faults: &[Fault]) -> (Duration, Duration) {
    let fake = FakeApi::new();
    let a = lock(&fake, "a", Duration::from_secs(15));
    let shutdown = CancellationToken::new();
    assert!(a.acquire(&shutdown).await);
    fake.script(faults);
    let kept = tokio::time::timeout(Duration::from_secs(3600), a.keep(&shutdown))
        .await
        .expect("keep returns once renewals fail for too long");
    let stopped = Instant::now();
    assert_eq!(kept, Kept::Lost);
    let last_write = *fake.lease_writes().last().unwrap();
    (stopped - last_write, a.renew_deadline())
}

const HANG: Fault = Fault {
    before: Duration::from_secs(3600),
    after: Duration::ZERO,
    unavailable: false,
};

/// A standby takes over a whole duration (15 s) after it saw the last
/// renewal, which it can see no sooner than the server wrote it. The
/// leader must have stopped before that, however slow its attempts: within
/// the renew deadline (10 s) of that write. Time is tokio's, paused: the
/// waits are exact and take no real time.
#[tokio::test(start_paused = true)]
async fn a_leader_steps_down_within_the_renew_deadline_however_slow_its_renewals() {
    let slow = |before: u64, after: u64, unavailable: bool| Fault {
        before: Duration::from_millis(before),
        after: Duration::from_millis(after),
        unavailable,
    };
    let cases: Vec<(&str, Vec<Fault>)> = vec![
        ("every renewal hangs", vec![HANG; 64]),
        ("every renewal fails fast", vec![slow(0, 0, true); 64]),
        (
            "every renewal fails after 4.9 s",
            vec![slow(4_900, 0, true); 64],
        ),
        (
            // Written at once, answered late; then a fast failure, then
            // attempts that hang: each step alone stays within a third of
            // the duration.
            "a late success, a fast failure, then hanging renewals",
            [slow(0, 4_900, false), slow(0, 0, true)]
                .into_iter()
                .chain([HANG; 64])
                .collect(),
        ),
        (
            "answers later than the deadline",
            vec![slow(0, 11_000, false); 64],
        ),
    ];
    for (what, faults) in cases {
        let (stopped, deadline) = stopped_after_last_write(&faults).await;
        assert!(
            stopped <= deadline,
            "{what}: stepped down {stopped:?} after the last write; a standby may lead 15 s after it, and the leader must be gone {deadline:?} after it"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_healthy_leader_keeps_the_lease_until_the_api_server_goes_away() {
    let fake = FakeApi::new();
    let duration = Duration::from_secs(15);
    let a = lock(&fake, "a", duration);
    let stop = CancellationToken::new();
    assert!(a.acquire(&stop).await);
    let keeping = tokio::spawn({
        let stop = stop.clone();
        async move { a.keep(&stop).await }
    });
    tokio::time::sleep(duration * 4).await;
    assert!(!keeping.is_finished(), "a healthy leader keeps the Lease");
    assert!(
        fake.lease_writes().len() >= 12,
        "renewed every 5 s: {}",
        fake.lease_writes().len()
    );
    assert_eq!(fake.get(LEASE).unwrap()["spec"]["holderIdentity"], "a");

    // The API server goes away: a steps down within its renew deadline
    // (when a standby takes over is `decide`'s, by the clock it reads; see
    // the first test).
    fake.set_unavailable(true);
    let down = Instant::now();
    assert_eq!(keeping.await.unwrap(), Kept::Lost);
    assert!(down.elapsed() <= duration * 2 / 3, "{:?}", down.elapsed());
}

/// A renewal that meets a newer version of the Lease (409: an earlier
/// attempt that seemed to fail had landed) is not a lost Lease: the leader
/// reads it again and keeps it, as client-go does, stepping down only when
/// another holder shows.
#[tokio::test(start_paused = true)]
async fn a_renewal_that_loses_a_write_race_to_itself_keeps_the_lease() {
    let fake = FakeApi::new();
    let duration = Duration::from_secs(15);
    let a = lock(&fake, "a", duration);
    let stop = CancellationToken::new();
    assert!(a.acquire(&stop).await);
    fake.conflict_next_replace();
    let keeping = tokio::spawn({
        let stop = stop.clone();
        async move { a.keep(&stop).await }
    });
    tokio::time::sleep(duration * 2).await;
    assert!(!keeping.is_finished(), "a conflict is not a lost Lease");
    assert_eq!(fake.get(LEASE).unwrap()["spec"]["holderIdentity"], "a");
    stop.cancel();
    assert_eq!(keeping.await.unwrap(), Kept::Shutdown);
}
