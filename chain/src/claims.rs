//! An operator's claims: from the coordinator's log, the payout trees of the epochs posted on
//! chain, and the node's leaf in each with its proof; then `RewardsDistributor.claim` for each
//! one not claimed yet.
//!
//! The log is the source of the tree (`RewardRootPrepared` holds every leaf), the chain of
//! whether it was posted (`RewardRootPosted`, confirmed) and claimed. The proof is rebuilt
//! here, so an operator trusts no one's word for it: a root that is not the leaves' would not
//! verify on chain, and the auditor reports it.

use std::collections::BTreeMap;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::DynProvider;
use prlx_events::event::RewardRootPrepared;
use prlx_events::{Event, NodeId};

use crate::bindings::RewardsDistributor;
use crate::deploy::confirm;
use crate::record::tree_of;
use crate::ChainError;

/// One payout to claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The epoch.
    pub epoch: u64,
    /// The node.
    pub node_id: B256,
    /// Who receives it (the node's staker).
    pub recipient: Address,
    /// Minor units of PRLX.
    pub amount: U256,
    /// The Merkle proof of its leaf.
    pub proof: Vec<B256>,
}

/// Collects, from the log's events in order, the claims of `node` in every epoch whose tree
/// was posted.
#[derive(Debug, Default)]
pub struct ClaimFinder {
    prepared: BTreeMap<u64, RewardRootPrepared>,
    posted: Vec<u64>,
}

impl ClaimFinder {
    /// Takes one event of the log.
    pub fn see(&mut self, event: &Event) {
        match event {
            Event::RewardRootPrepared(r) => {
                self.prepared.insert(r.epoch, r.clone());
            }
            Event::RewardRootPosted(p) => self.posted.push(p.epoch),
            _ => {}
        }
    }

    /// The claims of `node`: one per posted epoch whose tree has a leaf for it.
    pub fn claims_of(&self, node: NodeId) -> Result<Vec<Claim>, ChainError> {
        let mut out = Vec::new();
        for epoch in &self.posted {
            let Some(r) = self.prepared.get(epoch) else {
                continue;
            };
            let tree = tree_of(r)?;
            if tree.root().0 != r.root.0 {
                return Err(ChainError::Tree(format!(
                    "epoch {epoch}: the log's root is not its leaves' root"
                )));
            }
            let id = B256::from(node.0 .0);
            if let Some(i) = tree.position_of(&id) {
                let p = tree.payouts[i];
                out.push(Claim {
                    epoch: *epoch,
                    node_id: id,
                    recipient: p.recipient,
                    amount: p.amount,
                    proof: tree.proof(i),
                });
            }
        }
        Ok(out)
    }
}

/// What became of one claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// Paid now, in this transaction.
    Paid(B256),
    /// Claimed before.
    Already,
}

/// Claims each of `claims` not claimed yet, sent by `provider`'s signer (anyone may send; the
/// tokens go to the leaf's recipient).
pub async fn claim_all(
    provider: &DynProvider,
    distributor: Address,
    claims: &[Claim],
) -> Result<Vec<(u64, Claimed)>, ChainError> {
    let d = RewardsDistributor::new(distributor, provider.clone());
    let mut out = Vec::new();
    for c in claims {
        let already = d
            .claimed(U256::from(c.epoch), c.node_id)
            .call()
            .await
            .map_err(|e| ChainError::rpc("claimed", e))?;
        if already {
            out.push((c.epoch, Claimed::Already));
            continue;
        }
        let sent = d
            .claim(
                U256::from(c.epoch),
                c.node_id,
                c.recipient,
                c.amount,
                c.proof.clone(),
            )
            .send()
            .await;
        let receipt = confirm(sent, &format!("claiming epoch {}", c.epoch)).await?;
        out.push((c.epoch, Claimed::Paid(receipt.transaction_hash)));
    }
    Ok(out)
}
