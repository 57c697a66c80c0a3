//! The pipeline's Kafka topics: [`tributary_core::topics`] plans and applies
//! them; the resource's [`TopicSpec`]s say what they should be.

pub use tributary_core::topics::*;

use crate::crd::TopicSpec;

impl TopicSpec {
    /// The topic this spec asks for.
    pub fn topic(&self) -> Topic {
        Topic {
            name: self.name.clone(),
            partitions: self.partitions,
            replication_factor: i32::from(self.replication_factor),
            retention_hours: self.retention_hours,
        }
    }
}
