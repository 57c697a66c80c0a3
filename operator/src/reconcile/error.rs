//! What can make a reconcile fail (and be retried with backoff).

use crate::topics::TopicError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("applying {kind} {name}: {source}")]
    Apply {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Kafka(#[from] TopicError),
    /// The status write found a newer object than the one reconcile read
    /// (409): reconcile again from the newer one.
    #[error("the pipeline changed since it was read; reconciling again")]
    StatusConflict,
}

impl Error {
    /// The `kind` label of the error metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(_) | Error::Apply { .. } | Error::StatusConflict => "kubernetes",
            Error::Kafka(_) => "kafka",
        }
    }
}
