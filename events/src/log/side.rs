//! What rides with a batch besides its records, which only the Kafka backend has: side records
//! for other topics and consumer offsets, committed in the batch's transaction. The types name
//! no backend (the consumer group's metadata is opaque here), so they exist in every build; the
//! file log refuses a non-empty side.
//!
//! A leaf: it uses nothing else of this crate.

use std::sync::Arc;

/// A record for a topic other than the log's, appended with a batch of the log: a reader of
/// its topic sees it if and only if that batch is in the log (Kafka: one transaction).
///
/// What it is for: what must never run ahead of the log or lag behind a crash, such as the
/// answer to a submission consumed from Kafka (docs/kafka-topics.md). Only the Kafka backend
/// has other topics; the file log refuses side records
/// ([`LogError::SideRecordsUnsupported`](crate::log::LogError::SideRecordsUnsupported)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideRecord {
    /// The topic; the writer creates it (one partition, nothing expires) if it is missing.
    pub topic: String,
    /// The record's key. With a key the producer picks the partition by it (so one key's
    /// records keep their order); without one, partition 0.
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

/// Where a consumer has consumed to, committed with an append: the consume-transform-produce
/// of Kafka, where the records consumed, what they were turned into and the consumer's new
/// position commit together or not at all.
#[derive(Clone)]
pub struct Consumed {
    pub topic: String,
    pub partition: i32,
    /// The offset to consume from next (one past the last record consumed).
    pub next: i64,
    /// The consumer group's metadata as its consumer gave it (an `rdkafka`
    /// `ConsumerGroupMetadata`; opaque here, so that this type needs no backend). The group's
    /// coordinator uses it to refuse a commit from a consumer that is no longer a member.
    pub group: ConsumerGroupHandle,
}

/// A consumer group's metadata, opaque outside the Kafka backend (see [`Consumed::group`]).
pub type ConsumerGroupHandle = Arc<dyn std::any::Any + Send + Sync>;

impl std::fmt::Debug for Consumed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumed")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

/// What rides with a batch besides its records: side records and consumer offsets.
#[derive(Debug, Clone, Default)]
pub struct Side {
    pub records: Vec<SideRecord>,
    pub consumed: Vec<Consumed>,
}

impl Side {
    /// Side records alone.
    pub fn records(records: Vec<SideRecord>) -> Self {
        Self {
            records,
            consumed: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.consumed.is_empty()
    }
}
