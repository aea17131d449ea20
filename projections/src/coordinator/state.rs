//! [`CoordinatorState`]: everything intake, scheduling, validation and settlement decide
//! against, and the catalog's settings with their defaults.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chrono::{DateTime, Utc};
use prlx_events::event::*;
use prlx_events::{AccountId, NodeId, RequestId};
use serde::{Deserialize, Serialize};

use crate::coordinator::batch::OpenBatch;
use crate::coordinator::lifecycle::RequestPhase;
use crate::coordinator::views::{
    Account, DelegationUse, NodeView, RequestView, SamplingState, DEFAULT_MAX_ATTEMPTS,
    DEFAULT_NODE_TIMEOUT_SECONDS, DEFAULT_QUEUE_TIMEOUT_SECONDS, DEFAULT_REPUTATION_WEIGHT_PCT,
};
use crate::scheduler::index::Scheduler;
use crate::settlement::Settlement;

/// How many settled epochs a payout tree can still be prepared for: the state keeps their
/// payouts, and no more, so it does not grow with history.
pub const ROOT_WINDOW_EPOCHS: usize = 64;

/// How many blocks below the highest observed chain block the names of chain events (deposit
/// references, and the keys of stake changes, root posts and usage settlements) are kept in
/// memory. Below that an event is known without them: the watcher reads the chain in order,
/// so every event of an older block was observed, and applied, already. At 2 s a block that
/// is over two hours; a page of the watcher (2,000 blocks by default) fits in it.
pub const CHAIN_WINDOW_BLOCKS: u64 = 4096;

/// An epoch's payout tree, prepared and maybe posted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedRoot {
    pub root: prlx_events::Hash32,
    pub total_wei: String,
    /// Its `EpochPosted` has been recorded.
    pub posted: bool,
}

/// A node's bond on chain, as last observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainStake {
    /// Its staker, 0x-hex: the recipient of the node's payouts.
    pub staker: String,
    /// Bonded, minor units of PRLX, decimal.
    pub bonded_wei: String,
    /// `bonded_wei / CREDIT_UNIT_WEI`.
    pub stake: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordinatorState {
    pub catalog: Option<CatalogPublished>,
    pub accounts: BTreeMap<AccountId, Account>,
    /// Deposit references credited: every one without a chain place (a coordinator without a
    /// chain, a development setup), and the chain deposits of the window
    /// ([`CHAIN_WINDOW_BLOCKS`]).
    pub deposits: BTreeSet<String>,
    /// The window's chain deposits by (block, reference): the order they leave `deposits` in.
    #[serde(default)]
    pub chain_deposits: BTreeSet<(u64, String)>,
    /// The highest block a chain deposit was observed in: where the watcher resumes after a
    /// restart (re-reading that block is harmless, its deposits are in `deposits`).
    #[serde(default)]
    pub chain_block: u64,
    /// That block's hash (0x-hex), as recorded: after a restart the watcher checks it is still
    /// the chain's, so a reorg deeper than the confirmations while it was down is not missed.
    #[serde(default)]
    pub chain_block_hash: Option<String>,
    /// Chain events applied other than deposits (their `ChainRef::key`), of the window
    /// ([`CHAIN_WINDOW_BLOCKS`]): each applies once.
    #[serde(default)]
    pub chain_seen: BTreeSet<String>,
    /// The same by (block, key): the order they leave `chain_seen` in.
    #[serde(default)]
    pub chain_seen_blocks: BTreeSet<(u64, String)>,
    /// What the staking contract holds for each node id, as last observed (a node may be
    /// staked for before it registers).
    #[serde(default)]
    pub chain_stakes: BTreeMap<NodeId, ChainStake>,
    /// The payouts (node, amount) of the last [`ROOT_WINDOW_EPOCHS`] settled epochs: what a
    /// payout tree is prepared from.
    #[serde(default)]
    pub recent_payouts: BTreeMap<u64, Vec<(NodeId, u64)>>,
    /// Payout trees prepared (and whether posted), for the same window.
    #[serde(default)]
    pub roots: BTreeMap<u64, PreparedRoot>,
    /// Steady-state epochs settled with an income that the escrow has not paid out yet
    /// (no `UsageSettled` observed): epoch -> income in credits. Within the same window.
    #[serde(default)]
    pub usage_due: BTreeMap<u64, u64>,
    /// Requests whose work is open, and the last [`FINISHED_WINDOW`] settled (see `finished`).
    ///
    /// [`FINISHED_WINDOW`]: crate::coordinator::FINISHED_WINDOW
    pub requests: BTreeMap<RequestId, RequestView>,
    /// The settled requests still in `requests`, oldest first.
    #[serde(default)]
    pub finished: VecDeque<RequestId>,
    /// Requests settled since the log began.
    #[serde(default)]
    pub settled_total: u64,
    /// Settled sub-tasks past the window whose task has not settled: its aggregate still
    /// reads their results. They retire when their task settles.
    /// General-path tasks accepted and not settled: the shell's round of releases and
    /// aggregates walks these.
    #[serde(default)]
    pub open_tasks: BTreeSet<RequestId>,
    #[serde(default)]
    pub held_subtasks: BTreeMap<RequestId, Vec<RequestId>>,
    /// account -> Idempotency-Key -> the request it created, for the requests in `requests`.
    pub idempotency: BTreeMap<AccountId, BTreeMap<String, RequestId>>,
    /// account -> a delegation's EIP-712 hash -> what its requests hold of its limit (see
    /// `delegation`): only delegations a request was accepted under.
    #[serde(default)]
    pub delegations: BTreeMap<AccountId, BTreeMap<prlx_events::Hash32, DelegationUse>>,
    /// account -> a revoked delegation's EIP-712 hash -> its expiry (Unix seconds): see
    /// `revocation`; kept until the delegation would have expired.
    #[serde(default)]
    pub revoked: BTreeMap<AccountId, BTreeMap<prlx_events::Hash32, u64>>,
    pub nodes: BTreeMap<NodeId, NodeView>,
    /// Rejections recorded at intake, by code.
    pub rejections: BTreeMap<String, u64>,
    pub next_request_id: u64,
    pub sched: Scheduler,
    /// The coordinator's signing key (PEM), as last published.
    pub coordinator_key: Option<String>,
    /// Uptime, stake and reward epochs (step 9).
    pub rewards: Settlement,
    /// Sampling epochs (step 7).
    pub sampling: SamplingState,
    /// The latest `recorded_at` folded: the writer never stamps an event earlier, so log time
    /// only moves forward even if the wall clock steps back.
    #[serde(default)]
    pub log_time: Option<DateTime<Utc>>,
    /// The decision being folded and what it still owes (see `batch`).
    #[serde(default)]
    pub batch: OpenBatch,
}

impl CoordinatorState {
    /// The lowest block whose chain events are still told apart by name: one from an older
    /// block was applied before (the watcher reads in chain order), or never seen.
    pub fn chain_floor(&self) -> u64 {
        self.chain_block.saturating_sub(CHAIN_WINDOW_BLOCKS)
    }

    pub fn catalog_model(&self, model: &str) -> Option<&CatalogModel> {
        self.catalog
            .as_ref()?
            .models
            .iter()
            .find(|m| m.model == model)
    }

    /// What the last batch folded still owes, if anything: a log that ends there was cut
    /// inside a decision (see `batch`).
    pub fn unfinished_batch(&self) -> Option<String> {
        self.batch.unfinished()
    }

    pub fn request_for_key(&self, account: &AccountId, key: &str) -> Option<RequestId> {
        self.idempotency.get(account)?.get(key).copied()
    }

    pub fn reputation_weight_pct(&self) -> u32 {
        self.catalog
            .as_ref()
            .map_or(DEFAULT_REPUTATION_WEIGHT_PCT, |c| c.reputation_weight_pct)
    }

    pub fn validation_policy(&self) -> ValidationPolicy {
        self.catalog
            .as_ref()
            .map(|c| c.validation.clone())
            .unwrap_or_default()
    }

    pub fn node_timeout(&self) -> chrono::Duration {
        chrono::Duration::seconds(i64::from(
            self.catalog
                .as_ref()
                .map_or(DEFAULT_NODE_TIMEOUT_SECONDS, |c| c.node_timeout_seconds),
        ))
    }

    /// The admission bound: how long after its acceptance a request with no verified result
    /// may still be waiting in the queue.
    pub fn queue_timeout(&self) -> chrono::Duration {
        chrono::Duration::seconds(i64::from(
            self.catalog
                .as_ref()
                .map_or(DEFAULT_QUEUE_TIMEOUT_SECONDS, |c| c.queue_timeout_seconds),
        ))
    }

    /// When request `id` times out of the queue, if it waits there with no verified result.
    pub fn queue_deadline(&self, id: RequestId) -> Option<DateTime<Utc>> {
        let req = self.requests.get(&id)?;
        matches!(req.phase(), RequestPhase::Queued(_))
            .then(|| req.accepted_at + self.queue_timeout())
    }

    pub fn max_attempts(&self) -> u32 {
        self.catalog
            .as_ref()
            .map_or(DEFAULT_MAX_ATTEMPTS, |c| c.max_attempts)
    }
}
