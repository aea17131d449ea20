//! The coordinator state's records: accounts, requests, nodes, sampling epochs, and the
//! defaults that apply while the catalog sets none. Plain data: the fold in `apply` moves them.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use prlx_events::event::*;
use prlx_events::{AccountId, Hash32, NodeId, RequestId};
use serde::{Deserialize, Serialize};

use crate::coordinator::lifecycle::{Assignment, RequestPhase, RequestStatus, ValidationOutcome};
use crate::scheduler::queue::QueueEntry;

/// Reputation weight in percent when the catalog sets none (1.0).
pub const DEFAULT_REPUTATION_WEIGHT_PCT: u32 = 100;
/// Dispatch attempts before a request fails, when the catalog sets none.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Heartbeat silence after which a node lapses, when no catalog is published.
pub const DEFAULT_NODE_TIMEOUT_SECONDS: u32 = 30;
/// How long after acceptance a request may still wait in the queue, when no catalog is
/// published (the catalog's own default is the same).
pub const DEFAULT_QUEUE_TIMEOUT_SECONDS: u32 = 600;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Credited minus charged, in minor units.
    pub balance: u64,
    /// Held for requests in flight; `balance - reserved` is what new requests may use.
    pub reserved: u64,
}

impl Account {
    pub fn available(&self) -> u64 {
        self.balance - self.reserved
    }
}

/// A delegation the log holds requests under, and what they hold of its limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegationUse {
    pub delegate: String,
    pub spending_limit: u64,
    /// Unix seconds.
    pub expires_at: u64,
    /// Reserved and charged under it, less what was refunded.
    pub spent: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestView {
    pub account: AccountId,
    pub model: String,
    pub hardware_tier: u8,
    pub priority: Priority,
    pub price: u64,
    pub reserved: u64,
    pub charged: u64,
    /// Where its work stands (see `lifecycle`); moved only by `RequestView::enter`.
    pub(crate) phase: RequestPhase,
    /// Settled or not: `phase.status()`, kept as a field for the readers that match on it.
    /// Written only with the phase.
    pub status: RequestStatus,
    pub accepted_at: DateTime<Utc>,
    pub deadline_seconds: u32,
    pub payload_hash: Hash32,
    /// The payload sealed to the coordinator's storage key, kept for (re-)dispatch.
    pub sealed_payload: Sealed,
    /// Dispatches so far; the next one is attempt number `attempts`.
    pub attempts: u32,
    /// Nodes that already had this request: a re-dispatch goes elsewhere.
    pub tried: BTreeSet<NodeId>,
    /// Where it waits in the queue, while it waits: `phase.queue_entry()`, kept as a field
    /// for its readers. Written only with the phase.
    pub queued: Option<QueueEntry>,
    /// The node working on it, while one is: `phase.assignment()`, kept as a field for its
    /// readers. Written only with the phase.
    pub running: Option<Assignment>,
    pub max_tokens: u32,
    /// The client's RSA public key (PEM): the result is sealed to it.
    pub client_pubkey: String,
    /// The result as returned to the client, once validated.
    pub result: Option<ReturnedResult>,
    /// Dispatches that failed (expired, commitment rejected) before a verified result; the
    /// request fails after `max_attempts` of them.
    pub failures: u32,
    /// Verified results so far: one, or up to three when the request was sampled.
    pub results: Vec<VerifiedResult>,
    /// Set when sampled: replicas must come from the primary's execution class, and run
    /// the same model file.
    pub replica_class: Option<ReplicaClass>,
    /// The nodes that declined it (`DispatchRefused`), with the attempt each declined: a
    /// second node of the same model file failing it, a repeat being a duplicate.
    #[serde(default)]
    pub refused: BTreeMap<NodeId, u32>,
    /// The EIP-712 hash of the delegation it was submitted under, if a delegate signed it:
    /// its refunds give the delegation's limit back.
    #[serde(default)]
    pub delegation: Option<Hash32>,
    /// The Idempotency-Key it was accepted under: it leaves the state with the request.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Its place among settlements, once settled (see `finished`).
    #[serde(default)]
    pub settled_seq: Option<u64>,
    /// A general-path sub-task: which task it belongs to, and its place there.
    #[serde(default)]
    pub subtask_of: Option<SubtaskOf>,
    /// A general-path task: its class and, once planned, its sub-tasks.
    #[serde(default)]
    pub plan: Option<TaskPlan>,
}

/// A sub-task's place in its task's graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskOf {
    pub task: RequestId,
    pub index: u32,
    /// What a node runs (`prlx-workloads` `SubtaskKind` name).
    pub kind: String,
    /// The indexes of the sub-tasks its input is built from.
    pub deps: Vec<u32>,
}

/// A general-path task's graph as the log recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskPlan {
    pub class: String,
    pub digest: Hash32,
    /// Its sub-tasks' request ids, by index; empty until `SubtasksPlanned`.
    pub subtasks: Vec<RequestId>,
}

/// What a replica must share with the primary to be compared with it: the execution class,
/// and the SHA-256 of the model file it reported for the request's model (`None`: reported
/// none; such nodes are peers of each other only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaClass {
    pub class: ExecutionClass,
    #[serde(default)]
    pub model_sha256: Option<Hash32>,
}

impl ReplicaClass {
    /// The class of `node` for `model`.
    pub fn of(node: &NodeView, model: &str) -> Self {
        Self {
            class: node.execution_class.clone(),
            model_sha256: node.model_hashes.get(model).copied(),
        }
    }

    /// Whether `node` is of this class for `model`.
    pub fn admits(&self, node: &NodeView, model: &str) -> bool {
        node.execution_class == self.class
            && node.model_hashes.get(model) == self.model_sha256.as_ref()
    }
}

impl RequestView {
    /// Where its work stands.
    pub fn phase(&self) -> &RequestPhase {
        &self.phase
    }

    /// Moves it to `next` (a phase the lifecycle's `transition` gave, or its first) and the
    /// fields that mirror the phase with it; returns the phase it left.
    pub(crate) fn enter(&mut self, next: RequestPhase) -> RequestPhase {
        self.status = next.status();
        self.queued = next.queue_entry().cloned();
        self.running = next.assignment().cloned();
        std::mem::replace(&mut self.phase, next)
    }

    /// Its place in queue `id`'s order: by priority, then by when the client stops waiting.
    pub(crate) fn queue_entry(&self, id: RequestId) -> QueueEntry {
        QueueEntry::new(
            self.priority,
            self.accepted_at + chrono::Duration::seconds(i64::from(self.deadline_seconds)),
            id,
        )
    }

    /// Waiting for a replica's result before the first is released.
    pub fn validating(&self) -> bool {
        !self.results.is_empty() && self.phase.before_verdict()
    }

    /// While it waits in the queue for a replica: since when (log time). The catalog's
    /// `unconfirmed_hold_seconds` bound that wait.
    pub fn replica_since(&self) -> Option<DateTime<Utc>> {
        self.phase.replica_since()
    }

    /// What its validation concluded, once `ValidationResolved` is recorded.
    pub fn outcome(&self) -> Option<ValidationOutcome> {
        self.phase.outcome()
    }

    /// The hash of the result it returned, once returned: the verified result of the node
    /// whose result went out.
    pub fn returned_hash(&self) -> Option<Hash32> {
        self.returned_result().map(|r| r.result_hash)
    }

    /// Its verified result that went out, sealed to the storage key, once returned.
    pub fn returned_result(&self) -> Option<&VerifiedResult> {
        let node = self.result.as_ref()?.node;
        self.results.iter().rev().find(|r| r.node == node)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnedResult {
    pub sealed_for_client: Sealed,
    pub poe: Hash32,
    pub node: NodeId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    pub hardware_tier: u8,
    pub models: BTreeSet<String>,
    pub slots: u32,
    /// Stake that counts: registered plus deposited, minus unstake requests (whether or not
    /// their cooldown is over). The same as settlement's `Operator::stake`.
    pub stake: u64,
    pub execution_class: ExecutionClass,
    pub registered_at: DateTime<Utc>,
    pub last_heartbeat: DateTime<Utc>,
    pub draining: bool,
    pub in_pool: bool,
    /// Missed its heartbeats (`NodeLapsed`), or registered with a signed statement and never
    /// heartbeated, and has not heartbeated since: a node gets work only once it has shown
    /// it runs, so a registration alone strands no dispatch.
    #[serde(default)]
    pub lapsed: bool,
    pub standing_bp: u32,
    /// Tasks dispatched to it and not yet returned or expired.
    pub busy: u32,
    pub public_key_pem: String,
    /// The epoch of its current session key and that key sealed to the coordinator's storage
    /// key; `None` until a grant is issued.
    pub session: Option<(u64, Sealed)>,
    /// Validation history: results a replica confirmed, results proven bad, comparisons with
    /// no majority it was party to. Standing is computed from these.
    pub valid: u64,
    pub invalid: u64,
    pub disagreements: u64,
    /// Dispatches of its whose deadline passed (`DeadlineExpired`).
    #[serde(default)]
    pub missed: u64,
    /// The signed time (Unix seconds) of its latest heartbeat: a later one must be signed
    /// later, so one signed statement earns at most once.
    #[serde(default)]
    pub heartbeat_at: Option<i64>,
    /// Its results whose commitment verified (`CommitmentVerified`): while this is at most
    /// the catalog's `probation_results`, its results are sampled at the probation rate.
    #[serde(default)]
    pub verified: u64,
    /// The SHA-256 of each model file it serves, as it reported them at registration.
    #[serde(default)]
    pub model_hashes: BTreeMap<String, Hash32>,
    /// Dispatches it declined (`DispatchRefused`). They do not lower its standing, but they
    /// are counted, so a node that declines much is seen doing so.
    #[serde(default)]
    pub refusals: u64,
    /// The operator it signed at registration (lowercase 0x-hex): the only staker whose bond
    /// counts for it ([`super::registration::stake_counts`]).
    #[serde(default)]
    pub operator: Option<String>,
    /// It registered with a signed statement, under the rules that come with one.
    #[serde(default)]
    pub signed: bool,
    /// Its verified results in a row below its tier's floor ([`super::calibration`]).
    #[serde(default)]
    pub tier_run: u32,
    /// The lowering its last result made due, until it is recorded (in the same batch).
    #[serde(default)]
    pub tier_due: Option<prlx_events::event::NodeTierLowered>,
}

impl NodeView {
    /// What its standing is computed from.
    pub fn history(&self) -> History {
        History {
            valid: self.valid,
            invalid: self.invalid,
            disagreements: self.disagreements,
            missed: self.missed,
        }
    }

    pub fn free_slots(&self) -> u32 {
        self.slots.saturating_sub(self.busy)
    }

    /// Whether new work may go to it.
    pub fn schedulable(&self) -> bool {
        self.available() && self.free_slots() > 0
    }

    /// In the pool, not draining, not lapsed: it may take work when it has a free slot.
    pub fn available(&self) -> bool {
        self.in_pool && !self.draining && !self.lapsed
    }
}

/// A node's record as standing counts it: results a replica confirmed, results proven bad,
/// comparisons with no majority it was party to, deadlines it missed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct History {
    pub valid: u64,
    pub invalid: u64,
    pub disagreements: u64,
    pub missed: u64,
}

/// A result whose commitment checked, kept until the request's validation resolves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedResult {
    pub node: NodeId,
    pub attempt: u32,
    /// SHA-256 of the canonical result bytes: what replicas are compared on.
    pub result_hash: Hash32,
    /// The node's proof of execution, returned with the result when it is released.
    pub poe: Hash32,
    /// The result sealed to the coordinator's storage key (from `ResultSubmitted`), so the
    /// coordinator can release it later without the node.
    pub sealed_result: Sealed,
}

/// The sampling epochs: at most one open (committed, not revealed) at a time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplingState {
    pub current: Option<SamplingEpoch>,
    /// The last epoch committed; the next is this plus one.
    pub last_epoch: u64,
    /// Epochs whose seed was revealed and whose every sampling decision re-derived.
    pub verified_epochs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplingEpoch {
    pub epoch: u64,
    pub seed_hash: Hash32,
    /// The seed sealed to the coordinator's storage key.
    pub sealed_seed: Option<Sealed>,
    /// The fraction in force when the epoch began: a catalog change applies from the next.
    pub sampling_bp: u32,
    /// Probation as the catalog set it when the epoch began: a node's first
    /// `probation_results` verified results are sampled at `probation_sampling_bp`.
    #[serde(default)]
    pub probation_results: u32,
    #[serde(default)]
    pub probation_sampling_bp: u32,
    pub ends_at: DateTime<Utc>,
    /// Every sampling decision of the epoch, checked when the seed is revealed.
    pub decisions: BTreeMap<RequestId, bool>,
    /// The decisions drawn at the probation rate (their primary was on probation).
    #[serde(default)]
    pub probation: BTreeSet<RequestId>,
    /// Every replica drawn under the epoch's seed, checked when the seed is revealed.
    #[serde(default)]
    pub replicas: Vec<ReplicaDraw>,
}

/// A replica dispatch as the fold saw it: which of how many eligible peers (sorted by node
/// id) it went to. The seed, once revealed, must draw that peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaDraw {
    pub request: RequestId,
    /// The dispatch's attempt number: the draw's round.
    pub round: u32,
    pub peers: u32,
    pub position: u32,
}
