//! Settled requests leave the coordinator's state after `FINISHED_WINDOW` settlements; the
//! request index answers for them after that: their summaries, and their idempotency keys (a
//! retry at any age gets its request, never a second one). The index is rebuilt from the log
//! when it is missing, damaged or another log's.
//!
//! The coordinator starts from its snapshot (taken on a schedule) when it is of this log, and
//! folds to the state a full fold gives.
//!
//! The requests settle the cheap way, through the shell's own housekeeping: no node serves
//! their model, so once the catalog's `node_timeout_seconds` (1 s here) has passed they fail
//! and are refunded in full (`testkit::settled`).

use std::path::Path;
use std::time::Duration;

use prlx_commands::decide::Command;
use prlx_commands::shell::{Coordinator, Outcome, ShellError, SnapshotPolicy};
use prlx_commands::testkit::fixtures::{account, catalog, model};
use prlx_commands::testkit::settled::{self, keyed_submission};
use prlx_events::event::RejectionCode;
use prlx_events::log::{LogError, LogUrl};
use prlx_events::seal::StorageKey;
use prlx_events::{Hash32, RequestId};
use prlx_projections::coordinator::{RequestStatus, FINISHED_WINDOW};
use prlx_projections::snapshot::catch_up;
use prlx_projections::{CoordinatorState, Fold};

/// More than the window by this many: the first `OVER` requests leave the state.
const OVER: usize = 40;

fn url(dir: &Path) -> LogUrl {
    LogUrl::parse(&format!("file://{}", dir.join("log").display())).unwrap()
}

/// Housekeeping runs only with a signing key (it grants sessions first).
fn signing_key() -> rsa::RsaPrivateKey {
    static KEY: std::sync::OnceLock<rsa::RsaPrivateKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap())
        .clone()
}

/// Opens the coordinator on `dir`'s log and index. One dropped just before still holds the
/// log's lock for a moment (its encoder thread lets go after the drop): tried again.
async fn open(dir: &Path) -> Coordinator {
    for _ in 0..500 {
        let opened = Coordinator::open_indexed(
            &url(dir),
            "coordinator/1",
            StorageKey::from_bytes([7; 32]),
            Some(&dir.join("index")),
        )
        .await;
        match opened {
            Err(ShellError::Log(LogError::Locked { .. })) => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            opened => {
                return opened
                    .unwrap()
                    .with_signing_key(signing_key())
                    .with_snapshot_policy(SnapshotPolicy {
                        every_records: 5_000,
                        every: Duration::from_secs(3600),
                    })
            }
        }
    }
    panic!("the log stayed locked")
}

/// A log with `FINISHED_WINDOW + OVER` requests accepted and settled (failed: no node).
async fn settled_log(dir: &Path) -> Coordinator {
    let mut coord = open(dir).await;
    settled::settle(&mut coord, FINISHED_WINDOW + OVER).await;
    coord
}

/// The index synced, and no snapshot left half written (a test then moves the files).
async fn synced(coord: &mut Coordinator) {
    coord.index().unwrap().sync().await.unwrap();
    coord.snapshot_saved().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settled_requests_leave_the_state_and_the_index_answers_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut coord = settled_log(dir.path()).await;
    synced(&mut coord).await;
    let state = coord.state();
    // Then the state keeps only the window of settled requests
    assert_eq!(state.requests.len(), FINISHED_WINDOW);
    assert!(!state.requests.contains_key(&RequestId(0)));
    assert!(state.requests.contains_key(&RequestId(OVER as u64)));
    assert!(state.request_for_key(&account(), "key-0").is_none());
    // And the index holds the ones that left, as a reader sees them
    let index = coord.index().unwrap().index().clone();
    for id in 0..OVER as u64 {
        let s = index.get(RequestId(id)).unwrap().expect("in the index");
        assert_eq!(s.request_id, RequestId(id));
        assert_eq!(s.status, RequestStatus::Failed);
        assert_eq!((s.reserved, s.charged), (0, 0), "refunded in full");
        assert_eq!(s.stage, "done");
        assert_eq!(s.settled_seq, Some(id + 1));
    }
    // When request 0 is submitted again under its key
    let end = coord.state_fold().next_offset();
    let again = coord.execute(keyed_submission(0, 16)).await.unwrap();
    // Then it is the same request, and nothing is recorded
    assert!(
        matches!(
            again,
            Outcome::EarlierRequest {
                request_id: RequestId(0),
                ..
            }
        ),
        "{again:?}"
    );
    assert_eq!(coord.state_fold().next_offset(), end);
    // And the same key for something else is refused, naming the field that differs
    match coord.execute(keyed_submission(0, 17)).await.unwrap() {
        Outcome::Rejected { rejection, .. } => {
            assert_eq!(rejection.code, RejectionCode::IdempotencyConflict);
            assert!(
                rejection
                    .message
                    .contains("request 0 with another max_tokens"),
                "{}",
                rejection.message
            );
        }
        other => panic!("{other:?}"),
    }
    // And a key in the window is still answered from the state
    let last = (FINISHED_WINDOW + OVER - 1) as u64;
    assert!(matches!(
        coord
            .execute(keyed_submission(last as usize, 16))
            .await
            .unwrap(),
        Outcome::Unchanged
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_damaged_or_foreign_index_is_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut coord = settled_log(dir.path()).await;
    synced(&mut coord).await;
    let expected = coord
        .index()
        .unwrap()
        .index()
        .get(RequestId(3))
        .unwrap()
        .unwrap();
    drop(coord);
    let store = dir.path().join("index").join("requests.redb");
    let cases: [(&str, &dyn Fn()); 3] = [
        ("missing", &|| {
            std::fs::remove_dir_all(dir.path().join("index")).unwrap()
        }),
        ("damaged", &|| {
            std::fs::write(&store, b"not a store at all").unwrap()
        }),
        ("truncated", &|| {
            let bytes = std::fs::read(&store).unwrap();
            std::fs::write(&store, &bytes[..bytes.len() / 3]).unwrap()
        }),
    ];
    for (what, damage) in cases {
        damage();
        // When the coordinator starts again
        let coord = open(dir.path()).await;
        // Then the index holds every request that left the state, as before
        let index = coord.index().unwrap().index().clone();
        assert_eq!(
            index.get(RequestId(3)).unwrap().as_ref(),
            Some(&expected),
            "{what}"
        );
        for id in 0..OVER as u64 {
            assert!(index.get(RequestId(id)).unwrap().is_some(), "{what}: {id}");
        }
        assert!(
            index.meta().unwrap().settled_through >= OVER as u64,
            "{what}"
        );
        drop(coord);
    }
    // And an index of another log is emptied and rebuilt: a fresh log in the same place
    std::fs::remove_dir_all(dir.path().join("log")).unwrap();
    let mut coord = open(dir.path()).await;
    let index = coord.index().unwrap().index().clone();
    assert!(index.get(RequestId(3)).unwrap().is_none(), "another log's");
    // (the new log's identity is taken from its first record)
    let mut cat = catalog(vec![model("chat", Hash32([1; 32]))]);
    cat.node_timeout_seconds = 1;
    coord.execute(Command::PublishCatalog(cat)).await.unwrap();
    assert!(index.meta().unwrap().log_id.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_starts_from_the_snapshot_and_folds_to_the_state_of_a_full_fold() {
    let dir = tempfile::tempdir().unwrap();
    // Given a coordinator that took snapshots every 5,000 records on the way
    let mut coord = settled_log(dir.path()).await;
    coord.snapshot_saved().await;
    let records = coord.state_fold().next_offset();
    drop(coord);
    let snapshot = dir.path().join("index").join("coordinator.snapshot");
    let size = std::fs::metadata(&snapshot)
        .expect("a snapshot was saved")
        .len();
    // When it starts again
    let coord = open(dir.path()).await;
    // Then it started from the snapshot, past the start of the log
    let from = coord.restored_from().expect("started from the snapshot");
    assert!(from >= 5_000 && from < records, "{from} of {records}");
    // And its state is the one a full fold of the log gives
    let mut full = Fold::<CoordinatorState>::default();
    catch_up(&mut full, &url(dir.path()).open_reader().unwrap())
        .await
        .unwrap();
    assert_eq!(coord.state_fold().state, full.state);
    assert_eq!(coord.state_fold().last_offset, full.last_offset);
    // And the snapshot holds the window, not history: under 1 KiB per settled request in it
    assert!(
        size < (FINISHED_WINDOW as u64) * 1024,
        "{size} bytes for a window of {FINISHED_WINDOW}"
    );
    drop(coord);
    // And a snapshot of another log is not used: the same directory over a fresh log
    std::fs::remove_dir_all(dir.path().join("log")).unwrap();
    let coord = open(dir.path()).await;
    assert_eq!(coord.restored_from(), None);
    assert!(!snapshot.exists(), "removed with the other log's index");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_ahead_of_the_log_is_wound_back_to_what_the_log_settled() {
    let dir = tempfile::tempdir().unwrap();
    let mut coord = settled_log(dir.path()).await;
    synced(&mut coord).await;
    let settled = coord.state().settled_total();
    // Given summaries written for settlements a crash then cut from the log's tail
    let index = coord.index().unwrap().index().clone();
    let mut ahead = index.get(RequestId(0)).unwrap().unwrap();
    ahead.settled_seq = Some(settled + 100);
    index.write(&[ahead], true).unwrap();
    assert_eq!(index.meta().unwrap().settled_through, settled + 100);
    drop((coord, index));
    // When the coordinator starts again
    let coord = open(dir.path()).await;
    // Then the index claims only what the log settled, so the next settlements (numbered
    // from there) are waited for before a retry trusts it
    let writer = coord.index().unwrap();
    assert_eq!(writer.index().meta().unwrap().settled_through, settled);
    assert_eq!(writer.progress().written, settled);
}
