//! The admin side: how many partitions a topic has, and the creation of a missing log topic
//! (one partition, nothing expires, never compacted) for the log, the side records' topics,
//! the derived topics and the lease topic alike.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{Client, ClientContext, DefaultClientContext};
use rdkafka::error::RDKafkaErrorCode;

use super::config::{base_config, kafka_error, Target};
use crate::log::{deadline, LogError};

/// What an existing topic must have to be written (see [`Target::ensure_log_topic`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Partitions {
    One,
    Any,
}

pub(super) fn not_one_partition(topic: &str, partitions: usize) -> LogError {
    kafka_error(
        "open",
        format!("topic {topic:?} has {partitions} partitions; a log is a topic with exactly one"),
    )
}

/// How many partitions `topic` has; `None` when it does not exist.
pub(super) fn topic_partitions<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Option<usize>, LogError> {
    let metadata = client
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| kafka_error("fetch metadata", e))?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    match t.error().map(RDKafkaErrorCode::from) {
        None if t.partitions().is_empty() => Ok(None),
        None => Ok(Some(t.partitions().len())),
        Some(RDKafkaErrorCode::UnknownTopicOrPartition) => Ok(None),
        Some(code) => Err(kafka_error(
            "fetch metadata",
            format!("topic {topic:?}: {code}"),
        )),
    }
}

impl Target {
    /// Creates the log's topic unless it exists; refuses one with several partitions.
    pub(super) async fn ensure_topic(&self) -> Result<(), LogError> {
        self.ensure_log_topic(&self.topic, Partitions::One).await
    }

    /// Creates `topic` as a log topic (one partition, nothing expires, never compacted)
    /// unless it exists. An existing one must have one partition with [`Partitions::One`] (a
    /// log, a node's feed: read from the start, in order); with [`Partitions::Any`] it is taken
    /// as it is (a reply topic may have several, the key picks).
    pub(super) async fn ensure_log_topic(
        &self,
        topic: &str,
        partitions: Partitions,
    ) -> Result<(), LogError> {
        let timeout = self.options.timeout;
        let admin: AdminClient<DefaultClientContext> = base_config(&self.bootstrap)
            .create()
            .map_err(|e| kafka_error("create admin client", e))?;
        match (topic_partitions(admin.inner(), topic, timeout)?, partitions) {
            (Some(1), _) | (Some(_), Partitions::Any) => return Ok(()),
            (Some(n), Partitions::One) => return Err(not_one_partition(topic, n)),
            (None, _) => {}
        }
        let replication = self.options.replication;
        let min_isr = (replication / 2 + 1).min(replication).to_string();
        let max_message = self.max_message_bytes();
        let new_topic = NewTopic::new(topic, 1, TopicReplication::Fixed(replication))
            .set("retention.ms", "-1")
            .set("retention.bytes", "-1")
            .set("cleanup.policy", "delete")
            .set("min.insync.replicas", &min_isr)
            .set("max.message.bytes", &max_message);
        let admin_options = AdminOptions::new()
            .operation_timeout(Some(timeout))
            .request_timeout(Some(timeout));
        let results = admin
            .create_topics([&new_topic], &admin_options)
            .await
            .map_err(|e| kafka_error("create topic", e))?;
        for result in results {
            match result {
                Ok(_) => return Ok(()),
                // Another writer created it first: check what it made, below.
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(kafka_error("create topic", format!("{name}: {code}")))
                }
            }
        }
        let deadline = deadline::after(timeout);
        loop {
            match topic_partitions(admin.inner(), topic, timeout)? {
                Some(1) => return Ok(()),
                Some(n) => return Err(not_one_partition(topic, n)),
                None if !deadline::passed(deadline) => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                None => {
                    return Err(kafka_error(
                        "create topic",
                        format!("topic {topic:?} exists but has no metadata yet"),
                    ))
                }
            }
        }
    }
}
