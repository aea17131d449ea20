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
//!   (Jepsen found anomalies when such a producer is reused; see `shared/KAFKA.md`). Its
//!   batches get [`LogError::OutcomeUnknown`]: the caller reads the log to know.
//! - Any other fatal producer error poisons the writer ([`LogError::Poisoned`]); reopen it.
//!
//! # Layout
//! - [`lease`]: leader election among would-be writers through a consumer group, so that a
//!   standby does not fence the active writer just by starting (docs/adr/04-kafka-failover.md).

pub mod lease;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{Client, ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, Consumer, ConsumerGroupMetadata, DefaultConsumerContext, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::util::AsyncRuntime;
use rdkafka::{Message, Offset as KafkaOffset, TopicPartitionList};
use tokio::sync::{mpsc, watch, Mutex};
use tokio::time::Instant;

use super::{
    deadline, enqueue_append, AppendRequest, Consumed, KafkaLogOptions, LogError, LogReader,
    LogWriter, Offset, Record, Side, SideRecord,
};

/// What an existing topic must have to be written (see [`Target::ensure_log_topic`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Partitions {
    One,
    Any,
}

/// The one partition of a log's topic.
const PARTITION: i32 = 0;
/// Room for Kafka's record and batch headers above the largest payload.
const MESSAGE_OVERHEAD: usize = 64 << 10;
/// What each record counts toward `max_group_bytes` beyond its payload, so that a group of
/// tiny records is bounded too.
const RECORD_COST: usize = 64;
/// A reader asked for an offset this little ahead of its consumer keeps streaming (dropping
/// what it skips) instead of re-assigning, which costs a fetch round trip.
const SKIP_AHEAD: u64 = 1024;
/// `end()` first looks for the last committed record this far below the last stable offset.
const END_WINDOW: u64 = 64;

fn kafka_error(op: &'static str, reason: impl fmt::Display) -> LogError {
    LogError::Kafka {
        op,
        reason: reason.to_string(),
    }
}

fn not_one_partition(topic: &str, partitions: usize) -> LogError {
    kafka_error(
        "open",
        format!("topic {topic:?} has {partitions} partitions; a log is a topic with exactly one"),
    )
}

/// Settings every client of ours shares.
fn base_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        // A metadata lookup must never create a topic with the broker's defaults (its retention
        // would expire the log); the writer creates topics itself.
        .set("allow.auto.create.topics", "false");
    // librdkafka's own debug contexts (e.g. `eos,protocol`), for diagnosing a cluster; off
    // unless asked for.
    if let Ok(contexts) = std::env::var("PRLX_KAFKA_DEBUG") {
        config.set("debug", &contexts);
    }
    config
}

/// How many partitions `topic` has; `None` when it does not exist.
fn topic_partitions<C: ClientContext>(
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

/// The log a writer or reader works on.
#[derive(Debug, Clone)]
struct Target {
    bootstrap: String,
    topic: String,
    transactional_id: String,
    options: KafkaLogOptions,
}

impl Target {
    fn new(bootstrap: &str, topic: &str, options: KafkaLogOptions) -> Self {
        Self {
            bootstrap: bootstrap.to_owned(),
            topic: topic.to_owned(),
            transactional_id: options.transactional_id_for(topic),
            options,
        }
    }

    fn max_message_bytes(&self) -> String {
        (self.options.max_record_bytes + MESSAGE_OVERHEAD).to_string()
    }

    /// Creates the log's topic unless it exists; refuses one with several partitions.
    async fn ensure_topic(&self) -> Result<(), LogError> {
        self.ensure_log_topic(&self.topic, Partitions::One).await
    }

    /// Creates `topic` as a log topic (one partition, nothing expires, never compacted)
    /// unless it exists. An existing one must have one partition with [`Partitions::One`] (a
    /// log, a node's feed: read from the start, in order); with [`Partitions::Any`] it is taken
    /// as it is (a reply topic may have several, the key picks).
    async fn ensure_log_topic(&self, topic: &str, partitions: Partitions) -> Result<(), LogError> {
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

    /// A transactional producer, after `init_transactions` (which fences any older writer with
    /// the same id and settles its open transaction).
    fn producer(&self) -> Result<FutureProducer, LogError> {
        let timeout_ms = self.options.timeout.as_millis().to_string();
        let transaction_ms = (2 * self.options.timeout.as_millis()).to_string();
        let producer: FutureProducer = base_config(&self.bootstrap)
            .set("client.id", "prlx-log-writer")
            .set("transactional.id", &self.transactional_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // A group is produced all at once and then awaited: waiting to fill batches would
            // only add latency.
            .set("linger.ms", "0")
            .set("retry.backoff.ms", "5")
            .set("message.max.bytes", self.max_message_bytes())
            .set("message.timeout.ms", &timeout_ms)
            // How long the broker keeps a crashed writer's transaction open (blocking readers)
            // when no new writer comes to abort it.
            .set("transaction.timeout.ms", &transaction_ms)
            .create()
            .map_err(|e| kafka_error("create producer", e))?;
        producer
            .init_transactions(self.options.timeout)
            .map_err(|e| match classify(&producer, &e) {
                Failure::Fenced(reason) => self.fenced(reason),
                _ => kafka_error("init transactions", e),
            })?;
        Ok(producer)
    }

    fn fenced(&self, reason: String) -> LogError {
        LogError::Fenced {
            topic: self.topic.clone(),
            transactional_id: self.transactional_id.clone(),
            reason,
        }
    }

    fn consumer(&self) -> Result<Arc<KafkaConsumer>, LogError> {
        let consumer: KafkaConsumer = base_config(&self.bootstrap)
            .set("client.id", "prlx-log-reader")
            // `assign` needs a group id; the reader never joins the group or commits to it.
            .set("group.id", "prlx-log-reader")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            // An offset outside the log is an error, never a silent jump.
            .set("auto.offset.reset", "error")
            .set(
                "fetch.wait.max.ms",
                self.options.fetch_wait.as_millis().to_string(),
            )
            .create()
            .map_err(|e| kafka_error("create consumer", e))?;
        Ok(Arc::new(consumer))
    }

    /// A client for offset queries only. Not the reader's consumer: a broker answers one
    /// connection's requests in order, so a query there would wait behind the consumer's
    /// long-polling fetch.
    fn offsets_client(&self) -> Result<Arc<BaseConsumer>, LogError> {
        let client: BaseConsumer = base_config(&self.bootstrap)
            .set("client.id", "prlx-log-offsets")
            // Under read_committed the "latest" offset is the last stable offset.
            .set("isolation.level", "read_committed")
            .create()
            .map_err(|e| kafka_error("create consumer", e))?;
        Ok(Arc::new(client))
    }
}

// ---------------------------------------------------------------------------------------------
// Errors of the producer

/// What a producer error means for the writer.
#[derive(Debug)]
enum Failure {
    /// A newer writer took over: stop for good.
    Fenced(String),
    /// The producer is unusable for another reason: stop for good.
    Fatal(String),
    /// The open transaction must be aborted; the producer stays usable.
    Abortable(String),
    /// No answer: whether the operation took effect is not known.
    Indefinite(String),
}

fn is_fencing(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
    )
}

fn classify(producer: &FutureProducer, e: &KafkaError) -> Failure {
    // librdkafka raises a fatal error on the whole client when it is fenced, whichever call
    // noticed it first.
    if let Some((code, reason)) = producer.client().fatal_error() {
        return if is_fencing(code) {
            Failure::Fenced(reason)
        } else {
            Failure::Fatal(reason)
        };
    }
    match e {
        KafkaError::Transaction(t) if t.is_fatal() => {
            if is_fencing(t.code()) {
                Failure::Fenced(t.to_string())
            } else {
                Failure::Fatal(t.to_string())
            }
        }
        KafkaError::Transaction(t) if t.txn_requires_abort() => Failure::Abortable(t.to_string()),
        KafkaError::Transaction(t) => Failure::Indefinite(t.to_string()),
        KafkaError::MessageProduction(code) if is_fencing(*code) => Failure::Fenced(e.to_string()),
        // A record that could not be produced leaves the transaction to be aborted.
        _ => Failure::Abortable(e.to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// The writer

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

/// Waits until librdkafka has let go of every delivered message, so that the flush inside
/// `commit_transaction` finds nothing outstanding.
///
/// Why: a delivery future resolves in the producer's polling thread a moment *before* that
/// thread releases the message. A flush that still counts it waits for the next event on the
/// queue, up to 100 ms (rust-rdkafka's flush loop), and in a transaction there is none: one
/// commit in three or four took 100 ms more than its work. The gap is microseconds, so yielding
/// the thread is enough; after `limit` the commit's own flush takes over.
fn settle_deliveries(producer: &FutureProducer, limit: Duration) {
    let until = deadline::after(limit);
    while producer.in_flight_count() > 0 && !deadline::passed(until) {
        std::thread::yield_now();
    }
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

/// Produces `records` (topic, key, payload) in order, each without a key to partition 0 of its
/// topic and with one to the partition the key picks, then awaits every delivery report; the
/// offsets of the first `keep` records, in order.
async fn produce_records<'a>(
    producer: &FutureProducer,
    records: impl Iterator<Item = (&'a str, Option<&'a [u8]>, &'a Vec<u8>)>,
    keep: usize,
) -> Result<Vec<i64>, KafkaError> {
    // Deliveries are awaited in production order, so the first `keep` are the ones kept.
    let mut pending: VecDeque<DeliveryFuture> = VecDeque::new();
    let mut offsets = Vec::with_capacity(keep);
    let settle = |offset: i64, offsets: &mut Vec<i64>| {
        if offsets.len() < keep {
            offsets.push(offset);
        }
    };
    for (to, key, payload) in records {
        let mut record = FutureRecord::<[u8], [u8]>::to(to).payload(payload.as_slice());
        record = match key {
            Some(key) => record.key(key),
            None => record.partition(PARTITION),
        };
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    pending.push_back(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    // librdkafka's local queue is full: wait for the oldest record in flight.
                    match pending.pop_front() {
                        Some(oldest) => settle(delivered(oldest.await)?, &mut offsets),
                        None => tokio::time::sleep(Duration::from_millis(1)).await,
                    }
                }
                Err((e, _)) => return Err(e),
            }
        }
    }
    for delivery in pending {
        settle(delivered(delivery.await)?, &mut offsets);
    }
    Ok(offsets)
}

fn delivered(
    report: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, impl fmt::Debug>,
) -> Result<i64, KafkaError> {
    match report {
        Ok(Ok(delivery)) => Ok(delivery.offset),
        Ok(Err((e, _))) => Err(e),
        Err(_) => Err(KafkaError::Canceled),
    }
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

// ---------------------------------------------------------------------------------------------
// Topics derived from a log, exactly once

/// Writes topics derived from a log (the nodes' feeds), exactly once: each
/// [`KafkaDerivedWriter::commit`] is one transaction holding the records derived from a
/// stretch of the log *and* the log position after it, as the committed offset of a consumer
/// group on the log's topic (Kafka's consume-transform-produce). A writer opened after a crash
/// resumes from [`KafkaDerivedWriter::position`]: nothing is written twice or skipped. A second
/// writer with the same name fences the first, as a second log writer does.
///
/// After any error the writer is spent: drop it and open a new one, whose
/// `init_transactions` settles whatever the old one left open (`shared/KAFKA.md`).
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

// ---------------------------------------------------------------------------------------------
// Readers

/// Where a consumer's housekeeping task runs: on the tokio runtime of whoever opened the
/// reader, if there is one. That task only wakes the consumer now and then for the sake of
/// consumer groups' `max.poll.interval.ms`; an assigned reader needs none, so outside a
/// runtime it is simply not started (`StreamConsumer` would panic there by default).
#[derive(Debug)]
struct CallerRuntime;

impl AsyncRuntime for CallerRuntime {
    type Delay = tokio::time::Sleep;

    fn spawn<T>(task: T)
    where
        T: Future<Output = ()> + Send + 'static,
    {
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(task);
        }
    }

    fn delay_for(duration: Duration) -> Self::Delay {
        tokio::time::sleep(duration)
    }
}

type KafkaConsumer = StreamConsumer<DefaultConsumerContext, CallerRuntime>;

/// A reader of a Kafka log: a `read_committed` consumer assigned to partition 0, kept
/// positioned where the last call stopped so that a follower streams without seeking.
pub struct KafkaLogReader {
    target: Target,
    consumer: Result<Arc<KafkaConsumer>, LogError>,
    offsets: Result<Arc<BaseConsumer>, LogError>,
    cursor: Mutex<Cursor>,
}

impl fmt::Debug for KafkaLogReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaLogReader")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// What the consumer has delivered and where it stands.
#[derive(Debug, Default)]
struct Cursor {
    assigned: bool,
    /// The next call's records start here: every committed record in `from..next` is in
    /// `buffer`, and the consumer delivers the ones from `next` on.
    from: Offset,
    next: Offset,
    buffer: VecDeque<Record>,
    /// Something (a record, the end of the partition) came since the last assign, so the
    /// consumer's own position is about this assignment, not an earlier one.
    seen: bool,
}

impl Cursor {
    /// Whether the stream can serve `from` without re-assigning.
    fn covers(&self, from: Offset) -> bool {
        self.assigned && self.from <= from && from <= self.next.max(self.from) + SKIP_AHEAD
    }

    fn skip_to(&mut self, from: Offset) {
        while self.buffer.front().is_some_and(|r| r.offset < from) {
            self.buffer.pop_front();
        }
        self.from = self.from.max(from);
    }

    fn accept(
        &mut self,
        got: Result<BorrowedMessage<'_>, KafkaError>,
        consumer: &KafkaConsumer,
        topic: &str,
    ) -> Result<(), LogError> {
        match got {
            Ok(m) => {
                let offset = Offset::try_from(m.offset())
                    .map_err(|_| kafka_error("read", format!("bad offset {}", m.offset())))?;
                if offset < self.next {
                    // Fetched before the last assign: not ours any more.
                    return Ok(());
                }
                self.next = offset + 1;
                self.seen = true;
                if offset >= self.from {
                    self.buffer.push_back(Record {
                        offset,
                        payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                    });
                }
            }
            Err(KafkaError::PartitionEOF(_)) => {
                self.seen = true;
                self.next = self.position(consumer, topic);
            }
            Err(e) => return Err(kafka_error("read", e)),
        }
        Ok(())
    }

    /// Where the consumer stands: past the last record it delivered, and past the commit
    /// markers after it, which it consumes without delivering (its own position counts them).
    fn position(&self, consumer: &KafkaConsumer, topic: &str) -> Offset {
        let own = self
            .seen
            .then(|| consumer.position().ok())
            .flatten()
            .and_then(|tpl| match tpl.find_partition(topic, PARTITION)?.offset() {
                KafkaOffset::Offset(o) => Offset::try_from(o).ok(),
                _ => None,
            });
        self.next.max(own.unwrap_or(0))
    }

    /// Up to `max` buffered records, which the next call then starts after.
    fn take(&mut self, max: usize) -> Vec<Record> {
        let n = max.min(self.buffer.len());
        let out: Vec<Record> = self.buffer.drain(..n).collect();
        if let Some(last) = out.last() {
            self.from = last.offset + 1;
        }
        out
    }
}

impl KafkaLogReader {
    /// Opens a reader of `topic`; it does not need a running writer, but the topic must exist
    /// with one partition (a mistyped name must not read as an empty log).
    pub fn open(bootstrap: &str, topic: &str, options: KafkaLogOptions) -> Result<Self, LogError> {
        let reader = Self::new(Target::new(bootstrap, topic, options));
        let consumer = reader.consumer()?;
        match topic_partitions(consumer.client(), topic, reader.target.options.timeout)? {
            Some(1) => Ok(reader),
            Some(n) => Err(not_one_partition(topic, n)),
            None => Err(LogError::NoSuchTopic {
                topic: topic.to_owned(),
                bootstrap: bootstrap.to_owned(),
            }),
        }
    }

    fn new(target: Target) -> Self {
        let consumer = target.consumer();
        let offsets = target.offsets_client();
        Self {
            target,
            consumer,
            offsets,
            cursor: Mutex::new(Cursor::default()),
        }
    }

    fn consumer(&self) -> Result<&Arc<KafkaConsumer>, LogError> {
        self.consumer.as_ref().map_err(Clone::clone)
    }

    /// The first offset still in the log and the last stable offset (under read_committed,
    /// the end of what is decided: commit markers included, open transactions excluded).
    async fn watermarks(&self) -> Result<(Offset, Offset), LogError> {
        let client = Arc::clone(self.offsets.as_ref().map_err(Clone::clone)?);
        let topic = self.target.topic.clone();
        let timeout = self.target.options.timeout;
        let (low, high) = tokio::task::spawn_blocking(move || {
            client.fetch_watermarks(&topic, PARTITION, timeout)
        })
        .await
        .map_err(|e| kafka_error("query offsets", e))?
        .map_err(|e| kafka_error("query offsets", e))?;
        Ok((low.max(0) as Offset, high.max(0) as Offset))
    }

    fn check_retained(&self, from: Offset, low: Offset) -> Result<(), LogError> {
        if from < low {
            return Err(kafka_error(
                "read",
                format!(
                    "offset {from} is no longer in topic {:?}, which starts at {low} \
                     (deleted by retention: the topic's retention must be infinite)",
                    self.target.topic
                ),
            ));
        }
        Ok(())
    }

    /// Points the consumer at `at`; what it had fetched is dropped.
    fn assign(&self, cursor: &mut Cursor, at: Offset) -> Result<(), LogError> {
        let consumer = self.consumer()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            &self.target.topic,
            PARTITION,
            KafkaOffset::Offset(at as i64),
        )
        .map_err(|e| kafka_error("assign", e))?;
        consumer
            .assign(&tpl)
            .map_err(|e| kafka_error("assign", e))?;
        *cursor = Cursor {
            assigned: true,
            from: at,
            next: at,
            buffer: VecDeque::new(),
            seen: false,
        };
        Ok(())
    }

    /// Takes the consumer's next message or end-of-partition into the cursor; false when
    /// `deadline` passed first (at once when it already has).
    async fn pull(&self, cursor: &mut Cursor, deadline: Instant) -> Result<bool, LogError> {
        let consumer = self.consumer()?;
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(got) => {
                cursor.accept(got, consumer, &self.target.topic)?;
                Ok(true)
            }
            Err(_) => Ok(false),
        }
    }

    fn stands_at(&self, c: &Cursor) -> Offset {
        match self.consumer() {
            Ok(consumer) => c.position(consumer, &self.target.topic).max(c.from),
            Err(_) => c.next.max(c.from),
        }
    }

    fn no_answer(&self, op: &'static str) -> LogError {
        kafka_error(
            op,
            format!(
                "no answer from {} within {:?}",
                self.target.bootstrap, self.target.options.timeout
            ),
        )
    }
}

impl LogReader for KafkaLogReader {
    async fn read(&self, from: Offset, max: usize) -> Result<Vec<Record>, LogError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut c = self.cursor.lock().await;
        if c.covers(from) {
            c.skip_to(from);
        } else {
            let (low, stable) = self.watermarks().await?;
            if from >= stable {
                return Ok(Vec::new());
            }
            self.check_retained(from, low)?;
            self.assign(&mut c, from)?;
        }
        let deadline = deadline::after(self.target.options.timeout);
        while c.buffer.len() < max {
            // Whatever the consumer has ready, without waiting.
            if self.pull(&mut c, deadline::immediate()).await? {
                continue;
            }
            if !c.buffer.is_empty() {
                break;
            }
            // Nothing ready: is anything committed at or past where the consumer stands? (An
            // end-of-partition event would say so too, but only a fetch wait later.)
            let (_, stable) = self.watermarks().await?;
            if self.stands_at(&c) >= stable {
                break;
            }
            if !self.pull(&mut c, deadline).await? {
                return Err(self.no_answer("read"));
            }
        }
        Ok(c.take(max))
    }

    async fn end(&self) -> Result<Offset, LogError> {
        let (low, stable) = self.watermarks().await?;
        if stable <= low {
            return Ok(stable);
        }
        // The last stable offset counts commit markers (and aborted records): find the last
        // committed record below it, looking further back only when the tail holds none.
        let mut c = self.cursor.lock().await;
        let deadline = deadline::after(self.target.options.timeout);
        let mut window = END_WINDOW;
        loop {
            let start = stable.saturating_sub(window).max(low);
            self.assign(&mut c, start)?;
            let mut last = None;
            loop {
                if !self.pull(&mut c, deadline::immediate()).await? {
                    if self.stands_at(&c) >= stable {
                        break;
                    }
                    if !self.pull(&mut c, deadline).await? {
                        return Err(self.no_answer("end"));
                    }
                }
                // Only the offset matters here; the payloads are not kept.
                if let Some(r) = c.buffer.pop_back() {
                    last = Some(r.offset);
                }
                c.buffer.clear();
            }
            c.from = c.next;
            if let Some(last) = last {
                return Ok(last + 1);
            }
            if start == low {
                return Ok(low);
            }
            window = window.saturating_mul(16);
        }
    }

    async fn wait_for(&self, from: Offset, timeout: Duration) -> Result<bool, LogError> {
        let deadline = deadline::after(timeout);
        let mut c = self.cursor.lock().await;
        if c.covers(from) {
            c.skip_to(from);
        } else {
            let (low, stable) = self.watermarks().await?;
            self.check_retained(from, low)?;
            // Never past the stable end: beyond the high watermark is out of range.
            self.assign(&mut c, from.min(stable))?;
            c.skip_to(from);
        }
        loop {
            if !c.buffer.is_empty() {
                return Ok(true);
            }
            if !self.pull(&mut c, deadline).await? {
                return Ok(false);
            }
        }
    }
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

    #[test]
    fn cursor_serves_forward_reads_and_refuses_going_back() {
        let mut c = Cursor {
            assigned: true,
            from: 5,
            next: 8,
            buffer: (5..8)
                .map(|offset| Record {
                    offset,
                    payload: Vec::new(),
                })
                .collect(),
            seen: true,
        };
        assert!(c.covers(5) && c.covers(8) && c.covers(8 + SKIP_AHEAD));
        assert!(!c.covers(4) && !c.covers(9 + SKIP_AHEAD));
        c.skip_to(6);
        assert_eq!(c.take(1)[0].offset, 6);
        assert_eq!(c.from, 7);
        assert!(!c.covers(6));
        assert!(!Cursor::default().covers(0), "nothing assigned yet");
    }
}
