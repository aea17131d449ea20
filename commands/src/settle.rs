//! Settlement commands: the reward policy and mode, staking, and closing reward epochs.
//!
//! The payouts themselves are computed by [`Settlement::settle_next`] in the projections, so
//! the coordinator records exactly what the fold (and the auditor) recomputes. The rules are
//! in `docs/settlement.md`.

use chrono::{DateTime, Utc};
use prlx_events::event::*;
use prlx_events::{Event, NodeId};
use prlx_projections::settlement::{policy_problem, Settlement};
use prlx_projections::CoordinatorState;

use crate::decide::rejection::Rejection;

/// A settlement command; decided by [`decide_settlement`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettlementCommand {
    /// Publish the reward policy (once; publishing the same policy again is a no-op).
    PublishPolicy(RewardPolicyPublished),
    /// Switch between bootstrap and steady-state rewards; the epoch in progress settles in
    /// the new mode.
    ChangeMode { mode: RewardMode },
    /// Stake observed on-chain for a node.
    DepositStake { node_id: NodeId, amount: u64 },
    /// Take `amount` out of the weighting now; it is returned after the cooldown.
    RequestUnstake { node_id: NodeId, amount: u64 },
    /// Return the node's oldest unstake whose cooldown is over at `now`.
    ReturnStake { node_id: NodeId, now: DateTime<Utc> },
    /// Close `epoch`, which must have ended by `now`.
    SettleEpoch { epoch: u64, now: DateTime<Utc> },
}

fn reject(code: RejectionCode, field: &str, message: impl Into<String>) -> Rejection {
    Rejection::new(code, Some(field), message)
}

fn no_policy() -> Rejection {
    reject(
        RejectionCode::MalformedRequest,
        "policy",
        "no reward policy has been published",
    )
}

pub fn decide_settlement(
    state: &CoordinatorState,
    command: SettlementCommand,
) -> Result<Vec<Event>, Rejection> {
    use RejectionCode::*;
    let rewards: &Settlement = &state.rewards;
    match command {
        SettlementCommand::PublishPolicy(p) => {
            if let Some((field, why)) = policy_problem(&p) {
                return Err(reject(MalformedRequest, field, why));
            }
            match &rewards.policy {
                Some(existing) if *existing == p => Ok(vec![]),
                Some(_) => Err(reject(
                    MalformedRequest,
                    "policy",
                    "a different reward policy is already published; it cannot change",
                )),
                None => Ok(vec![p.into()]),
            }
        }
        SettlementCommand::ChangeMode { mode } => {
            if rewards.mode() == mode {
                return Ok(vec![]);
            }
            Ok(vec![RewardModeChanged { mode }.into()])
        }
        SettlementCommand::DepositStake { node_id, amount } => {
            let node = state.nodes.get(&node_id).ok_or_else(|| unknown(node_id))?;
            if amount == 0 {
                return Err(reject(InvalidAmount, "amount", "must be positive"));
            }
            if node.stake.checked_add(amount).is_none() {
                return Err(reject(InvalidAmount, "amount", "stake would overflow"));
            }
            Ok(vec![StakeDeposited { node_id, amount }.into()])
        }
        SettlementCommand::RequestUnstake { node_id, amount } => {
            let op = rewards
                .operators
                .get(&node_id)
                .ok_or_else(|| unknown(node_id))?;
            if amount == 0 {
                return Err(reject(InvalidAmount, "amount", "must be positive"));
            }
            if amount > op.stake {
                return Err(reject(
                    InvalidAmount,
                    "amount",
                    format!("{amount} is more than the {} staked", op.stake),
                ));
            }
            let policy = rewards.policy.as_ref().ok_or_else(no_policy)?;
            Ok(vec![UnstakeRequested {
                node_id,
                amount,
                cooldown_seconds: policy.unstake_cooldown_seconds,
            }
            .into()])
        }
        SettlementCommand::ReturnStake { node_id, now } => {
            let op = rewards
                .operators
                .get(&node_id)
                .ok_or_else(|| unknown(node_id))?;
            match op.unbonding.first() {
                Some(u) if u.available_at <= now => Ok(vec![StakeReturned {
                    node_id,
                    amount: u.amount,
                    available_at: u.available_at,
                }
                .into()]),
                Some(u) => Err(reject(
                    MalformedRequest,
                    "now",
                    format!("the cooldown ends at {}", u.available_at),
                )),
                None => Ok(vec![]), // already returned
            }
        }
        SettlementCommand::SettleEpoch { epoch, now } => {
            let settled = rewards.settle_next().ok_or_else(no_policy)?;
            if epoch < settled.epoch {
                return Ok(vec![]); // already settled
            }
            if epoch > settled.epoch {
                return Err(reject(
                    MalformedRequest,
                    "epoch",
                    format!("epochs settle in order; the next is {}", settled.epoch),
                ));
            }
            if now < settled.ends_at {
                return Err(reject(
                    MalformedRequest,
                    "now",
                    format!("epoch {epoch} ends at {}", settled.ends_at),
                ));
            }
            Ok(vec![settled.into()])
        }
    }
}

fn unknown(node_id: NodeId) -> Rejection {
    reject(
        RejectionCode::UnknownNode,
        "node_id",
        format!("{node_id} is not registered"),
    )
}

/// The settlement commands owed at time `now` (epochs whose end has passed, stake whose
/// cooldown is over), in order. The shell's housekeeping stages them.
pub fn due_settlements(state: &CoordinatorState, now: DateTime<Utc>) -> Vec<SettlementCommand> {
    let rewards = &state.rewards;
    let epochs = rewards
        .due_epochs(now)
        .into_iter()
        .map(|epoch| SettlementCommand::SettleEpoch { epoch, now });
    let returns = rewards
        .due_returns(now)
        .into_iter()
        .map(|node_id| SettlementCommand::ReturnStake { node_id, now });
    epochs.chain(returns).collect()
}
