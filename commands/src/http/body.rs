//! The API's bodies (DTOs) besides the submission's (`crate::submission`): what handlers take
//! and answer, with their OpenAPI schemas.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use prlx_events::event::{ExecutionClass, RewardEpochSettled, RewardMode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::submission::PriorityParam;

/// A node's signed heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatBody {
    /// When the node signed it, Unix seconds; within 120 s of the coordinator's clock and
    /// later than the node's last accepted heartbeat.
    pub at: i64,
    /// Base64 RSA-PSS-SHA256 signature by the node's registered key over
    /// `"prlx/heartbeat/v1\0" || node id (32 bytes) || at (i64 BE)`.
    pub signature: String,
}

/// Where a request stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RequestStatusBody {
    pub request_id: u64,
    /// `accepted`, `completed`, `failed` (more states arrive with scheduling).
    #[schema(example = "accepted")]
    pub status: String,
    pub price: u64,
    /// Credit held for it now.
    pub reserved: u64,
    /// Credit charged for it so far.
    pub charged: u64,
    pub model: String,
    pub hardware_tier: u8,
    pub priority: PriorityParam,
    /// Dispatches so far (a re-dispatch after a missed deadline or a bad result adds one).
    pub attempts: u32,
    /// `queued`, `running`, `validating` or `done`: where the work is. `validating`: a result
    /// is in, its commitment checked, and the request was drawn for redundant execution; the
    /// result is released once a replica confirms it (or a majority of three decides), or
    /// unconfirmed when no replica comes within the catalog's `unconfirmed_hold_seconds`.
    #[schema(example = "running")]
    pub stage: String,
    /// Once the validation is over, what it concluded: `not_sampled` (released on its
    /// verified commitment), `confirmed` (a replica agreed, or a majority of three),
    /// `unconfirmed` (drawn for a replica, but none of its execution class came within the
    /// catalog's `unconfirmed_hold_seconds`: released unchecked) or `no_majority` (the
    /// replicas disagreed: failed, refunded). Absent before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "confirmed")]
    pub validation: Option<String>,
    /// When completed: the result sealed to `client_pubkey` (base64; RSA-OAEP-SHA256-wrapped
    /// AES-256-GCM key, AAD = the request id as u64 big-endian) and its proof-of-execution.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<ResultBodyOut>,
    /// A general-path task's sub-tasks' request ids, by index (each readable here too). Its
    /// result is the aggregate: `poe` is then the SHA-256 of the output and `node_id` all
    /// zeros (no one node produced it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subtasks: Vec<u64>,
    /// A general-path sub-task's task; its result goes to the task, not to the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<u64>,
    /// Its index in the task's plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtask: Option<u32>,
}

/// A returned result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResultBodyOut {
    /// Base64 of the sealed result.
    pub sealed_for_client: String,
    /// `SHA-256(task_id || result || node_id)`, hex.
    pub poe: String,
    /// The node that produced it, 64 hex characters.
    pub node_id: String,
}

/// What a node reports for a dispatch (`prlx_events::protocol::ResultReport`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResultReportBody {
    pub request_id: u64,
    pub attempt: u32,
    pub epoch: u64,
    /// Base64 of the canonical result sealed under the node's session key.
    pub sealed_result: String,
    /// Hex `SHA-256(task_id || result || node_id)`.
    pub poe: String,
    /// Base64 RSA-PSS-SHA256 signature by the node's registered key over
    /// `"prlx/result/v2\0" || request id (u64 BE) || task id (16 bytes) || node id (32 bytes)
    /// || attempt (u32 BE) || poe (32 bytes) || SHA-256(sealed_result bytes) (32 bytes)`. A
    /// report whose signature does not verify is refused (`report_refused`, field
    /// `signature`), nothing recorded, whatever the sealed result holds.
    pub signature: String,
    pub token_count: u32,
}

/// A node declining a dispatch it holds (`prlx_events::protocol::RefusalReport`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RefusalReportBody {
    pub request_id: u64,
    pub attempt: u32,
    /// Why, with what the node measured. One code so far:
    /// `{"code": "context_exceeded", "prompt_tokens", "max_tokens", "context"}`: the prompt's
    /// tokens plus the request's `max_tokens` exceed the model's context (the catalog's
    /// `context_length`, when it declares one).
    #[schema(value_type = Object)]
    pub reason: serde_json::Value,
    /// Base64 RSA-PSS-SHA256 signature by the node's registered key over
    /// `"prlx/refusal/v1\0" || request id (u64 BE) || task id (16 bytes) || node id (32 bytes)
    /// || attempt (u32 BE) || 1 || prompt_tokens, max_tokens, context (u32 BE each)`.
    pub signature: String,
}

/// What became of a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReportOutcome {
    /// `recorded`: the report and what follows from it are on the log; `duplicate`: already
    /// recorded.
    pub outcome: String,
}

/// A credit account. Amounts are in credit minor units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccountBody {
    pub account: String,
    pub balance: u64,
    /// Held for requests in flight.
    pub reserved: u64,
    /// `balance - reserved`: what new requests may use.
    pub available: u64,
}

/// One of an account's delegations, as the log holds it: one a request was accepted under,
/// or one the account revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DelegationEntry {
    /// The delegation's EIP-712 hash (hex), as requests under it record it.
    pub delegation: String,
    /// The delegate's address; absent for a delegation revoked before any request used it
    /// (the log keeps only its hash and expiry then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spending_limit: Option<u64>,
    /// Reserved and charged under it, less what was refunded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spent: Option<u64>,
    /// Unix seconds.
    pub expires_at: u64,
    pub revoked: bool,
}

/// What a request would cost.
#[derive(Debug, Clone, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QuoteQuery {
    /// A model reference from the catalog.
    pub model: String,
    pub hardware_tier: u8,
    /// `low`, `standard` (the default) or `high`.
    #[param(value_type = Option<String>)]
    pub priority: Option<PriorityParam>,
    pub max_tokens: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuoteBody {
    pub model: String,
    /// What a submission with these parameters is charged, in credit minor units.
    pub price: u64,
}

/// A general-path task to price, as it would be submitted (without the account, key or
/// signature): its parameters as a JSON value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskQuoteRequest {
    #[schema(example = "render.tiles")]
    pub workload_class: String,
    /// The catalog model whose pool runs it (and, for `batch.inference`, the model run).
    pub model: String,
    pub hardware_tier: u8,
    #[serde(default)]
    pub priority: Option<PriorityParam>,
    pub max_tokens: u32,
    /// The class's parameters (what a submission's `prompt` holds as JSON text).
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
}

/// A general-path task's price: the sum of its sub-tasks', each its cost units priced as
/// tokens of the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TaskQuoteBody {
    pub workload_class: String,
    pub model: String,
    /// What the submission is charged, in credit minor units (reserved whole at intake).
    pub price: u64,
    /// How many sub-tasks the segmenter makes of it.
    pub subtasks: u32,
    /// The longest chain of dependent sub-tasks (1: all run in parallel).
    pub depth: u32,
    /// Work units in all, and what a unit is (e.g. `pixel x max_iter`).
    pub cost: u64,
    pub cost_unit: String,
}

/// What two honest nodes must share to produce the same bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExecutionClassBody {
    #[schema(example = "cpu-x86_64-avx2")]
    pub device: String,
    pub driver: String,
    #[schema(example = "onnxruntime-1.22.0")]
    pub runtime: String,
}

impl From<ExecutionClassBody> for ExecutionClass {
    fn from(e: ExecutionClassBody) -> Self {
        ExecutionClass {
            device: e.device,
            driver: e.driver,
            runtime: e.runtime,
        }
    }
}

impl From<&ExecutionClass> for ExecutionClassBody {
    fn from(e: &ExecutionClass) -> Self {
        ExecutionClassBody {
            device: e.device.clone(),
            driver: e.driver.clone(),
            runtime: e.runtime.clone(),
        }
    }
}

/// An operator node joining the pool.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RegisterNodeBody {
    /// The node's RSA public key, PEM (SPKI). Its SHA-256 fingerprint is the node id.
    pub public_key_pem: String,
    pub hardware_tier: u8,
    /// Catalog models the node serves.
    pub models: Vec<String>,
    /// Tasks it runs at once.
    pub slots: u32,
    /// Must be 0 or absent: a node's stake is what `NodeStaking` holds for its id, observed on
    /// the chain; a declared stake is refused, naming this field.
    #[serde(default)]
    pub stake: u64,
    /// Normalised before it is recorded (trimmed, lowercased); a device kind or runtime
    /// outside the vocabulary is refused, naming the part (`docs/validation.md`).
    pub execution_class: ExecutionClassBody,
    /// The SHA-256 (64 hex characters) of the model file it serves, by model: each must be
    /// the catalog's for that model. Replicas are drawn among nodes that run the same file.
    #[serde(default)]
    pub model_hashes: BTreeMap<String, String>,
    /// The chain address (0x, 40 lowercase hex) that stakes for the node and is paid its
    /// rewards: only this staker's bond on `NodeStaking` counts for it. Absent: no stake ever
    /// counts, so the node is never paid.
    #[serde(default)]
    pub operator: Option<String>,
    /// When the node signed this registration, Unix seconds: within 120 s of the
    /// coordinator's clock.
    #[serde(default)]
    pub signed_at: Option<i64>,
    /// Base64 RSA-PSS-SHA256 by the node's key (the one in `public_key_pem`) over the
    /// statement `prlx/registration/v1` (`prlx_events::crypto::registration_statement`): the
    /// node id, tier, slots, models, execution class in normal form, model hashes, operator
    /// and `signed_at`. Required: whoever does not hold the key cannot register it.
    #[serde(default)]
    pub signature: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeRegisteredBody {
    /// SHA-256 of the public key's SPKI DER, 64 lowercase hex characters.
    pub node_id: String,
}

/// A node as the coordinator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeBody {
    pub node_id: String,
    pub hardware_tier: u8,
    pub models: Vec<String>,
    pub slots: u32,
    pub stake: u64,
    pub execution_class: ExecutionClassBody,
    #[schema(value_type = String, format = DateTime)]
    pub registered_at: DateTime<Utc>,
    /// Log time of the last heartbeat (of the registration, before any).
    #[schema(value_type = String, format = DateTime)]
    pub last_heartbeat: DateTime<Utc>,
    pub in_pool: bool,
    pub draining: bool,
    /// Standing in basis points (10000 = full).
    pub standing_bp: u32,
    /// Dispatches it declined as work it cannot run: they do not lower its standing, and
    /// are counted here so that a node that declines much is seen doing so.
    pub refusals: u64,
}

/// A node's stake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StakeBody {
    pub node_id: String,
    /// What weights its uptime rewards now: registered plus deposited, minus unstaked.
    pub staked: u64,
    /// Unstaked amounts waiting for their cooldown, oldest first; each is returned whole at
    /// its `available_at` (stake is never seized).
    pub pending: Vec<PendingUnstakeBody>,
    /// Stake returned to it so far, after cooldowns.
    pub returned: u64,
    /// Uptime rewards paid to it over every settled epoch.
    pub rewards_paid: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PendingUnstakeBody {
    pub amount: u64,
    /// When the cooldown ends; the coordinator records the return at its next tick after.
    #[schema(value_type = String, format = DateTime)]
    pub available_at: DateTime<Utc>,
}

/// `bootstrap` (the Operator Rewards bucket unlocks linearly) or `steady_state` (a share of
/// the credits charged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RewardModeParam {
    Bootstrap,
    SteadyState,
}

impl From<RewardMode> for RewardModeParam {
    fn from(m: RewardMode) -> Self {
        match m {
            RewardMode::Bootstrap => RewardModeParam::Bootstrap,
            RewardMode::SteadyState => RewardModeParam::SteadyState,
        }
    }
}

/// Where settlement stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RewardsBody {
    /// The published reward policy (the fields of the `RewardPolicyPublished` event, see
    /// `docs/settlement.md`); null before one is published, and then nothing is earned.
    #[schema(value_type = Option<Object>)]
    pub policy: Option<serde_json::Value>,
    /// The mode the epoch in progress settles in, unless it is changed before the epoch ends.
    pub mode: RewardModeParam,
    /// The next epoch to settle (the one in progress, or one that ended a moment ago).
    pub next_epoch: u64,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_epoch_starts_at: Option<DateTime<Utc>>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_epoch_ends_at: Option<DateTime<Utc>>,
    /// The operators' pool the last settled epoch could not pay out; it joins the next pool.
    pub carried: u64,
}

/// Settled epochs from `from` on.
#[derive(Debug, Clone, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EpochsQuery {
    /// The first epoch to list (default 0).
    pub from: Option<u64>,
    /// At most this many epochs (default and maximum 1000).
    pub limit: Option<u32>,
}

/// The most epochs one listing returns.
pub const MAX_EPOCHS_LISTED: u32 = 1000;

/// One settled reward epoch (the `RewardEpochSettled` event). Amounts are in minor units and
/// add up exactly: `income + carried_in = pool + treasury + infra` and
/// `pool = sum(payouts.amount) + carried_over`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RewardEpochBody {
    pub epoch: u64,
    #[schema(value_type = String, format = DateTime)]
    pub starts_at: DateTime<Utc>,
    /// Exclusive.
    #[schema(value_type = String, format = DateTime)]
    pub ends_at: DateTime<Utc>,
    pub mode: RewardModeParam,
    /// Bootstrap: what the bucket unlocked. Steady state: the credits charged in the epoch.
    pub income: u64,
    pub carried_in: u64,
    /// What operators shared.
    pub pool: u64,
    pub treasury: u64,
    pub infra: u64,
    /// A u128, as a decimal string (JSON numbers lose precision past 2^53 in many clients).
    #[schema(example = "5400")]
    pub total_weight: String,
    /// One per node that earned an uptime slot, in node id order.
    pub payouts: Vec<PayoutBody>,
    pub carried_over: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PayoutBody {
    pub node_id: String,
    /// Uptime slots it earned in the epoch.
    pub verified_slots: u64,
    /// Sum over those slots of stake x tier weight; a u128 as a decimal string.
    pub weight: String,
    pub amount: u64,
}

impl From<&RewardEpochSettled> for RewardEpochBody {
    fn from(e: &RewardEpochSettled) -> Self {
        RewardEpochBody {
            epoch: e.epoch,
            starts_at: e.starts_at,
            ends_at: e.ends_at,
            mode: e.mode.into(),
            income: e.income,
            carried_in: e.carried_in,
            pool: e.pool,
            treasury: e.treasury,
            infra: e.infra,
            total_weight: e.total_weight.to_string(),
            payouts: e
                .payouts
                .iter()
                .map(|p| PayoutBody {
                    node_id: p.node_id.0.to_hex(),
                    verified_slots: p.verified_slots,
                    weight: p.weight.to_string(),
                    amount: p.amount,
                })
                .collect(),
            carried_over: e.carried_over,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HealthBody {
    #[schema(example = "ok")]
    pub status: String,
    /// One past the offset of the last record the coordinator has applied.
    pub log_end: u64,
}
