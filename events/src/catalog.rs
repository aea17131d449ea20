//! The catalog: configuration recorded on the log, so replay prices and validates exactly as
//! the coordinator did. Re-exported from [`crate::event`], where the events that carry it live.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::Hash32;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CatalogModel {
    /// The model reference clients name, e.g. `oss-chat-v1`.
    pub model: String,
    /// SHA-256 of the model file that nodes must serve.
    pub sha256: Hash32,
    /// The smallest hardware tier that can run it.
    pub min_tier: u8,
    /// Price of a request in credit minor units: `base_price + per_token_price * max_tokens`,
    /// times the priority multiplier.
    pub base_price: u64,
    pub per_token_price: u64,
    pub max_tokens_limit: u32,
    /// The model's context in tokens, prompt and output together; 0: not declared. A request
    /// whose `max_tokens` leaves no room for a prompt is refused at intake.
    #[serde(default)]
    pub context_length: u32,
    /// The slowest a node of each tier may serve it, in tokens per second from dispatch to
    /// result on the coordinator's clock: entry `i` is tier `i + 2`'s floor (tier 1 has none;
    /// a missing or zero entry: none). A node whose results stay below its tier's floor is
    /// moved down (`NodeTierLowered`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tier_floors_tps: Vec<u32>,
}

impl CatalogModel {
    /// The floor of `tier` in thousandths of a token per second; `None`: no floor.
    pub fn floor_milli_tps(&self, tier: u8) -> Option<u64> {
        let i = usize::from(tier.checked_sub(2)?);
        let floor = *self.tier_floors_tps.get(i)?;
        (floor > 0).then(|| u64::from(floor) * 1000)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CatalogPublished {
    pub models: Vec<CatalogModel>,
    pub max_tier: u8,
    pub min_deadline_seconds: u32,
    pub max_deadline_seconds: u32,
    /// Weight of reputation in scheduling, in percent (100 = 1.0).
    #[serde(default = "default_reputation_weight_pct")]
    pub reputation_weight_pct: u32,
    /// Dispatch attempts (first plus re-dispatches) before a request fails and is refunded.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Sampling and standing rules of step 7.
    #[serde(default)]
    pub validation: ValidationPolicy,
    /// A node whose last heartbeat is older than this gets no new work until it heartbeats
    /// again (it lapses; see `NodeLapsed`).
    #[serde(default = "default_node_timeout_seconds")]
    pub node_timeout_seconds: u32,
    /// The admission bound: a request with no verified result that is still waiting in the
    /// queue this long after it was accepted fails and is refunded in full.
    #[serde(default = "default_queue_timeout_seconds")]
    pub queue_timeout_seconds: u32,
}

fn default_node_timeout_seconds() -> u32 {
    30
}

fn default_queue_timeout_seconds() -> u32 {
    600
}

/// How results are validated and how standing moves (see `docs/validation.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct ValidationPolicy {
    /// Fraction of completed requests re-dispatched to a second node, in basis points
    /// (10_000 = every request).
    pub sampling_bp: u32,
    /// Length of a sampling epoch in seconds; its seed is revealed when it ends.
    pub epoch_seconds: u32,
    /// Weight of a result proven bad (commitment rejected, outvoted) in the standing ratio.
    pub invalid_weight: u32,
    /// Weight of a comparison with no majority (every party flagged for review).
    pub review_weight: u32,
    /// A node whose standing falls below this leaves the active pool.
    pub removal_below_bp: u32,
    /// Weight of a missed deadline in the standing ratio. It lowers the node's reputation in
    /// scheduling but never removes it from the pool (see `docs/validation.md`). Catalogs
    /// recorded before it existed (`CatalogPublished` v1) are read with 0.
    pub missed_deadline_weight: u32,
    /// Probation: a node's first this many verified results are sampled at
    /// `probation_sampling_bp` (or `sampling_bp`, if higher), the rest at `sampling_bp`.
    /// Catalogs recorded before probation (`CatalogPublished` v2 and older) are read with 0.
    pub probation_results: u32,
    /// The sampling rate of a node's results while it is on probation, in basis points.
    pub probation_sampling_bp: u32,
    /// How long a sampled result waits in the queue for a replica of its class before it is
    /// released `Unconfirmed` (two results that differ: no majority). 0: no hold, as catalogs
    /// recorded before it (`CatalogPublished` v2 and older) are read: released at once when
    /// no peer of the class exists, else it waits for one without bound.
    pub unconfirmed_hold_seconds: u32,
}

impl Default for ValidationPolicy {
    fn default() -> Self {
        Self {
            sampling_bp: 1_000,
            epoch_seconds: 3_600,
            invalid_weight: 4,
            review_weight: 1,
            removal_below_bp: 5_000,
            missed_deadline_weight: 1,
            probation_results: 10,
            probation_sampling_bp: 10_000,
            unconfirmed_hold_seconds: 60,
        }
    }
}

fn default_reputation_weight_pct() -> u32 {
    100
}

fn default_max_attempts() -> u32 {
    3
}
