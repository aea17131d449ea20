//! A node declining the dispatch it holds: a failed dispatch that moves no standing, and the
//! request failed, refunded, once a second node of the same model file declines it too (the
//! rules shared with the fold are in `prlx_projections::refusal`).

use prlx_events::event::*;
use prlx_events::{Event, TaskId};
use prlx_projections::refusal::{reason_problem, same_file_refuser};
use prlx_projections::CoordinatorState;

use crate::decide::command::Refusal;
use crate::decide::rejection::{known_request, Rejection};
use crate::decide::work::{after_failure, give_up};

pub(super) fn refuse(state: &CoordinatorState, r: Refusal) -> Result<Vec<Event>, Rejection> {
    let req = known_request(state, r.request)?;
    if req.refused.get(&r.node) == Some(&r.attempt) {
        // The node's retry of a refusal already recorded.
        return Ok(vec![]);
    }
    let deadline = match &req.running {
        Some(a) if (a.node, a.attempt) == (r.node, r.attempt) => a.deadline_at,
        _ => None,
    };
    let Some(deadline) = deadline else {
        return Err(Rejection::new(
            RejectionCode::UnknownNode,
            Some("attempt"),
            format!(
                "{} holds no open dispatch {} of {}",
                r.node, r.attempt, r.request
            ),
        ));
    };
    if r.now >= deadline {
        // Too late to decline: the deadline expires the dispatch, as for a silent node.
        return Err(Rejection::new(
            RejectionCode::UnknownNode,
            Some("attempt"),
            format!(
                "dispatch {} of {} passed its deadline {deadline}; it expires instead",
                r.attempt, r.request
            ),
        ));
    }
    if let Some(problem) = reason_problem(state, req, &r.reason) {
        return Err(Rejection::new(
            RejectionCode::MalformedRequest,
            Some("reason"),
            problem,
        ));
    }
    let mut events: Vec<Event> = vec![DispatchRefused {
        task_id: TaskId::whole(r.request),
        attempt: r.attempt,
        node_id: r.node,
        reason: r.reason.clone(),
        signature: r.signature,
    }
    .into()];
    let earlier = if req.results.is_empty() {
        same_file_refuser(state, req, r.node)
    } else {
        None
    };
    match earlier {
        Some(other) => events.extend(give_up(
            state,
            r.request,
            FailureCause::Refused,
            format!(
                "declined by {other} and by {}, which serve the same model file of {}: {}",
                r.node, req.model, r.reason
            ),
        )),
        // No standing moves: declining work it cannot run is no fault of the node.
        None => events.extend(after_failure(state, req, r.request, r.release)),
    }
    Ok(events)
}
