//! The fold's arms of validation (step 7): sampling epochs opened and revealed, a request
//! drawn for redundancy, a verdict re-derived from the recorded results.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use prlx_events::event::*;
use prlx_events::{Envelope, Hash32, NodeId};

use crate::coordinator::state::CoordinatorState;
use crate::coordinator::views::{NodeView, RequestStatus, SamplingEpoch};
use crate::fold::FoldError;
use crate::validation::{compare, peer_exists, sampled, Comparison};

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
        let primary = match req.results.as_slice() {
            [only] if !req.validated && req.replica_class.is_none() => only.node,
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
        let class = self.node_mut(env, primary)?.execution_class.clone();
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
        self.requests.get_mut(&id).expect("checked").replica_class = Some(class);
        self.enqueue(id);
        Ok(())
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
            ends_at: at + chrono::Duration::seconds(i64::from(policy.epoch_seconds)),
            decisions: BTreeMap::new(),
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
        if let Some((id, recorded)) = open
            .decisions
            .iter()
            .find(|(id, s)| sampled(&r.seed, **id, open.sampling_bp) != **s)
        {
            return Err(FoldError::new(
                env,
                format!(
                    "sampled: request {id} recorded {recorded}, the seed gives {}",
                    !recorded
                ),
            ));
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
        let req = self
            .requests
            .get(&id)
            .ok_or_else(|| FoldError::new(env, format!("unknown request {id}")))?;
        if req.validated || req.running.is_some() || req.status != RequestStatus::Accepted {
            return Err(FoldError::new(
                env,
                format!("request {id} has no validation in progress"),
            ));
        }
        let no_peer = |class: &Option<ExecutionClass>| {
            class.as_ref().is_some_and(|c| !peer_exists(self, req, c))
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
                    "verdict: recorded {:?}, but the {} verified result(s) and the pool give {:?}",
                    v.verdict,
                    req.results.len(),
                    compare(&req.results)
                ),
            ));
        }
        if let Verdict::Accepted = v.verdict {
            if let Some(epoch) = &mut self.sampling.current {
                if epoch.decisions.insert(id, false).is_some() {
                    return Err(FoldError::new(env, format!("request {id} drawn twice")));
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
        self.dequeue(id);
        let req = self.requests.get_mut(&id).expect("checked");
        req.validated = true;
        // The sealed results were kept only to release one without its node; the verdict
        // is in, so only their hashes stay (they are on the log in `ResultSubmitted`).
        for r in &mut req.results {
            r.sealed_result = Sealed(Vec::new());
        }
        Ok(())
    }
}
