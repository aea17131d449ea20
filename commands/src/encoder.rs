//! Encoding of the coordinator's events, on a thread of its own.
//!
//! Why: the actor is the coordinator's one sequential path (decide, apply, answer), and on
//! the file log it is what limits throughput; turning each envelope into JSON was a fifth or so
//! of its time. The encoding does not feed back into any decision, so it can run beside the
//! actor: the actor hands over the typed envelopes, this thread encodes them and starts their
//! append. Batches stay in order because one thread takes them first in, first out and
//! [`LogWriter::append`] orders a batch when it is called.

use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::thread;

use prlx_events::log::{AnyWriter, LogError, Side};
use prlx_events::Envelope;
use tokio::sync::oneshot;

use std::ops::Range;

use prlx_events::log::Offset;

/// An append in flight: resolves with the offsets once durable.
pub type AppendFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Range<Offset>, LogError>> + Send>>;

/// A batch of envelopes, what rides with it, and where the future of its append goes.
struct Job {
    batch: Vec<Envelope>,
    side: JobSide,
    started: oneshot::Sender<AppendFuture>,
}

/// What rides with a batch: known now, or computed by the actor a moment after it handed the
/// batch over (the answer to a Kafka submission depends on the state the batch leaves).
enum JobSide {
    Now(Side),
    Later(oneshot::Receiver<Side>),
}

/// Where the actor sends the side of a batch handed over with [`Encoder::append_riding`].
pub type SideSender = oneshot::Sender<Side>;

/// The encoding thread; it ends when this is dropped and its queue is empty.
#[derive(Debug)]
pub struct Encoder {
    queue: std_mpsc::Sender<Job>,
}

impl Encoder {
    /// Starts the thread that encodes batches for `writer` and appends them.
    pub fn start(writer: Arc<AnyWriter>) -> std::io::Result<Self> {
        let (queue, jobs) = std_mpsc::channel::<Job>();
        thread::Builder::new()
            .name("prlx-encoder".into())
            .spawn(move || {
                for job in jobs {
                    let encoded = job.batch.iter().map(Envelope::encode).collect();
                    let side = match job.side {
                        JobSide::Now(side) => side,
                        // Sent in the same turn of the actor; a dropped sender rides nothing.
                        JobSide::Later(side) => side.blocking_recv().unwrap_or_default(),
                    };
                    let append = writer.append_with_side(encoded, side);
                    // A caller that went away no longer needs the answer; the append stands.
                    let _ = job.started.send(append);
                }
            })?;
        Ok(Self { queue })
    }

    /// Queues `batch` behind every earlier one; resolves once it is durable.
    pub fn append(&self, batch: Vec<Envelope>) -> AppendFuture {
        self.queue_job(batch, JobSide::Now(Side::default()))
    }

    /// Queues what rides without a batch (an answer and consumer offsets for a command that
    /// appended nothing), in order with the batches.
    pub fn append_side(&self, side: Side) -> AppendFuture {
        self.queue_job(Vec::new(), JobSide::Now(side))
    }

    /// Queues `batch` with a side the caller sends next, through the sender returned: the
    /// encoding thread waits for it before appending (and everything behind it waits too, so
    /// send it at once).
    pub fn append_riding(&self, batch: Vec<Envelope>) -> (AppendFuture, SideSender) {
        let (tx, rx) = oneshot::channel();
        (self.queue_job(batch, JobSide::Later(rx)), tx)
    }

    fn queue_job(&self, batch: Vec<Envelope>, side: JobSide) -> AppendFuture {
        let (started, append) = oneshot::channel();
        let queued = self
            .queue
            .send(Job {
                batch,
                side,
                started,
            })
            .is_ok();
        Box::pin(async move {
            if !queued {
                return Err(LogError::Closed);
            }
            append.await.map_err(|_| LogError::Closed)?.await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prlx_events::event::NodeHeartbeat;
    use prlx_events::log::{LogReader, LogUrl};
    use prlx_events::{Event, Hash32, NodeId};

    use crate::testkit::envelopes;

    /// Batches started one after another, awaited in any order, land in the order they were
    /// handed over, each whole and at consecutive offsets, and read back as the same events.
    #[tokio::test]
    async fn batches_land_in_the_order_they_were_handed_over() {
        let dir = tempfile::tempdir().unwrap();
        let url = LogUrl::parse(&format!("file://{}", dir.path().display())).unwrap();
        let writer = Arc::new(url.open_writer().unwrap());
        let encoder = Encoder::start(writer.clone()).unwrap();
        let heartbeat = |i: u8| {
            Event::from(NodeHeartbeat {
                node_id: NodeId(Hash32([i; 32])),
            })
        };
        // Batch i holds 1 + i % 3 events.
        let batches: Vec<Vec<Envelope>> = (0..60u8)
            .map(|i| envelopes((0..=i % 3).map(|_| heartbeat(i))))
            .collect();
        let expected: Vec<Vec<u8>> = batches.iter().flatten().map(Envelope::encode).collect();
        let appends: Vec<AppendFuture> = batches.into_iter().map(|b| encoder.append(b)).collect();
        let mut ranges = Vec::new();
        // Awaited last to first: the order was fixed when they were handed over.
        for append in appends.into_iter().rev() {
            ranges.push(append.await.unwrap());
        }
        ranges.reverse();
        for (i, pair) in ranges.windows(2).enumerate() {
            assert_eq!(
                pair[0].end,
                pair[1].start,
                "batches {i} and {} apart",
                i + 1
            );
            assert_eq!(pair[0].end - pair[0].start, 1 + (i as u64) % 3);
        }
        let read: Vec<Vec<u8>> = writer
            .reader()
            .read(0, 1_000)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.payload)
            .collect();
        assert_eq!(read, expected);
    }
}
