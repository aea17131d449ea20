//! An epoch's payout tree: fixed on the log (`RewardRootPrepared`) before the coordinator
//! posts it to the RewardsDistributor, and recorded as posted (`RewardRootPosted`) when the
//! chain watcher reads the distributor's `EpochPosted` back. A steady-state epoch's income is
//! paid out of escrow (`CreditEscrow.settleUsage`) and recorded when the watcher reads its
//! `UsageSettled`.

use prlx_chain::record::tree_of;
use prlx_events::event::{
    RejectionCode, RewardRootPosted, RewardRootPrepared, RewardStreamObserved, UsageSettled,
};
use prlx_events::{Event, Hash32};
use prlx_projections::coordinator::{leaves_total, root_leaves};
use prlx_projections::CoordinatorState;

use crate::decide::command::RootPost;
use crate::decide::rejection::Rejection;

fn refused(field: &'static str, why: impl Into<String>) -> Rejection {
    Rejection::new(RejectionCode::MalformedRequest, Some(field), why)
}

/// The tree of settled `epoch`, from its payouts and the nodes' stakers. Refused when the
/// epoch is out of the window or has a tree, or no payout goes to a staked node.
pub(super) fn prepare(state: &CoordinatorState, epoch: u64) -> Result<Vec<Event>, Rejection> {
    let Some(payouts) = state.recent_payouts.get(&epoch) else {
        return Err(refused(
            "epoch",
            format!("epoch {epoch} is not a recently settled one"),
        ));
    };
    if state.roots.contains_key(&epoch) {
        return Ok(vec![]);
    }
    let leaves = root_leaves(payouts, &state.chain_stakes, &state.nodes);
    if leaves.is_empty() {
        return Err(refused(
            "epoch",
            format!("epoch {epoch} pays no node staked on chain"),
        ));
    }
    let total_wei =
        leaves_total(&leaves).ok_or_else(|| refused("leaves", "the total passes u128"))?;
    let mut prepared = RewardRootPrepared {
        epoch,
        leaves,
        total_wei,
        root: Hash32([0; 32]),
    };
    let tree = tree_of(&prepared).map_err(|e| refused("leaves", e.to_string()))?;
    prepared.root = Hash32(tree.root().0);
    Ok(vec![prepared.into()])
}

/// The distributor's `EpochPosted` for a prepared tree, recorded once.
pub(super) fn posted(state: &CoordinatorState, p: RootPost) -> Result<Vec<Event>, Rejection> {
    if let Some((field, why)) = prlx_projections::coordinator::place_problem(&p.chain) {
        return Err(refused(field, why));
    }
    if super::intake::seen_on_chain(state, &p.chain) {
        return Ok(vec![]);
    }
    let Some(prepared) = state.roots.get(&p.epoch) else {
        return Err(refused(
            "epoch",
            format!("no tree prepared for epoch {}", p.epoch),
        ));
    };
    if prepared.posted {
        return Ok(vec![]);
    }
    if prepared.root != p.root || prepared.total_wei != p.total_wei {
        return Err(refused(
            "root",
            format!(
                "epoch {}: the chain has another root or total than prepared",
                p.epoch
            ),
        ));
    }
    Ok(vec![RewardRootPosted {
        epoch: p.epoch,
        root: p.root,
        log_head: p.log_head,
        total_wei: p.total_wei,
        chain: p.chain,
    }
    .into()])
}

/// The escrow's `UsageSettled` for a steady-state epoch's income, recorded once; refused
/// when nothing is due for the epoch or the amount or split is not the income's.
pub(super) fn usage_settled(
    state: &CoordinatorState,
    u: UsageSettled,
) -> Result<Vec<Event>, Rejection> {
    if super::intake::seen_on_chain(state, &u.chain) {
        return Ok(vec![]);
    }
    let due = state.usage_due.get(&u.epoch).copied();
    if let Some((field, why)) = prlx_projections::coordinator::usage_problem(due, &u) {
        return Err(refused(field, why));
    }
    Ok(vec![u.into()])
}

/// The bootstrap stream's terms, recorded once: the same terms again decide nothing (each
/// start of the watcher reads them), other terms are refused (a stream's terms never change:
/// another deployment, or another stream, is not this log's).
pub(super) fn stream_observed(
    state: &CoordinatorState,
    o: RewardStreamObserved,
) -> Result<Vec<Event>, Rejection> {
    if let Some((field, why)) = prlx_projections::coordinator::stream_spelling_problem(&o) {
        return Err(refused(field, why));
    }
    let terms =
        prlx_projections::stream::StreamTerms::of(&o).map_err(|(f, why)| refused(f, why))?;
    match &state.rewards.stream {
        Some(known) if *known == terms => Ok(vec![]),
        Some(_) => Err(refused(
            "deposited_wei",
            "the log follows a stream with other terms",
        )),
        None => Ok(vec![o.into()]),
    }
}
