//! The consumer group's lag on the events topic: the rule ([`partition_lag`])
//! and reading it from the brokers ([`LagReader`]).
//!
//! Per partition, lag is the high watermark minus the group's committed
//! offset. A partition the group never committed on counts from its low
//! watermark: the consumer workload sets `auto.offset.reset=earliest`, so it
//! will read every message still kept there. A commit below the low
//! watermark (retention deleted what it pointed at) is reset the same way
//! by the consumer, so it counts from the low watermark too; a commit above
//! the high watermark (a truncated topic) counts as no lag.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// One partition's offsets and lag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLag {
    pub partition: i32,
    /// Oldest offset still kept.
    pub low: i64,
    /// Offset the next message will get.
    pub high: i64,
    /// The group's committed offset (the next message it will read), if any.
    pub committed: Option<i64>,
    pub lag: i64,
}

/// The group's lag on a topic, partition by partition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupLag {
    pub partitions: Vec<PartitionLag>,
}

impl GroupLag {
    /// Messages the group has yet to read, over all partitions.
    pub fn total(&self) -> i64 {
        self.partitions
            .iter()
            .fold(0i64, |sum, p| sum.saturating_add(p.lag))
    }

    /// The largest lag of one partition (the seeds' target: under 10k).
    pub fn max_partition(&self) -> i64 {
        self.partitions.iter().map(|p| p.lag).max().unwrap_or(0)
    }
}

/// Messages left to read on a partition holding offsets `low..high`, for a
/// group that committed `committed` (see the module's rule).
pub fn partition_lag(low: i64, high: i64, committed: Option<i64>) -> i64 {
    let high = high.max(low);
    let position = committed.map_or(low, |c| c.clamp(low, high));
    high - position
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LagError {
    #[error("Kafka at {bootstrap} did not answer: {message}")]
    Unreachable { bootstrap: String, message: String },
    #[error("reading the committed offsets of group {group} on topic {topic}: {message}")]
    Committed {
        group: String,
        topic: String,
        message: String,
    },
    #[error("reading the offsets of topic {topic} partition {partition}: {message}")]
    Watermarks {
        topic: String,
        partition: i32,
        message: String,
    },
    #[error("reading the offsets of topic {topic}: {message}")]
    Offsets { topic: String, message: String },
}

/// Reads one consumer group's offsets. It never joins the group: it asks
/// the group coordinator for the commits (one OffsetFetch) and each
/// partition leader for the watermarks of all its partitions at once (one
/// ListOffsets per broker for the ends, one for the beginnings), so the
/// consumers are not rebalanced and a topic's size does not multiply the
/// requests.
pub struct LagReader {
    bootstrap: String,
    group: String,
    consumer: Arc<BaseConsumer>,
    timeout: Duration,
}

impl LagReader {
    pub fn new(bootstrap: &str, group: &str, timeout: Duration) -> Result<Self, LagError> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .create()
            .map_err(|e| LagError::Unreachable {
                bootstrap: bootstrap.to_owned(),
                message: e.to_string(),
            })?;
        Ok(Self {
            bootstrap: bootstrap.to_owned(),
            group: group.to_owned(),
            consumer: Arc::new(consumer),
            timeout,
        })
    }

    /// The group's lag on `topic`'s partitions `0..partitions`.
    pub async fn read(&self, topic: &str, partitions: i32) -> Result<GroupLag, LagError> {
        let consumer = Arc::clone(&self.consumer);
        let topic = topic.to_owned();
        let group = self.group.clone();
        let timeout = self.timeout;
        // Both calls block on the network: keep them off the async threads.
        tokio::task::spawn_blocking(move || {
            read_blocking(&consumer, &group, &topic, partitions, timeout)
        })
        .await
        .map_err(|e| LagError::Unreachable {
            bootstrap: self.bootstrap.clone(),
            message: e.to_string(),
        })?
    }
}

fn read_blocking(
    consumer: &BaseConsumer,
    group: &str,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> Result<GroupLag, LagError> {
    let mut wanted = TopicPartitionList::new();
    for partition in 0..partitions {
        wanted.add_partition(topic, partition);
    }
    let committed =
        consumer
            .committed_offsets(wanted, timeout)
            .map_err(|e| LagError::Committed {
                group: group.to_owned(),
                topic: topic.to_owned(),
                message: e.to_string(),
            })?;
    let high = offsets_at(consumer, topic, partitions, Offset::End, timeout)?;
    let low = offsets_at(consumer, topic, partitions, Offset::Beginning, timeout)?;
    let mut out = GroupLag::default();
    for partition in 0..partitions {
        let at = |offsets: &HashMap<i32, i64>| {
            offsets
                .get(&partition)
                .copied()
                .ok_or_else(|| LagError::Watermarks {
                    topic: topic.to_owned(),
                    partition,
                    message: "the broker did not answer for it".to_owned(),
                })
        };
        let (low, high) = (at(&low)?, at(&high)?);
        let committed = match committed
            .find_partition(topic, partition)
            .map(|e| e.offset())
        {
            Some(Offset::Offset(o)) => Some(o),
            _ => None,
        };
        out.partitions.push(PartitionLag {
            partition,
            low,
            high,
            committed,
            lag: partition_lag(low, high, committed),
        });
    }
    Ok(out)
}

/// Every partition's offset at `position` (the end: the high watermark;
/// the beginning: the low one), in one ListOffsets request per leader.
fn offsets_at(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: i32,
    position: Offset,
    timeout: Duration,
) -> Result<HashMap<i32, i64>, LagError> {
    let mut asked = TopicPartitionList::new();
    for partition in 0..partitions {
        asked
            .add_partition_offset(topic, partition, position)
            .map_err(|e| LagError::Offsets {
                topic: topic.to_owned(),
                message: e.to_string(),
            })?;
    }
    let answered = consumer
        .offsets_for_times(asked, timeout)
        .map_err(|e| LagError::Offsets {
            topic: topic.to_owned(),
            message: e.to_string(),
        })?;
    let mut out = HashMap::new();
    for element in answered.elements_for_topic(topic) {
        let partition = element.partition();
        if let Err(e) = element.error() {
            return Err(LagError::Watermarks {
                topic: topic.to_owned(),
                partition,
                message: e.to_string(),
            });
        }
        match element.offset() {
            Offset::Offset(o) => {
                out.insert(partition, o);
            }
            other => {
                return Err(LagError::Watermarks {
                    topic: topic.to_owned(),
                    partition,
                    message: format!("the broker answered {other:?}"),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_counts_from_the_commit_or_from_the_oldest_message_kept() {
        assert_eq!(partition_lag(0, 100, Some(40)), 60);
        assert_eq!(partition_lag(0, 100, Some(100)), 0);
        // Never committed: the consumer starts at the earliest offset.
        assert_eq!(partition_lag(0, 100, None), 100);
        assert_eq!(partition_lag(30, 100, None), 70);
        // Retention deleted what the commit pointed at: reset to earliest.
        assert_eq!(partition_lag(30, 100, Some(10)), 70);
        // A commit past the end (topic truncated) is no lag, never negative.
        assert_eq!(partition_lag(0, 100, Some(150)), 0);
        assert_eq!(partition_lag(0, 0, None), 0);
    }

    #[test]
    fn totals_add_partitions_and_saturate() {
        let lag = |partition, lag| PartitionLag {
            partition,
            low: 0,
            high: lag,
            committed: None,
            lag,
        };
        let g = GroupLag {
            partitions: vec![lag(0, 5), lag(1, 7), lag(2, i64::MAX)],
        };
        assert_eq!(g.total(), i64::MAX);
        assert_eq!(g.max_partition(), i64::MAX);
        let g = GroupLag {
            partitions: vec![lag(0, 5), lag(1, 7)],
        };
        assert_eq!(g.total(), 12);
        assert_eq!(g.max_partition(), 7);
        assert_eq!(GroupLag::default().total(), 0);
    }
}
