//! The payloads: one variant per transition of the protocol.
//!
//! Rules for changing them (see `docs/adr/01-event-model.md`): names are past tense and never
//! reused; a new field is added with `#[serde(default)]`; anything else bumps the variant's
//! schema version and adds an upcaster in [`crate::upcast`].
//!
//! No payload carries a plaintext prompt or output: work travels as [`Sealed`] blobs.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{AccountId, Hash32, NodeId, RequestId, TaskId};

/// Ciphertext, base64 in JSON. What key it is sealed to is said by the field that holds it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Sealed(
    #[serde(with = "crate::b64")]
    #[schemars(with = "String")]
    pub Vec<u8>,
);

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealed({} bytes)", self.0.len())
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    Standard,
    High,
}

/// Where a submission came from, so the answer can be routed back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", tag = "via")]
pub enum IntakeSource {
    Http,
    /// A submission consumed from the Kafka submissions topic; `reference` keys the reply.
    Kafka {
        reference: String,
    },
    /// The coordinator's own demo or test driver.
    Local,
}

/// Why intake refused a submission. The wire names are part of the HTTP contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RejectionCode {
    InsufficientCredit,
    MalformedRequest,
    PayloadHashMismatch,
    UnknownWorkloadClass,
    UnknownModel,
    TierOutOfRange,
    DeadlineOutOfRange,
    UnknownNode,
    NodeAlreadyRegistered,
    InvalidAmount,
    /// The signature does not authorize charging the account.
    Unauthorized,
    /// An idempotency key already used by the account for another request.
    IdempotencyConflict,
    /// The delegation a submission was signed under has expired.
    DelegationExpired,
    /// The request's price would take a delegation's spending past its limit.
    SpendingLimitExceeded,
    /// The delegation a submission was signed under was revoked by its account.
    DelegationRevoked,
}

pub use crate::catalog::{CatalogModel, CatalogPublished, ValidationPolicy};
pub use crate::onchain::*;

// ---------------------------------------------------------------------------------------------
// Credits: integers in minor units, never floats.

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CreditsDeposited {
    pub account: AccountId,
    /// The on-chain transaction this deposit was observed in; one `tx_ref` credits once.
    /// For a deposit observed on chain it is [`ChainDeposit::tx_ref`].
    pub tx_ref: String,
    pub amount: u64,
    /// Where on the chain the deposit is, when the coordinator's watcher observed it (absent:
    /// a deposit claimed over HTTP, which nothing checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainDeposit>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CreditsReserved {
    pub account: AccountId,
    pub request_id: RequestId,
    pub amount: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CreditsCharged {
    pub account: AccountId,
    pub request_id: RequestId,
    pub amount: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CreditsRefunded {
    pub account: AccountId,
    pub request_id: RequestId,
    pub amount: u64,
}

// ---------------------------------------------------------------------------------------------
// Intake (step 1) and segmentation (step 2).

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RequestAccepted {
    pub request_id: RequestId,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    pub source: IntakeSource,
    pub workload_class: String,
    pub model: String,
    pub hardware_tier: u8,
    pub priority: Priority,
    pub deadline_seconds: u32,
    pub max_tokens: u32,
    pub credit_account: AccountId,
    /// The client's RSA public key (PEM) that the result is sealed to.
    pub client_pubkey: String,
    /// SHA-256 of the payload bytes, as submitted and checked.
    pub payload_hash: Hash32,
    /// The payload, sealed to the coordinator's own storage key: it survives a crash for
    /// re-dispatch, and never lies on the log in plaintext.
    pub sealed_payload: Sealed,
    pub price: u64,
    /// The account's consent to the charge: who signed the submission's EIP-712 typed data
    /// and the signature, checked at intake and again by the auditor (absent on logs written
    /// before submissions were signed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<Consent>,
}

/// A refused submission: recorded for the audit trail, with no request id allocated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RequestRejected {
    #[serde(default)]
    pub idempotency_key: Option<String>,
    pub source: IntakeSource,
    pub code: RejectionCode,
    #[serde(default)]
    pub field: Option<String>,
    pub message: String,
}

/// One sub-task of a general-path task: a unit of work with a request id of its own, run,
/// proven and validated like an inference request (its task id is its own request's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PlannedSubtask {
    /// Its index in the task's plan (its position: the plan is in topological order).
    pub subtask: u32,
    /// The request id allocated to it: the task's own id plus one plus `subtask`.
    pub request_id: RequestId,
    /// What a node runs (`prlx-workloads` `SubtaskKind`, e.g. `render.tile`).
    pub kind: String,
    /// Sub-tasks whose validated results this one's input is built from, ascending, each
    /// before it. Empty: it is queued at once, in parallel with every other such sub-task.
    pub depends_on: Vec<u32>,
    /// Work units (the class's cost unit), fixed at planning time.
    pub cost: u64,
    /// Its share of the task's price, from `cost` and the catalog (the fold re-derives it).
    pub price: u64,
    /// Its input sealed to the coordinator's storage key, with the input's SHA-256: present
    /// for a sub-task without deps; a dependent one gets its input in `SubtaskReleased`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_payload: Option<Sealed>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_hash: Option<Hash32>,
}

/// The segmenter's plan of a general-path task (protocol step 2), recorded with its
/// acceptance: the task itself never runs; its sub-tasks do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SubtasksPlanned {
    pub request_id: RequestId,
    /// The task's workload class (`RequestAccepted.workload_class`).
    pub class: String,
    /// SHA-256 of the plan's canonical encoding (`prlx-workloads` `Plan::digest`), inputs
    /// included: two plans of one task agree on it.
    pub plan_digest: Hash32,
    pub subtasks: Vec<PlannedSubtask>,
}

/// A dependent sub-task's input, built by the coordinator from its deps' validated results
/// once every one of them is in: it is queued from here on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SubtaskReleased {
    pub request_id: RequestId,
    /// The task it belongs to, and its index there.
    pub task: RequestId,
    pub subtask: u32,
    /// The validated result hash of each dep, in `depends_on` order: what its input was
    /// built from.
    pub inputs: Vec<Hash32>,
    pub payload_hash: Hash32,
    /// The input sealed to the coordinator's storage key.
    pub sealed_payload: Sealed,
}

/// A general-path task's output, aggregated from its sub-tasks' validated results in the
/// plan's order, returned whole and sealed to the client (protocol step 8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AggregateReturned {
    pub request_id: RequestId,
    /// The output sealed to the client's public key.
    pub sealed_for_client: Sealed,
    /// SHA-256 of the output bytes.
    pub output_hash: Hash32,
    /// The validated result hash of each sub-task, by index: what was aggregated.
    pub results: Vec<Hash32>,
}

// ---------------------------------------------------------------------------------------------
// Nodes.

/// What must match for two honest nodes to produce the same bytes (in [`crate::class`]).
pub use crate::class::ExecutionClass;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NodeRegistered {
    pub node_id: NodeId,
    /// RSA public key, PEM (SPKI). `node_id` is the SHA-256 of its DER.
    pub public_key_pem: String,
    pub hardware_tier: u8,
    pub models: Vec<String>,
    pub slots: u32,
    pub stake: u64,
    pub execution_class: ExecutionClass,
    /// The SHA-256 of the model file it serves, by model, as the node reports it: each the
    /// catalog's for that model. Replicas run the same file as the primary. Empty in records
    /// from before nodes reported them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub model_hashes: BTreeMap<String, Hash32>,
    /// The chain address (0x, 40 lowercase hex) the node names as its operator: the only
    /// staker whose bond for its id counts and is paid. Absent: no stake counts, so the node
    /// is never paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// When the node signed its registration, Unix seconds: the statement is
    /// [`crate::crypto::registration_statement`]. Absent, with `signature`, on registrations
    /// recorded before nodes signed them; the auditor counts those as unverified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_at: Option<i64>,
    /// RSA-PSS-SHA256 by the registered key over the statement: proof that whoever registered
    /// holds the key, re-verified by the auditor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Sealed>,
}

impl NodeRegistered {
    /// Whether the node signed it: registrations from before nodes signed theirs keep the
    /// rules they were recorded under (any staker's bond counts, dispatch before a heartbeat).
    pub fn is_signed(&self) -> bool {
        self.signature.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NodeHeartbeat {
    pub node_id: NodeId,
    /// The time the node signed, Unix seconds: the statement is
    /// [`crate::crypto::heartbeat_statement`]. Absent on heartbeats recorded before heartbeats
    /// kept their evidence; the auditor counts those as unverified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<i64>,
    /// RSA-PSS-SHA256 by the node's registered key over the statement, so the auditor can
    /// re-verify every uptime slot without taking the coordinator's word for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Sealed>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NodeDrained {
    pub node_id: NodeId,
}

/// A node missed its heartbeats for the catalog's `node_timeout_seconds`: it gets no new work,
/// and is no replica peer, until its next heartbeat. Its running dispatches keep their
/// deadlines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NodeLapsed {
    pub node_id: NodeId,
    /// Its last heartbeat (or registration), in log time.
    #[serde(deserialize_with = "crate::fast::datetime::deserialize")]
    pub last_heartbeat: DateTime<Utc>,
}

/// A node's claimed tier was not borne out by its work: the last
/// [`TIER_WINDOW`](crate::event::TIER_WINDOW) verified results it returned in a row, each
/// measured from its dispatch to its result on the log's clock, were slower than the
/// catalog's floor for its tier and the result's model. It moves to the highest tier whose
/// floor the last measurement meets (tier 1 has none). `decide` records it with the result
/// that completes the run; the fold re-derives every field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NodeTierLowered {
    pub node_id: NodeId,
    pub from_tier: u8,
    pub to_tier: u8,
    /// The model of the last measured result, whose floors decided `to_tier`.
    pub model: String,
    /// The last measured rate, in thousandths of a token per second.
    pub measured_milli_tps: u64,
}

/// How many verified results in a row below its tier's floor lower a node's tier.
pub const TIER_WINDOW: u32 = 3;

/// The coordinator's signing key (PEM), so nodes and auditors can check session grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CoordinatorKeyPublished {
    pub public_key_pem: String,
}

/// A session key granted to a node for an epoch (see `docs/dispatch-security.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SessionKeyIssued {
    pub node_id: NodeId,
    pub epoch: u64,
    /// The key, RSA-OAEP-SHA256 to the node's public key: only the node can read it.
    pub wrapped_key: Sealed,
    /// RSA-PSS-SHA256 by the coordinator over node id, epoch and `wrapped_key`.
    pub signature: Sealed,
    /// The same key sealed to the coordinator's storage key, so a restarted coordinator can
    /// keep dispatching under it.
    pub sealed_for_coordinator: Sealed,
}

/// The coordinator's signature over the log's hash chain up to this record (see
/// `docs/adr/08-hash-chain.md`): whoever rewrites anything before it must also forge this.
/// Written by the shell every so many records; it changes no state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LogSealed {
    /// The chain value sealed: SHA-256 of the record before this one, which is also this
    /// record's `prev`.
    pub head: Hash32,
    /// RSA-PSS-SHA256 by the coordinator's signing key (the published one) over
    /// [`crate::crypto::seal_statement`] of `head`.
    pub signature: Sealed,
}

// ---------------------------------------------------------------------------------------------
// Scheduling (3), dispatch (4), execution (5), proof-of-execution (6).

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CandidateScore {
    pub node_id: NodeId,
    pub free_slots: u32,
    pub queue_depth: u32,
    pub hardware_tier: u8,
    /// Reputation in basis points (10_000 = 1.0), so the score stays an integer.
    pub reputation_bp: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RequestScheduled {
    pub task_id: TaskId,
    pub attempt: u32,
    pub node_id: NodeId,
    /// How many nodes passed the capability match.
    pub candidates_considered: u32,
    /// The best candidates in rank order, the chosen one first: the decision's reasons.
    pub ranked: Vec<CandidateScore>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TaskDispatched {
    pub task_id: TaskId,
    pub attempt: u32,
    pub node_id: NodeId,
    /// The work sealed so only `node_id` can open it.
    pub sealed_work: Sealed,
    /// Deadline in log time: `recorded_at` of this event plus the request's deadline.
    #[serde(deserialize_with = "crate::fast::datetime::deserialize")]
    pub deadline_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ResultSubmitted {
    pub task_id: TaskId,
    pub attempt: u32,
    pub node_id: NodeId,
    /// The result sealed to the coordinator's storage key.
    pub sealed_result: Sealed,
    /// `SHA-256(task_id || result || node_id)` as the node claims it.
    pub poe: Hash32,
    /// RSA-PSS-SHA256 by the node's registered key over
    /// [`crate::crypto::result_statement`]: request id, task id, node id, attempt, PoE and
    /// `ciphertext_hash`. On a record without `ciphertext_hash`, over
    /// [`crate::crypto::result_statement_v1`] (the same without the hash).
    pub signature: Sealed,
    pub token_count: u32,
    /// SHA-256 of the sealed result exactly as the node sent it (under its session key): what
    /// its signature covers, so the signature cannot be moved onto other bytes. The coordinator
    /// records a result only once that signature verified. Absent on records written before
    /// results were signed this way; the auditor verifies those against the v1 statement, and
    /// only before the first record that carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ciphertext_hash: Option<Hash32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeadlineExpired {
    pub task_id: TaskId,
    pub attempt: u32,
    pub node_id: NodeId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LateResultDiscarded {
    pub task_id: TaskId,
    pub attempt: u32,
    pub node_id: NodeId,
}

/// Why a node declined a dispatch, with what it measured. `decide` and the fold check the
/// numbers against the request and the catalog, so a refusal must at least add up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", tag = "code")]
pub enum RefusalReason {
    /// The prompt's tokens (after the chat template) plus `max_tokens` exceed the model's
    /// context: the engine cannot run it. The coordinator cannot count a prompt's tokens
    /// itself (it has no tokenizer), so only a node can find this out.
    ContextExceeded {
        prompt_tokens: u32,
        max_tokens: u32,
        context: u32,
    },
    /// A general-path sub-task's output is larger than a sub-task may return
    /// (`prlx-workloads` `MAX_OUTPUT_BYTES`): the data, not the node, makes it so (a word table
    /// of a text of distinct words, say), so any node of the same file would produce it too.
    OutputTooLarge { bytes: u64, limit: u64 },
}

impl std::fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RefusalReason::ContextExceeded {
                prompt_tokens,
                max_tokens,
                context,
            } => write!(
                f,
                "a prompt of {prompt_tokens} tokens plus max_tokens {max_tokens} exceeds the \
                 model's context of {context} tokens"
            ),
            RefusalReason::OutputTooLarge { bytes, limit } => write!(
                f,
                "the sub-task's output of {bytes} bytes is more than the {limit} a sub-task may return"
            ),
        }
    }
}

/// A node declined the dispatch it holds: a failed dispatch that does not count against its
/// standing (an honest node cannot run such work). The request goes back to the queue for a
/// node it has not tried; when a node serving the same model file already refused it, it
/// fails in the same decision (`FailureCause::Refused`), so no single node can fail a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DispatchRefused {
    pub task_id: TaskId,
    pub attempt: u32,
    pub node_id: NodeId,
    pub reason: RefusalReason,
    /// RSA-PSS-SHA256 by the node over [`crate::crypto::refusal_statement`]: the auditor
    /// re-verifies that the node itself declined.
    pub signature: Sealed,
}

// ---------------------------------------------------------------------------------------------
// Validation (7).

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CommitmentVerified {
    pub task_id: TaskId,
    pub attempt: u32,
    pub node_id: NodeId,
    /// SHA-256 of the canonical result bytes: what replicas are compared on. (The PoE cannot
    /// be compared: it binds the node id.)
    #[serde(default)]
    pub result_hash: Option<Hash32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CommitmentRejected {
    pub task_id: TaskId,
    pub attempt: u32,
    pub node_id: NodeId,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SamplingSeedCommitted {
    pub epoch: u64,
    /// SHA-256 of the seed: the commitment the reveal is checked against.
    pub seed_hash: Hash32,
    /// The seed sealed to the coordinator's storage key, so a restarted coordinator keeps
    /// sampling under the same commitment. Nodes cannot open it.
    #[serde(default)]
    pub sealed_seed: Option<Sealed>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SamplingSeedRevealed {
    pub epoch: u64,
    pub seed: Hash32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RedundancySampled {
    pub task_id: TaskId,
    pub epoch: u64,
    /// The node whose result is being checked; the replica must come from its class.
    #[serde(default)]
    pub primary: Option<NodeId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Verdict {
    /// One result, not sampled, commitment verified.
    Accepted,
    /// Sampled; the replicas agreed.
    Agreed { nodes: Vec<NodeId> },
    /// A majority agreed; `dissenters` were outvoted.
    Majority {
        winners: Vec<NodeId>,
        dissenters: Vec<NodeId>,
    },
    /// No majority: every party is flagged for review.
    NoMajority { parties: Vec<NodeId> },
    /// Sampled, but no replica of the primary's execution class came within the catalog's
    /// `unconfirmed_hold_seconds` (with no hold: no untried node of the class is in the
    /// pool): the result is released unconfirmed (counted apart so auditors see the gap).
    Unconfirmed { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ValidationResolved {
    pub task_id: TaskId,
    pub verdict: Verdict,
    #[serde(default)]
    pub result_hash: Option<Hash32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NodeFlagged {
    pub node_id: NodeId,
    #[serde(default)]
    pub task_id: Option<TaskId>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StandingChanged {
    pub node_id: NodeId,
    pub valid: u64,
    pub invalid: u64,
    pub disagreements: u64,
    /// Deadlines it missed; `None` in records from before they counted.
    #[serde(default)]
    pub missed_deadlines: Option<u64>,
    /// Standing in basis points (10_000 = full standing).
    pub standing_bp: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NodeRemovedFromPool {
    pub node_id: NodeId,
    pub reason: String,
}

// ---------------------------------------------------------------------------------------------
// Result return (8).

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ResultReturned {
    pub request_id: RequestId,
    /// The result sealed to the client's public key.
    pub sealed_for_client: Sealed,
    pub poe: Hash32,
    pub node_id: NodeId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RequestFailed {
    pub request_id: RequestId,
    pub reason: String,
    /// Why, in a form the fold re-derives; `None` in records from before it was recorded.
    #[serde(default)]
    pub cause: Option<FailureCause>,
}

/// Why a request failed (each is refunded in full).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureCause {
    /// `max_attempts` dispatches failed before a verified result.
    AttemptsExhausted,
    /// A dispatch failed and no untried node that can serve the request is left.
    NoCapableNode,
    /// Still waiting in the queue `queue_timeout_seconds` after it was accepted.
    QueueTimeout,
    /// Replicas disagree and no majority can be formed.
    NoMajority,
    /// Two nodes serving the same model file declined it (`DispatchRefused`): it cannot run
    /// on that file.
    Refused,
    /// A general-path task whose sub-task failed: the task fails with it (and so do its
    /// sub-tasks that had not started).
    SubtaskFailed,
    /// A general-path task whose sub-tasks' validated results do not combine: a dependent
    /// sub-task's input, or the aggregate, cannot be built from them (the workload library
    /// refuses them). Only the coordinator can open them, so the fold checks only that some
    /// sub-task of the task had returned a result.
    OutputsRefused,
}

// Staking and settlement (9): `crate::rewards`.
pub use crate::rewards::*;

/// Declares the payload enum and everything generated from the list: the type names on the
/// wire, each variant's current schema version, typed decoding from raw JSON and schema export.
/// One list, so a variant cannot be added to one table and forgotten in another.
macro_rules! events {
    ($( $(#[$doc:meta])* $variant:ident = $version:literal ),* $(,)?) => {
        /// Every transition of the protocol.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Event {
            $( $(#[$doc])* $variant($variant), )*
        }

        $(
            impl From<$variant> for Event {
                fn from(e: $variant) -> Self { Event::$variant(e) }
            }
        )*

        impl Event {
            /// Every type name, in declaration order.
            pub const TYPE_NAMES: &'static [&'static str] = &[$( stringify!($variant) ),*];

            /// The name written in the envelope's `type` field.
            pub fn type_name(&self) -> &'static str {
                match self { $( Event::$variant(_) => stringify!($variant), )* }
            }

            /// The schema version this build writes for `type_name`, or `None` if unknown.
            pub fn current_version(type_name: &str) -> Option<u32> {
                match type_name { $( stringify!($variant) => Some($version), )* _ => None }
            }

            pub(crate) fn serialize_data<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self { $( Event::$variant(d) => serde::Serialize::serialize(d, s), )* }
            }

            /// Decodes a payload already at its current version.
            pub(crate) fn decode_current(type_name: &str, data: &str) -> Result<Event, crate::decode_error::DecodeError> {
                match type_name {
                    $( stringify!($variant) => serde_json::from_str::<$variant>(data)
                        .map(Event::$variant)
                        .map_err(|e| crate::decode_error::DecodeError::Payload { event_type: type_name.to_owned(), source: e }), )*
                    other => Err(crate::decode_error::DecodeError::UnknownType(other.to_owned())),
                }
            }

            /// Decodes a payload already at its current version from inside the envelope's
            /// own deserializer (one pass over the bytes); `None` for an unknown type.
            pub(crate) fn deserialize_current<'de, D: serde::Deserializer<'de>>(
                type_name: &str,
                d: D,
            ) -> Option<Result<Event, D::Error>> {
                match type_name {
                    $( stringify!($variant) => Some(<$variant as serde::Deserialize>::deserialize(d).map(Event::$variant)), )*
                    _ => None,
                }
            }

            pub(crate) fn decode_value(type_name: &str, data: serde_json::Value) -> Result<Event, crate::decode_error::DecodeError> {
                match type_name {
                    $( stringify!($variant) => serde_json::from_value::<$variant>(data)
                        .map(Event::$variant)
                        .map_err(|e| crate::decode_error::DecodeError::Payload { event_type: type_name.to_owned(), source: e }), )*
                    other => Err(crate::decode_error::DecodeError::UnknownType(other.to_owned())),
                }
            }

            /// `(type name, version, JSON Schema of the payload)` for every variant.
            pub fn payload_schemas() -> Vec<(&'static str, u32, schemars::Schema)> {
                vec![ $( (stringify!($variant), $version, schemars::schema_for!($variant)), )* ]
            }
        }
    };
}

events! {
    CatalogPublished = 3,
    CreditsDeposited = 1,
    CreditsReserved = 1,
    CreditsCharged = 1,
    CreditsRefunded = 1,
    RequestAccepted = 1,
    RequestRejected = 1,
    SubtasksPlanned = 2,
    SubtaskReleased = 1,
    AggregateReturned = 1,
    NodeRegistered = 1,
    NodeHeartbeat = 1,
    NodeDrained = 1,
    CoordinatorKeyPublished = 1,
    SessionKeyIssued = 1,
    RequestScheduled = 1,
    TaskDispatched = 1,
    ResultSubmitted = 1,
    DeadlineExpired = 1,
    LateResultDiscarded = 1,
    CommitmentVerified = 1,
    CommitmentRejected = 1,
    SamplingSeedCommitted = 1,
    SamplingSeedRevealed = 1,
    RedundancySampled = 1,
    ValidationResolved = 1,
    NodeFlagged = 1,
    StandingChanged = 1,
    NodeRemovedFromPool = 1,
    ResultReturned = 1,
    RequestFailed = 1,
    StakeDeposited = 1,
    UnstakeRequested = 1,
    StakeReturned = 1,
    ChainStakeChanged = 1,
    RewardRootPrepared = 1,
    RewardRootPosted = 1,
    UsageSettled = 1,
    RewardStreamObserved = 1,
    RewardModeChanged = 1,
    RewardEpochSettled = 1,
    RewardPolicyPublished = 1,
    NodeLapsed = 1,
    NodeTierLowered = 1,
    LogSealed = 1,
    DispatchRefused = 1,
    DelegationRevoked = 1,
}
