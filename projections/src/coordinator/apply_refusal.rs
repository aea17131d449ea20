//! The fold's arm of a node declining a dispatch (`DispatchRefused`): re-derives what
//! `decide` did with it, by the rules of [`crate::refusal`].
//!
//! The refusal must be of the node's running attempt, recorded before its deadline, with
//! numbers that add up. It is a failed dispatch (it counts against `max_attempts`) that moves
//! no standing: nothing owes a `StandingChanged`, and the node's history is untouched. When a
//! node of the same model file declined the request before any result of it verified, the
//! request has no attempt left, so its `RequestFailed` is owed in this batch (`batch.rs`).
//! The signature is evidence, verified by the auditor beside the fold, as results' are.

use chrono::{DateTime, Utc};
use prlx_events::event::DispatchRefused;
use prlx_events::Envelope;

use crate::coordinator::lifecycle::{Retry, Transition};
use crate::coordinator::state::CoordinatorState;
use crate::fold::FoldError;
use crate::refusal::{reason_problem, same_file_refuser};

impl CoordinatorState {
    pub(super) fn fold_refused(
        &mut self,
        env: &Envelope,
        r: &DispatchRefused,
        at: DateTime<Utc>,
    ) -> Result<(), FoldError> {
        let id = r.task_id.request;
        self.check_deadline(env, id, at, false)?;
        if !self.nodes.contains_key(&r.node_id) {
            return Err(FoldError::new(env, format!("unknown node {}", r.node_id)));
        }
        let req = self.request(env, id)?;
        if let Some(problem) = reason_problem(self, req, &r.reason) {
            return Err(FoldError::at_field(env, "reason", problem));
        }
        let (retry, failures) =
            if req.results.is_empty() && same_file_refuser(self, req, r.node_id).is_some() {
                (Retry::GiveUp, req.failures.saturating_add(1))
            } else {
                self.retry(env, id, at)?
            };
        let refused = Transition::DispatchRefused {
            node: r.node_id,
            attempt: r.attempt,
            retry,
        };
        self.advance(env, id, &refused)?;
        let req = self.request_mut(env, id)?;
        req.failures = failures;
        req.refused.insert(r.node_id, r.attempt);
        self.node_mut(env, r.node_id)?.refusals += 1;
        Ok(())
    }
}
