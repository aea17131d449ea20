//! The log's single writer: one thread that drains the appends queued at call time into one
//! transaction at a time (group commit), with the side records and consumer offsets that ride
//! with them, and that stops for good once fenced or poisoned.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::ops::Range;
use std::sync::mpsc as std_mpsc;
use std::thread;
use std::time::Duration;

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::{Offset as KafkaOffset, TopicPartitionList};
use tokio::sync::{mpsc, watch};

use super::config::{kafka_error, Target};
use super::failure::{classify, Failure};
use super::produce::{produce_records, settle_deliveries};
use super::reader::KafkaLogReader;
use super::topics::Partitions;
use crate::log::{
    deadline, enqueue_append, AppendRequest, Consumed, KafkaLogOptions, LogError, LogReader,
    LogWriter, Offset, Side,
};

/// What each record counts toward `max_group_bytes` beyond its payload, so that a group of
/// tiny records is bounded too.
const RECORD_COST: usize = 64;

fn group_cost(req: &AppendRequest) -> usize {
    let log: usize = req.batch.iter().map(|r| r.len() + RECORD_COST).sum();
    let side: usize = req
        .side
        .records
        .iter()
        .map(|r| r.payload.len() + RECORD_COST)
        .sum();
    log + side
}

/// The single writer of a Kafka log. Dropping it stops the writer thread once the queued
/// appends are answered.
#[derive(Debug)]
pub struct KafkaLogWriter {
    target: Target,
    queue: Option<mpsc::UnboundedSender<AppendRequest>>,
    /// One past the last record committed by this writer (or found at open).
    committed: watch::Receiver<Offset>,
    thread: Option<thread::JoinHandle<()>>,
}

impl KafkaLogWriter {
    /// Creates the topic if missing, opens the transactional producer (fencing any other
    /// writer with the same transactional id) and starts the writer thread. Blocks until the
    /// writer is ready, or failed.
    pub fn open(bootstrap: &str, topic: &str, options: KafkaLogOptions) -> Result<Self, LogError> {
        let target = Target::new(bootstrap, topic, options);
        let (queue_tx, queue_rx) = mpsc::unbounded_channel();
        let (committed_tx, committed_rx) = watch::channel(0);
        let (opened_tx, opened_rx) = std_mpsc::channel();
        let thread_target = target.clone();
        let thread = thread::Builder::new()
            .name("prlx-kafka-writer".into())
            .spawn(move || {
                // The writer's own runtime: delivery reports and admin calls are futures, and
                // the transaction calls block, which must not stall a caller's runtime.
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = opened_tx.send(Err(kafka_error("start writer runtime", e)));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match WriterTask::start(thread_target, committed_tx).await {
                        Ok(task) => {
                            let _ = opened_tx.send(Ok(()));
                            task.run(queue_rx).await;
                        }
                        Err(e) => {
                            let _ = opened_tx.send(Err(e));
                        }
                    }
                });
            })
            .map_err(|e| kafka_error("spawn writer thread", e))?;
        let opened = opened_rx.recv().unwrap_or(Err(LogError::Closed));
        if let Err(e) = opened {
            let _ = thread.join();
            return Err(e);
        }
        Ok(Self {
            target,
            queue: Some(queue_tx),
            committed: committed_rx,
            thread: Some(thread),
        })
    }

    /// A new reader of this writer's topic.
    pub fn reader(&self) -> KafkaLogReader {
        KafkaLogReader::new(self.target.clone())
    }

    pub fn topic(&self) -> &str {
        &self.target.topic
    }

    pub fn transactional_id(&self) -> &str {
        &self.target.transactional_id
    }
}

impl KafkaLogWriter {
    /// Appends `batch` with `side` records for other topics in the same transaction: a
    /// `read_committed` reader of any of them sees its records if and only if the batch is
    /// in the log. Missing side topics are created first (one partition, nothing expires).
    pub fn append_with_side(
        &self,
        batch: Vec<Vec<u8>>,
        side: Side,
    ) -> impl Future<Output = Result<Range<Offset>, LogError>> + Send + 'static + use<> {
        let end = *self.committed.borrow();
        let max = self.target.options.max_record_bytes;
        enqueue_append(batch, side, end, max, |req| {
            self.queue.as_ref().is_some_and(|q| q.send(req).is_ok())
        })
        .answer()
    }
}

impl LogWriter for KafkaLogWriter {
    fn append(
        &self,
        batch: Vec<Vec<u8>>,
    ) -> impl Future<Output = Result<Range<Offset>, LogError>> + Send + 'static {
        self.append_with_side(batch, Side::default())
    }
}

impl Drop for KafkaLogWriter {
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How long after a commit the writer waits before it starts the next transaction.
///
/// Why: the broker answers EndTxn before it has written the commit markers. A transaction
/// that adds its partition in that window is refused with CONCURRENT_TRANSACTIONS, and
/// librdkafka retries only after a fixed 20 ms. Started at once, about one transaction in three
/// paid those 20 ms (BENCHMARKS.md, "Coordinator throughput on Kafka"); 1 ms later, about one
/// in a hundred did. The wait costs at most this much latency and groups whatever arrives
/// during it into the next transaction.
const TRANSACTION_GAP: Duration = Duration::from_millis(1);

/// The writer thread's state.
struct WriterTask {
    target: Target,
    /// `None` after a failure that needs a new producer, until one could be made.
    producer: Option<FutureProducer>,
    committed: watch::Sender<Offset>,
    /// Set once fenced or hit by a fatal error: every later append gets it.
    failed: Option<LogError>,
    /// Side records' topics known to exist (made or checked by this writer).
    side_topics: BTreeSet<String>,
}

impl WriterTask {
    async fn start(target: Target, committed: watch::Sender<Offset>) -> Result<Self, LogError> {
        target.ensure_topic().await?;
        let producer = target.producer()?;
        // After init_transactions no older transaction is open, so this end is stable.
        let end = KafkaLogReader::new(target.clone()).end().await?;
        committed.send_replace(end);
        Ok(Self {
            target,
            producer: Some(producer),
            committed,
            failed: None,
            side_topics: BTreeSet::new(),
        })
    }

    async fn run(mut self, mut queue: mpsc::UnboundedReceiver<AppendRequest>) {
        let max_group = self.target.options.max_group_bytes;
        let mut group = Vec::new();
        // When the broker will have finished the last commit (see TRANSACTION_GAP).
        let mut next_transaction = deadline::immediate();
        while let Some(first) = queue.recv().await {
            // Blocking is fine: this thread does nothing else, and what arrives meanwhile
            // joins the group.
            thread::sleep(deadline::remaining(next_transaction));
            let mut bytes = group_cost(&first);
            group.push(first);
            while bytes < max_group {
                match queue.try_recv() {
                    Ok(req) => {
                        bytes += group_cost(&req);
                        group.push(req);
                    }
                    Err(_) => break,
                }
            }
            let result = match &self.failed {
                Some(e) => Err(e.clone()),
                None => self.commit_group(&group).await,
            };
            next_transaction = deadline::after(TRANSACTION_GAP);
            match result {
                Ok(ranges) => {
                    if let Some(last) = ranges.last() {
                        self.committed.send_replace(last.end);
                    }
                    for (req, range) in group.drain(..).zip(ranges) {
                        let _ = req.reply.send(Ok(range));
                    }
                }
                Err(e) => {
                    // Nothing commits after a failed group until the writer is reopened: the
                    // appends queued behind it may have been decided on the state it would
                    // have left, and a later commit would move a consumer's offset past the
                    // records this group answered (ADR 06).
                    if self.failed.is_none() {
                        self.failed = Some(LogError::Poisoned(e.to_string()));
                    }
                    for req in group.drain(..) {
                        let _ = req.reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }

    /// Creates the side records' topics that are not known to exist yet. Outside the
    /// transaction: a topic made for a transaction that then aborts is only an empty topic.
    async fn ensure_side_topics(&mut self, group: &[AppendRequest]) -> Result<(), LogError> {
        for side in group.iter().flat_map(|r| &r.side.records) {
            if !self.side_topics.contains(&side.topic) {
                self.target
                    .ensure_log_topic(&side.topic, Partitions::Any)
                    .await?;
                self.side_topics.insert(side.topic.clone());
            }
        }
        Ok(())
    }

    /// Appends every batch of `group`, with its side records, in one transaction; the
    /// batches' offset ranges, in order.
    async fn commit_group(
        &mut self,
        group: &[AppendRequest],
    ) -> Result<Vec<Range<Offset>>, LogError> {
        self.ensure_side_topics(group).await?;
        // Before the transaction begins: an error here must not leave it open.
        let consumed = consumed_offsets(group)?;
        let producer = match &self.producer {
            Some(p) => p.clone(),
            None => {
                let p = self.target.producer().map_err(|e| self.stop_if_fenced(e))?;
                self.producer = Some(p.clone());
                p
            }
        };
        if let Err(e) = producer.begin_transaction() {
            return Err(match classify(&producer, &e) {
                Failure::Fenced(reason) => self.stop(self.target.fenced(reason)),
                Failure::Fatal(reason) => self.stop(LogError::Poisoned(reason)),
                Failure::Abortable(reason) | Failure::Indefinite(reason) => {
                    self.replace_producer();
                    kafka_error("begin transaction", reason)
                }
            });
        }
        let offsets = match produce_all(&producer, &self.target.topic, group).await {
            Ok(offsets) => offsets,
            Err(e) => {
                return Err(match classify(&producer, &e) {
                    Failure::Fenced(reason) => self.stop(self.target.fenced(reason)),
                    Failure::Fatal(reason) => self.stop(LogError::Poisoned(reason)),
                    Failure::Abortable(reason) | Failure::Indefinite(reason) => {
                        self.abort(&producer, format!("produce: {reason}"))
                    }
                })
            }
        };
        let end = *self.committed.borrow();
        let ranges = match batch_ranges(group, &offsets, end) {
            Ok(ranges) => ranges,
            Err(reason) => return Err(self.abort(&producer, reason)),
        };
        if let Some((group_metadata, offsets)) = consumed {
            if let Err(e) = producer.send_offsets_to_transaction(
                &offsets,
                group_metadata,
                self.target.options.timeout,
            ) {
                return Err(match classify(&producer, &e) {
                    Failure::Fenced(reason) => self.stop(self.target.fenced(reason)),
                    Failure::Fatal(reason) => self.stop(LogError::Poisoned(reason)),
                    Failure::Abortable(reason) | Failure::Indefinite(reason) => {
                        self.abort(&producer, format!("send consumer offsets: {reason}"))
                    }
                });
            }
        }
        settle_deliveries(&producer, self.target.options.timeout);
        // Every delivery is in, so the flush inside commit returns at once.
        match producer.commit_transaction(self.target.options.timeout) {
            Ok(()) => Ok(ranges),
            Err(e) => Err(match classify(&producer, &e) {
                // The broker refused the commit: the transaction is aborted.
                Failure::Fenced(reason) => self.stop(self.target.fenced(reason)),
                Failure::Fatal(reason) => {
                    self.stop(LogError::Poisoned(reason.clone()));
                    LogError::OutcomeUnknown { reason }
                }
                Failure::Abortable(reason) => self.abort(&producer, format!("commit: {reason}")),
                Failure::Indefinite(reason) => {
                    self.replace_producer();
                    LogError::OutcomeUnknown {
                        reason: format!("commit: {reason}"),
                    }
                }
            }),
        }
    }

    /// Aborts the open transaction: nothing of it is ever visible. The error for its batches.
    fn abort(&mut self, producer: &FutureProducer, why: String) -> LogError {
        match producer.abort_transaction(self.target.options.timeout) {
            Ok(()) => kafka_error(
                "append",
                format!("{why}; the transaction was aborted, nothing was appended"),
            ),
            Err(e) => match classify(producer, &e) {
                Failure::Fenced(reason) => self.stop(self.target.fenced(reason)),
                Failure::Fatal(reason) => self.stop(LogError::Poisoned(reason)),
                Failure::Abortable(reason) | Failure::Indefinite(reason) => {
                    // Never committed, so nothing of it is visible; a new producer's
                    // init_transactions aborts it on the broker.
                    self.replace_producer();
                    kafka_error(
                        "append",
                        format!("{why}; abort failed ({reason}): nothing was appended"),
                    )
                }
            },
        }
    }

    /// Drops the producer and makes a new one, whose `init_transactions` settles whatever the
    /// old one left open. On failure the next group tries again.
    fn replace_producer(&mut self) {
        self.producer = None;
        match self.target.producer() {
            Ok(p) => self.producer = Some(p),
            Err(e) => {
                self.stop_if_fenced(e);
            }
        }
    }

    fn stop(&mut self, e: LogError) -> LogError {
        self.producer = None;
        self.failed = Some(e.clone());
        e
    }

    fn stop_if_fenced(&mut self, e: LogError) -> LogError {
        match e {
            LogError::Fenced { .. } => self.stop(e),
            e => e,
        }
    }
}

/// The consumer offsets a group of appends commits: the furthest position of each partition,
/// under the newest group metadata among them. One consumer group per writer (the
/// coordinator has one intake); its consumer refreshes the metadata after a rebalance, and
/// only the log's one unfenced writer can commit, so the newest metadata speaks for all.
fn consumed_offsets(
    group: &[AppendRequest],
) -> Result<Option<(&ConsumerGroupMetadata, TopicPartitionList)>, LogError> {
    let consumed: Vec<&Consumed> = group.iter().flat_map(|r| &r.side.consumed).collect();
    let Some(newest) = consumed.last() else {
        return Ok(None);
    };
    let metadata = newest
        .group
        .downcast_ref::<ConsumerGroupMetadata>()
        .ok_or_else(|| {
            kafka_error(
                "send consumer offsets",
                "the consumed offsets carry no Kafka consumer group metadata",
            )
        })?;
    let mut positions: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    for c in consumed {
        let next = positions
            .entry((c.topic.as_str(), c.partition))
            .or_insert(c.next);
        *next = (*next).max(c.next);
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), next) in positions {
        tpl.add_partition_offset(topic, partition, KafkaOffset::Offset(next))
            .map_err(|e| kafka_error("send consumer offsets", e))?;
    }
    Ok(Some((metadata, tpl)))
}

/// Produces every record of `group` in order (the log's, then the side records, each topic
/// in the order given), then awaits their delivery reports; the offsets the log's records got,
/// in order.
async fn produce_all(
    producer: &FutureProducer,
    topic: &str,
    group: &[AppendRequest],
) -> Result<Vec<i64>, KafkaError> {
    let log_records = group.iter().map(|r| r.batch.len()).sum();
    let records = group
        .iter()
        .flat_map(|r| &r.batch)
        .map(|payload| (topic, None, payload))
        .chain(
            group
                .iter()
                .flat_map(|r| &r.side.records)
                .map(|s| (s.topic.as_str(), s.key.as_deref(), &s.payload)),
        );
    produce_records(producer, records, log_records).await
}

/// Each batch's offsets, checked to be consecutive: they are unless another producer wrote
/// into the topic between two records of ours. A batch with no records of the log (only side
/// records) gets an empty range where the log stood before it; `end` is where it stood before
/// the group.
fn batch_ranges(
    group: &[AppendRequest],
    offsets: &[i64],
    end: Offset,
) -> Result<Vec<Range<Offset>>, String> {
    let mut ranges = Vec::with_capacity(group.len());
    let mut rest = offsets;
    let mut end = end;
    for req in group {
        if req.batch.is_empty() {
            ranges.push(end..end);
            continue;
        }
        let (mine, tail) = rest.split_at(req.batch.len());
        rest = tail;
        let first = mine[0];
        let consecutive =
            first >= 0 && mine.iter().enumerate().all(|(i, &o)| o == first + i as i64);
        if !consecutive {
            return Err(format!(
                "a batch got offsets {mine:?}, not consecutive: something else writes to this \
                 topic; a log must have one writer"
            ));
        }
        end = first as Offset + mine.len() as Offset;
        ranges.push(first as Offset..end);
    }
    Ok(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(n: usize) -> AppendRequest {
        AppendRequest {
            batch: vec![vec![0u8; 3]; n],
            side: Side::default(),
            reply: tokio::sync::oneshot::channel().0,
        }
    }

    #[test]
    fn batch_ranges_follow_the_delivered_offsets() {
        let group = [request(2), request(1), request(3)];
        // A commit marker between transactions is not in a group; within one, offsets are
        // consecutive unless a stranger writes.
        let ranges = batch_ranges(&group, &[10, 11, 12, 13, 14, 15], 9).unwrap();
        assert_eq!(ranges, vec![10..12, 12..13, 13..16]);
        let err = batch_ranges(&group, &[10, 11, 12, 13, 15, 16], 9).unwrap_err();
        assert!(err.contains("not consecutive"), "{err}");
        assert!(batch_ranges(&group[..1], &[-1, 0], 0).is_err());
        // A batch of side records only takes no offset of the log: an empty range where the
        // log stands, before the group or after the batch before it.
        let group = [request(0), request(2), request(0)];
        let ranges = batch_ranges(&group, &[10, 11], 7).unwrap();
        assert_eq!(ranges, vec![7..7, 10..12, 12..12]);
    }
}
