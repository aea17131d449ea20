//! The fold's arms of what comes from or goes to the chain: a node's bond
//! (`ChainStakeChanged`, with the rule `decide` shares, [`chain_stake_problem`]) and an
//! epoch's payout tree (`RewardRootPrepared`, derived by [`root_leaves`]; `RewardRootPosted`),
//! and a steady-state epoch's usage paid out of escrow (`UsageSettled`, [`usage_problem`]).
//!
//! The contract is the authority: the fold only checks that a record is consistent with
//! itself and with the bond observed before it (the stake is the bonded amount in credit
//! units; a node's staker never changes, as the contract sets it once; a withdrawal leaves the
//! bond as it was), and that each chain event applies once. Whether the chain really has the
//! event is for the auditor (`prlx-replay verify --chain`).

use std::collections::BTreeMap;

use prlx_events::event::{
    wei_to_units, ChainRef, ChainStakeChanged, RewardEpochSettled, RewardMode, RewardRootPosted,
    RewardRootPrepared, RewardStreamObserved, RootLeaf, StakeChange, UsageSettled, CREDIT_UNIT_WEI,
    ESCROW_INFRA_PCT, ESCROW_TREASURY_PCT,
};
use prlx_events::{Envelope, NodeId};

use crate::coordinator::state::{ChainStake, CoordinatorState, PreparedRoot, ROOT_WINDOW_EPOCHS};
use crate::coordinator::views::NodeView;
use crate::fold::FoldError;
use crate::settlement::stake_counts;

/// Why `text` is not `bytes` bytes of lowercase 0x-hex, the one spelling the log uses: two
/// spellings of one hash would name one chain event twice.
pub fn hex_problem(
    field: &'static str,
    text: &str,
    bytes: usize,
) -> Option<(&'static str, String)> {
    let ok = text.len() == 2 + 2 * bytes
        && text.starts_with("0x")
        && text[2..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (!ok).then(|| {
        (
            field,
            format!("{text:?} is not {bytes} bytes of lowercase 0x-hex"),
        )
    })
}

/// Why a recorded chain place is not in the log's spelling.
pub fn place_problem(place: &ChainRef) -> Option<(&'static str, String)> {
    hex_problem("chain.contract", &place.contract, 20)
        .or_else(|| hex_problem("chain.block_hash", &place.block_hash, 32))
        .or_else(|| hex_problem("chain.tx_hash", &place.tx_hash, 32))
}

/// Why `c` cannot follow `before` (the node's bond as last observed): `(field, reason)`.
pub fn chain_stake_problem(
    before: Option<&ChainStake>,
    c: &ChainStakeChanged,
) -> Option<(&'static str, String)> {
    if let Some(p) = place_problem(&c.chain).or_else(|| hex_problem("staker", &c.staker, 20)) {
        return Some(p);
    }
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
        let key = self.unseen_chain_event(env, &c.chain)?;
        if let Some((field, why)) = chain_stake_problem(self.chain_stakes.get(&c.node_id), c) {
            return Err(FoldError::at_field(env, field, why));
        }
        self.remember_chain_event(&c.chain, key);
        self.chain_stakes.insert(
            c.node_id,
            ChainStake {
                staker: c.staker.clone(),
                bonded_wei: c.bonded_wei.clone(),
                stake: c.stake,
            },
        );
        if let Some(node) = self.nodes.get_mut(&c.node_id) {
            node.stake = if stake_counts(node.signed, node.operator.as_deref(), &c.staker) {
                c.stake
            } else {
                0
            };
        }
        Ok(())
    }
}

/// The leaves of an epoch's payout tree: each payout above zero of a node with a staker on
/// chain whose bond counts for it ([`stake_counts`]: the operator it signed), to that staker,
/// in minor units of PRLX, in node id order (the payouts' order). Such a payout has a weight
/// only from a bond that counts, so the filter holds by construction; it is here so that no
/// other staker is ever a leaf, whatever reaches the payouts.
pub fn root_leaves(
    payouts: &[(NodeId, u64)],
    stakes: &BTreeMap<NodeId, ChainStake>,
    nodes: &BTreeMap<NodeId, NodeView>,
) -> Vec<RootLeaf> {
    payouts
        .iter()
        .filter(|(_, amount)| *amount > 0)
        .filter_map(|(node, amount)| {
            let s = stakes.get(node)?;
            let bound = nodes
                .get(node)
                .is_none_or(|n| stake_counts(n.signed, n.operator.as_deref(), &s.staker));
            bound.then(|| RootLeaf {
                node_id: *node,
                recipient: s.staker.clone(),
                amount_wei: (u128::from(*amount) * CREDIT_UNIT_WEI).to_string(),
            })
        })
        .collect()
}

/// The sum of the leaves' amounts, decimal; `None` if one is not a decimal or the sum passes
/// u128.
pub fn leaves_total(leaves: &[RootLeaf]) -> Option<String> {
    leaves
        .iter()
        .try_fold(0u128, |sum, l| {
            sum.checked_add(l.amount_wei.parse::<u128>().ok()?)
        })
        .map(|t| t.to_string())
}

impl CoordinatorState {
    /// Moves the watcher's resume point to `place`'s block if it is the highest so far.
    pub(super) fn note_chain_place(&mut self, place: &ChainRef) {
        if place.block_number >= self.chain_block {
            self.chain_block = place.block_number;
            self.chain_block_hash = Some(place.block_hash.clone());
        }
    }

    /// Drops the names of chain events below the window, deposits' and others': the floor
    /// tells them apart.
    pub(super) fn forget_below_window(&mut self) {
        let floor = self.chain_floor();
        while self.chain_deposits.first().is_some_and(|(b, _)| *b < floor) {
            if let Some((_, tx_ref)) = self.chain_deposits.pop_first() {
                self.deposits.remove(&tx_ref);
            }
        }
        while self
            .chain_seen_blocks
            .first()
            .is_some_and(|(b, _)| *b < floor)
        {
            if let Some((_, key)) = self.chain_seen_blocks.pop_first() {
                self.chain_seen.remove(&key);
            }
        }
    }

    /// `place`'s key, if its event may be applied: not applied before, and not from below the
    /// window, where every event was applied when the watcher read its block (so a record of
    /// one is a second application, or of an event the watcher never saw).
    pub(super) fn unseen_chain_event(
        &self,
        env: &Envelope,
        place: &ChainRef,
    ) -> Result<String, FoldError> {
        let key = place.key();
        if self.chain_seen.contains(&key) {
            return Err(FoldError::new(
                env,
                format!("chain event {key} applied twice"),
            ));
        }
        self.within_window(env, place)?;
        Ok(key)
    }

    /// Refuses a chain event from below the window ([`CoordinatorState::chain_floor`]).
    pub(super) fn within_window(&self, env: &Envelope, place: &ChainRef) -> Result<(), FoldError> {
        if place.block_number < self.chain_floor() {
            return Err(FoldError::at_field(
                env,
                "chain.block_number",
                format!(
                    "{} is below the chain window (from block {}): the chain is read in \
                     order, so an event there was applied before",
                    place.block_number,
                    self.chain_floor()
                ),
            ));
        }
        Ok(())
    }

    /// Records that the event at `place`, named `key`, applied; moves the window on.
    fn remember_chain_event(&mut self, place: &ChainRef, key: String) {
        self.chain_seen_blocks
            .insert((place.block_number, key.clone()));
        self.chain_seen.insert(key);
        self.note_chain_place(place);
        self.forget_below_window();
    }
}

impl CoordinatorState {
    /// Keeps a settled epoch's payouts for preparing its tree, and a steady-state income for
    /// the escrow to pay out, within the window.
    pub(super) fn keep_payouts(&mut self, s: &RewardEpochSettled) {
        let payouts = s.payouts.iter().map(|p| (p.node_id, p.amount)).collect();
        self.recent_payouts.insert(s.epoch, payouts);
        while self.recent_payouts.len() > ROOT_WINDOW_EPOCHS {
            self.recent_payouts.pop_first();
        }
        if s.mode == RewardMode::SteadyState && s.income > 0 {
            self.usage_due.insert(s.epoch, s.income);
            while self.usage_due.len() > ROOT_WINDOW_EPOCHS {
                self.usage_due.pop_first();
            }
        }
        while self.roots.len() > ROOT_WINDOW_EPOCHS {
            self.roots.pop_first();
        }
    }

    pub(super) fn fold_root_prepared(
        &mut self,
        env: &Envelope,
        r: &RewardRootPrepared,
    ) -> Result<(), FoldError> {
        let Some(payouts) = self.recent_payouts.get(&r.epoch) else {
            return Err(FoldError::at_field(
                env,
                "epoch",
                format!("epoch {} is not a recently settled one", r.epoch),
            ));
        };
        if self.roots.contains_key(&r.epoch) {
            return Err(FoldError::at_field(
                env,
                "epoch",
                format!("epoch {} already has a tree", r.epoch),
            ));
        }
        let leaves = root_leaves(payouts, &self.chain_stakes, &self.nodes);
        if leaves.is_empty() || leaves != r.leaves {
            return Err(FoldError::at_field(
                env,
                "leaves",
                format!(
                    "recorded {} leaves, derived {} from the settlement and the stakers",
                    r.leaves.len(),
                    leaves.len()
                ),
            ));
        }
        if leaves_total(&leaves).as_deref() != Some(r.total_wei.as_str()) {
            return Err(FoldError::at_field(
                env,
                "total_wei",
                format!("recorded {}, not the leaves' sum", r.total_wei),
            ));
        }
        self.roots.insert(
            r.epoch,
            PreparedRoot {
                root: r.root,
                total_wei: r.total_wei.clone(),
                posted: false,
            },
        );
        Ok(())
    }

    pub(super) fn fold_root_posted(
        &mut self,
        env: &Envelope,
        p: &RewardRootPosted,
    ) -> Result<(), FoldError> {
        let key = self.unseen_chain_event(env, &p.chain)?;
        let Some(prepared) = self.roots.get_mut(&p.epoch) else {
            return Err(FoldError::at_field(
                env,
                "epoch",
                format!("no tree prepared for epoch {}", p.epoch),
            ));
        };
        if prepared.posted {
            return Err(FoldError::at_field(
                env,
                "epoch",
                format!("epoch {} posted twice", p.epoch),
            ));
        }
        if prepared.root != p.root || prepared.total_wei != p.total_wei {
            return Err(FoldError::at_field(
                env,
                "root",
                format!(
                    "epoch {}: posted a root or total other than the prepared one",
                    p.epoch
                ),
            ));
        }
        prepared.posted = true;
        self.remember_chain_event(&p.chain, key);
        Ok(())
    }
}

/// Why a stream observation's addresses or block hash are not in the log's spelling.
pub fn stream_spelling_problem(o: &RewardStreamObserved) -> Option<(&'static str, String)> {
    hex_problem("lockup", &o.lockup, 20)
        .or_else(|| hex_problem("recipient", &o.recipient, 20))
        .or_else(|| hex_problem("block_hash", &o.block_hash, 32))
}

/// Why `u` cannot be the escrow paying out steady-state epoch `u.epoch`, whose income still
/// due is `due` credits (`None`: nothing due for it): `(field, reason)`. The amount settled
/// must be the income, and its split the contract's.
pub fn usage_problem(due: Option<u64>, u: &UsageSettled) -> Option<(&'static str, String)> {
    if let Some(p) = place_problem(&u.chain) {
        return Some(p);
    }
    let Some(income) = due else {
        return Some((
            "epoch",
            format!(
                "epoch {} has no steady-state income due from escrow",
                u.epoch
            ),
        ));
    };
    let Some(amount) = u.amount_wei() else {
        return Some(("operators_wei", "the shares are not decimal amounts".into()));
    };
    let owed = u128::from(income) * CREDIT_UNIT_WEI;
    if amount != owed {
        return Some((
            "operators_wei",
            format!("{amount} settled, the epoch's income is {income} credits ({owed})"),
        ));
    }
    let split = (
        (amount * ESCROW_TREASURY_PCT / 100).to_string(),
        (amount * ESCROW_INFRA_PCT / 100).to_string(),
    );
    (split != (u.treasury_wei.clone(), u.infra_wei.clone())).then(|| {
        (
            "treasury_wei",
            format!(
                "the escrow's split of {amount} is {} / {}, recorded {} / {}",
                split.0, split.1, u.treasury_wei, u.infra_wei
            ),
        )
    })
}

impl CoordinatorState {
    pub(super) fn fold_usage_settled(
        &mut self,
        env: &Envelope,
        u: &UsageSettled,
    ) -> Result<(), FoldError> {
        let key = self.unseen_chain_event(env, &u.chain)?;
        if let Some((field, why)) = usage_problem(self.usage_due.get(&u.epoch).copied(), u) {
            return Err(FoldError::at_field(env, field, why));
        }
        self.remember_chain_event(&u.chain, key);
        self.usage_due.remove(&u.epoch);
        Ok(())
    }
}
