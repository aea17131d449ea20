//! The coordinator's snapshots: its fold saved on a schedule beside the request index, so a
//! restart folds only the tail of the log.
//!
//! The state holds what decisions need (open requests, the window of settled ones, nodes,
//! accounts, queues, open epochs), so a snapshot's size does not grow with history. It is
//! taken between commands: the fold is cloned at once, with the offset its last staged record
//! will have (one writer: staged records land in order), and saved once those records are
//! durable and the request index is synced, so the index always holds every settlement the
//! snapshot's state has retired. It is saved on a thread of its own, written aside and renamed.
//!
//! At start a snapshot is trusted only if it is of this log (its first record's event id), its
//! last record is still there with the same event id, and the index covers what it retired;
//! otherwise the fold starts from the log's beginning, as it did before snapshots.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use prlx_events::log::{LogReader, Offset};
use prlx_events::Envelope;
use prlx_projections::restart::{load_reading_ahead, ReadAhead};
use prlx_projections::snapshot::{Origin, Snapshot};
use prlx_projections::{CoordinatorState, Fold};

use crate::index::IndexWriter;

/// The snapshot's file in the coordinator's state directory.
pub const FILE: &str = "coordinator.snapshot";

/// When a snapshot is taken: after this many records since the last, or this long with any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotPolicy {
    pub every_records: u64,
    pub every: Duration,
}

impl Default for SnapshotPolicy {
    /// 200,000 records (a few seconds at the file log's peak, ~20k requests) or a minute.
    fn default() -> Self {
        Self {
            every_records: 200_000,
            every: Duration::from_secs(60),
        }
    }
}

/// The schedule and the snapshot on its way to disk.
///
/// Offsets are learnt from the appends, not computed: a Kafka log skips offsets (its
/// transaction markers). The schedule counts records instead: staged, and durable as each
/// append reports its range, in order.
#[derive(Debug)]
pub(super) struct Snapshots {
    pub(super) path: PathBuf,
    policy: SnapshotPolicy,
    /// Records staged and records durable since the coordinator opened.
    staged: u64,
    durable: u64,
    /// `staged` when the last snapshot was taken.
    last_staged: u64,
    last_at: Instant,
    /// Cloned after `staged` records, waiting for them to be durable.
    pending: Option<(u64, Snapshot<CoordinatorState>)>,
    saving: Option<tokio::task::JoinHandle<()>>,
}

impl Snapshots {
    pub(super) fn new(path: PathBuf, policy: SnapshotPolicy) -> Self {
        Self {
            path,
            policy,
            staged: 0,
            durable: 0,
            last_staged: 0,
            last_at: Instant::now(),
            pending: None,
            saving: None,
        }
    }

    pub(super) fn set_policy(&mut self, policy: SnapshotPolicy) {
        self.policy = policy;
    }

    /// `n` more records staged.
    pub(super) fn staged(&mut self, n: usize) {
        self.staged += n as u64;
    }

    pub(super) fn due(&self) -> bool {
        let grown = self.staged - self.last_staged;
        self.pending.is_none()
            && self.saving.as_ref().is_none_or(|t| t.is_finished())
            && grown > 0
            && (grown >= self.policy.every_records || self.last_at.elapsed() >= self.policy.every)
    }

    /// Takes one now if due: `fold` as staged so far (whole batches), of the log `origin`
    /// names (its last staged record's event id).
    pub(super) fn take_if_due(&mut self, fold: &Fold<CoordinatorState>, origin: Option<Origin>) {
        if !self.due() {
            return;
        }
        let Some(origin) = origin else { return };
        let mut snap = Snapshot::of(fold);
        snap.origin = Some(origin);
        self.pending = Some((self.staged, snap));
        self.last_staged = self.staged;
        self.last_at = Instant::now();
    }

    /// An append landed at `range`: once the pending snapshot's records are all durable, it
    /// is saved (its last record is the last of this range), after the index is synced, on a
    /// task of its own.
    pub(super) fn durable(&mut self, range: &std::ops::Range<Offset>, index: Option<&IndexWriter>) {
        self.durable += range.end - range.start;
        match &self.pending {
            Some((at, _)) if *at == self.durable && range.end > range.start => {}
            // Appends report whole batches and the snapshot was cloned between two, so the
            // count lands on it exactly; if not, where its last record is is unknown.
            Some((at, _)) if *at < self.durable => {
                tracing::warn!("snapshot dropped: its last record's offset is unknown");
                self.pending = None;
                return;
            }
            _ => return,
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let (_, mut snap) = self.pending.take().expect("checked");
        snap.last_offset = Some(range.end - 1);
        snap.fold.last_offset = snap.last_offset;
        let path = self.path.clone();
        let index = index.cloned();
        self.saving = Some(tokio::spawn(async move {
            if let Some(index) = index {
                if let Err(e) = index.sync().await {
                    tracing::warn!(error = %e, "snapshot not saved: the request index did not sync");
                    return;
                }
            }
            let started = Instant::now();
            let saved = tokio::task::spawn_blocking(move || {
                snap.save(&path).map(|()| (path, snap.last_offset))
            })
            .await;
            match saved {
                Ok(Ok((path, offset))) => tracing::info!(
                    path = %path.display(), offset = ?offset, took = ?started.elapsed(),
                    "coordinator snapshot saved"
                ),
                Ok(Err(e)) => tracing::warn!(error = %e, "coordinator snapshot not saved"),
                Err(e) => tracing::warn!(error = %e, "coordinator snapshot not saved"),
            }
        }));
    }

    /// Waits for a save in progress (for tests and a clean stop).
    pub(super) async fn settled(&mut self) {
        if let Some(t) = self.saving.take() {
            let _ = t.await;
        }
    }
}

/// The snapshot at `path` as a fold to start from, if it is usable for the log `reader`
/// reads (see the module doc) and the index has synced through `index_through` settlements;
/// `None` with the reason logged otherwise. With it, the records of the tail read while it
/// was parsed (`ReadAhead::feed_into` feeds them where they belong, or not at all).
pub(super) async fn usable<R: LogReader>(
    path: &Path,
    reader: &R,
    log_id: Option<&str>,
    index_through: u64,
) -> (Option<Fold<CoordinatorState>>, ReadAhead) {
    let (snap, ahead) = match load_reading_ahead::<CoordinatorState, R>(path, reader).await {
        Ok((Some(s), ahead)) => (s, ahead),
        Ok((None, ahead)) => return (None, ahead),
        Err(e) => {
            tracing::warn!(error = %e, "coordinator snapshot unreadable; folding the whole log");
            return (None, ReadAhead::default());
        }
    };
    let why_not = async {
        let origin = snap.origin.as_ref().ok_or("it names no log")?;
        if Some(origin.log_id.as_str()) != log_id {
            return Err("it is of another log");
        }
        let last = snap.last_offset.ok_or("it is of an empty log")?;
        let event_id = match ahead.record(last) {
            Some(env) => env.header.event_id,
            None => {
                let record = reader
                    .read(last, 1)
                    .await
                    .map_err(|_| "its last record does not read")?;
                let record = record
                    .into_iter()
                    .find(|r| r.offset == last)
                    .ok_or("the log ends before its last record")?;
                Envelope::decode(&record.payload)
                    .map_err(|_| "its last record does not decode")?
                    .header
                    .event_id
            }
        };
        if event_id.to_string() != origin.last_event_id {
            return Err("its last record is not the log's");
        }
        if index_through < snap.fold.state.retired_through() {
            return Err("the request index is behind it");
        }
        Ok(())
    }
    .await;
    match why_not {
        Ok(()) => (Some(snap.fold), ahead),
        Err(why) => {
            tracing::warn!(path = %path.display(), reason = why,
                "coordinator snapshot not used; folding the whole log");
            (None, ahead)
        }
    }
}
