//! The I/O shell around `decide`: recovers state from the log, stamps events with the time,
//! ids and sequence numbers, appends them, and only then applies them to its state.
//!
//! # Layout
//! - this file: [`Coordinator`] (open, stage, settle, execute), [`Outcome`], [`ShellError`].
//! - `housekeeping`: what the shell owes the log after a change: the coordinator's key,
//!   session grants, sampling epochs, deadlines and lapses, dispatches.
//! - `reports`: a node's result report checked and turned into a completion, its refusal
//!   of a dispatch into a refusal; its heartbeat checked ([`HeartbeatGuard`]).
//! - `registration`: a node's signed registration checked at the door
//!   ([`check_registration`]).
//! - `payload`: submissions' payloads hashed and sealed to the storage key.
//! - `keys`: the storage key and the signing key, created on first start, mode 0600.
//! - `seal`: the log's hash chain recovered at start, and when a `LogSealed` is due.

mod general;
mod housekeeping;
mod indexing;
mod keys;
mod payload;
mod registration;
mod reports;
mod seal;
mod snapshots;

use prlx_events::log::{AnyWriter, LogError, LogUrl, Offset};
use prlx_events::seal::StorageKey;
use prlx_events::{Envelope, Event, Hash32, Header};
use prlx_projections::fold::FoldAtError;
use prlx_projections::snapshot::{catch_up, SnapshotError};
use prlx_projections::{CoordinatorState, Fold};
use uuid::Uuid;

use std::collections::BTreeMap;
use std::ops::Range;

use chrono::{DateTime, Utc};
use prlx_events::crypto::SessionKey;
use prlx_events::{NodeId, RequestId};
use rsa::RsaPrivateKey;

use crate::decide::{decide, Command, Rejection};
use crate::encoder::{Encoder, SideSender};
use crate::index::IndexWriter;

pub(crate) use self::keys::check_owner_only;
pub use self::keys::{load_or_create_key, load_or_create_signing_key, SIGNING_KEY_BITS};
pub use self::registration::{check_registration, RegistrationRefused};
pub use self::reports::{HeartbeatGuard, HeartbeatRefused, HEARTBEAT_SKEW_SECONDS};
pub use self::seal::{SealPolicy, SEAL_POLICY};
pub use self::snapshots::SnapshotPolicy;
pub use crate::encoder::AppendFuture;

#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("recovering state from the log: {0}")]
    Recover(#[from] SnapshotError),
    #[error("the coordinator's own events do not fold (a bug): {0}")]
    Fold(#[from] FoldAtError),
    #[error("the coordinator decided an event its own fold refuses (a bug): {0}")]
    OwnFold(prlx_projections::FoldError),
    #[error("storage key {path}: {reason}")]
    Key { path: String, reason: String },
    /// Every batch is appended whole, so this log lost records (or was cut) after `offset`;
    /// deciding on would only fail at the first record written.
    #[error("the log at offset {offset:?}: {reason}")]
    Unfinished { offset: Option<u64>, reason: String },
    #[error(transparent)]
    IndexStore(#[from] crate::index::IndexError),
    /// The index writer failed or fell behind: answering a retry without it could accept a
    /// duplicate.
    #[error("request index: {0}")]
    Index(String),
}

/// A command decided and applied, its events on their way to the log.
pub struct Staged {
    /// What the command came to; offsets are filled in by [`Coordinator::settle`].
    pub outcome: Outcome,
    /// `None` when there was nothing to append.
    pub durable: Option<AppendFuture>,
}

impl std::fmt::Debug for Staged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staged")
            .field("outcome", &self.outcome)
            .field("appending", &self.durable.is_some())
            .finish()
    }
}

impl Outcome {
    /// The outcome with the offsets its append got.
    pub fn at(self, range: Range<Offset>) -> Outcome {
        match self {
            Outcome::Appended(_) => Outcome::Appended(range),
            Outcome::Rejected { rejection, .. } => Outcome::Rejected {
                rejection,
                offset: Some(range.start),
            },
            other => other,
        }
    }
}

/// What a command came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Events appended at these offsets.
    Appended(std::ops::Range<Offset>),
    /// Nothing to do (a retry of something already recorded).
    Unchanged,
    /// A retry of a submission whose request has settled and left the state: nothing
    /// recorded; its id and price, as the request index holds them.
    EarlierRequest { request_id: RequestId, price: u64 },
    /// Refused; a refused submission is recorded at `offset`.
    Rejected {
        rejection: Rejection,
        offset: Option<Offset>,
    },
    /// Refused before `decide`, recording nothing: a node report that does not verify.
    Refused(String),
}

/// The coordinator's single writer.
#[derive(Debug)]
pub struct Coordinator {
    writer: std::sync::Arc<AnyWriter>,
    /// Encodes and appends what the coordinator stages, beside the actor.
    encoder: Encoder,
    fold: Fold<CoordinatorState>,
    producer: String,
    next_sequence: u64,
    key: StorageKey,
    /// Signs session grants, parsed once (a registration's grant is signed in the actor's
    /// turn); without it the coordinator takes requests but dispatches none.
    signing_key: Option<std::sync::Arc<prlx_events::signer::Signer>>,
    /// Its public half as published (PEM), encoded once: housekeeping compares it with the
    /// log's after every command, and encoding it each time showed in the profile.
    signing_pem: Option<String>,
    /// Session keys opened from the log, by node.
    sessions: BTreeMap<NodeId, (u64, SessionKey)>,
    /// Set when nodes may lack a session grant (at start, after a registration).
    grants_pending: bool,
    /// When housekeeping last looked for requests no node serves (`unservable`); the shell's
    /// own pacing, never recorded.
    unservable_scan: Option<DateTime<Utc>>,
    /// The open sampling epoch's seed, opened from the log on first use.
    seed: Option<(u64, Hash32)>,
    /// Set while staging a command whose append takes a side ([`Coordinator::stage_riding`]);
    /// where to send it, once its append is handed over.
    riding: bool,
    rider: Option<SideSender>,
    /// When the next `LogSealed` is due.
    seals: seal::SealClock,
    /// Set when a chain watcher credits deposits: then a deposit claimed by a caller
    /// (`Command::DepositCredits`, the HTTP endpoint) is refused, since nothing checks it.
    money_from_chain_only: bool,
    /// What submissions are signed under (its chain and CreditEscrow).
    consent: crate::consent::ConsentDomain,
    /// Where settled requests go when they leave the state (`None`: not kept; tests).
    index: Option<IndexWriter>,
    /// The event id of the log's first record (`None` while the log is empty): which log
    /// the index and the snapshots are of.
    log_id: Option<String>,
    /// The event id of the last record staged.
    last_staged: Option<Uuid>,
    /// Snapshots on a schedule, when the coordinator keeps a state directory.
    snapshots: Option<snapshots::Snapshots>,
    /// Where the snapshot it started from ended, if it started from one.
    restored_from: Option<Offset>,
    /// The general path's plans of open tasks.
    plans: general::Plans,
}

/// Why a node's result report was refused before it reached `decide` (it proves nothing
/// about the node, so it must not count against it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("unknown request {0}")]
    UnknownRequest(RequestId),
    #[error("unknown node {0}")]
    UnknownNode(NodeId),
    #[error("the node has no session for epoch {0}")]
    WrongEpoch(u64),
    /// The signature is not the node's over this task, attempt, PoE and sealed result: the
    /// report may be anyone's (a captured ciphertext resent, a signature moved from another
    /// report), so it is not held against the node, whatever its seal says.
    #[error("the signature does not verify against the node's key over this task, attempt, PoE and sealed result (replayed, moved or forged)")]
    BadSignature,
    /// A refusal must be signed by the node: one that is not may be anyone's.
    #[error("the refusal's signature does not verify against the node's key")]
    BadRefusalSignature,
}

/// The epoch of session grants. Key rotation (new epochs) is not implemented yet.
pub const SESSION_EPOCH: u64 = 1;

impl Coordinator {
    /// Opens the log as its only writer and folds it from the start.
    pub async fn open(
        url: &LogUrl,
        producer: impl Into<String>,
        key: StorageKey,
    ) -> Result<Self, ShellError> {
        Self::open_indexed(url, producer, key, None).await
    }

    /// As [`Coordinator::open`], with a state directory: settled requests that leave the state
    /// go to the request index there (made, caught up or rebuilt from the log as it is
    /// folded), the fold starts from the snapshot there when it is usable, and snapshots are
    /// taken on a schedule ([`SnapshotPolicy`]).
    pub async fn open_indexed(
        url: &LogUrl,
        producer: impl Into<String>,
        key: StorageKey,
        state_dir: Option<&std::path::Path>,
    ) -> Result<Self, ShellError> {
        let writer = std::sync::Arc::new(url.open_writer()?);
        let mut fold = Fold::<CoordinatorState>::default();
        let (index, log_id, snapshots, restored_from) = match state_dir {
            Some(dir) => {
                let o = indexing::open_and_fold(dir, &writer.reader(), &mut fold).await?;
                let snaps =
                    snapshots::Snapshots::new(dir.join(snapshots::FILE), SnapshotPolicy::default());
                (Some(o.index), o.log_id, Some(snaps), o.restored_from)
            }
            None => {
                catch_up(&mut fold, &writer.reader()).await?;
                (None, None, None, None)
            }
        };
        if let Some(reason) = fold.state.unfinished_batch() {
            return Err(ShellError::Unfinished {
                offset: fold.last_offset,
                reason,
            });
        }
        let chain = seal::chain_after(&writer.reader(), fold.last_offset).await?;
        let encoder = Encoder::start(writer.clone(), chain).map_err(|e| LogError::Io {
            op: "start the encoder thread",
            path: Default::default(),
            source: std::sync::Arc::new(e),
        })?;
        let producer = producer.into();
        let next_sequence = fold.producers.get(&producer).map_or(0, |s| s + 1);
        Ok(Self {
            writer,
            encoder,
            fold,
            producer,
            next_sequence,
            key,
            signing_key: None,
            signing_pem: None,
            sessions: BTreeMap::new(),
            grants_pending: true,
            unservable_scan: None,
            seed: None,
            riding: false,
            rider: None,
            seals: seal::SealClock::default(),
            money_from_chain_only: false,
            consent: crate::consent::ConsentDomain::default(),
            index,
            log_id,
            last_staged: None,
            snapshots,
            restored_from,
            plans: Default::default(),
        })
    }

    /// Enables dispatch: session grants are signed with `key`.
    /// Money only from the chain: from now on a caller's deposit claim (`DepositCredits`),
    /// stake move (`DepositStake`, `RequestUnstake`) or registration declaring stake is
    /// refused; the chain watcher records deposits and stake.
    pub fn money_from_chain_only(mut self, only: bool) -> Self {
        self.money_from_chain_only = only;
        self
    }

    /// Submissions are signed for `domain` (the deployment's chain id and CreditEscrow).
    pub fn with_consent_domain(mut self, domain: crate::consent::ConsentDomain) -> Self {
        self.consent = domain;
        self
    }

    /// The domain submissions are signed under.
    pub fn consent_domain(&self) -> crate::consent::ConsentDomain {
        self.consent
    }

    /// Why `command` is refused when money comes from the chain only: `(field, reason)`.
    fn chain_only_refusal(&self, command: &Command) -> Option<(&'static str, &'static str)> {
        use crate::settle::SettlementCommand as S;
        if !self.money_from_chain_only {
            return None;
        }
        match command {
            Command::DepositCredits { .. } => Some((
                "tx_ref",
                "this coordinator credits deposits from the chain only (CreditEscrow.deposit)",
            )),
            Command::Settlement(S::DepositStake { .. } | S::RequestUnstake { .. }) => Some((
                "amount",
                "stake moves on the chain only (NodeStaking.stake, requestUnstake, withdraw)",
            )),
            Command::RegisterNode(n) if n.stake != 0 => Some((
                "stake",
                "a node's stake is what NodeStaking holds for its id: register with 0 and bond on chain",
            )),
            _ => None,
        }
    }

    pub fn with_signing_key(mut self, key: RsaPrivateKey) -> Self {
        self.signing_pem = Some(prlx_events::crypto::public_key_pem(&key.to_public_key()));
        self.encoder.seal_with(&key);
        self.signing_key = Some(std::sync::Arc::new(prlx_events::signer::Signer::new(&key)));
        self
    }

    pub fn state(&self) -> &CoordinatorState {
        &self.state_fold().state
    }

    pub fn state_fold(&self) -> &Fold<CoordinatorState> {
        &self.fold
    }

    /// The request index's writer, when settled requests are kept in one.
    pub fn index(&self) -> Option<&IndexWriter> {
        self.index.as_ref()
    }

    pub fn writer(&self) -> &AnyWriter {
        &self.writer
    }

    /// Decides, appends, applies. A rejection is recorded too (without a request id).
    /// Decides, appends, waits until durable, and returns what the command came to.
    pub async fn execute(&mut self, command: Command) -> Result<Outcome, ShellError> {
        let staged = self.stage(command)?;
        self.settle(staged).await
    }

    /// Decides `command` and applies its events now; their append is started (ordered now)
    /// and completes when [`Staged::durable`] resolves. The caller must not report the outcome
    /// to anyone before that: until then it is not on the log.
    pub fn stage(&mut self, mut command: Command) -> Result<Staged, ShellError> {
        // One time for the decision and for its events' stamp, so what decide judged by the
        // time (a late report) is what the fold finds recorded.
        let now = self.stamp_time();
        match &mut command {
            Command::CompleteTask(c) => c.now = now,
            // A refusal at or after the deadline is late by the time it is recorded at.
            Command::RefuseDispatch(r) => r.now = now,
            // The deadline is counted from the time the dispatch is recorded at.
            Command::Dispatch(d) => d.now = now,
            // The signed time is judged against the time the heartbeat is recorded at.
            Command::Heartbeat { now: at, .. } => *at = now,
            // A delegation is alive or expired by the time the request is recorded at.
            Command::SubmitRequest(s) => s.now = now,
            // A delegation is revocable while it lives, by the time the revocation is recorded.
            Command::RevokeDelegation { now: at, .. } => *at = now,
            _ => {}
        }
        let registration = match &command {
            // Judged against the time it is recorded at, as the fold judges it.
            Command::RegisterNode(n) => {
                prlx_projections::coordinator::registration::registration_problem(n, now)
            }
            _ => None,
        };
        if let Some((field, why)) = registration {
            return Ok(Staged {
                outcome: Outcome::Rejected {
                    rejection: Rejection::new(
                        prlx_events::event::RejectionCode::MalformedRequest,
                        Some(field),
                        why,
                    ),
                    offset: None,
                },
                durable: None,
            });
        }
        if let Some((field, why)) = self.chain_only_refusal(&command) {
            let rejection = Rejection::new(
                prlx_events::event::RejectionCode::MalformedRequest,
                Some(field),
                why,
            );
            return Ok(Staged {
                outcome: Outcome::Rejected {
                    rejection,
                    offset: None,
                },
                durable: None,
            });
        }
        if let Some(index) = &self.index {
            indexing::look_up_earlier(index, &self.fold.state, &mut command)?;
        }
        let audit = match &command {
            Command::SubmitRequest(s) => Some((s.idempotency_key.clone(), s.source.clone())),
            _ => None,
        };
        let earlier = match &command {
            Command::SubmitRequest(s) => s.earlier.as_ref().map(|e| Outcome::EarlierRequest {
                request_id: e.request_id,
                price: e.price,
            }),
            _ => None,
        };
        match decide(&self.fold.state, command) {
            Ok(events) if events.is_empty() => Ok(Staged {
                outcome: earlier.unwrap_or(Outcome::Unchanged),
                durable: None,
            }),
            Ok(events) => Ok(Staged {
                outcome: Outcome::Appended(0..0),
                durable: Some(self.stage_events(events, now)?),
            }),
            // Refused submissions are part of the intake audit trail; other refusals (a
            // heartbeat from an unknown node, say) would only let anyone fill the log.
            Err(rejection) => match audit {
                Some((key, source)) => {
                    let durable = self.stage_events(vec![rejection.to_event(key, source)], now)?;
                    Ok(Staged {
                        outcome: Outcome::Rejected {
                            rejection,
                            offset: None,
                        },
                        durable: Some(durable),
                    })
                }
                None => Ok(Staged {
                    outcome: Outcome::Rejected {
                        rejection,
                        offset: None,
                    },
                    durable: None,
                }),
            },
        }
    }

    /// As [`Coordinator::stage`], for a command whose append carries a side computed from its
    /// outcome (Kafka's consume-transform-produce): the sender takes it, and must be used at
    /// once (the encoding thread waits for it). `None` when nothing was appended: append the
    /// side alone then ([`Coordinator::append_side`]).
    pub fn stage_riding(
        &mut self,
        command: Command,
    ) -> Result<(Staged, Option<SideSender>), ShellError> {
        self.riding = true;
        let staged = self.stage(command);
        self.riding = false;
        Ok((staged?, self.rider.take()))
    }

    /// Appends a side alone (records for other topics, consumer offsets), in order with the
    /// batches staged before it.
    pub fn append_side(&self, side: prlx_events::log::Side) -> AppendFuture {
        self.encoder.append_side(side)
    }

    /// Waits for a staged command's events to be durable and fills in their offsets.
    pub async fn settle(&mut self, staged: Staged) -> Result<Outcome, ShellError> {
        match staged.durable {
            None => Ok(staged.outcome),
            Some(durable) => {
                let range = durable.await?;
                self.durable_through(&range);
                Ok(staged.outcome.at(range))
            }
        }
    }

    /// Records that an append finished: the fold's offset catches up.
    pub fn durable_through(&mut self, range: &Range<Offset>) {
        if range.end > range.start {
            self.fold.advance(range.end - 1);
        }
        if let Some(snaps) = &mut self.snapshots {
            snaps.durable(range, self.index.as_ref());
        }
    }

    /// Which log a snapshot taken now is of, and its last record.
    fn origin(&self) -> Option<prlx_projections::snapshot::Origin> {
        Some(prlx_projections::snapshot::Origin {
            log_id: self.log_id.clone()?,
            last_event_id: self.last_staged?.to_string(),
        })
    }

    /// Snapshots from now on follow `policy` (when the coordinator keeps a state directory).
    pub fn with_snapshot_policy(mut self, policy: SnapshotPolicy) -> Self {
        if let Some(s) = &mut self.snapshots {
            s.set_policy(policy);
        }
        self
    }

    /// Takes a snapshot if one is due by time alone (housekeeping calls it on every tick).
    pub(super) fn snapshot_tick(&mut self) {
        if !self.snapshots.as_ref().is_some_and(|s| s.due()) {
            return;
        }
        let origin = self.origin();
        if let Some(snaps) = &mut self.snapshots {
            snaps.take_if_due(&self.fold, origin);
        }
    }

    /// The last offset of the snapshot this coordinator started from, if it started from one
    /// (and folded only the log after it).
    pub fn restored_from(&self) -> Option<Offset> {
        self.restored_from
    }

    /// Waits until a snapshot being saved is on disk.
    pub async fn snapshot_saved(&mut self) {
        if let Some(s) = &mut self.snapshots {
            s.settled().await;
        }
    }

    /// The time the next events are stamped with. Log time never goes back: a decision made
    /// at `now` is stamped at or after it, and at or after everything before it, so the fold's
    /// time checks (deadlines, lapses, epoch ends) hold even if the wall clock steps back.
    fn stamp_time(&self) -> DateTime<Utc> {
        // The shell's clock: recorded in the events it stamps, never read by decide or a fold.
        let clock = Utc::now();
        self.fold.state.log_time.map_or(clock, |t| t.max(clock))
    }

    /// Stamps `events` with `now`, applies them to the state and starts their append.
    fn stage_events(
        &mut self,
        events: Vec<Event>,
        now: DateTime<Utc>,
    ) -> Result<AppendFuture, ShellError> {
        let events = self.seal_if_due(events, now);
        let correlation = random_uuid();
        let mut staged = Vec::with_capacity(events.len());
        for event in events {
            let env = Envelope::new(
                Header {
                    event_id: random_uuid(),
                    recorded_at: now,
                    producer: self.producer.clone(),
                    sequence: self.next_sequence,
                    correlation_id: Some(correlation),
                    causation_id: None,
                    prev: None,
                },
                event,
            );
            self.fold.apply_own(&env).map_err(ShellError::OwnFold)?;
            self.next_sequence += 1;
            staged.push(env);
        }
        if let Some(index) = &self.index {
            if self.log_id.is_none() {
                // The log was empty: this batch starts it, and names it.
                if let Some(first) = staged.first() {
                    let id = first.header.event_id.to_string();
                    index.index().set_log_id(&id)?;
                    self.log_id = Some(id);
                }
            }
            let settled = staged.iter().filter_map(|e| indexing::settles(&e.event));
            index.send(indexing::summaries(&self.fold.state, settled, 0));
        }
        if let Some(last) = staged.last() {
            self.last_staged = Some(last.header.event_id);
        }
        if let Some(snaps) = &mut self.snapshots {
            snaps.staged(staged.len());
        }
        self.snapshot_tick();
        if std::mem::take(&mut self.riding) {
            let (append, side) = self.encoder.append_riding(staged);
            self.rider = Some(side);
            return Ok(append);
        }
        Ok(self.encoder.append(staged))
    }
}

/// A v4 UUID from the thread's CSPRNG: `Uuid::new_v4` asks the kernel (a syscall) per id,
/// and the coordinator stamps several ids per request.
fn random_uuid() -> Uuid {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid()
}
