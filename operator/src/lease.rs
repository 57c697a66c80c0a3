//! Leader election with a `coordination.k8s.io/v1` Lease, so two operator
//! replicas never reconcile at once.
//!
//! The leader renews the Lease every few seconds; a candidate takes it over
//! once it has gone unrenewed for its duration. Writes carry the Lease's
//! `resourceVersion`, so of two candidates racing for an expired Lease the
//! API server lets exactly one win. [`decide`] is the pure rule;
//! [`LeaseLock`] applies it.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, PostParams};

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

/// The rule: who may hold `lease` at `now`, for candidate `me`.
pub fn decide(lease: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Decision {
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
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map_or(Timestamp::UNIX_EPOCH, |t| t.0);
    let until = renewed.checked_add(duration).unwrap_or(Timestamp::MAX);
    if now >= until {
        Decision::TakeOver
    } else {
        Decision::Wait {
            holder: holder.to_owned(),
            until,
        }
    }
}

/// One candidate's hold on one Lease.
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
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
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    fn spec(&self, now: Timestamp, acquired: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX),
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
        let current = self.api.get_opt(&self.name).await?;
        let spec = current.as_ref().and_then(|l| l.spec.as_ref());
        let next = match decide(spec, &self.identity, now) {
            Decision::Wait { .. } => return Ok(false),
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
            return Ok(false);
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
fn settle(result: kube::Result<Lease>) -> kube::Result<bool> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
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
        assert_eq!(decide(None, "a", at(100)), Decision::Create);
        let a = held_by(Some("a"), 100);
        assert_eq!(decide(Some(&a), "a", at(500)), Decision::Renew);
        assert_eq!(
            decide(Some(&a), "b", at(114)),
            Decision::Wait {
                holder: "a".into(),
                until: at(115)
            }
        );
        assert_eq!(decide(Some(&a), "b", at(115)), Decision::TakeOver);
        assert_eq!(
            decide(Some(&held_by(None, 100)), "b", at(101)),
            Decision::TakeOver,
            "released"
        );
        let never_renewed = LeaseSpec {
            renew_time: None,
            ..a
        };
        assert_eq!(
            decide(Some(&never_renewed), "b", at(100)),
            Decision::TakeOver
        );
    }
}
