//! The fold's side of a request's lifecycle: a request's phase moves only to the phase the
//! table gives (`lifecycle::transition`), and the scheduler's indexes move with it: the queue
//! and the admission bound for a queued request, the queue and the hold for one awaiting a
//! replica, the deadlines for a dispatch, and the node's slot while it runs.

use chrono::{DateTime, Utc};
use prlx_events::{Envelope, RequestId};

use crate::coordinator::batch::Owed;
use crate::coordinator::lifecycle::{transition, RequestPhase, Retry, Transition, Wait};
use crate::coordinator::state::CoordinatorState;
use crate::fold::FoldError;

impl CoordinatorState {
    /// The phase `t` moves request `id` to; the record's error if the table does not list the
    /// pair. Changes nothing.
    pub(super) fn next_phase(
        &self,
        env: &Envelope,
        id: RequestId,
        t: &Transition,
    ) -> Result<RequestPhase, FoldError> {
        let req = self.request(env, id)?;
        transition(req.phase(), t).map_err(|e| FoldError::new(env, format!("{id}: {e}")))
    }

    /// Moves request `id` as `t` says, if the table lists the pair; returns the phase it left.
    pub(super) fn advance(
        &mut self,
        env: &Envelope,
        id: RequestId,
        t: &Transition,
    ) -> Result<RequestPhase, FoldError> {
        let next = self.next_phase(env, id, t)?;
        self.enter(env, id, next)
    }

    /// Moves request `id` to `next`, a phase [`Self::next_phase`] gave, and the indexes with
    /// it; returns the phase it left.
    pub(super) fn enter(
        &mut self,
        env: &Envelope,
        id: RequestId,
        next: RequestPhase,
    ) -> Result<RequestPhase, FoldError> {
        if matches!(next, RequestPhase::Exhausted) {
            self.batch.owe(Owed::Failure(id));
        }
        let settles = super::finished::settles(&next);
        let left = self.request_mut(env, id)?.enter(next);
        self.unindex_phase(id, &left);
        self.index_phase(id);
        let was = left.assignment().map(|a| a.node);
        let now = self.requests[&id].phase().assignment().map(|a| a.node);
        if was != now {
            if let Some(node) = was {
                self.update_node(env, node, |n| n.busy -= 1)?;
            }
            if let Some(node) = now {
                self.update_node(env, node, |n| n.busy += 1)?;
            }
        }
        if settles && !super::finished::settles(&left) {
            self.settled(id);
        }
        Ok(left)
    }

    /// Puts request `id` in the indexes of its phase (a new request's first phase too).
    pub(super) fn index_phase(&mut self, id: RequestId) {
        let Some(req) = self.requests.get(&id) else {
            return;
        };
        match req.phase() {
            RequestPhase::Queued(entry) => {
                self.sched.waiting.insert((req.accepted_at, id));
                self.sched.enqueue(req, entry.clone());
            }
            RequestPhase::AwaitingReplica(wait) => {
                self.sched.replicas.insert((wait.since, id));
                self.sched.enqueue(req, wait.entry.clone());
            }
            RequestPhase::Running(a) => {
                if let Some(at) = a.deadline_at {
                    self.sched.deadlines.insert((at, id));
                }
            }
            _ => {}
        }
    }

    /// Takes request `id` out of the indexes of the phase it `left`.
    fn unindex_phase(&mut self, id: RequestId, left: &RequestPhase) {
        let Some(req) = self.requests.get(&id) else {
            return;
        };
        match left {
            RequestPhase::Queued(entry) => {
                self.sched.waiting.remove(&(req.accepted_at, id));
                self.sched.dequeue(&req.model, req.hardware_tier, entry);
            }
            RequestPhase::AwaitingReplica(wait) => {
                self.sched.replicas.remove(&(wait.since, id));
                self.sched
                    .dequeue(&req.model, req.hardware_tier, &wait.entry);
            }
            RequestPhase::Running(a) => {
                if let Some(at) = a.deadline_at {
                    self.sched.deadlines.remove(&(at, id));
                }
            }
            _ => {}
        }
    }

    /// What follows a failed dispatch of request `id` at `at`, and the request's failed
    /// dispatches after it. Before a verified result it counts against the request's attempts;
    /// a failed replica does not (the result is already in hand), and the replica is sought
    /// elsewhere until no peer is left.
    pub(super) fn retry(
        &self,
        env: &Envelope,
        id: RequestId,
        at: DateTime<Utc>,
    ) -> Result<(Retry, u32), FoldError> {
        let req = self.request(env, id)?;
        let entry = req.queue_entry(id);
        if !req.results.is_empty() {
            return Ok((Retry::Replica(Wait { entry, since: at }), req.failures));
        }
        let failures = req.failures.saturating_add(1);
        let retry = if failures < self.max_attempts() {
            Retry::Queue(entry)
        } else {
            Retry::GiveUp
        };
        Ok((retry, failures))
    }
}
