//! The append-only log: one small reader/writer trait pair and its backends, chosen by URL.
//!
//! Contract (checked by the conformance suite in `prlx-tests`, run on every backend):
//! - [`LogWriter::append`] takes a batch and returns its offsets only once the whole batch is
//!   durable. A batch is atomic: a reader sees all of it or none of it, also after a crash.
//! - Offsets are strictly increasing; within a batch they are consecutive. Between batches a
//!   backend may skip offsets (Kafka's transaction markers do), so a reader continues from the
//!   last record's offset + 1, never from a count.
//! - A reader sees only durable records. Corruption below the durable end is an error that names
//!   the offset; it is never skipped silently.
//! - One writer at a time; a second one is refused (file lock) or fenced (Kafka).
//!
//! The backends are I/O, not part of the deterministic core: they read the monotonic clock,
//! but only to bound how long a wait or a network call may take. No clock reading reaches a
//! record, an event or a fold; time in events is the producer's `recorded_at`.
//!
//! # Layout
//! - [`feed`]: names of the per-node dispatch feeds (a Kafka topic per node).
//! - [`file/`](mod@file): the embedded segment-file backend (`file://DIR`), the default. Its
//!   parts: `format` (the bytes on disk), `options`, `recovery`, `writer`, `reader`.
//! - `kafka/`: one single-partition Apache Kafka topic per log, transactional group commit
//!   (`kafka://HOST:PORT/TOPIC`; cargo feature `kafka`). Its parts: `config` (client settings,
//!   the clients), `topics` (admin), `failure` (producer errors), `produce`, `writer`,
//!   `derived` (topics derived from the log), `reader`, and `lease` (the writer's election).
//! - [`lease`]: which of several would-be writers may open the writer now (an election
//!   through a consumer group on Kafka; always held on the file log, whose lock suffices).
//! - `side`: what rides with a batch besides its records, which only Kafka has: side records
//!   for other topics and consumer offsets ([`Side`], [`SideRecord`], [`Consumed`]).
//! - `url`: parsing of backend URLs ([`LogUrl`], [`KafkaLogOptions`]).
//! - `deadline` (inline, at the end of this file): the deadlines of the backends' I/O waits.

pub mod feed;
pub mod file;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod lease;
mod side;
mod url;

use std::future::Future;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use self::lease::{Lease, DEFAULT_LEASE_SESSION};
pub use self::side::{Consumed, ConsumerGroupHandle, Side, SideRecord};
pub use self::url::{KafkaLogOptions, LogUrl};

/// Position of a record in the log.
pub type Offset = u64;

/// One durable record as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: Offset,
    pub payload: Vec<u8>,
}

/// Why a log operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    #[error("invalid log URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("the {backend} backend is not available in this build: {reason}")]
    BackendUnavailable {
        backend: &'static str,
        reason: &'static str,
    },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
    #[error("log {dir} is locked by another writer (only one process may append)")]
    Locked { dir: PathBuf },
    #[error("corrupt log at offset {offset} ({file}, byte {position}): {reason}")]
    Corrupt {
        offset: Offset,
        file: PathBuf,
        position: u64,
        reason: String,
    },
    #[error("record {index} of the batch is {len} bytes; the limit is {max}")]
    RecordTooLarge {
        index: usize,
        len: usize,
        max: usize,
    },
    #[error("the writer failed earlier ({0}); reopen the log to recover")]
    Poisoned(String),
    #[error("the writer has shut down")]
    Closed,
    /// Another writer opened the log with the same transactional id and fenced this one; it
    /// can never append again. Whatever it had not committed was aborted.
    #[error(
        "this writer of Kafka topic {topic} was fenced by a newer writer with transactional id \
         {transactional_id:?} ({reason}); only one writer may append: reopen to take over"
    )]
    Fenced {
        topic: String,
        transactional_id: String,
        reason: String,
    },
    /// The append may or may not be in the log (e.g. the commit timed out); the writer has
    /// re-created its producer, which settles it one way or the other. Read the log to know.
    #[error("the append may or may not be in the log ({reason}); read the log to find out")]
    OutcomeUnknown { reason: String },
    /// A broker operation failed; nothing of the operation took effect.
    #[error("kafka {op}: {reason}")]
    Kafka { op: &'static str, reason: String },
    /// A Kafka topic a reader was asked to read does not exist (a mistyped name must not
    /// read as an empty log).
    #[error("topic {topic:?} does not exist at {bootstrap}: no log here")]
    NoSuchTopic { topic: String, bootstrap: String },
    /// Side records were asked of a backend with no other topics (the file log).
    #[error(
        "the {backend} log has no topics besides the log: side records and consumer offsets \
         (the exactly-once Kafka intake) need the Kafka backend"
    )]
    SideRecordsUnsupported { backend: &'static str },
}

impl LogError {
    /// Whether trying again may succeed, after a pause and with a new reader or writer (every
    /// caller reopens one: a writer poisons itself after a failed append on both backends):
    /// the backend was away or busy (a broker restarting, an I/O error), or this writer was
    /// fenced, poisoned or closed and a new one can take over. Not: a bad URL, a backend not built in, a lock held by another process, a
    /// corrupt log, an oversized record, a missing topic, side records on the file log: those
    /// stay wrong however often they are tried.
    ///
    /// The one rule for every caller that waits out a log (the coordinator's serve loop, the
    /// node's follower, the feed projector), so they cannot disagree.
    pub fn is_retryable(&self) -> bool {
        match self {
            LogError::Io { .. }
            | LogError::Kafka { .. }
            | LogError::OutcomeUnknown { .. }
            | LogError::Fenced { .. }
            | LogError::Poisoned(_)
            | LogError::Closed => true,
            LogError::BadUrl { .. }
            | LogError::BackendUnavailable { .. }
            | LogError::Locked { .. }
            | LogError::Corrupt { .. }
            | LogError::RecordTooLarge { .. }
            | LogError::NoSuchTopic { .. }
            | LogError::SideRecordsUnsupported { .. } => false,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, e: std::io::Error) -> Self {
        LogError::Io {
            op,
            path: path.into(),
            source: Arc::new(e),
        }
    }
}

/// The single writer of a log.
pub trait LogWriter: Send + Sync {
    /// Appends `batch` atomically and returns the offsets it got (consecutive), only once all of
    /// it is durable. An empty batch appends nothing and returns an empty range at the end.
    ///
    /// The batch is ordered when `append` is *called*, not when its future is first polled:
    /// a caller may start several appends and await them later (pipelining), and they land in
    /// call order. The future owns what it needs (`'static`), so it can be awaited elsewhere.
    fn append(
        &self,
        batch: Vec<Vec<u8>>,
    ) -> impl Future<Output = Result<Range<Offset>, LogError>> + Send + 'static;
}

/// A reader; any number may read while the writer appends, in this process or others.
pub trait LogReader: Send + Sync {
    /// Up to `max` durable records with offset `>= from`, in order; empty when there are none
    /// yet.
    fn read(
        &self,
        from: Offset,
        max: usize,
    ) -> impl Future<Output = Result<Vec<Record>, LogError>> + Send;

    /// One past the offset of the last durable record.
    fn end(&self) -> impl Future<Output = Result<Offset, LogError>> + Send;

    /// Waits until a durable record with offset `>= from` may exist, or `timeout` passes.
    /// Returns whether the end moved past `from`. Used to follow the tail without spinning.
    fn wait_for(
        &self,
        from: Offset,
        timeout: Duration,
    ) -> impl Future<Output = Result<bool, LogError>> + Send;
}

/// Reads a log from an offset to its durable end in batches: `while let Some(batch) =
/// batches.next().await? { .. }`. For readers that want everything there is now (the
/// auditor's chain pass, a claimer); a follower of the tail uses `wait_for` instead.
#[derive(Debug)]
pub struct Batches<'a, R> {
    reader: &'a R,
    next: Offset,
}

impl<'a, R: LogReader> Batches<'a, R> {
    /// Batches of `reader` from `from`.
    pub fn new(reader: &'a R, from: Offset) -> Self {
        Batches { reader, next: from }
    }

    /// The next batch, or `None` at the durable end.
    pub async fn next(&mut self) -> Result<Option<Vec<Record>>, LogError> {
        let batch = self.reader.read(self.next, 1024).await?;
        let Some(last) = batch.last() else {
            return Ok(None);
        };
        self.next = last.offset + 1;
        Ok(Some(batch))
    }
}

/// One append waiting for a backend's writer: the batch, what rides with it, and where its
/// answer goes.
pub(crate) struct AppendRequest {
    pub(crate) batch: Vec<Vec<u8>>,
    /// Read only by the Kafka writer: the file log refuses a side before it queues.
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub(crate) side: Side,
    pub(crate) reply: tokio::sync::oneshot::Sender<Result<Range<Offset>, LogError>>,
}

/// The shared front half of every writer's `append`: checks the batch, hands it to the
/// writer's queue *now* (so batches take offsets in call order, whenever the future is
/// polled) with `send`, and returns what waits for the answer ([`Enqueued::answer`]). `end`
/// answers an empty batch without side records; `send` returns false when the writer is gone.
/// A record too large is named by its index, the side records counting after the batch.
pub(crate) fn enqueue_append(
    batch: Vec<Vec<u8>>,
    side: Side,
    end: Offset,
    max_record_bytes: usize,
    send: impl FnOnce(AppendRequest) -> bool,
) -> Enqueued {
    if batch.is_empty() && side.is_empty() {
        return Enqueued::Ready(Ok(end..end));
    }
    if let Some((index, r)) = batch
        .iter()
        .chain(side.records.iter().map(|s| &s.payload))
        .enumerate()
        .find(|(_, r)| r.len() > max_record_bytes)
    {
        return Enqueued::Ready(Err(LogError::RecordTooLarge {
            index,
            len: r.len(),
            max: max_record_bytes,
        }));
    }
    let (reply, rx) = tokio::sync::oneshot::channel();
    if send(AppendRequest { batch, side, reply }) {
        Enqueued::Waiting(rx)
    } else {
        Enqueued::Ready(Err(LogError::Closed))
    }
}

/// An append handed to a writer (or answered at once).
pub(crate) enum Enqueued {
    Ready(Result<Range<Offset>, LogError>),
    Waiting(tokio::sync::oneshot::Receiver<Result<Range<Offset>, LogError>>),
}

impl Enqueued {
    /// The append's answer. Owns nothing of the writer, so it can be awaited anywhere.
    pub(crate) async fn answer(self) -> Result<Range<Offset>, LogError> {
        match self {
            Enqueued::Waiting(rx) => rx.await.map_err(|_| LogError::Closed)?,
            Enqueued::Ready(ready) => ready,
        }
    }
}

/// A writer of whichever backend the URL named.
#[derive(Debug)]
pub enum AnyWriter {
    File(file::FileLogWriter),
    #[cfg(feature = "kafka")]
    Kafka(kafka::KafkaLogWriter),
}

/// A reader of whichever backend the URL named.
#[derive(Debug)]
pub enum AnyReader {
    File(file::FileLogReader),
    #[cfg(feature = "kafka")]
    Kafka(kafka::KafkaLogReader),
}

impl LogUrl {
    /// Opens the single writer; recovers the log first (see the backend's docs).
    pub fn open_writer(&self) -> Result<AnyWriter, LogError> {
        match self {
            LogUrl::File { dir, options } => {
                file::FileLogWriter::open(dir, options.clone()).map(AnyWriter::File)
            }
            #[cfg(feature = "kafka")]
            LogUrl::Kafka {
                bootstrap,
                topic,
                options,
            } => {
                kafka::KafkaLogWriter::open(bootstrap, topic, options.clone()).map(AnyWriter::Kafka)
            }
            #[cfg(not(feature = "kafka"))]
            LogUrl::Kafka { .. } => Err(KAFKA_NOT_COMPILED_IN),
        }
    }

    /// Opens a reader. It does not need the writer to be running.
    pub fn open_reader(&self) -> Result<AnyReader, LogError> {
        match self {
            LogUrl::File { dir, options } => {
                file::FileLogReader::open(dir, options.clone()).map(AnyReader::File)
            }
            #[cfg(feature = "kafka")]
            LogUrl::Kafka {
                bootstrap,
                topic,
                options,
            } => {
                kafka::KafkaLogReader::open(bootstrap, topic, options.clone()).map(AnyReader::Kafka)
            }
            #[cfg(not(feature = "kafka"))]
            LogUrl::Kafka { .. } => Err(KAFKA_NOT_COMPILED_IN),
        }
    }
}

#[cfg(not(feature = "kafka"))]
const KAFKA_NOT_COMPILED_IN: LogError = LogError::BackendUnavailable {
    backend: "kafka",
    reason: "this build has no Kafka backend: rebuild with the cargo feature `kafka` of \
             prlx-events, or use file://DIR",
};

impl AnyWriter {
    /// A reader that follows this writer in-process: for the file log, woken on each commit
    /// instead of polling; for Kafka, a consumer of the writer's topic.
    pub fn reader(&self) -> AnyReader {
        match self {
            AnyWriter::File(w) => AnyReader::File(w.reader()),
            #[cfg(feature = "kafka")]
            AnyWriter::Kafka(w) => AnyReader::Kafka(w.reader()),
        }
    }

    /// Appends `batch` as [`LogWriter::append`] does, with `side` records for other topics and
    /// consumer offsets in the same atomic unit (a Kafka transaction): they are visible once
    /// the batch is durable, never before and never without it. An empty batch with a side
    /// takes no offset of the log. The file log refuses sides.
    pub fn append_with_side(
        &self,
        batch: Vec<Vec<u8>>,
        side: Side,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Range<Offset>, LogError>> + Send>> {
        // Each arm enqueues now (call order); only the waiting goes into the returned future.
        match self {
            AnyWriter::File(_) if !side.is_empty() => {
                let refused = LogError::SideRecordsUnsupported { backend: "file" };
                Box::pin(async move { Err(refused) })
            }
            AnyWriter::File(w) => Box::pin(w.append(batch)),
            #[cfg(feature = "kafka")]
            AnyWriter::Kafka(w) => Box::pin(w.append_with_side(batch, side)),
        }
    }
}

impl LogWriter for AnyWriter {
    fn append(
        &self,
        batch: Vec<Vec<u8>>,
    ) -> impl Future<Output = Result<Range<Offset>, LogError>> + Send + 'static {
        // Each arm enqueues now (call order); only the waiting goes into the returned future.
        #[cfg(feature = "kafka")]
        {
            enum Appending<F, K> {
                File(F),
                Kafka(K),
            }
            let appending = match self {
                AnyWriter::File(w) => Appending::File(w.append(batch)),
                AnyWriter::Kafka(w) => Appending::Kafka(w.append(batch)),
            };
            async move {
                match appending {
                    Appending::File(f) => f.await,
                    Appending::Kafka(k) => k.await,
                }
            }
        }
        #[cfg(not(feature = "kafka"))]
        match self {
            AnyWriter::File(w) => w.append(batch),
        }
    }
}

impl LogReader for AnyReader {
    async fn read(&self, from: Offset, max: usize) -> Result<Vec<Record>, LogError> {
        match self {
            AnyReader::File(r) => r.read(from, max).await,
            #[cfg(feature = "kafka")]
            AnyReader::Kafka(r) => r.read(from, max).await,
        }
    }
    async fn end(&self) -> Result<Offset, LogError> {
        match self {
            AnyReader::File(r) => r.end().await,
            #[cfg(feature = "kafka")]
            AnyReader::Kafka(r) => r.end().await,
        }
    }
    async fn wait_for(&self, from: Offset, timeout: Duration) -> Result<bool, LogError> {
        match self {
            AnyReader::File(r) => r.wait_for(from, timeout).await,
            #[cfg(feature = "kafka")]
            AnyReader::Kafka(r) => r.wait_for(from, timeout).await,
        }
    }
}

#[cfg(all(test, not(feature = "kafka")))]
mod tests {
    use super::*;

    #[test]
    fn kafka_urls_say_the_backend_is_not_compiled_in() {
        let url = LogUrl::parse("kafka://127.0.0.1:19092/events").unwrap();
        for err in [
            url.open_writer().unwrap_err(),
            url.open_reader().unwrap_err(),
        ] {
            assert!(
                matches!(
                    err,
                    LogError::BackendUnavailable {
                        backend: "kafka",
                        ..
                    }
                ),
                "{err}"
            );
            assert!(err.to_string().contains("feature `kafka`"), "{err}");
        }
    }
}

/// Deadlines of I/O waits in the backends. The backends are the shell around the pure core:
/// they read the monotonic clock only to bound how long a disk or network wait lasts, here and
/// nowhere else, and never record it in an event, so replay still reproduces state byte for
/// byte. (tokio's `Instant`, so tests that pause tokio's clock control these waits too.)
pub(crate) mod deadline {
    use std::time::Duration;
    use tokio::time::Instant;

    /// `timeout` from now.
    pub(crate) fn after(timeout: Duration) -> Instant {
        Instant::now() + timeout // shell clock: bounds an I/O wait, never recorded or folded
    }

    /// A deadline already reached: for a wait that must not block.
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub(crate) fn immediate() -> Instant {
        Instant::now() // shell clock: bounds an I/O wait, never recorded or folded
    }

    /// How long until `deadline`; zero once it has passed.
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub(crate) fn remaining(deadline: Instant) -> Duration {
        deadline.saturating_duration_since(Instant::now()) // shell clock: I/O wait, not recorded
    }

    pub(crate) fn passed(deadline: Instant) -> bool {
        Instant::now() >= deadline // shell clock: bounds an I/O wait, never recorded or folded
    }
}
