//! The commands `decide` takes: everything from outside (the time, the sealed payload, the
//! computed hash, the shell's scheduling choice) already inside them.

use chrono::{DateTime, Utc};
use prlx_events::event::*;
use prlx_events::{AccountId, Hash32, NodeId, RequestId};
use prlx_projections::scheduler::Choice;

use crate::settle::SettlementCommand;

/// The only workload class of the live path. General-path classes arrive with their issue.
pub const INFERENCE: &str = "ai.inference";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    PublishCatalog(CatalogPublished),
    DepositCredits {
        account: AccountId,
        tx_ref: String,
        amount: u64,
    },
    /// A `NodeStaking` event the chain watcher read past its confirmations. `bonded_wei` is
    /// what the contract reported bonded after it (`None` for a withdrawal, which leaves the
    /// bond as last observed).
    ObserveStake(Box<StakeObservation>),
    /// Fix the payout tree of a settled epoch, before it is posted on chain.
    PrepareRoot {
        epoch: u64,
    },
    /// A `RewardsDistributor.EpochPosted` the chain watcher read past its confirmations.
    ObservePost(Box<RootPost>),
    /// A `CreditEscrow.UsageSettled` the chain watcher read past its confirmations: a
    /// steady-state epoch's income paid out of escrow.
    ObserveUsage(Box<prlx_events::event::UsageSettled>),
    /// The bootstrap stream's terms, read off the Lockup when the chain watcher starts.
    ObserveStream(Box<prlx_events::event::RewardStreamObserved>),
    /// A `CreditEscrow.Deposited` the chain watcher read past its confirmations.
    ObserveDeposit {
        account: AccountId,
        chain: ChainDeposit,
    },
    SubmitRequest(Box<Submission>),
    /// An account's revocation of one of its delegations, its signer recovered at the door;
    /// `now` is set by the shell to the time it records the decision at.
    RevokeDelegation {
        revocation: Box<DelegationRevoked>,
        now: DateTime<Utc>,
    },
    RegisterNode(Box<NodeRegistered>),
    Heartbeat {
        node_id: NodeId,
        /// The node's signed statement, recorded with the heartbeat so the auditor can check
        /// it: the uptime that payouts follow is the node's word, not the coordinator's.
        signed: SignedHeartbeat,
        /// When it is recorded: the shell sets it to the time it stamps the event with.
        now: DateTime<Utc>,
    },
    /// Record the scheduler's next decision and its dispatch. The shell computed `choice` with
    /// [`next_assignment`] and sealed the work for that node; decide checks both against the
    /// state, so a stale or tampered choice is refused.
    Dispatch(Box<Dispatch>),
    /// The timer service saw the deadline of a running dispatch pass.
    ExpireDeadline {
        request: RequestId,
        node: NodeId,
        attempt: u32,
        now: DateTime<Utc>,
        /// The request's one verified result sealed to the client, when it has one (a replica
        /// expired): released unconfirmed if no other replica can be found.
        release: Option<Sealed>,
    },
    /// A node returned a result; the shell opened it and checked the commitment and signature.
    CompleteTask(Box<Completion>),
    /// A dependent sub-task's input, built by the shell from its deps' validated results.
    ReleaseSubtask(Box<SubtaskReleased>),
    /// A general-path task whose sub-tasks' validated results the shell could not combine
    /// (into a dependent sub-task's input, or the aggregate): it fails, refunded.
    FailTask {
        task: RequestId,
        reason: String,
    },
    /// A general-path task's output, aggregated by the shell from its sub-tasks' validated
    /// results and sealed to the client.
    ReturnAggregate(Box<AggregateReturned>),
    /// A node declined the dispatch it holds; the shell checked its signature.
    RefuseDispatch(Box<Refusal>),
    /// Put the coordinator's signing key on the log (at start, when it is not there yet).
    PublishCoordinatorKey {
        public_key_pem: String,
    },
    /// Record a session grant the shell made for a node.
    IssueSession(Box<SessionKeyIssued>),
    /// The timer service saw a request with no verified result still waiting in the queue
    /// the catalog's `queue_timeout_seconds` after its acceptance (the admission bound).
    ExpireQueued {
        request: RequestId,
        now: DateTime<Utc>,
    },
    /// The timer service saw a sampled request wait in the queue for a replica for the
    /// catalog's `unconfirmed_hold_seconds`.
    ReleaseUnconfirmed {
        request: RequestId,
        now: DateTime<Utc>,
        /// The request's one verified result sealed to the client, when it has one.
        release: Option<Sealed>,
    },
    /// The timer service saw a node's heartbeats stop for the catalog's timeout.
    /// The shell cannot give a node work (its registered key does not parse, so it can get no
    /// session): it drains, so it never holds back work that another node could take.
    DrainNode {
        node_id: NodeId,
    },
    LapseNode {
        node_id: NodeId,
        now: DateTime<Utc>,
    },
    /// Open sampling epoch `epoch` with the hash of its secret seed.
    CommitSamplingSeed {
        epoch: u64,
        seed_hash: Hash32,
        sealed_seed: Sealed,
    },
    /// Close the open sampling epoch by revealing its seed.
    RevealSamplingSeed {
        epoch: u64,
        seed: Hash32,
    },
    /// Staking, reward mode, reward epochs: see [`crate::settle`].
    Settlement(SettlementCommand),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatch {
    pub choice: Choice,
    pub sealed_work: Sealed,
    pub now: DateTime<Utc>,
    /// The open sampling epoch's seed, opened by the shell: it draws replicas
    /// ([`next_assignment`]). `None` when no epoch is open (then no replica is placed).
    pub seed: Option<Hash32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub request: RequestId,
    pub node: NodeId,
    pub attempt: u32,
    /// When the report is decided: the shell's stamp time, which is also its events'
    /// `recorded_at`. A report at or after the dispatch's `deadline_at` is late, whatever the
    /// order in which the shell noticed the report and the deadline.
    pub now: DateTime<Utc>,
    pub sealed_result: Sealed,
    pub poe: Hash32,
    /// The node's signature over the result statement, verified by the shell before the
    /// command is built (an unsigned report never reaches `decide`).
    pub signature: Sealed,
    /// SHA-256 of the sealed result as the node sent it: what the signature covers.
    pub ciphertext_hash: Hash32,
    pub token_count: u32,
    /// Whether the result opened under the node's session key and the PoE recomputed from it
    /// matches. `Err` says which check failed.
    pub commitment: Result<(), String>,
    /// SHA-256 of the canonical result bytes (meaningful when the commitment checked).
    pub result_hash: Hash32,
    /// The result this command would release, sealed to the client's key: this one when its
    /// commitment checked, else the request's one earlier verified result, if any.
    pub sealed_for_client: Sealed,
    /// The open sampling epoch's seed, opened by the shell: the draw is made here.
    pub seed: Option<Hash32>,
    /// The request's one earlier verified result sealed to the client, if it holds exactly
    /// one: what a replica's late report may release instead of itself.
    pub earlier: Option<Sealed>,
}

/// A node's signed refusal of a dispatch ([`prlx_events::crypto::refusal_statement`]),
/// whose signature the shell verified before it made the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub request: RequestId,
    pub node: NodeId,
    pub attempt: u32,
    pub reason: RefusalReason,
    pub signature: Sealed,
    /// When it is decided: the shell's stamp time, also its events' `recorded_at`. A refusal
    /// at or after the dispatch's `deadline_at` comes too late: the deadline decides.
    pub now: DateTime<Utc>,
    /// The request's one verified result sealed to the client, when it holds one (a replica
    /// was declined): released unconfirmed if no other replica can be found.
    pub release: Option<Sealed>,
}

/// What a node signed to say it is up ([`prlx_events::crypto::heartbeat_statement`]), checked
/// by the shell's `HeartbeatGuard` before the command is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeartbeat {
    /// Unix seconds.
    pub at: i64,
    pub signature: Vec<u8>,
}

/// A submission whose JSON already parsed (the shell rejects malformed bodies, naming the
/// field) and whose payload the shell hashed and sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    pub idempotency_key: Option<String>,
    pub source: IntakeSource,
    pub workload_class: String,
    pub model: String,
    pub hardware_tier: u8,
    pub priority: Priority,
    pub deadline_seconds: u32,
    pub max_tokens: u32,
    pub credit_account: AccountId,
    pub client_pubkey: String,
    /// The hash the client sent.
    pub payload_hash: Hash32,
    /// The hash of the payload bytes the coordinator received.
    pub computed_payload_hash: Hash32,
    /// Put in by the shell: the settled request that left the state under the same
    /// idempotency key, from the request index (`None` when there is none, or no key).
    pub earlier: Option<Box<prlx_projections::coordinator::RequestSummary>>,
    /// Put in by the shell for a general-path class: the segmenter's plan of the parameters
    /// (the payload), its sub-tasks' inputs sealed; or which parameter is wrong and why.
    pub plan: Option<Result<Box<PlannedTask>, ParamProblem>>,
    pub sealed_payload: Sealed,
    /// Who signed it, as intake checked (`None`: unsigned, refused).
    pub consent: Option<prlx_events::event::Consent>,
    /// When it is decided: the shell's stamp time, also its events' `recorded_at`. A
    /// delegation is judged alive or expired by it.
    pub now: DateTime<Utc>,
}

/// A general-path task as the shell's segmenter planned it (`prlx-workloads` `plan`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedTask {
    pub class: String,
    pub digest: Hash32,
    pub subtasks: Vec<PlannedInput>,
}

/// One sub-task of a [`PlannedTask`]: its static input sealed (none for a dependent one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedInput {
    pub kind: String,
    pub deps: Vec<u32>,
    pub cost: u64,
    pub input: Option<(Hash32, Sealed)>,
}

/// Parameters that do not fit their class: the field (a JSON path under `params`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamProblem {
    pub field: String,
    pub reason: String,
}

/// A `NodeStaking` event as the chain watcher read it ([`Command::ObserveStake`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StakeObservation {
    pub node_id: NodeId,
    pub staker: String,
    pub change: StakeChange,
    pub amount_wei: String,
    /// What the contract reported bonded after it; `None` for a withdrawal, which leaves the
    /// bond as last observed.
    pub bonded_wei: Option<String>,
    pub chain: ChainRef,
}

/// A `RewardsDistributor.EpochPosted` as the chain watcher read it ([`Command::ObservePost`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootPost {
    pub epoch: u64,
    pub root: Hash32,
    pub log_head: Hash32,
    pub total_wei: String,
    pub chain: ChainRef,
}
