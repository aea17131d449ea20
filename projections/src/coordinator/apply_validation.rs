//! The fold's arms of validation (step 7): sampling epochs opened and revealed, a request
//! drawn for redundancy, a replica's peer checked (and its draw re-derived at the reveal), a
//! verdict re-derived from the recorded results, a node's execution class checked.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use prlx_events::event::*;
use prlx_events::{Envelope, Hash32, NodeId, RequestId};

use crate::coordinator::batch::Owed;
use crate::coordinator::lifecycle::{Transition, ValidationOutcome, Wait};
use crate::coordinator::state::CoordinatorState;
use crate::coordinator::views::{NodeView, ReplicaClass, ReplicaDraw, SamplingEpoch};
use crate::fold::FoldError;
use crate::scheduler::index::Choice;
use crate::scheduler::replica::{replica_index, replica_peers, replica_receipt};
use crate::validation::{
    compare, model_hash_problem, on_probation, peer_exists, sampled, sampling_rate,
    unconfirmed_hold, Comparison,
};

impl CoordinatorState {
    /// `RedundancySampled`: the request goes back to the queue for a replica of the
    /// primary's execution class.
    pub(super) fn fold_sampled(
        &mut self,
        env: &Envelope,
        r: &RedundancySampled,
    ) -> Result<(), FoldError> {
        let id = r.task_id.request;
        let req = self.request_mut(env, id)?;
        let wait = Wait {
            entry: req.queue_entry(id),
            since: env.header.recorded_at,
        };
        let next = self.next_phase(env, id, &Transition::RedundancySampled(wait))?;
        let req = self.request_mut(env, id)?;
        let primary = match req.results.as_slice() {
            [only] if req.replica_class.is_none() => only.node,
            _ => {
                return Err(FoldError::new(
                    env,
                    format!("request {id} does not have exactly one result awaiting the draw"),
                ))
            }
        };
        if r.primary.is_some_and(|p| p != primary) {
            return Err(FoldError::new(
                env,
                format!(
                    "primary: recorded {:?}, the result is from {primary}",
                    r.primary
                ),
            ));
        }
        let model = req.model.clone();
        let node = self.node_mut(env, primary)?;
        let (class, ordinal) = (ReplicaClass::of(node, &model), node.verified);
        let Some(epoch) = self
            .sampling
            .current
            .as_mut()
            .filter(|e| e.epoch == r.epoch)
        else {
            return Err(FoldError::new(
                env,
                format!("epoch {} is not the open sampling epoch", r.epoch),
            ));
        };
        if epoch.decisions.insert(id, true).is_some() {
            return Err(FoldError::new(env, format!("request {id} drawn twice")));
        }
        if on_probation(epoch, ordinal) {
            epoch.probation.insert(id);
        }
        self.request_mut(env, id)?.replica_class = Some(class);
        self.enter(env, id, next)?;
        Ok(())
    }

    /// A `RequestScheduled` of a replica: the receipt this state gives for the recorded node,
    /// if that node is an eligible peer (else refused). Which peer the seed draws is checked
    /// at the reveal, so the draw is recorded for it, once the receipt matches.
    pub(super) fn replica_scheduled(
        &mut self,
        env: &Envelope,
        e: &RequestScheduled,
    ) -> Result<Option<Choice>, FoldError> {
        let id = e.task_id.request;
        let req = self.request(env, id)?;
        let peers = replica_peers(self, req);
        let Ok(position) = peers.binary_search_by_key(&e.node_id, |p| p.key.node) else {
            return Err(FoldError::new(
                env,
                format!(
                    "node_id: {} is not one of the {} eligible peers of request {id}'s replica",
                    e.node_id,
                    peers.len()
                ),
            ));
        };
        let derived = replica_receipt(id, req, &peers, position);
        let matches = derived.as_ref().is_some_and(|c| {
            (c.node, c.attempt, c.candidates_considered, &c.ranked)
                == (e.node_id, e.attempt, e.candidates_considered, &e.ranked)
        });
        if matches {
            let Some(epoch) = self.sampling.current.as_mut() else {
                return Err(FoldError::new(
                    env,
                    format!("request {id}: a replica drawn with no sampling epoch open"),
                ));
            };
            epoch.replicas.push(ReplicaDraw {
                request: id,
                round: e.attempt,
                peers: peers.len() as u32,
                position: position as u32,
            });
        }
        Ok(derived)
    }

    /// A `NodeRegistered`'s execution class must be in normal form, and each model hash it
    /// reports must be of a model it serves and, for a model of the catalog, the catalog's:
    /// what `decide` checks at registration, so replicas are only compared within classes that
    /// mean what they say (docs/validation.md, "Execution classes").
    pub(super) fn check_class(&self, env: &Envelope, n: &NodeRegistered) -> Result<(), FoldError> {
        match n.execution_class.normalised() {
            Err(e) => {
                return Err(FoldError::at_field(
                    env,
                    format!("execution_class.{}", e.part),
                    e.reason,
                ))
            }
            Ok(normal) if normal != n.execution_class => {
                return Err(FoldError::at_field(
                    env,
                    "execution_class",
                    format!("{:?} is not in normal form", n.execution_class),
                ))
            }
            Ok(_) => {}
        }
        match model_hash_problem(self, n) {
            Some((field, reason)) => Err(FoldError::at_field(env, field, reason)),
            None => Ok(()),
        }
    }

    /// `SamplingSeedCommitted`: the next epoch opens, under the catalog's fraction now.
    pub(super) fn fold_seed_committed(
        &mut self,
        env: &Envelope,
        c: &SamplingSeedCommitted,
        at: DateTime<Utc>,
    ) -> Result<(), FoldError> {
        if let Some(open) = &self.sampling.current {
            return Err(FoldError::new(
                env,
                format!("epoch {} is still open", open.epoch),
            ));
        }
        if c.epoch != self.sampling.last_epoch + 1 {
            return Err(FoldError::new(
                env,
                format!(
                    "epoch {} follows epoch {}",
                    c.epoch, self.sampling.last_epoch
                ),
            ));
        }
        let policy = self.validation_policy();
        self.sampling.last_epoch = c.epoch;
        self.sampling.current = Some(SamplingEpoch {
            epoch: c.epoch,
            seed_hash: c.seed_hash,
            sealed_seed: c.sealed_seed.clone(),
            sampling_bp: policy.sampling_bp,
            probation_results: policy.probation_results,
            probation_sampling_bp: policy.probation_sampling_bp,
            ends_at: at + chrono::Duration::seconds(i64::from(policy.epoch_seconds)),
            decisions: BTreeMap::new(),
            probation: BTreeSet::new(),
            replicas: Vec::new(),
        });
        Ok(())
    }

    /// `SamplingSeedRevealed`: the seed must be the committed one, and give every draw of
    /// the epoch as recorded.
    pub(super) fn fold_seed_revealed(
        &mut self,
        env: &Envelope,
        r: &SamplingSeedRevealed,
    ) -> Result<(), FoldError> {
        let Some(open) = self
            .sampling
            .current
            .as_ref()
            .filter(|e| e.epoch == r.epoch)
        else {
            return Err(FoldError::new(
                env,
                format!("epoch {} is not open", r.epoch),
            ));
        };
        if Hash32::of(&r.seed.0) != open.seed_hash {
            return Err(FoldError::new(
                env,
                format!(
                    "seed: its SHA-256 is not the commitment {}",
                    open.seed_hash.to_hex()
                ),
            ));
        }
        // The auditor's check: every draw of the epoch follows from the seed.
        // The rate of each is the probation rate where its primary was on probation.
        let rate = |id: &RequestId| sampling_rate(open, open.probation.contains(id));
        if let Some((id, recorded)) = open
            .decisions
            .iter()
            .find(|(id, s)| sampled(&r.seed, **id, rate(id)) != **s)
        {
            return Err(FoldError::new(
                env,
                format!(
                    "sampled: request {id} recorded {recorded}, the seed gives {} at {} bp",
                    !recorded,
                    rate(id)
                ),
            ));
        }
        // And every replica went to the peer the seed draws.
        for d in &open.replicas {
            let drawn = replica_index(&r.seed, d.request, d.round, d.peers as usize);
            if drawn != Some(d.position as usize) {
                return Err(FoldError::new(
                    env,
                    format!(
                        "replica: request {} attempt {} went to peer {} of {} (sorted by node id), the seed draws {drawn:?}",
                        d.request, d.round, d.position, d.peers
                    ),
                ));
            }
        }
        self.sampling.current = None;
        self.sampling.verified_epochs += 1;
        Ok(())
    }

    /// Folds a verdict: re-derives it from the recorded results and moves the parties'
    /// validation history.
    pub(super) fn resolve(
        &mut self,
        env: &Envelope,
        v: &ValidationResolved,
    ) -> Result<(), FoldError> {
        let id = v.task_id.request;
        let policy = self.validation_policy();
        let outcome = ValidationOutcome::of(&v.verdict);
        let next = self.next_phase(env, id, &Transition::ValidationResolved(outcome))?;
        let req = &self.requests[&id];
        // Without a replica: with a hold, once the request waited it out in the queue (by
        // recorded time); without one, when no peer of the class exists.
        let at = env.header.recorded_at;
        let no_peer = |class: &Option<ReplicaClass>| match unconfirmed_hold(&policy) {
            Some(hold) => req.replica_since().is_some_and(|since| at >= since + hold),
            None => class.as_ref().is_some_and(|c| !peer_exists(self, req, c)),
        };
        let derived = match (&v.verdict, compare(&req.results)) {
            (Verdict::Accepted, Comparison::Single) if req.replica_class.is_none() => true,
            (Verdict::Unconfirmed { .. }, Comparison::Single) => no_peer(&req.replica_class),
            (Verdict::NoMajority { parties }, Comparison::Tiebreak) => {
                no_peer(&req.replica_class)
                    && parties.iter().eq(req.results.iter().map(|r| &r.node))
            }
            (recorded, Comparison::Resolved(derived)) => *recorded == derived,
            _ => false,
        };
        if !derived {
            return Err(FoldError::new(
                env,
                format!(
                    "verdict: recorded {:?}, but the {} verified result(s), the pool and the hold give {:?} (waiting for a replica since {:?}, hold {} s)",
                    v.verdict,
                    req.results.len(),
                    compare(&req.results),
                    req.replica_since(),
                    policy.unconfirmed_hold_seconds
                ),
            ));
        }
        if let Verdict::Accepted = v.verdict {
            // The primary's verified count includes this result: its ordinal.
            let ordinal = req
                .results
                .first()
                .and_then(|r| self.nodes.get(&r.node))
                .map_or(0, |n| n.verified);
            if let Some(epoch) = &mut self.sampling.current {
                if epoch.decisions.insert(id, false).is_some() {
                    return Err(FoldError::new(env, format!("request {id} drawn twice")));
                }
                if on_probation(epoch, ordinal) {
                    epoch.probation.insert(id);
                }
            }
        }
        let mut bump = |nodes: &[NodeId], f: fn(&mut NodeView)| {
            for n in nodes {
                if let Some(node) = self.nodes.get_mut(n) {
                    f(node);
                }
            }
        };
        match &v.verdict {
            Verdict::Agreed { nodes } => bump(nodes, |n| n.valid += 1),
            Verdict::Majority {
                winners,
                dissenters,
            } => {
                bump(winners, |n| n.valid += 1);
                bump(dissenters, |n| n.invalid += 1);
            }
            Verdict::NoMajority { parties } => bump(parties, |n| n.disagreements += 1),
            Verdict::Accepted | Verdict::Unconfirmed { .. } => {}
        }
        // The dissenters of a majority, and every party without one, are flagged in this
        // decision (`batch`).
        let flagged: &[NodeId] = match &v.verdict {
            Verdict::Majority { dissenters, .. } => dissenters,
            Verdict::NoMajority { parties } => parties,
            _ => &[],
        };
        for &n in flagged {
            self.batch.owe(Owed::Flag(n));
        }
        self.enter(env, id, next)?;
        let req = self.request_mut(env, id)?;
        // The sealed results were kept only to release one without its node; the verdict
        // is in, so only their hashes stay (they are on the log in `ResultSubmitted`). A
        // sub-task keeps the one that wins: its task's aggregate (or a dependent sub-task's
        // input) is built from it.
        let winner = match (&req.subtask_of, &v.result_hash) {
            (Some(_), Some(hash)) => Some(*hash),
            (Some(_), None) => req.results.last().map(|r| r.result_hash),
            (None, _) => None,
        };
        for r in &mut req.results {
            if Some(r.result_hash) != winner {
                r.sealed_result = Sealed(Vec::new());
            }
        }
        Ok(())
    }
}
