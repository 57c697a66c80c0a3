//! A kubelet, kube-proxy and the Deployment and Job controllers of a
//! one-node cluster, for tests: what the operator applied, run as a
//! cluster would run it, on this machine.
//!
//! - [`env`]: a container's environment, as the kubelet builds it.
//! - [`net`]: a network namespace and address per pod, Service addresses,
//!   per-pod hosts files standing in for the cluster's DNS.
//! - [`service`]: a Service's address forwarding to its ready pods.
//! - [`probe`]: `httpGet` probes as declared.
//! - [`pod`]: one pod's container run, probed, restarted, stopped.
//! - [`node`]: Services, Jobs and Deployments kept in line with the
//!   applied objects; the statuses a cluster would write back.

pub mod env;
pub mod net;
pub mod node;
pub mod pod;
pub mod probe;
pub mod service;

pub use env::{EnvError, Namespace, Pod};
