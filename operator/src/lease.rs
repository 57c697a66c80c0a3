//! Leader election with a `coordination.k8s.io/v1` Lease, so two operator
//! replicas never reconcile at once.
//!
//! The leader renews the Lease every third of its duration and steps down
//! when no renewal succeeded within two thirds of it (client-go's
//! RenewDeadline), the whole retry effort included. A candidate takes the
//! Lease over once it has seen no renewal for a whole duration, timed by
//! its own clock from when it saw the last change (as client-go does), so
//! clocks that disagree cannot make it take over early. Writes carry the
//! Lease's `resourceVersion`, so of two candidates racing for an expired
//! Lease the API server lets exactly one win. [`decide`] is the pure rule;
//! [`LeaseLock`] applies it.

use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What a candidate does with the Lease as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No Lease yet: create it, holding it.
    Create,
    /// We hold it: renew.
    Renew,
    /// Nobody holds it, or its holder stopped renewing: take it over.
    TakeOver,
    /// Someone else holds it until `until`.
    Wait { holder: String, until: Timestamp },
}

/// The rule: who may hold `lease` at `now`, for candidate `me`, who first
/// saw its current holder and renewal at `seen` (its own clock).
pub fn decide(lease: Option<&LeaseSpec>, me: &str, now: Timestamp, seen: Timestamp) -> Decision {
    let Some(spec) = lease else {
        return Decision::Create;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder == me {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::TakeOver;
    }
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
    let until = seen.checked_add(duration).unwrap_or(Timestamp::MAX);
    if now >= until {
        Decision::TakeOver
    } else {
        Decision::Wait {
            holder: holder.to_owned(),
            until,
        }
    }
}

/// The holder and renewal last read, and when (our clock) they changed.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    holder: Option<String>,
    renewed: Option<MicroTime>,
    since: Timestamp,
}

/// How [`LeaseLock::keep`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// Shutdown was asked for while holding the Lease.
    Shutdown,
    /// Another replica holds it, or it could not be renewed in time.
    Lost,
}

/// One candidate's hold on one Lease.
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    seen: Mutex<Option<Seen>>,
    /// When the last successful take or renewal started.
    renewed: Mutex<Option<Instant>>,
}

impl LeaseLock {
    /// Candidate `identity` (the pod's name) for Lease `name` in
    /// `namespace`, held for `duration` after each renewal.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration,
            seen: Mutex::new(None),
            renewed: Mutex::new(None),
        }
    }

    /// When the Lease as read now was first seen in this state.
    fn seen_since(&self, spec: Option<&LeaseSpec>, now: Timestamp) -> Timestamp {
        let current = Seen {
            holder: spec.and_then(|s| s.holder_identity.clone()),
            renewed: spec.and_then(|s| s.renew_time.clone()),
            since: now,
        };
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match seen.as_ref() {
            Some(s) if s.holder == current.holder && s.renewed == current.renewed => s.since,
            _ => {
                *seen = Some(current);
                now
            }
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    fn spec(&self, now: Timestamp, acquired: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.duration.as_secs().max(1)).unwrap_or(i32::MAX),
            ),
            acquire_time: Some(acquired.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Takes or renews the Lease at `now`; `Ok(true)` while we hold it.
    /// Losing a race to another candidate is `Ok(false)`, not an error.
    pub async fn try_hold(&self, now: Timestamp) -> kube::Result<bool> {
        self.attempt(now).await.map(|hold| hold == Hold::Held)
    }

    /// One take or renewal at `now`, saying why it did not hold.
    async fn attempt(&self, now: Timestamp) -> kube::Result<Hold> {
        let current = self.api.get_opt(&self.name).await?;
        let spec = current.as_ref().and_then(|l| l.spec.as_ref());
        let seen = self.seen_since(spec, now);
        let next = match decide(spec, &self.identity, now, seen) {
            Decision::Wait { .. } => return Ok(Hold::Other),
            Decision::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec(now, None, 0)),
                };
                return settle(self.api.create(&PostParams::default(), &lease).await);
            }
            Decision::Renew => self.spec(
                now,
                spec.and_then(|s| s.acquire_time.clone()),
                transitions(spec),
            ),
            Decision::TakeOver => self.spec(now, None, transitions(spec).saturating_add(1)),
        };
        let Some(mut lease) = current else {
            return Ok(Hold::Raced);
        };
        lease.spec = Some(next);
        // `replace` sends the resourceVersion read above: a concurrent
        // writer makes it fail with 409 Conflict.
        settle(
            self.api
                .replace(&self.name, &PostParams::default(), &lease)
                .await,
        )
    }

    /// One attempt, given up at `deadline` (the client itself has no read
    /// timeout).
    async fn try_hold_until(&self, deadline: Instant) -> Result<Hold, String> {
        match tokio::time::timeout_at(deadline, self.attempt(Timestamp::now())).await {
            Ok(Ok(hold)) => Ok(hold),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the API server did not answer in time".to_owned()),
        }
    }

    /// How long after the start of its last successful renewal the leader
    /// gives up (client-go's RenewDeadline: two thirds of the duration). A
    /// standby takes over no sooner than a whole duration after it saw that
    /// renewal, which was written after it started: the leader has stopped
    /// a third of a duration before.
    pub fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }

    /// Between successful renewals.
    fn renew_every(&self) -> Duration {
        self.duration / 3
    }

    /// Between attempts after a failed one (client-go's RetryPeriod).
    fn retry_every(&self) -> Duration {
        self.duration / 15
    }

    fn renewed_at(&self) -> Option<Instant> {
        *self
            .renewed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_renewed(&self, at: Instant) {
        *self
            .renewed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(at);
    }

    /// Waits until this replica holds the Lease (`true`) or `shutdown`
    /// fires (`false`), trying every third of the duration.
    pub async fn acquire(&self, shutdown: &CancellationToken) -> bool {
        let mut told = false;
        loop {
            let started = Instant::now();
            match self.try_hold_until(started + self.renew_every()).await {
                Ok(Hold::Held) => {
                    self.set_renewed(started);
                    return true;
                }
                Ok(_) if !told => {
                    tracing::info!(identity = %self.identity, "another replica leads; standing by");
                    told = true;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read the leader Lease; retrying"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return false,
                () = tokio::time::sleep(self.renew_every()) => {}
            }
        }
    }

    /// Renews the Lease every third of its duration until `shutdown` fires
    /// or the Lease is lost: another replica holds it, or no renewal
    /// succeeded within [`renew_deadline`](Self::renew_deadline) of the
    /// start of the last one that did. The whole effort (waits and
    /// attempts, however slow the API server) is bounded by that deadline,
    /// so the leader has stepped down before a standby may take over.
    pub async fn keep(&self, shutdown: &CancellationToken) -> Kept {
        let mut last = self.renewed_at().unwrap_or_else(Instant::now);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Kept::Shutdown,
                () = tokio::time::sleep_until(last + self.renew_every()) => {}
            }
            let deadline = last + self.renew_deadline();
            loop {
                let started = Instant::now();
                if started >= deadline {
                    tracing::error!("could not renew the leader Lease in time; stepping down");
                    return Kept::Lost;
                }
                match self.try_hold_until(deadline).await {
                    Ok(Hold::Held) => {
                        last = started;
                        self.set_renewed(started);
                        break;
                    }
                    Ok(Hold::Other) => {
                        tracing::error!("another replica holds the leader Lease; stepping down");
                        return Kept::Lost;
                    }
                    // The write met a newer version (an earlier attempt
                    // that seemed to fail had landed): read it again; it is
                    // ours unless another holder shows.
                    Ok(Hold::Raced) => {
                        tracing::warn!(
                            "the leader Lease changed under a renewal; reading it again"
                        );
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot renew the leader Lease; retrying"),
                }
                let next = (Instant::now() + self.retry_every()).min(deadline);
                tokio::select! {
                    () = shutdown.cancelled() => return Kept::Shutdown,
                    () = tokio::time::sleep_until(next) => {}
                }
            }
        }
    }

    /// Gives the Lease up (on shutdown) so a standby takes over at once
    /// instead of after the Lease's duration.
    pub async fn release(&self) -> kube::Result<()> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        settle(
            self.api
                .replace(&self.name, &PostParams::default(), &lease)
                .await,
        )
        .map(|_| ())
    }
}

fn transitions(spec: Option<&LeaseSpec>) -> i32 {
    spec.and_then(|s| s.lease_transitions).unwrap_or(0)
}

/// A write that lost a race (409 Conflict, 409 AlreadyExists) means
/// another candidate holds the Lease.
/// How one attempt on the Lease went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    Held,
    /// Another replica holds it.
    Other,
    /// The write lost a race (409): the Lease changed since it was read.
    Raced,
}

fn settle(result: kube::Result<Lease>) -> kube::Result<Hold> {
    match result {
        Ok(_) => Ok(Hold::Held),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(Hold::Raced),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn held_by(holder: Option<&str>, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(Into::into),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(at(renewed))),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_lease_is_created_renewed_waited_for_and_taken_over_once_expired() {
        assert_eq!(decide(None, "a", at(100), at(100)), Decision::Create);
        let a = held_by(Some("a"), 100);
        assert_eq!(decide(Some(&a), "a", at(500), at(100)), Decision::Renew);
        assert_eq!(
            decide(Some(&a), "b", at(114), at(100)),
            Decision::Wait {
                holder: "a".into(),
                until: at(115)
            }
        );
        assert_eq!(decide(Some(&a), "b", at(115), at(100)), Decision::TakeOver);
        assert_eq!(
            decide(Some(&held_by(None, 100)), "b", at(101), at(101)),
            Decision::TakeOver,
            "released"
        );
    }

    #[test]
    fn expiry_is_timed_from_when_the_candidate_saw_the_renewal_not_the_holders_clock() {
        // The holder's clock is an hour behind: its renewTime looks stale,
        // but b saw it change just now, so b waits a whole duration.
        let skewed = held_by(Some("a"), 0);
        assert!(matches!(
            decide(Some(&skewed), "b", at(3_600), at(3_600)),
            Decision::Wait { .. }
        ));
        assert_eq!(
            decide(Some(&skewed), "b", at(3_615), at(3_600)),
            Decision::TakeOver
        );
    }
}
