//! The fold's arm of a node's bond on chain (`ChainStakeChanged`), and the rule `decide`
//! shares with it ([`chain_stake_problem`]).
//!
//! The contract is the authority: the fold only checks that a record is consistent with
//! itself and with the bond observed before it (the stake is the bonded amount in credit
//! units; a node's staker never changes, as the contract sets it once; a withdrawal leaves the
//! bond as it was), and that each chain event applies once. Whether the chain really has the
//! event is for the auditor (`prlx-replay verify --chain`).

use prlx_events::event::{wei_to_units, ChainStakeChanged, StakeChange};
use prlx_events::Envelope;

use crate::coordinator::state::{ChainStake, CoordinatorState};
use crate::fold::FoldError;

/// Why `c` cannot follow `before` (the node's bond as last observed): `(field, reason)`.
pub fn chain_stake_problem(
    before: Option<&ChainStake>,
    c: &ChainStakeChanged,
) -> Option<(&'static str, String)> {
    if wei_to_units(&c.amount_wei).is_none() {
        return Some((
            "amount_wei",
            format!("{:?} is not a decimal amount", c.amount_wei),
        ));
    }
    match wei_to_units(&c.bonded_wei) {
        Some(stake) if stake == c.stake => {}
        derived => {
            return Some((
                "stake",
                format!(
                    "recorded {}, derived {derived:?} from {} bonded",
                    c.stake, c.bonded_wei
                ),
            ))
        }
    }
    match (before, c.change) {
        (None, StakeChange::Withdrawn) => Some((
            "change",
            "a withdrawal for a node with no bond observed".into(),
        )),
        (Some(b), _) if b.staker != c.staker => Some((
            "staker",
            format!("recorded {}, the node's staker is {}", c.staker, b.staker),
        )),
        (Some(b), StakeChange::Withdrawn) if b.bonded_wei != c.bonded_wei => Some((
            "bonded_wei",
            format!(
                "a withdrawal leaves the bond at {}, recorded {}",
                b.bonded_wei, c.bonded_wei
            ),
        )),
        _ => None,
    }
}

impl CoordinatorState {
    pub(super) fn fold_chain_stake(
        &mut self,
        env: &Envelope,
        c: &ChainStakeChanged,
    ) -> Result<(), FoldError> {
        let key = c.chain.key();
        if self.chain_seen.contains(&key) {
            return Err(FoldError::new(
                env,
                format!("chain event {key} applied twice"),
            ));
        }
        if let Some((field, why)) = chain_stake_problem(self.chain_stakes.get(&c.node_id), c) {
            return Err(FoldError::at_field(env, field, why));
        }
        self.chain_seen.insert(key);
        self.chain_block = self.chain_block.max(c.chain.block_number);
        self.chain_stakes.insert(
            c.node_id,
            ChainStake {
                staker: c.staker.clone(),
                bonded_wei: c.bonded_wei.clone(),
                stake: c.stake,
            },
        );
        if let Some(node) = self.nodes.get_mut(&c.node_id) {
            node.stake = c.stake;
        }
        Ok(())
    }
}
