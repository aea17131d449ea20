//! The ParalleliX auditor: replays the event log with the coordinator's own folds and reports
//! the first record that the log and the fold disagree on.
//!
//! What a replay verifies: every record's checksum and batch framing (the log backend), every
//! envelope and payload (decoding, upcasting), duplicate deliveries (dropped by producer
//! sequence), and every invariant the coordinator projection enforces: deposits credited once,
//! dense request ids, reservations within available credit, charges and refunds within what is
//! reserved, known nodes and requests, and every scheduling receipt re-derived from the state at
//! its offset. Settlement is part of the coordinator state, so its fold runs here too.
//!
//! And the evidence on the log (`docs/adr/08-hash-chain.md`): every linked record links to the
//! record before it (the hash chain; removing, inserting or reordering a record breaks the link
//! after it however consistently the file is rewritten), every `LogSealed` signs the chain
//! with the published coordinator key, and the signatures the coordinator acted on verify:
//! heartbeats, results and refusals by the node's registered key, session grants by the
//! coordinator's.
//!
//! The binary (`src/main.rs`) is a thin shell over [`verify`]: argument parsing, the progress
//! line and the exit code ([`Report::exit_code`]).
//!
//! # Layout
//! - [`verify`]: the replay itself, with [`VerifyOptions`].
//! - [`Report`], [`Divergence`], [`DivergenceKind`]: what it found, as text or JSON.
//! - [`VerifyError`]: why it could not finish reading (exit code 2), as opposed to a divergence
//!   (exit code 1).
//! - `evidence`: the signatures and seals, verified on a pool of threads beside the fold.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use prlx_events::chain::{link_to, Links};
use prlx_events::log::{LogError, LogReader, LogUrl, Offset, Record};
use prlx_events::{Envelope, Hash32};
use prlx_projections::snapshot::{catch_up, Snapshot, SnapshotError};
use prlx_projections::{CoordinatorState, Fold};
use serde::Serialize;

pub mod chain;
mod consents;
mod evidence;
mod keys;

pub use evidence::EvidenceCounts;

/// Records asked of the backend per read.
const READ_BATCH: usize = 4096;

/// What to replay and which snapshot checks to run.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// The log: `file://DIR` or `kafka://HOST:PORT/TOPIC`.
    pub log: String,
    /// Save a snapshot of the verified fold here, and check that snapshots restore to the
    /// same state as the full replay (one taken here at the end, one taken half way).
    pub snapshot: Option<PathBuf>,
    /// Start from this snapshot instead of offset 0 and verify only the tail after it.
    pub from_snapshot: Option<PathBuf>,
}

/// Why the replay could not be finished: the log (or a snapshot) could not be read at all.
/// Not a finding about the log's content; the binary exits 2.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot read the log: {0}")]
    Log(#[from] LogError),
    #[error("snapshot: {0}")]
    Snapshot(#[from] SnapshotError),
    #[error(
        "snapshot {0} is missing or was made by another format or fold version; \
         verify from the start instead"
    )]
    UnusableSnapshot(PathBuf),
    #[error(
        "snapshot {} covers the log up to offset {snapshot_end}, but this log ends at \
         {log_end}: it was made from another log",
        path.display()
    )]
    SnapshotAhead {
        path: PathBuf,
        snapshot_end: Offset,
        log_end: Offset,
    },
}

/// What kind of disagreement was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DivergenceKind {
    /// The bytes on the log are damaged: a checksum, framing or numbering error.
    CorruptRecord,
    /// The record is intact but is not a valid envelope or payload.
    Undecodable,
    /// The event does not follow from the state the log built so far (the fold refused it).
    FoldRefused,
    /// The record does not link to the record before it: one was removed, inserted or moved
    /// here, or the one before was changed.
    ChainBroken,
    /// A signature on the record does not verify (a heartbeat, result, refusal, grant or
    /// seal), or a seal does not cover the chain it follows.
    BadEvidence,
    /// A snapshot restored plus the tail differs from the full replay.
    SnapshotMismatch,
    /// A record about the chain (a deposit) that the chain does not confirm (`--chain`).
    ChainMismatch,
}

/// The first place where the log and the recomputation disagree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Divergence {
    pub offset: Offset,
    pub kind: DivergenceKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// The payload field that differs (`node_id`, `payouts[2].amount`), when the fold names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

/// Where a `--from-snapshot` replay started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resumed {
    pub snapshot: PathBuf,
    /// The first offset verified in this run; everything before it was taken on trust from
    /// the snapshot.
    pub from_offset: Offset,
}

/// The `--snapshot` checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotCheck {
    pub saved_to: PathBuf,
    /// The saved snapshot, loaded back and caught up, equals the full replay.
    pub restored_equals_full: bool,
    /// A snapshot taken half way (after this offset), restored and folded over the tail,
    /// equals the full replay. `None` when the log was too short to cut.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cut_after_offset: Option<Offset>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cut_plus_tail_equals_full: Option<bool>,
}

/// Everything a replay found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// True only when every record decoded and folded and every snapshot check held.
    pub ok: bool,
    pub log: String,
    /// Records verified in this run (duplicates included).
    pub records: u64,
    /// One past the last offset on the log when the replay started.
    pub end_offset: Offset,
    pub duplicates_dropped: u64,
    pub events_by_type: BTreeMap<&'static str, u64>,
    /// Per account: `(balance, reserved)` in minor units, at the last verified record.
    pub accounts: BTreeMap<String, (u64, u64)>,
    pub requests: usize,
    pub nodes: usize,
    /// The first record linked into the hash chain; records before it (written before the
    /// chain) are not covered by it. `None`: no record is linked.
    pub chain_from: Option<Offset>,
    /// SHA-256 of the last record read. A log cut short after its last seal verifies as a
    /// shorter log; comparing this with the head the coordinator has (or an earlier audit
    /// kept) is what catches it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain_head: Option<prlx_events::Hash32>,
    pub evidence: EvidenceCounts,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed: Option<Resumed>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub divergence: Option<Divergence>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotCheck>,
    /// The chain check (`--chain`): every credit against the chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<chain::ChainAudit>,
}

impl Report {
    /// 0 when everything matches, 1 on a divergence. (2, the log could not be read, is a
    /// [`VerifyError`], not a report.)
    pub fn exit_code(&self) -> u8 {
        if self.ok {
            0
        } else {
            1
        }
    }

    /// The human-readable report.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "log {}", self.log);
        if let Some(r) = &self.resumed {
            let _ = writeln!(
                s,
                "resumed from snapshot {} at offset {} (earlier records taken on trust)",
                r.snapshot.display(),
                r.from_offset
            );
        }
        let _ = writeln!(
            s,
            "replayed {} records (log end {}), {} duplicate deliveries dropped",
            self.records, self.end_offset, self.duplicates_dropped
        );
        for (t, n) in &self.events_by_type {
            let _ = writeln!(s, "  {t:<26} {n}");
        }
        let _ = writeln!(s, "requests {}, nodes {}", self.requests, self.nodes);
        let count = |t: &str| self.events_by_type.get(t).copied().unwrap_or(0);
        if count("SubtasksPlanned") > 0 {
            // The fold checked each: a plan's graph, ids and prices; a release after every
            // dep returned, naming their results; an aggregate naming every sub-task's.
            let _ = writeln!(
                s,
                "general path: {} task graphs checked, {} dependent sub-tasks released after their deps, {} aggregates matched to their sub-tasks' validated results",
                count("SubtasksPlanned"),
                count("SubtaskReleased"),
                count("AggregateReturned")
            );
        }
        let e = &self.evidence;
        let chain = match self.chain_from {
            Some(from) => format!("linked from offset {from}"),
            None => "no record linked".into(),
        };
        let sealed = match e.last_seal {
            Some(at) => format!("{} seals, the last at offset {at}", e.seals),
            None => "no seal".into(),
        };
        let _ = writeln!(
            s,
            "hash chain {chain}, {sealed}; {} signatures verified ({} more records carried one of them: a batch's consent, a delegation), {} heartbeats and {} registrations unsigned, {} results signed without their ciphertext (older records)",
            e.signatures_verified, e.signatures_reused, e.unverified_heartbeats, e.unverified_registrations, e.v1_results
        );
        if let Some(head) = &self.chain_head {
            let _ = writeln!(s, "chain head {head}");
        }
        for (a, (balance, reserved)) in &self.accounts {
            let _ = writeln!(s, "  account {a}: balance {balance}, reserved {reserved}");
        }
        if let Some(c) = &self.snapshot {
            let _ = writeln!(
                s,
                "snapshot saved to {}; restored + tail equals full replay: {}",
                c.saved_to.display(),
                c.restored_equals_full
            );
            if let (Some(at), Some(eq)) = (c.cut_after_offset, c.cut_plus_tail_equals_full) {
                let _ = writeln!(
                    s,
                    "snapshot after offset {at} + tail equals full replay: {eq}"
                );
            }
        }
        if let Some(c) = &self.chain {
            let _ = writeln!(
                s,
                "chain {}: {} deposits, {} stake changes, {} payout roots, {} usage settlements and {} stream terms checked, {} not confirmed by the chain",
                c.rpc_url,
                c.deposits_checked,
                c.stake_changes_checked,
                c.roots_checked,
                c.usage_settlements_checked,
                c.streams_checked,
                c.divergences.len()
            );
            for d in &c.divergences {
                let field = d.field.as_deref().unwrap_or("-");
                let _ = writeln!(
                    s,
                    "CHAIN DIVERGENCE at offset {} (field {field}): {}",
                    d.offset, d.message
                );
            }
        }
        match &self.divergence {
            None if self.ok && self.chain.is_some() => {
                let _ = writeln!(
                    s,
                    "OK: every record decodes and folds, and the chain agrees"
                );
            }
            None if self.ok => {
                let _ = writeln!(s, "OK: every record decodes and folds");
            }
            None => {}
            Some(d) => {
                let mut what = Vec::new();
                what.extend(d.event_type.as_deref());
                let field = d.field.as_deref().map(|f| format!("field {f}"));
                what.extend(field.as_deref());
                let what = if what.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", what.join(", "))
                };
                let _ = writeln!(s, "DIVERGENCE at offset {}{what}: {}", d.offset, d.message);
            }
        }
        s
    }
}

/// Progress of a replay, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub start: Offset,
    /// The next offset to verify.
    pub at: Offset,
    pub end: Offset,
}

/// Replays the log named in `options` from the start (or from `options.from_snapshot`) and
/// reports the first divergence. `progress` is called after each read batch.
pub async fn verify(
    options: &VerifyOptions,
    mut progress: impl FnMut(Progress),
) -> Result<Report, VerifyError> {
    let reader = LogUrl::parse(&options.log)?.open_reader()?;
    let end_offset = reader.end().await?;
    let (fold, resumed) = match &options.from_snapshot {
        None => (Fold::<CoordinatorState>::default(), None),
        Some(path) => {
            let fold = Snapshot::<CoordinatorState>::load(path)?
                .ok_or_else(|| VerifyError::UnusableSnapshot(path.clone()))?;
            let from_offset = fold.next_offset();
            if from_offset > end_offset {
                return Err(VerifyError::SnapshotAhead {
                    path: path.clone(),
                    snapshot_end: from_offset,
                    log_end: end_offset,
                });
            }
            (
                fold,
                Some(Resumed {
                    snapshot: path.clone(),
                    from_offset,
                }),
            )
        }
    };
    let start = fold.next_offset();
    // The chain is checked from the record before the first one verified.
    let mut links = match fold.last_offset {
        None => Links::from_start(),
        Some(last) => match reader.read(last, 1).await?.first() {
            Some(r) => Links::after(
                &r.payload,
                Envelope::decode(&r.payload)
                    .ok()
                    .and_then(|e| e.header.prev),
            ),
            None => Links::from_start(),
        },
    };
    let mut chain_from = None;
    // Half way through, keep a copy of the fold for the snapshot + tail check.
    let cut_at = (options.snapshot.is_some() && end_offset > start + 1)
        .then(|| start + (end_offset - start) / 2);

    // Two stages: this thread reads, checks and decodes batches (each batch's decoding and
    // hashing split over two threads, `decode_and_link`); the fold thread folds them in
    // order. Decoding is about half of a replay and folding a fifth, so on two cores the
    // stages overlap; the order of records, and so the first divergence reported, is the same
    // as a one-thread replay's.
    let (to_fold, batches) = std::sync::mpsc::sync_channel::<Stage>(4);
    let folder = std::thread::spawn(move || fold_stage(fold, cut_at, batches));
    let mut next = start;
    let mut read_max = READ_BATCH;
    loop {
        progress(Progress {
            start,
            at: next,
            end: end_offset,
        });
        let batch = match reader.read(next, read_max).await {
            Ok(b) => b,
            // Damage further on: verify the records before it first, so that the report
            // names the first divergence whichever kind it is.
            Err(LogError::Corrupt { offset, .. })
                if offset > next && ((offset - next) as usize) < read_max =>
            {
                read_max = (offset - next) as usize;
                continue;
            }
            Err(LogError::Corrupt {
                offset,
                file,
                position,
                reason,
            }) => {
                let _ = to_fold.send(Stage::Stop(Divergence {
                    offset,
                    kind: DivergenceKind::CorruptRecord,
                    event_type: None,
                    field: None,
                    message: format!("{reason} ({}, byte {position})", file.display()),
                }));
                break;
            }
            Err(e) => {
                drop(to_fold);
                let _ = folder.join();
                return Err(e.into());
            }
        };
        let Some(last) = batch.last() else { break };
        next = last.offset + 1;
        let mut decoded = Vec::with_capacity(batch.len());
        let mut stop = None;
        for (r, (env, link)) in batch.iter().zip(decode_and_link(&batch)) {
            match env {
                Ok(env) => match links.check_linked(link, env.header.prev) {
                    Ok(linked) => {
                        if linked && chain_from.is_none() {
                            chain_from = Some(r.offset);
                        }
                        decoded.push((r.offset, env));
                    }
                    Err(e) => {
                        stop = Some(Divergence {
                            offset: r.offset,
                            kind: DivergenceKind::ChainBroken,
                            event_type: Some(env.event.type_name().to_owned()),
                            field: Some("prev".into()),
                            message: format!("the record at offset {} {e}", r.offset),
                        });
                        break;
                    }
                },
                Err(e) => {
                    stop = Some(Divergence {
                        offset: r.offset,
                        kind: DivergenceKind::Undecodable,
                        event_type: declared_type(&r.payload),
                        field: None,
                        message: e.to_string(),
                    });
                    break;
                }
            }
        }
        // A send fails only when the fold thread stopped at a divergence: nothing after it
        // matters.
        if to_fold.send(Stage::Fold(decoded)).is_err() {
            break;
        }
        if let Some(d) = stop {
            let _ = to_fold.send(Stage::Stop(d));
            break;
        }
    }
    drop(to_fold);
    let Folded {
        fold,
        cut,
        records,
        by_type,
        mut divergence,
        evidence,
    } = folder.join().expect("the fold thread does not panic");
    progress(Progress {
        start,
        at: fold.next_offset(),
        end: end_offset,
    });

    let mut snapshot_check = None;
    if let (Some(path), None) = (&options.snapshot, &divergence) {
        snapshot_check = Some(check_snapshots(path, &fold, cut, &reader).await?);
    }
    if let Some(c) = &snapshot_check {
        if !c.restored_equals_full || c.cut_plus_tail_equals_full == Some(false) {
            divergence = Some(Divergence {
                offset: c.cut_after_offset.unwrap_or(fold.next_offset()),
                kind: DivergenceKind::SnapshotMismatch,
                event_type: None,
                field: None,
                message: "a snapshot restored and caught up differs from the full replay".into(),
            });
        }
    }

    let st = &fold.state;
    Ok(Report {
        ok: divergence.is_none(),
        log: options.log.clone(),
        records,
        end_offset,
        duplicates_dropped: fold.duplicates_dropped,
        events_by_type: by_type,
        accounts: st
            .accounts
            .iter()
            .map(|(k, a)| (k.0.clone(), (a.balance, a.reserved)))
            .collect(),
        requests: st.requests.len(),
        nodes: st.nodes.len(),
        chain_from,
        chain_head: links.head(),
        evidence,
        resumed,
        divergence,
        snapshot: snapshot_check,
        chain: None,
    })
}

/// Saves `full` to `path`, and checks that restoring it, and restoring `cut` (a fold taken
/// half way, through the same snapshot codec), each caught up to the end, equal `full`.
async fn check_snapshots<R: LogReader>(
    path: &std::path::Path,
    full: &Fold<CoordinatorState>,
    cut: Option<Fold<CoordinatorState>>,
    reader: &R,
) -> Result<SnapshotCheck, VerifyError> {
    Snapshot::of(full).save(path)?;
    let mut restored = Snapshot::<CoordinatorState>::load(path)?
        .ok_or_else(|| VerifyError::UnusableSnapshot(path.to_owned()))?;
    catch_up(&mut restored, reader).await?;
    let (cut_after_offset, cut_plus_tail_equals_full) = match cut {
        None => (None, None),
        Some(cut) => {
            let bytes = serde_json::to_vec(&Snapshot::of(&cut)).expect("state serializes");
            let snap: Snapshot<CoordinatorState> =
                serde_json::from_slice(&bytes).map_err(|source| SnapshotError::Malformed {
                    path: "(in memory)".into(),
                    source,
                })?;
            let mut from_cut = snap.fold;
            catch_up(&mut from_cut, reader).await?;
            (cut.last_offset, Some(from_cut == *full))
        }
    };
    Ok(SnapshotCheck {
        saved_to: path.to_owned(),
        restored_equals_full: restored == *full,
        cut_after_offset,
        cut_plus_tail_equals_full,
    })
}

/// Each record of `batch` decoded, with its link (SHA-256, for the hash chain), in order:
/// the second half on a thread of its own. Decoding and hashing are most of the reading
/// stage's work and need nothing from the records before (only the link check, which the
/// caller makes in order, does); the reading stage was the longest of the replay's stages.
fn decode_and_link(batch: &[Record]) -> Vec<(Result<Envelope, prlx_events::DecodeError>, Hash32)> {
    let one = |records: &[Record]| -> Vec<_> {
        records
            .iter()
            .map(|r| (Envelope::decode(&r.payload), link_to(&r.payload)))
            .collect()
    };
    if batch.len() < PARALLEL_DECODE_MIN {
        return one(batch);
    }
    let (first, second) = batch.split_at(batch.len() / 2);
    std::thread::scope(|s| {
        let later = s.spawn(|| one(second));
        let mut all = one(first);
        all.extend(later.join().expect("decoding does not panic"));
        all
    })
}

/// Below this many records a batch is decoded on the reading thread alone (a thread's start,
/// ~20 µs, would cost more than it saves). Low enough that the golden log of the chain tests
/// (96 records, `tests/tests/chain.rs`) is split, so their breaks fall in either half.
const PARALLEL_DECODE_MIN: usize = 64;

/// What the reading stage hands the fold stage, in log order.
enum Stage {
    /// Decoded records.
    Fold(Vec<(Offset, Envelope)>),
    /// The reading stage found a divergence here; the fold stage reports it unless it found
    /// an earlier one.
    Stop(Divergence),
}

/// What the fold stage ends with.
struct Folded {
    fold: Fold<CoordinatorState>,
    /// A copy of the fold half way, for the snapshot + tail check.
    cut: Option<Fold<CoordinatorState>>,
    records: u64,
    by_type: BTreeMap<&'static str, u64>,
    divergence: Option<Divergence>,
    evidence: EvidenceCounts,
}

/// Folds what the reading stage sends, in order, until it stops or a record is refused.
fn fold_stage(
    mut fold: Fold<CoordinatorState>,
    cut_at: Option<Offset>,
    batches: std::sync::mpsc::Receiver<Stage>,
) -> Folded {
    let mut cut = None;
    let mut records = 0;
    let mut by_type = BTreeMap::new();
    let mut divergence = None;
    let mut evidence = evidence::Evidence::start();
    let mut keys = keys::AcceptedKeys::default();
    let mut last = None;
    'stages: for stage in batches {
        let batch = match stage {
            Stage::Fold(batch) => batch,
            Stage::Stop(d) => {
                divergence = Some(d);
                break;
            }
        };
        for (offset, env) in batch {
            if let (Some(at), None) = (cut_at, &cut) {
                if offset >= at && fold.last_offset.is_some() {
                    cut = Some(fold.clone());
                }
            }
            evidence.take(&fold.state, offset, &env);
            if let Err(e) = fold.feed(offset, &env) {
                divergence = Some(Divergence {
                    offset,
                    kind: DivergenceKind::FoldRefused,
                    event_type: Some(e.error.event_type.to_owned()),
                    field: e.error.field,
                    message: e.error.reason,
                });
                break 'stages;
            }
            // After the fold, which names a key used twice inside the state's window itself.
            if let Some(message) = keys.accepted_again(offset, &env) {
                divergence = Some(Divergence {
                    offset,
                    kind: DivergenceKind::FoldRefused,
                    event_type: Some(env.event.type_name().to_owned()),
                    field: Some("idempotency_key".to_owned()),
                    message,
                });
                break 'stages;
            }
            records += 1;
            *by_type.entry(env.event.type_name()).or_default() += 1;
            last = Some((offset, env.event.type_name()));
        }
    }
    // Each batch is appended whole, so a log that ends inside a decision lost its last records.
    if let (None, Some((offset, event_type)), Some(message)) =
        (&divergence, last, fold.state.unfinished_batch())
    {
        divergence = Some(Divergence {
            offset,
            kind: DivergenceKind::FoldRefused,
            event_type: Some(event_type.to_owned()),
            field: None,
            message,
        });
    }
    // A signature that does not verify before the first other divergence is the first.
    let (finding, evidence) = evidence.finish(divergence.as_ref().map(|d| d.offset));
    if let Some(f) = finding {
        divergence = Some(Divergence {
            offset: f.offset,
            kind: DivergenceKind::BadEvidence,
            event_type: Some(f.event_type.to_owned()),
            field: Some(f.field.to_owned()),
            message: f.message,
        });
    }
    Folded {
        fold,
        cut,
        records,
        by_type,
        divergence,
        evidence,
    }
}

/// The `type` an undecodable record claims, if its JSON gets that far.
fn declared_type(payload: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Typed {
        #[serde(rename = "type")]
        event_type: String,
    }
    serde_json::from_slice::<Typed>(payload)
        .ok()
        .map(|t| t.event_type)
}
