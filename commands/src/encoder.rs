//! Encoding of the coordinator's events, on a thread of its own.
//!
//! Why: the actor is the coordinator's one sequential path (decide, apply, answer), and on
//! the file log it is what limits throughput; turning each envelope into JSON was a fifth or so
//! of its time. The encoding does not feed back into any decision, so it can run beside the
//! actor: the actor hands over the typed envelopes, this thread encodes them and starts their
//! append. Batches stay in order because one thread takes them first in, first out and
//! [`LogWriter::append`] orders a batch when it is called.
//!
//! Being the one place that sees every record's bytes in log order, this thread also keeps the
//! log's hash chain (`docs/adr/08-hash-chain.md`): it links each envelope to the record before
//! it (`prev`) and fills in the coordinator's seals (`LogSealed`) with the chain value and its
//! signature. An append that fails leaves the chain ahead of the log, so every job after it
//! fails too (the shell stops and a restart recovers the chain from the log).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, OnceLock};
use std::thread;

use prlx_events::chain::Chain;
use prlx_events::crypto::seal_statement;
use prlx_events::event::Sealed;
use prlx_events::log::{AnyWriter, LogError, Side};
use prlx_events::signer::Signer;
use prlx_events::{Envelope, Event};
use rsa::RsaPrivateKey;
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
    /// Signs the seals; set once the shell has its signing key.
    sealer: Arc<OnceLock<Signer>>,
}

impl Encoder {
    /// Starts the thread that encodes batches for `writer` and appends them, linking each
    /// record to the one before it from `chain` on (the chain of the log as it is now).
    pub fn start(writer: Arc<AnyWriter>, mut chain: Chain) -> std::io::Result<Self> {
        let (queue, jobs) = std_mpsc::channel::<Job>();
        let sealer = Arc::new(OnceLock::<Signer>::new());
        let key = sealer.clone();
        let failed = Arc::new(AtomicBool::new(false));
        thread::Builder::new()
            .name("prlx-encoder".into())
            .spawn(move || {
                for job in jobs {
                    let encoded = chain_batch(&mut chain, job.batch, key.get());
                    let side = match job.side {
                        JobSide::Now(side) => side,
                        // Sent in the same turn of the actor; a dropped sender rides nothing.
                        JobSide::Later(side) => side.blocking_recv().unwrap_or_default(),
                    };
                    let append: AppendFuture = if failed.load(Ordering::Acquire) {
                        Box::pin(async {
                            Err(LogError::Poisoned(
                                "an earlier append failed, the chain is ahead of the log".into(),
                            ))
                        })
                    } else {
                        let append = writer.append_with_side(encoded, side);
                        let failed = failed.clone();
                        Box::pin(async move {
                            let landed = append.await;
                            if landed.is_err() {
                                failed.store(true, Ordering::Release);
                            }
                            landed
                        })
                    };
                    // A caller that went away no longer needs the answer; the append stands.
                    let _ = job.started.send(append);
                }
            })?;
        Ok(Self { queue, sealer })
    }

    /// The key that signs the seals from now on (the coordinator's signing key; its public
    /// half is on the log). Only the first call counts.
    pub fn seal_with(&self, key: &RsaPrivateKey) {
        if self.sealer.get().is_none() {
            let _ = self.sealer.set(Signer::new(key));
        }
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

/// Links and encodes `batch` after `chain`, signing its seals with `key`; moves the chain on.
/// Public for the encoder's benchmark (`benches/encode.rs`), which times exactly this.
pub fn chain_batch(chain: &mut Chain, batch: Vec<Envelope>, key: Option<&Signer>) -> Vec<Vec<u8>> {
    batch
        .into_iter()
        .map(|mut env| {
            let head = chain.head();
            env.header.prev = Some(head);
            if let (Event::LogSealed(seal), Some(key)) = (&mut env.event, key) {
                seal.head = head;
                // The seal's PSS salt: the shell's randomness, not replayed (a seal is checked).
                let salt = aws_lc_rs::rand::SystemRandom::new();
                seal.signature = Sealed(key.sign(&seal_statement(head), &salt));
            }
            let bytes = env.encode();
            chain.push(&bytes);
            bytes
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prlx_events::chain::Links;
    use prlx_events::event::{LogSealed, NodeHeartbeat};
    use prlx_events::log::{LogReader, LogUrl};
    use prlx_events::{Hash32, NodeId};

    use crate::testkit::envelopes;

    /// A fresh file log and an encoder on it, chaining from the start.
    fn encoder_on_a_new_log() -> (tempfile::TempDir, Arc<AnyWriter>, Encoder) {
        let dir = tempfile::tempdir().unwrap();
        let url = LogUrl::parse(&format!("file://{}", dir.path().display())).unwrap();
        let writer = Arc::new(url.open_writer().unwrap());
        let encoder = Encoder::start(writer.clone(), Chain::after(None)).unwrap();
        (dir, writer, encoder)
    }

    /// Batches started one after another, awaited in any order, land in the order they were
    /// handed over, each whole and at consecutive offsets, and read back as the same events.
    #[tokio::test]
    async fn batches_land_in_the_order_they_were_handed_over() {
        let (_dir, writer, encoder) = encoder_on_a_new_log();
        let heartbeat = |i: u8| {
            Event::from(NodeHeartbeat {
                node_id: NodeId(Hash32([i; 32])),
                at: None,
                signature: None,
            })
        };
        // Batch i holds 1 + i % 3 events.
        let batches: Vec<Vec<Envelope>> = (0..60u8)
            .map(|i| envelopes((0..=i % 3).map(|_| heartbeat(i))))
            .collect();
        let expected: Vec<Event> = batches.iter().flatten().map(|e| e.event.clone()).collect();
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
        let read = writer.reader().read(0, 1_000).await.unwrap();
        let mut links = Links::from_start();
        let mut events = Vec::new();
        for r in &read {
            let env = Envelope::decode(&r.payload).unwrap();
            // Each record links to the one before it, byte for byte as on the log.
            assert_eq!(
                links.check(&r.payload, env.header.prev),
                Ok(true),
                "offset {}",
                r.offset
            );
            events.push(env.event);
        }
        assert_eq!(events, expected);
    }

    /// A seal handed over as a placeholder lands with the chain value it follows and the
    /// coordinator's signature over it; the chain goes on through it.
    #[tokio::test]
    async fn seals_are_filled_in_with_the_head_and_signed() {
        let (_dir, writer, encoder) = encoder_on_a_new_log();
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        encoder.seal_with(&key);
        let placeholder = Event::from(LogSealed {
            head: Hash32([0; 32]),
            signature: Sealed(Vec::new()),
        });
        let node = Event::from(NodeHeartbeat {
            node_id: NodeId(Hash32([1; 32])),
            at: None,
            signature: None,
        });
        encoder
            .append(envelopes([node.clone(), node.clone(), placeholder, node]))
            .await
            .unwrap();
        let read = writer.reader().read(0, 10).await.unwrap();
        let seal = Envelope::decode(&read[2].payload).unwrap();
        let Event::LogSealed(s) = &seal.event else {
            panic!("{seal:?}")
        };
        assert_eq!(s.head, prlx_events::chain::link_to(&read[1].payload));
        assert_eq!(seal.header.prev, Some(s.head));
        let public = key.to_public_key();
        assert!(prlx_events::crypto::verify(
            &public,
            &seal_statement(s.head),
            &s.signature.0
        ));
        assert!(!prlx_events::crypto::verify(
            &public,
            &seal_statement(Hash32([1; 32])),
            &s.signature.0
        ));
        let after = Envelope::decode(&read[3].payload).unwrap();
        assert_eq!(
            after.header.prev,
            Some(prlx_events::chain::link_to(&read[2].payload))
        );
    }
}
