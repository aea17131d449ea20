//! The shell's side of the request index (`crate::index`): it opens the index, fills in what
//! the start-up fold settles beyond it, hands every settlement it decides to the index writer,
//! and looks up a retired request's idempotency key before `decide`.

use std::path::Path;
use std::time::Duration;

use prlx_events::log::LogReader;
use prlx_events::{Envelope, Event, RequestId};
use prlx_projections::coordinator::{CoordinatorState, RequestSummary};
use prlx_projections::snapshot::catch_up_observed;
use prlx_projections::Fold;

use super::ShellError;
use crate::decide::Command;
use crate::index::{IndexWriter, RequestIndex};

/// The longest the actor waits for the index writer to reach the settlements the state has
/// retired before it answers a retry from the index; past it the coordinator stops rather
/// than risk accepting a duplicate.
pub const INDEX_WAIT: Duration = Duration::from_secs(30);

/// The request whose work `event` settles, if it settles one.
pub(super) fn settles(event: &Event) -> Option<RequestId> {
    match event {
        Event::ResultReturned(r) => Some(r.request_id),
        Event::RequestFailed(r) => Some(r.request_id),
        _ => None,
    }
}

/// The summaries of `ids` (settled in a batch the state has folded whole), those the index
/// does not hold yet.
pub(super) fn summaries(
    state: &CoordinatorState,
    ids: impl IntoIterator<Item = RequestId>,
    after: u64,
) -> Vec<RequestSummary> {
    ids.into_iter()
        .filter_map(|id| state.summary(id))
        .filter(|s| s.settled_seq.is_some_and(|seq| seq > after))
        .collect()
}

/// What [`open_and_fold`] opened.
pub(super) struct Opened {
    pub index: IndexWriter,
    /// The log's identity: the event id of its first record (`None` while it is empty).
    pub log_id: Option<String>,
    /// The last offset of the snapshot the fold started from, if it started from one.
    pub restored_from: Option<prlx_events::log::Offset>,
}

/// Opens the index in `dir` for the log `reader` reads and starts its writer; starts `fold`
/// from the snapshot in `dir` when it is usable (`snapshots::usable`), and folds the rest of
/// the log into it, handing the writer every settlement beyond what the index holds (all of
/// them for a new, damaged or foreign index: the rebuild by scan).
pub(super) async fn open_and_fold<R: LogReader>(
    dir: &Path,
    reader: &R,
    fold: &mut Fold<CoordinatorState>,
) -> Result<Opened, ShellError> {
    let index = RequestIndex::open(dir)?;
    let first = first_event_id(reader).await?;
    let meta = index.meta()?;
    let snapshot = dir.join(super::snapshots::FILE);
    if meta.log_id != first || (first.is_none() && meta.settled_through > 0) {
        if meta.log_id.is_some() || meta.settled_through > 0 {
            tracing::warn!(path = %index.path().display(), was = ?meta.log_id, log = ?first,
                "the request index was built from another log; rebuilding it");
        }
        index.clear(first.as_deref())?;
        // Whatever snapshot is beside it is of that log too.
        let _ = std::fs::remove_file(&snapshot);
    }
    let after = index.meta()?.settled_through;
    let mut restored_from = None;
    let (restored, ahead) =
        super::snapshots::usable(&snapshot, reader, first.as_deref(), after).await;
    if let Some(restored) = restored {
        tracing::info!(path = %snapshot.display(), offset = ?restored.last_offset,
            "starting from the coordinator snapshot");
        *fold = restored;
        restored_from = fold.last_offset;
    }
    let writer = IndexWriter::start(std::sync::Arc::new(index), after).map_err(|e| {
        crate::index::IndexError::Io {
            op: "start the index writer",
            path: dir.display().to_string(),
            source: e,
        }
    })?;
    let mut pending: Vec<RequestId> = Vec::new();
    let mut rebuilt = 0usize;
    let mut seen = |fold: &Fold<CoordinatorState>, env: &prlx_events::Envelope| {
        if let Some(id) = settles(&env.event) {
            pending.push(id);
        }
        // A settlement's summary is whole once its decision's batch is (the charge or the
        // refund follows the settling record in the same batch).
        if !pending.is_empty() && fold.state.unfinished_batch().is_none() {
            let s = summaries(&fold.state, pending.drain(..), after);
            rebuilt += s.len();
            writer.send(s);
        }
    };
    // The records read while the snapshot was parsed, then the rest of the log.
    ahead.feed_into(fold, &mut seen)?;
    catch_up_observed(fold, reader, &mut seen).await?;
    writer.sync().await.map_err(ShellError::Index)?;
    // The index now holds every settlement the log does. It may claim more (summaries
    // written ahead of a log tail a crash lost): those requests are open again and will
    // settle under new numbers, so what it holds is what the log has settled, no more.
    let settled = fold.state.settled_total();
    if after > settled {
        writer.index().set_settled_through(settled)?;
        writer.restart_at(settled);
    }
    if rebuilt > 0 {
        tracing::info!(settlements = rebuilt, path = %dir.display(),
            "request index caught up with the log");
    }
    Ok(Opened {
        index: writer,
        log_id: first,
        restored_from,
    })
}

/// The event id of the log's first record: the log's identity for the index.
async fn first_event_id<R: LogReader>(reader: &R) -> Result<Option<String>, ShellError> {
    let Some(first) = reader.read(0, 1).await?.into_iter().next() else {
        return Ok(None);
    };
    let env = Envelope::decode(&first.payload).map_err(|source| {
        ShellError::Recover(prlx_projections::snapshot::SnapshotError::Decode {
            offset: first.offset,
            source,
        })
    })?;
    Ok(Some(env.header.event_id.to_string()))
}

/// Before `decide`: a submission whose idempotency key is not in the state may be a retry of
/// a request that has left it; the index says, once it holds every retired settlement.
pub(super) fn look_up_earlier(
    index: &IndexWriter,
    state: &CoordinatorState,
    command: &mut Command,
) -> Result<(), ShellError> {
    let Command::SubmitRequest(s) = command else {
        return Ok(());
    };
    let Some(key) = &s.idempotency_key else {
        return Ok(());
    };
    if state.request_for_key(&s.credit_account, key).is_some() || state.retired_through() == 0 {
        return Ok(());
    }
    index
        .wait_for_blocking(state.retired_through(), INDEX_WAIT)
        .map_err(ShellError::Index)?;
    s.earlier = index.index().by_key(&s.credit_account, key)?.map(Box::new);
    Ok(())
}
