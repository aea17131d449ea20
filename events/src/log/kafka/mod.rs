//! The Apache Kafka backend (`kafka://HOST:PORT/TOPIC`, cargo feature `kafka`): one log is one
//! single-partition topic, written by one transactional producer, read by `read_committed`
//! consumers.
//!
//! # Topic layout
//! - One log is partition 0 of one topic, so Kafka's offsets are the log's offsets and the
//!   order is total. Records have no key and no headers: the value is the payload byte for byte,
//!   so any Kafka client can read the log.
//! - The writer creates a missing topic with one partition, the URL's replication factor (1 on
//!   a single broker; `min.insync.replicas` a majority), `retention.ms=-1` and
//!   `retention.bytes=-1` (the log is the source of truth: nothing expires),
//!   `cleanup.policy=delete` (never compacted) and a `max.message.bytes` that fits the largest
//!   record. A topic with more than one partition is refused, by the writer and the readers.
//!
//! # Writing: group commit, one transaction at a time
//! The producer sets `enable.idempotence=true` (librdkafka's default is false), `acks=all` and
//! a `transactional.id` (default `prlx-log.<topic>`, `?txn_id=` overrides it), and calls
//! `init_transactions` at open. `append` queues its batch at call time; one writer thread drains
//! everything queued (up to `max_group_bytes`) into **one transaction**: begin, produce every
//! record, await every delivery report (they carry the offsets; no `flush` per record), commit,
//! then answer each batch with its offsets. A producer has only one transaction open at a time,
//! so this is what lets concurrent appends share the commit round trip, as the file log's
//! group commit shares one `fdatasync`.
//!
//! A batch may come with a *side* ([`KafkaLogWriter::append_with_side`]): records for other
//! topics, produced in the same transaction after the group's log records, and consumer
//! offsets, sent to the transaction (`send_offsets_to_transaction`) before it commits. A
//! reader of a side topic sees its records, and the consumer group's position moves, if and
//! only if the batch is in the log: the coordinator answers Kafka submissions this way
//! (docs/kafka-topics.md). Missing side topics are created (one partition, nothing expires)
//! before the transaction starts.
//!
//! # What readers see
//! Consumers are assigned partition 0 (no consumer group, nothing committed) with
//! `isolation.level=read_committed`: a batch is visible whole once its transaction commits, or
//! never. Each commit writes a marker that takes an offset, so offsets are consecutive within a
//! batch and skip between transactions; a reader continues from the last record's offset + 1.
//! [`LogReader::end`] is one past the last committed *record* (the last stable offset also
//! counts the marker). Readers long-poll (`fetch.wait.max.ms`, default 50 ms): following the
//! tail does not spin.
//!
//! # Fencing and failures
//! - A second writer with the same transactional id fences the first at `init_transactions`:
//!   the broker aborts the first's open transaction, and every later append of the first fails
//!   with [`LogError::Fenced`]. The first never re-creates its producer after that, which would
//!   fence the newer writer in turn.
//! - A failed produce, or a commit the broker refused as abortable: the transaction is aborted
//!   and its batches get [`LogError::Kafka`]; none of them is in the log.
//! - A commit with no answer (a timeout, a lost connection): the producer is dropped and
//!   re-created, whose `init_transactions` settles the open transaction one way or the other
//!   (Jepsen found anomalies when such a producer is reused; see docs/adr/03-kafka-log.md). Its
//!   batches get [`LogError::OutcomeUnknown`]: the caller reads the log to know.
//! - Any other fatal producer error poisons the writer ([`LogError::Poisoned`]); reopen it.
//!
//! # Layout
//! - `config`: the settings every client shares, the log a client works on and the clients
//!   made from it (the transactional producer, the reader's consumer, the offsets client).
//! - `topics`: partition counts and the creation of missing topics (admin).
//! - `failure`: what a producer error means for a writer (fenced, fatal, abortable, unknown).
//! - `produce`: producing records in a transaction and awaiting their delivery reports.
//! - `writer`: [`KafkaLogWriter`], the group-committing transactional writer of the log.
//! - `derived`: [`KafkaDerivedWriter`], topics derived from a log (the nodes' feeds), exactly
//!   once.
//! - `reader`: [`KafkaLogReader`], the `read_committed` reader.
//! - [`lease`]: leader election among would-be writers through a consumer group, so that a
//!   standby does not fence the active writer just by starting (docs/adr/04-kafka-failover.md).
//!
//! [`LogReader::end`]: crate::log::LogReader::end
//! [`LogError::Fenced`]: crate::log::LogError::Fenced
//! [`LogError::Kafka`]: crate::log::LogError::Kafka
//! [`LogError::OutcomeUnknown`]: crate::log::LogError::OutcomeUnknown
//! [`LogError::Poisoned`]: crate::log::LogError::Poisoned

mod config;
mod derived;
mod failure;
pub mod lease;
mod produce;
mod reader;
mod topics;
mod writer;

pub use self::derived::KafkaDerivedWriter;
pub use self::reader::KafkaLogReader;
pub use self::writer::KafkaLogWriter;
