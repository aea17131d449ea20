//! [`IndexWriter`]: writes settled requests' summaries to the [`RequestIndex`] on a thread of
//! its own, so the actor only hands them over.
//!
//! Why a thread: a commit is a few tens of microseconds of B-tree work (and an fsync when
//! synced); the actor is the coordinator's one sequential path. The thread takes everything
//! queued as one transaction, so under load one commit carries many settlements.

use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use prlx_projections::coordinator::RequestSummary;
use tokio::sync::{oneshot, watch};

use super::store::{IndexError, RequestIndex};

/// How often the writer syncs the store to disk while settlements come in; what a crash
/// loses of the index since is written again by the next start's fold.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);

enum Job {
    Write(Vec<RequestSummary>),
    /// Sync everything written so far, then answer.
    Sync(oneshot::Sender<Result<(), String>>),
}

/// The handle of the writing thread; the thread ends when every handle is dropped.
#[derive(Debug, Clone)]
pub struct IndexWriter {
    queue: std_mpsc::Sender<Job>,
    index: Arc<RequestIndex>,
    /// The highest settlement sequence committed (readable by readers), and whether the
    /// writer has failed (then it stays where it was). Shared with the thread, which moves it.
    progress: Arc<watch::Sender<Progress>>,
}

/// How far the writer has come.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    pub written: u64,
    /// The first error that stopped it; it writes nothing after one.
    pub failed: Option<String>,
}

impl IndexWriter {
    /// Starts the thread; `written` is what the index already holds (its `settled_through`).
    pub fn start(index: Arc<RequestIndex>, written: u64) -> std::io::Result<Self> {
        let (queue, jobs) = std_mpsc::channel::<Job>();
        let progress = Arc::new(watch::Sender::new(Progress {
            written,
            failed: None,
        }));
        let (store, sender) = (index.clone(), progress.clone());
        thread::Builder::new()
            .name("prlx-index".into())
            .spawn(move || run(&store, &jobs, &sender))?;
        Ok(Self {
            queue,
            index,
            progress,
        })
    }

    pub fn index(&self) -> &Arc<RequestIndex> {
        &self.index
    }

    /// Queues `summaries` (settled requests, in settlement order).
    pub fn send(&self, summaries: Vec<RequestSummary>) {
        if !summaries.is_empty() {
            // The thread only ends when every handle is gone.
            let _ = self.queue.send(Job::Write(summaries));
        }
    }

    /// Syncs everything queued before this call to disk.
    pub async fn sync(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.queue
            .send(Job::Sync(tx))
            .map_err(|_| "the index writer has stopped".to_owned())?;
        rx.await
            .map_err(|_| "the index writer has stopped".to_owned())?
    }

    /// Sets what it has written to `seq` exactly, down if need be (see
    /// [`RequestIndex::set_settled_through`]); only before anything else is sent.
    pub fn restart_at(&self, seq: u64) {
        self.progress.send_modify(|p| p.written = seq);
    }

    pub fn progress(&self) -> Progress {
        self.progress.borrow().clone()
    }

    /// Waits until every settlement up to `seq` is committed, for at most `timeout`; the
    /// writer's error if it failed, or a timeout.
    pub async fn wait_for(&self, seq: u64, timeout: Duration) -> Result<(), String> {
        let mut rx = self.progress.subscribe();
        let reached = tokio::time::timeout(
            timeout,
            rx.wait_for(|p| p.written >= seq || p.failed.is_some()),
        )
        .await;
        match reached {
            Ok(Ok(p)) => match &p.failed {
                None => Ok(()),
                Some(e) => Err(e.clone()),
            },
            Ok(Err(_)) => Err("the index writer has stopped".into()),
            Err(_) => Err(behind(seq, timeout)),
        }
    }

    /// As [`Self::wait_for`], from a thread that is not async (the actor's stage).
    pub fn wait_for_blocking(&self, seq: u64, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let p = self.progress();
            if let Some(e) = p.failed {
                return Err(e);
            }
            if p.written >= seq {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(behind(seq, timeout));
            }
            thread::sleep(Duration::from_micros(200));
        }
    }
}

fn behind(seq: u64, timeout: Duration) -> String {
    format!("the request index is behind: settlement {seq} not written after {timeout:?}")
}

fn run(index: &RequestIndex, jobs: &std_mpsc::Receiver<Job>, progress: &watch::Sender<Progress>) {
    let mut last_sync = Instant::now();
    let mut unsynced = false;
    loop {
        // Wait for work, but not past the next sync.
        let first = if unsynced {
            match jobs.recv_timeout(SYNC_EVERY.saturating_sub(last_sync.elapsed())) {
                Ok(job) => Some(job),
                Err(std_mpsc::RecvTimeoutError::Timeout) => None,
                Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match jobs.recv() {
                Ok(job) => Some(job),
                Err(_) => break,
            }
        };
        let mut batch = Vec::new();
        let mut waiters = Vec::new();
        for job in first.into_iter().chain(jobs.try_iter()) {
            match job {
                Job::Write(mut s) => batch.append(&mut s),
                Job::Sync(tx) => waiters.push(tx),
            }
        }
        let sync = !waiters.is_empty() || last_sync.elapsed() >= SYNC_EVERY;
        if progress.borrow().failed.is_some() {
            for w in waiters {
                let _ = w.send(Err(progress.borrow().failed.clone().unwrap_or_default()));
            }
            continue;
        }
        let through = batch.iter().filter_map(|s| s.settled_seq).max();
        match commit(index, &batch, sync) {
            Ok(()) => {
                unsynced = !sync;
                if sync {
                    last_sync = Instant::now();
                }
                if let Some(t) = through {
                    progress.send_modify(|p| p.written = p.written.max(t));
                }
                for w in waiters {
                    let _ = w.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "writing the request index failed; it is no longer written");
                let why = e.to_string();
                progress.send_modify(|p| p.failed = Some(why.clone()));
                for w in waiters {
                    let _ = w.send(Err(why.clone()));
                }
            }
        }
    }
    // The last handle is gone: whatever is written is synced before the thread ends.
    if unsynced {
        let _ = commit(index, &[], true);
    }
}

fn commit(index: &RequestIndex, batch: &[RequestSummary], sync: bool) -> Result<(), IndexError> {
    if batch.is_empty() && !sync {
        return Ok(());
    }
    index.write(batch, sync)
}
