//! Settlement (step 9): verified uptime, stake, and reward epochs.
//!
//! Folded as part of [`crate::CoordinatorState`] (its `rewards` field), so `decide` can close
//! an epoch against it and the auditor recomputes every payout with the same code: the fold
//! refuses a [`RewardEpochSettled`] that differs from what [`Settlement::settle_next`] gives,
//! naming the first field that differs. The rules are in `docs/settlement.md`; in short:
//!
//! - An epoch is divided into uptime slots. A node earns a slot when it heartbeats or has a
//!   commitment verified in it while it is in the pool, not draining and not *in default*; a
//!   failed dispatch (deadline expired, commitment rejected, node flagged) puts it in default
//!   until its next verified commitment.
//! - Each earned slot adds `stake x tier weight` (at that moment) to the node's weight.
//! - The pool is the bucket's linear unlock (bootstrap: what the Sablier stream unlocks in the
//!   epoch once its terms are on the log, [`crate::stream`]; the policy's unlock before) or the
//!   operators' share of the credits charged in the epoch (steady state); it is split `floor(pool * w / W)`, and the leftover
//!   minor units go one each by largest remainder, ties to the lower node id.
//!
//! Settlement keeps its own view of each node (tier, stake, pool status, default), so a
//! settlement depends on nothing but this struct.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, TimeZone, Utc};
use prlx_events::event::*;
use prlx_events::{Envelope, Event, Hash32, NodeId};
use serde::{Deserialize, Serialize};

use crate::fold::FoldError;
use crate::stream::StreamTerms;

mod rules;

pub use self::rules::*;

/// Everything settlement needs from the log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// The reward policy, once published.
    pub policy: Option<RewardPolicyPublished>,
    /// When epoch 0 starts: the first multiple of the epoch length (since the Unix epoch) at
    /// or after the policy was recorded.
    pub first_epoch_start: Option<DateTime<Utc>>,
    /// Mode changes in log order, with the time each was recorded.
    pub mode_changes: Vec<(DateTime<Utc>, RewardMode)>,
    pub operators: BTreeMap<NodeId, Operator>,
    /// Each node's stake as its bond on chain was last observed (`ChainStakeChanged`), also
    /// for nodes not registered yet.
    #[serde(default)]
    pub chain_stakes: BTreeMap<NodeId, u64>,
    /// Each such node's staker (the contract sets it once): its bond counts only if it is the
    /// operator the node signed ([`stake_counts`]).
    #[serde(default)]
    pub chain_stakers: BTreeMap<NodeId, String>,
    /// Verified uptime of the epochs not settled yet: epoch -> node -> uptime.
    pub uptime: BTreeMap<u64, BTreeMap<NodeId, Uptime>>,
    /// Credits charged in each epoch not settled yet.
    pub charged: BTreeMap<u64, u64>,
    /// The next epoch to settle; epochs settle in order.
    pub next_epoch: u64,
    /// Bootstrap epochs settled so far: the index of the next bucket unlock.
    pub bootstrap_epochs_settled: u64,
    /// The operators' pool the last settled epoch could not pay out.
    pub carried: u64,
    /// Nodes with pending unstakes, by when their oldest one is due: the timer service reads
    /// the front, so finding what is due does not walk every operator.
    #[serde(default)]
    pub unbonding_due: BTreeSet<(DateTime<Utc>, NodeId)>,
    /// The bootstrap stream's terms, once read off the chain (`RewardStreamObserved`): from
    /// then on a bootstrap epoch earns what the stream unlocks in it, not the policy's unlock.
    #[serde(default)]
    pub stream: Option<StreamTerms>,
    /// The catalog's models as last published (name -> file hash, smallest tier): a node
    /// earns slots only while it serves one of them ([`serves_catalog`]).
    #[serde(default)]
    pub catalog: Option<BTreeMap<String, (Hash32, u8)>>,
}

/// Settlement's view of one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    pub tier: u8,
    /// Stake that counts in the weighting: registered plus deposited, minus unstaked.
    pub stake: u64,
    /// Unstake requests waiting for their cooldown, oldest first.
    pub unbonding: Vec<Unbonding>,
    pub in_pool: bool,
    pub draining: bool,
    /// A dispatch failed and no commitment has been verified since: earns no slots.
    pub in_default: bool,
    /// The last uptime slot (counted from epoch 0's start) this node earned.
    pub last_slot: Option<u64>,
    /// Rewards paid to it over all settled epochs, in minor units.
    pub paid: u64,
    /// The operator it signed at registration, and whether it signed one: whose bond on
    /// chain counts as its stake ([`stake_counts`]).
    #[serde(default)]
    pub operator: Option<String>,
    #[serde(default)]
    pub signed: bool,
    /// The models it registered and the file hash it reported for each.
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub model_hashes: BTreeMap<String, Hash32>,
}

/// Whether `op` is eligible for work under `catalog`: one of its models is a catalog model
/// its tier may run, with the file the catalog names. A node that serves only models the
/// catalog dropped (or replaced with another file) gets no requests, so it earns no uptime
/// either. Without a catalog on the log (logs from before catalogs) every node is eligible;
/// a node registered before hashes were reported is matched by name.
pub fn serves_catalog(op: &Operator, catalog: Option<&BTreeMap<String, (Hash32, u8)>>) -> bool {
    let Some(catalog) = catalog else {
        return true;
    };
    op.models.iter().any(|m| {
        catalog.get(m).is_some_and(|(sha, min_tier)| {
            op.tier >= *min_tier && op.model_hashes.get(m).is_none_or(|h| h == sha)
        })
    })
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unbonding {
    pub amount: u64,
    pub available_at: DateTime<Utc>,
}

/// A node's verified uptime in one epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uptime {
    pub slots: u64,
    /// Sum over the earned slots of stake x tier weight at the time each was earned.
    pub weight: u128,
}

impl Settlement {
    /// The mode now (bootstrap until a change is recorded).
    pub fn mode(&self) -> RewardMode {
        self.mode_changes
            .last()
            .map_or(RewardMode::Bootstrap, |(_, m)| *m)
    }

    /// The mode of an epoch ending at `end`: the last change recorded before it ends.
    pub fn mode_before(&self, end: DateTime<Utc>) -> RewardMode {
        self.mode_changes
            .iter()
            .rev()
            .find(|(at, _)| *at < end)
            .map_or(RewardMode::Bootstrap, |(_, m)| *m)
    }

    /// `[start, end)` of epoch `k`, once a policy exists.
    pub fn epoch_bounds(&self, k: u64) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let p = self.policy.as_ref()?;
        let len = i64::from(p.epoch_seconds);
        let start = self.first_epoch_start? + Duration::seconds(len * i64::try_from(k).ok()?);
        Some((start, start + Duration::seconds(len)))
    }

    /// The epoch `at` falls in, and its uptime slot counted from epoch 0; `None` before
    /// epoch 0 or without a policy.
    pub fn slot_of(&self, at: DateTime<Utc>) -> Option<(u64, u64)> {
        let p = self.policy.as_ref()?;
        let start = self.first_epoch_start?;
        if at < start {
            return None;
        }
        let secs = u64::try_from((at - start).num_seconds()).ok()?;
        let slot = secs / u64::from(p.uptime_slot_seconds);
        let per_epoch = u64::from(p.epoch_seconds / p.uptime_slot_seconds);
        Some((slot / per_epoch, slot))
    }

    /// The epochs owed a settlement at `now` (ended, not settled), in order.
    pub fn due_epochs(&self, now: DateTime<Utc>) -> Vec<u64> {
        let mut due = Vec::new();
        let mut k = self.next_epoch;
        while let Some((_, end)) = self.epoch_bounds(k) {
            if end > now {
                break;
            }
            due.push(k);
            k += 1;
        }
        due
    }

    /// One entry per unstake whose cooldown is over at `now`, by node id, oldest first.
    pub fn due_returns(&self, now: DateTime<Utc>) -> Vec<NodeId> {
        self.unbonding_due
            .iter()
            .take_while(|(at, _)| *at <= now)
            .flat_map(|(_, id)| {
                let op = &self.operators[id];
                op.unbonding
                    .iter()
                    .take_while(move |u| u.available_at <= now)
                    .map(move |_| *id)
            })
            .collect()
    }

    /// The settlement of the next epoch from this state, or `None` without a policy. Pure:
    /// the coordinator records it and the fold recomputes it to check what was recorded.
    pub fn settle_next(&self) -> Option<RewardEpochSettled> {
        let p = self.policy.as_ref()?;
        let epoch = self.next_epoch;
        let (starts_at, ends_at) = self.epoch_bounds(epoch)?;
        let mode = self.mode_before(ends_at);
        let (income, operators, treasury, infra) = match mode {
            RewardMode::Bootstrap => {
                let unlock = match &self.stream {
                    Some(s) => s.units_between(starts_at.timestamp(), ends_at.timestamp()),
                    None => bootstrap_unlock(p, self.bootstrap_epochs_settled),
                };
                (unlock, unlock, 0, 0)
            }
            RewardMode::SteadyState => {
                let income = self.charged.get(&epoch).copied().unwrap_or(0);
                let (o, t, i) = steady_split(p, income);
                (income, o, t, i)
            }
        };
        // Saturates only past u64::MAX minor units, which no supply reaches.
        let pool = operators.saturating_add(self.carried);
        let empty = BTreeMap::new();
        let uptime = self.uptime.get(&epoch).unwrap_or(&empty);
        let weights: Vec<u128> = uptime.values().map(|u| u.weight).collect();
        let (amounts, carried_over) = split_pool(pool, &weights);
        let payouts = uptime
            .iter()
            .zip(amounts)
            .map(|((node, u), amount)| Payout {
                node_id: *node,
                verified_slots: u.slots,
                weight: u.weight,
                amount,
            })
            .collect();
        Some(RewardEpochSettled {
            epoch,
            starts_at,
            ends_at,
            mode,
            income,
            carried_in: self.carried,
            pool,
            treasury,
            infra,
            total_weight: weights.iter().fold(0u128, |s, w| s.saturating_add(*w)),
            payouts,
            carried_over,
        })
    }

    /// Folds one event. Called after the coordinator's own fold accepted it, so for events
    /// the coordinator changes state on, this must not fail; the settlement-only events are
    /// checked here before anything changes.
    pub fn apply(&mut self, env: &Envelope) -> Result<(), FoldError> {
        let at = env.header.recorded_at;
        match &env.event {
            Event::NodeRegistered(n) => {
                // Staked for on chain before it registered: the bond, if it counts.
                let bound = self
                    .chain_stakers
                    .get(&n.node_id)
                    .is_none_or(|s| stake_counts(n.is_signed(), n.operator.as_deref(), s));
                let stake = match self.chain_stakes.get(&n.node_id) {
                    Some(&bond) if bound => bond,
                    Some(_) => 0,
                    None => n.stake,
                };
                self.operators.entry(n.node_id).or_insert(Operator {
                    tier: n.hardware_tier,
                    stake,
                    unbonding: Vec::new(),
                    in_pool: true,
                    draining: false,
                    in_default: false,
                    last_slot: None,
                    paid: 0,
                    operator: n.operator.clone(),
                    signed: n.is_signed(),
                    models: n.models.clone(),
                    model_hashes: n.model_hashes.clone(),
                });
            }
            Event::NodeDrained(d) => self.update(d.node_id, |op| op.draining = true),
            // Its slots weigh at the tier its work bore out from then on.
            Event::NodeTierLowered(l) => self.update(l.node_id, |op| op.tier = l.to_tier),
            Event::NodeRemovedFromPool(r) => self.update(r.node_id, |op| op.in_pool = false),
            // The chain's bond replaces whatever the node had: stake is what the contract
            // holds. Kept for a node that registers later too.
            // Only from the operator the node signed: a stranger who staked first for its
            // id holds a bond that weighs nothing.
            Event::ChainStakeChanged(c) => {
                self.chain_stakes.insert(c.node_id, c.stake);
                self.chain_stakers.insert(c.node_id, c.staker.clone());
                self.update(c.node_id, |op| {
                    op.stake = if stake_counts(op.signed, op.operator.as_deref(), &c.staker) {
                        c.stake
                    } else {
                        0
                    }
                });
            }
            Event::StakeDeposited(s) => {
                // The coordinator checked the node and the sum against its own (larger) total.
                self.update(s.node_id, |op| op.stake = op.stake.saturating_add(s.amount))
            }
            Event::DeadlineExpired(e) => self.update(e.node_id, |op| op.in_default = true),
            Event::CommitmentRejected(c) => self.update(c.node_id, |op| op.in_default = true),
            Event::NodeFlagged(f) => self.update(f.node_id, |op| op.in_default = true),
            Event::CommitmentVerified(c) => {
                self.update(c.node_id, |op| op.in_default = false);
                self.earn_slot(c.node_id, at);
            }
            Event::NodeHeartbeat(h) => self.earn_slot(h.node_id, at),
            Event::CreditsCharged(c) => {
                if let Some((epoch, _)) = self.slot_of(at) {
                    if epoch >= self.next_epoch {
                        let sum = self.charged.entry(epoch).or_default();
                        *sum = sum.saturating_add(c.amount);
                    }
                }
            }
            Event::RewardPolicyPublished(p) => {
                if self.policy.is_some() {
                    return Err(FoldError::new(env, "a reward policy is already published"));
                }
                if let Some((field, why)) = policy_problem(p) {
                    return Err(FoldError::at_field(env, field, why));
                }
                let len = i64::from(p.epoch_seconds);
                let secs = at.timestamp() + i64::from(at.timestamp_subsec_nanos() > 0);
                let start = (secs + len - 1).div_euclid(len) * len;
                self.first_epoch_start = Some(
                    Utc.timestamp_opt(start, 0)
                        .single()
                        .ok_or_else(|| FoldError::new(env, "epoch start out of range"))?,
                );
                self.policy = Some(p.clone());
            }
            Event::CatalogPublished(c) => {
                let models = c.models.iter();
                self.catalog = Some(
                    models
                        .map(|m| (m.model.clone(), (m.sha256, m.min_tier)))
                        .collect(),
                );
            }
            Event::RewardModeChanged(m) => self.mode_changes.push((at, m.mode)),
            // A stream's terms never change: read once.
            Event::RewardStreamObserved(o) => {
                if self.stream.is_some() {
                    return Err(FoldError::new(env, "the reward stream is already observed"));
                }
                let terms =
                    StreamTerms::of(o).map_err(|(f, why)| FoldError::at_field(env, f, why))?;
                self.stream = Some(terms);
            }
            Event::UnstakeRequested(u) => self.unstake(env, u)?,
            Event::StakeReturned(r) => {
                let op = self.operator(env, r.node_id)?;
                let Some(oldest) = op.unbonding.first() else {
                    return Err(FoldError::at_field(
                        env,
                        "node_id",
                        format!("{} has no pending unstake", r.node_id),
                    ));
                };
                if r.available_at != oldest.available_at {
                    return Err(FoldError::at_field(
                        env,
                        "available_at",
                        format!(
                            "recorded {}, pending {}",
                            r.available_at, oldest.available_at
                        ),
                    ));
                }
                if r.amount != oldest.amount {
                    return Err(FoldError::at_field(
                        env,
                        "amount",
                        format!("recorded {}, pending {}", r.amount, oldest.amount),
                    ));
                }
                if at < oldest.available_at {
                    return Err(FoldError::at_field(
                        env,
                        "available_at",
                        format!("returned at {at}, before the cooldown ends"),
                    ));
                }
                let due = oldest.available_at;
                self.unbonding_due.remove(&(due, r.node_id));
                self.update(r.node_id, |op| {
                    op.unbonding.remove(0);
                });
                if let Some(next) = self.operators[&r.node_id].unbonding.first() {
                    self.unbonding_due.insert((next.available_at, r.node_id));
                }
            }
            Event::RewardEpochSettled(recorded) => self.close_epoch(env, recorded)?,
            _ => {}
        }
        Ok(())
    }

    fn update(&mut self, node: NodeId, change: impl FnOnce(&mut Operator)) {
        if let Some(op) = self.operators.get_mut(&node) {
            change(op);
        }
    }

    fn operator(&self, env: &Envelope, node: NodeId) -> Result<&Operator, FoldError> {
        self.operators
            .get(&node)
            .ok_or_else(|| FoldError::at_field(env, "node_id", format!("unknown node {node}")))
    }

    /// Counts the slot `at` falls in for `node`, if it is eligible and has not earned it yet.
    fn earn_slot(&mut self, node: NodeId, at: DateTime<Utc>) {
        let Some((epoch, slot)) = self.slot_of(at) else {
            return;
        };
        let Some(policy) = self.policy.as_ref() else {
            return;
        };
        let Some(op) = self.operators.get_mut(&node) else {
            return;
        };
        // Slots of a settled epoch are closed; a slot is earned once.
        if epoch < self.next_epoch || op.last_slot.is_some_and(|last| slot <= last) {
            return;
        }
        if !op.in_pool || op.draining || op.in_default {
            return;
        }
        if !serves_catalog(op, self.catalog.as_ref()) {
            return;
        }
        let add = u128::from(op.stake) * u128::from(tier_weight(policy, op.tier));
        op.last_slot = Some(slot);
        let up = self
            .uptime
            .entry(epoch)
            .or_default()
            .entry(node)
            .or_default();
        up.slots += 1;
        up.weight = up.weight.saturating_add(add);
    }

    fn unstake(&mut self, env: &Envelope, u: &UnstakeRequested) -> Result<(), FoldError> {
        let Some(policy) = self.policy.as_ref() else {
            return Err(FoldError::new(
                env,
                "no reward policy: no cooldown is known",
            ));
        };
        if u.cooldown_seconds != policy.unstake_cooldown_seconds {
            return Err(FoldError::at_field(
                env,
                "cooldown_seconds",
                format!(
                    "recorded {}, policy {}",
                    u.cooldown_seconds, policy.unstake_cooldown_seconds
                ),
            ));
        }
        let op = self.operator(env, u.node_id)?;
        if u.amount == 0 || u.amount > op.stake {
            return Err(FoldError::at_field(
                env,
                "amount",
                format!("{} is not in 1..={} staked", u.amount, op.stake),
            ));
        }
        let available_at =
            env.header.recorded_at + Duration::seconds(i64::from(u.cooldown_seconds));
        if op.unbonding.is_empty() {
            self.unbonding_due.insert((available_at, u.node_id));
        }
        self.update(u.node_id, |op| {
            op.stake -= u.amount;
            op.unbonding.push(Unbonding {
                amount: u.amount,
                available_at,
            });
        });
        Ok(())
    }

    /// Checks a recorded settlement against the one this state gives, then closes the epoch.
    fn close_epoch(
        &mut self,
        env: &Envelope,
        recorded: &RewardEpochSettled,
    ) -> Result<(), FoldError> {
        let Some(expected) = self.settle_next() else {
            return Err(FoldError::new(env, "no reward policy has been published"));
        };
        if let Some((field, why)) = first_difference(recorded, &expected) {
            return Err(FoldError::at_field(env, field, why));
        }
        if env.header.recorded_at < expected.ends_at {
            return Err(FoldError::at_field(
                env,
                "ends_at",
                format!(
                    "settled at {}, before the epoch ends",
                    env.header.recorded_at
                ),
            ));
        }
        for p in &expected.payouts {
            self.update(p.node_id, |op| op.paid = op.paid.saturating_add(p.amount));
        }
        if expected.mode == RewardMode::Bootstrap {
            self.bootstrap_epochs_settled += 1;
        }
        self.carried = expected.carried_over;
        self.uptime.remove(&expected.epoch);
        self.charged.remove(&expected.epoch);
        self.next_epoch += 1;
        Ok(())
    }
}

/// The first field where `recorded` differs from `expected`, as `(path, "recorded X,
/// recomputed Y")`.
pub fn first_difference(
    recorded: &RewardEpochSettled,
    expected: &RewardEpochSettled,
) -> Option<(String, String)> {
    fn differ<T: PartialEq + std::fmt::Debug>(
        field: impl Into<String>,
        recorded: &T,
        expected: &T,
    ) -> Option<(String, String)> {
        (recorded != expected).then(|| {
            (
                field.into(),
                format!("recorded {recorded:?}, recomputed {expected:?}"),
            )
        })
    }
    let (r, e) = (recorded, expected);
    let fields = [
        differ("epoch", &r.epoch, &e.epoch),
        differ("starts_at", &r.starts_at, &e.starts_at),
        differ("ends_at", &r.ends_at, &e.ends_at),
        differ("mode", &r.mode, &e.mode),
        differ("income", &r.income, &e.income),
        differ("carried_in", &r.carried_in, &e.carried_in),
        differ("pool", &r.pool, &e.pool),
        differ("treasury", &r.treasury, &e.treasury),
        differ("infra", &r.infra, &e.infra),
        differ("total_weight", &r.total_weight, &e.total_weight),
    ];
    if let Some(d) = fields.into_iter().flatten().next() {
        return Some(d);
    }
    for (i, (rp, ep)) in r.payouts.iter().zip(&e.payouts).enumerate() {
        let d = differ(format!("payouts[{i}].node_id"), &rp.node_id, &ep.node_id)
            .or_else(|| {
                differ(
                    format!("payouts[{i}].verified_slots"),
                    &rp.verified_slots,
                    &ep.verified_slots,
                )
            })
            .or_else(|| differ(format!("payouts[{i}].weight"), &rp.weight, &ep.weight))
            .or_else(|| differ(format!("payouts[{i}].amount"), &rp.amount, &ep.amount));
        if d.is_some() {
            return d;
        }
    }
    differ("payouts.len()", &r.payouts.len(), &e.payouts.len())
        .or_else(|| differ("carried_over", &r.carried_over, &e.carried_over))
}
