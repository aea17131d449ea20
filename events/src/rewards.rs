//! Staking and settlement (protocol step 9): the reward policy, stake movements, reward
//! modes and settled epochs. The rules are in `docs/settlement.md`. Re-exported by
//! [`crate::event`], where the catalog of event types lists them.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::NodeId;

/// The weight of one hardware tier in reward weighting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TierWeight {
    pub tier: u8,
    pub weight: u32,
}

/// How uptime is measured and rewards are pooled and split. Published once; reward epochs
/// start at the first multiple of `epoch_seconds` since the Unix epoch at or after the time
/// this is recorded (with the default length, at a UTC midnight).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RewardPolicyPublished {
    /// Length of a reward epoch (86_400 = one UTC day).
    pub epoch_seconds: u32,
    /// Length of an uptime slot; must divide `epoch_seconds`.
    pub uptime_slot_seconds: u32,
    /// Total token supply, in minor units.
    pub total_supply: u64,
    /// The Operator Rewards bucket, in percent of `total_supply` (25).
    pub operator_bucket_pct: u8,
    /// Bootstrap epochs over which the bucket unlocks linearly (730: about 24 months of days).
    pub unlock_epochs: u32,
    /// Steady-state split of usage payments, in percent; the three add up to 100.
    pub operators_pct: u8,
    pub treasury_pct: u8,
    pub infra_pct: u8,
    /// Weight per hardware tier; an unlisted tier weighs 0.
    pub tier_weights: Vec<TierWeight>,
    /// Time from an unstake request until the stake is returned.
    pub unstake_cooldown_seconds: u32,
}

impl Default for RewardPolicyPublished {
    /// Daily epochs of one-minute slots; a quarter of a 10^9-token supply (6 decimals)
    /// unlocked over 730 days; 85/10/5; tiers 1 to 5 weighted 1 to 5; a 7-day cooldown.
    fn default() -> Self {
        Self {
            epoch_seconds: 86_400,
            uptime_slot_seconds: 60,
            total_supply: 1_000_000_000 * 1_000_000,
            operator_bucket_pct: 25,
            unlock_epochs: 730,
            operators_pct: 85,
            treasury_pct: 10,
            infra_pct: 5,
            tier_weights: (1..=5)
                .map(|t| TierWeight {
                    tier: t,
                    weight: u32::from(t),
                })
                .collect(),
            unstake_cooldown_seconds: 7 * 86_400,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StakeDeposited {
    pub node_id: NodeId,
    pub amount: u64,
}

/// `amount` leaves the reward weighting at once and is returned in full
/// `cooldown_seconds` after this event's `recorded_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UnstakeRequested {
    pub node_id: NodeId,
    pub amount: u64,
    /// The policy's cooldown at the time of the request, recorded for readers.
    pub cooldown_seconds: u32,
}

/// Returns the node's oldest pending unstake, once its cooldown is over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StakeReturned {
    pub node_id: NodeId,
    /// Always the full amount requested: stake is never seized.
    pub amount: u64,
    /// When the cooldown of that request ended.
    #[serde(deserialize_with = "crate::fast::datetime::deserialize")]
    pub available_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RewardMode {
    /// Linear unlock of the Operator Rewards bucket.
    Bootstrap,
    /// A share of AI usage payments.
    SteadyState,
}

/// The mode that settles every epoch ending after this is recorded (until the next change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RewardModeChanged {
    pub mode: RewardMode,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Payout {
    pub node_id: NodeId,
    /// Uptime slots of the epoch that the node earned (see `docs/settlement.md`).
    pub verified_slots: u64,
    /// Sum over those slots of stake x tier weight at the time each was earned.
    pub weight: u128,
    pub amount: u64,
}

/// One closed reward epoch. Every amount is in minor units and they add up exactly:
/// `income + carried_in = pool + treasury + infra` and `pool = sum(payouts) + carried_over`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RewardEpochSettled {
    /// Counted from 0, the first epoch after the policy.
    pub epoch: u64,
    #[serde(deserialize_with = "crate::fast::datetime::deserialize")]
    pub starts_at: DateTime<Utc>,
    /// Exclusive: an event recorded at `ends_at` belongs to the next epoch.
    #[serde(deserialize_with = "crate::fast::datetime::deserialize")]
    pub ends_at: DateTime<Utc>,
    pub mode: RewardMode,
    /// Bootstrap: what the bucket unlocks this epoch. Steady state: the credits charged in it.
    pub income: u64,
    /// The operators' pool the previous epoch could not pay out.
    pub carried_in: u64,
    /// What operators share: their part of `income` plus `carried_in`.
    pub pool: u64,
    pub treasury: u64,
    pub infra: u64,
    pub total_weight: u128,
    /// One per node that earned a slot, in node id order.
    pub payouts: Vec<Payout>,
    /// The part of `pool` not paid (all of it when no node has weight).
    pub carried_over: u64,
}
