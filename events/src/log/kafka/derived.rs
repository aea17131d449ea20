//! Topics derived from a log (the nodes' feeds), written exactly once: each commit is one
//! transaction holding the derived records and the log position after them.

use std::collections::BTreeSet;
use std::fmt;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::{Offset as KafkaOffset, TopicPartitionList};

use super::config::{base_config, kafka_error, Target, PARTITION};
use super::failure::{classify, Failure};
use super::produce::{produce_records, settle_deliveries};
use super::topics::Partitions;
use crate::log::{KafkaLogOptions, LogError, Offset, SideRecord};

/// Writes topics derived from a log (the nodes' feeds), exactly once: each
/// [`KafkaDerivedWriter::commit`] is one transaction holding the records derived from a
/// stretch of the log *and* the log position after it, as the committed offset of a consumer
/// group on the log's topic (Kafka's consume-transform-produce). A writer opened after a crash
/// resumes from [`KafkaDerivedWriter::position`]: nothing is written twice or skipped. A second
/// writer with the same name fences the first, as a second log writer does.
///
/// After any error the writer is spent: drop it and open a new one, whose
/// `init_transactions` settles whatever the old one left open (docs/adr/03-kafka-log.md,
/// "Failures").
pub struct KafkaDerivedWriter {
    /// The log's topic (whose position is kept) and the transactional id (the name).
    target: Target,
    producer: FutureProducer,
    /// Never subscribes: it names the group the position is committed under, and reads it.
    position: BaseConsumer,
    /// Derived topics known to exist.
    topics: BTreeSet<String>,
}

impl fmt::Debug for KafkaDerivedWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaDerivedWriter")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl KafkaDerivedWriter {
    /// Opens the writer of what is derived from `log_topic` under `name` (its transactional
    /// id and the group of its position), fencing any older writer of that name. Blocks
    /// for the broker's answer.
    pub fn open(
        bootstrap: &str,
        log_topic: &str,
        name: &str,
        options: KafkaLogOptions,
    ) -> Result<Self, LogError> {
        let mut target = Target::new(bootstrap, log_topic, options);
        target.transactional_id = name.to_owned();
        let producer = target.producer()?;
        let position: BaseConsumer = base_config(bootstrap)
            .set("client.id", "prlx-derived-position")
            .set("group.id", name)
            .set("enable.auto.commit", "false")
            // Waits for a position committed in a transaction still being settled.
            .set("isolation.level", "read_committed")
            .create()
            .map_err(|e| kafka_error("create consumer", e))?;
        Ok(Self {
            target,
            producer,
            position,
            topics: BTreeSet::new(),
        })
    }

    /// The log offset to derive from next: everything before it is written (0 at first).
    pub fn position(&self) -> Result<Offset, LogError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.target.topic, PARTITION);
        let committed = self
            .position
            .committed_offsets(tpl, self.target.options.timeout)
            .map_err(|e| kafka_error("read the derived position", e))?;
        match committed
            .find_partition(&self.target.topic, PARTITION)
            .map(|p| p.offset())
        {
            Some(KafkaOffset::Offset(o)) if o >= 0 => Ok(o as Offset),
            _ => Ok(0),
        }
    }

    /// Writes `records` (in order, each to partition 0 of its topic, made if missing like a
    /// log's) and moves the position to `next`, all in one transaction.
    pub async fn commit(&mut self, records: Vec<SideRecord>, next: Offset) -> Result<(), LogError> {
        for r in &records {
            if !self.topics.contains(&r.topic) {
                self.target
                    .ensure_log_topic(&r.topic, Partitions::One)
                    .await?;
                self.topics.insert(r.topic.clone());
            }
        }
        let timeout = self.target.options.timeout;
        let producer = &self.producer;
        let failed = |op: &'static str, e: KafkaError| match classify(producer, &e) {
            Failure::Fenced(reason) => self.target.fenced(reason),
            Failure::Fatal(reason) | Failure::Abortable(reason) => kafka_error(op, reason),
            Failure::Indefinite(reason) => LogError::OutcomeUnknown { reason },
        };
        producer
            .begin_transaction()
            .map_err(|e| failed("begin transaction", e))?;
        let payloads = records
            .iter()
            .map(|r| (r.topic.as_str(), r.key.as_deref(), &r.payload));
        produce_records(producer, payloads, 0)
            .await
            .map_err(|e| failed("produce", e))?;
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(
                &self.target.topic,
                PARTITION,
                KafkaOffset::Offset(next as i64),
            )
            .map_err(|e| kafka_error("send the position", e))?;
        let group = self
            .position
            .group_metadata()
            .ok_or_else(|| kafka_error("send the position", "no consumer group metadata"))?;
        producer
            .send_offsets_to_transaction(&offsets, &group, timeout)
            .map_err(|e| failed("send the position", e))?;
        settle_deliveries(producer, timeout);
        producer
            .commit_transaction(timeout)
            .map_err(|e| failed("commit", e))
    }
}
