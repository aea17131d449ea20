//! Work in flight: dispatch, deadlines, the queue's admission bound, the hold on a result
//! waiting for a replica, failure and re-dispatch, releasing a result, and the standing and
//! flag changes that follow a verdict or a missed deadline.

use chrono::{DateTime, Utc};
use prlx_events::event::*;
use prlx_events::{Event, Hash32, NodeId, RequestId, TaskId};
use prlx_projections::coordinator::{RequestStatus, RequestView};
use prlx_projections::scheduler::{next_assignment, unservable_at, untried_capable};
use prlx_projections::validation::{
    hold_deadline, peer_exists, removed, standing_bp, unconfirmed_hold, History,
};
use prlx_projections::CoordinatorState;

use crate::decide::command::Dispatch;
use crate::decide::rejection::{internal, known_request, Rejection};

pub(super) fn dispatch(state: &CoordinatorState, d: Dispatch) -> Result<Vec<Event>, Rejection> {
    if let Some(seed) = &d.seed {
        if state
            .sampling
            .current
            .as_ref()
            .is_none_or(|open| Hash32::of(&seed.0) != open.seed_hash)
        {
            return Err(internal(
                "seed",
                "is not the committed seed of the open sampling epoch",
            ));
        }
    }
    let expected = next_assignment(state, d.seed.as_ref());
    if expected.as_ref() != Some(&d.choice) {
        return Err(internal(
            "choice",
            format!(
                "stale scheduling choice {:?}; the state gives {expected:?}",
                d.choice
            ),
        ));
    }
    let c = d.choice;
    let req = &state.requests[&c.request];
    let task_id = TaskId::whole(c.request);
    Ok(vec![
        RequestScheduled {
            task_id,
            attempt: c.attempt,
            node_id: c.node,
            candidates_considered: c.candidates_considered,
            ranked: c.ranked,
        }
        .into(),
        TaskDispatched {
            task_id,
            attempt: c.attempt,
            node_id: c.node,
            sealed_work: d.sealed_work,
            deadline_at: d.now + chrono::Duration::seconds(i64::from(req.deadline_seconds)),
        }
        .into(),
    ])
}

/// Events that end a request that will not be served: the failure and the full refund.
pub(super) fn give_up(
    state: &CoordinatorState,
    request: RequestId,
    cause: FailureCause,
    reason: String,
) -> Vec<Event> {
    let mut events = super::failure::failed_and_refunded(state, request, cause, reason);
    events.extend(super::general::task_fails_with(state, request));
    events
}

pub(super) fn expire(
    state: &CoordinatorState,
    request: RequestId,
    node: NodeId,
    attempt: u32,
    now: DateTime<Utc>,
    release: Option<Sealed>,
) -> Result<Vec<Event>, Rejection> {
    let req = known_request(state, request)?;
    let deadline = match &req.running {
        Some(a) if a.node == node && a.attempt == attempt => a.deadline_at,
        _ => return Ok(vec![]), // already returned or expired: nothing to do
    };
    match deadline {
        Some(at) if now >= at => {}
        _ => {
            return Err(internal(
                "now",
                format!("deadline {deadline:?} has not passed at {now}"),
            ))
        }
    }
    Ok(missed_deadline(state, req, request, node, attempt, release))
}

/// A dispatch whose deadline passed: `DeadlineExpired`, the node's standing lowered by the
/// miss, then what follows a failed dispatch.
pub(super) fn missed_deadline(
    state: &CoordinatorState,
    req: &RequestView,
    request: RequestId,
    node: NodeId,
    attempt: u32,
    release: Option<Sealed>,
) -> Vec<Event> {
    let mut events: Vec<Event> = vec![DeadlineExpired {
        task_id: TaskId::whole(request),
        attempt,
        node_id: node,
    }
    .into()];
    if let Some(n) = state.nodes.get(&node) {
        let history = History {
            missed: n.missed + 1,
            ..n.history()
        };
        events.extend(standing_moved(state, node, history));
    }
    events.extend(after_failure(state, req, request, release));
    events
}

/// The timer service saw request `request` still in the queue, with no verified result,
/// the catalog's `queue_timeout_seconds` after it was accepted: it fails, refunded in full.
pub(super) fn expire_queued(
    state: &CoordinatorState,
    request: RequestId,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, Rejection> {
    let req = known_request(state, request)?;
    let Some(due) = state.queue_deadline(request) else {
        return Ok(vec![]); // dispatched, validating or settled since: nothing to do
    };
    if req.status != RequestStatus::Accepted {
        return Ok(vec![]);
    }
    if now < due {
        if unservable_at(state, req, now) {
            return Ok(give_up(
                state,
                request,
                FailureCause::NoCapableNode,
                format!(
                    "no registered node serves {} at tier {}+ (in the pool, not draining), {} s \
                     after its acceptance (the catalog's node_timeout_seconds)",
                    req.model,
                    req.hardware_tier,
                    state.node_timeout().num_seconds()
                ),
            ));
        }
        return Err(internal(
            "now",
            format!("request {request} may wait in the queue until {due}, not timed out at {now}"),
        ));
    }
    let why = if untried_capable(state, req, None) {
        "every node that could take it stayed busy"
    } else if req.tried.is_empty() {
        "no node serves it"
    } else {
        "no node that has not tried it serves it"
    };
    Ok(give_up(
        state,
        request,
        FailureCause::QueueTimeout,
        format!(
            "still queued {} s after its acceptance (the catalog's queue_timeout_seconds): {why} ({} at tier {}+, in the pool, not draining, not lapsed)",
            state.queue_timeout().num_seconds(),
            req.model,
            req.hardware_tier
        ),
    ))
}

/// The timer service saw request `request` wait in the queue for a replica for the catalog's
/// `unconfirmed_hold_seconds`: its one result goes out unconfirmed, or its two that differ
/// fail without majority. `release`: its one result sealed to the client, if it has one.
pub(super) fn release_held(
    state: &CoordinatorState,
    request: RequestId,
    now: DateTime<Utc>,
    release: Option<Sealed>,
) -> Result<Vec<Event>, Rejection> {
    let req = known_request(state, request)?;
    let Some(due) = hold_deadline(state, request) else {
        return Ok(vec![]); // dispatched or resolved since: nothing to do
    };
    if now < due {
        return Err(internal(
            "now",
            format!("request {request} may wait for a replica until {due}, not due at {now}"),
        ));
    }
    let held = state.validation_policy().unconfirmed_hold_seconds;
    Ok(without_peer(
        state,
        req,
        request,
        release.unwrap_or(Sealed(Vec::new())),
        Some(held),
    ))
}

/// What follows a failed dispatch (expired, or a result that did not check). Before a
/// verified result: give up after `max_attempts` failures, or at once when no node that has
/// not tried the request could ever take it (waiting would be for nothing); else the fold
/// re-queues. While validating: resolve with what is in hand if no untried peer of the class
/// is left, else the fold re-queues.
pub(super) fn after_failure(
    state: &CoordinatorState,
    req: &RequestView,
    request: RequestId,
    release: Option<Sealed>,
) -> Vec<Event> {
    if req.results.is_empty() {
        if req.failures + 1 >= state.max_attempts() {
            return give_up(
                state,
                request,
                FailureCause::AttemptsExhausted,
                format!("no valid result after {} dispatch attempts", req.attempts),
            );
        }
        if !untried_capable(state, req, None) {
            return give_up(
                state,
                request,
                FailureCause::NoCapableNode,
                format!(
                    "no valid result after {} dispatch attempt(s), and no node that has not tried it serves {} at tier {}+ (in the pool, not draining, not lapsed)",
                    req.attempts, req.model, req.hardware_tier
                ),
            );
        }
        return vec![];
    }
    let class = req
        .replica_class
        .as_ref()
        .expect("results before validation imply sampled");
    // With a hold, the request waits in the queue for a peer (one may join) until the timer
    // releases it; without one, it is released now if no peer is left.
    if unconfirmed_hold(&state.validation_policy()).is_some() || peer_exists(state, req, class) {
        return vec![];
    }
    without_peer(
        state,
        req,
        request,
        release.unwrap_or(Sealed(Vec::new())),
        None,
    )
}

/// Validation that needs a replica none gave: one result is released unconfirmed; two that
/// disagree have no majority (both flagged, the request fails). `held`: the seconds it waited
/// for a replica in the queue, when the hold ran out (else no peer of the class exists).
pub(super) fn without_peer(
    state: &CoordinatorState,
    req: &RequestView,
    request: RequestId,
    release: Sealed,
    held: Option<u32>,
) -> Vec<Event> {
    let task_id = TaskId::whole(request);
    let class = &req.replica_class.as_ref().expect("sampled").class;
    let gap = match held {
        None => format!(
            "no untried node of execution class {}/{}/{} serves {} at tier {}+",
            class.device, class.driver, class.runtime, req.model, req.hardware_tier
        ),
        Some(seconds) => format!(
            "no untried node of execution class {}/{}/{} serving {} at tier {}+ took its replica within {seconds} s",
            class.device, class.driver, class.runtime, req.model, req.hardware_tier
        ),
    };
    match req.results.as_slice() {
        [only] => {
            let mut events: Vec<Event> = vec![ValidationResolved {
                task_id,
                verdict: Verdict::Unconfirmed { reason: gap },
                result_hash: Some(only.result_hash),
            }
            .into()];
            events.extend(release_result(req, request, release, only.poe, only.node));
            events
        }
        _ => {
            let parties: Vec<NodeId> = req.results.iter().map(|r| r.node).collect();
            let mut events: Vec<Event> = vec![ValidationResolved {
                task_id,
                verdict: Verdict::NoMajority {
                    parties: parties.clone(),
                },
                result_hash: None,
            }
            .into()];
            events.extend(review_flags(
                state,
                task_id,
                &parties,
                "no tie-breaking peer",
            ));
            events.extend(give_up(
                state,
                request,
                FailureCause::NoMajority,
                format!("replicas disagree and no majority can be formed: {gap}"),
            ));
            events
        }
    }
}

/// Returns a result to the client and settles the request's credit.
pub(super) fn release_result(
    req: &RequestView,
    request: RequestId,
    sealed_for_client: Sealed,
    poe: Hash32,
    node: NodeId,
) -> Vec<Event> {
    let mut events: Vec<Event> = vec![ResultReturned {
        request_id: request,
        sealed_for_client,
        poe,
        node_id: node,
    }
    .into()];
    if req.subtask_of.is_some() {
        // Its result goes to its task; the task is charged with its aggregate.
        return events;
    }
    let charge = req.price.min(req.reserved);
    events.push(
        CreditsCharged {
            account: req.account.clone(),
            request_id: request,
            amount: charge,
        }
        .into(),
    );
    if req.reserved > charge {
        events.push(
            CreditsRefunded {
                account: req.account.clone(),
                request_id: request,
                amount: req.reserved - charge,
            }
            .into(),
        );
    }
    events
}

/// How a node's validation history moves in one decision: (valid, invalid, disagreements).
pub(super) type HistoryDelta = (u64, u64, u64);

/// `StandingChanged` for a node whose validation history moves by `delta`, and its removal
/// from the pool when standing falls under the floor. Stake is untouched: standing never
/// seizes.
pub(super) fn standing_events(
    state: &CoordinatorState,
    node: NodeId,
    delta: HistoryDelta,
) -> Vec<Event> {
    let Some(n) = state.nodes.get(&node) else {
        return vec![];
    };
    let history = History {
        valid: n.valid + delta.0,
        invalid: n.invalid + delta.1,
        disagreements: n.disagreements + delta.2,
        missed: n.missed,
    };
    standing_moved(state, node, history)
}

/// `StandingChanged` for a node whose history is now `history`, and its removal from the pool
/// when that calls for it (missed deadlines lower standing but never remove).
fn standing_moved(state: &CoordinatorState, node: NodeId, history: History) -> Vec<Event> {
    let Some(n) = state.nodes.get(&node) else {
        return vec![];
    };
    let policy = state.validation_policy();
    let History {
        valid,
        invalid,
        disagreements,
        missed,
    } = history;
    let bp = standing_bp(&policy, history);
    let mut events: Vec<Event> = vec![StandingChanged {
        node_id: node,
        valid,
        invalid,
        disagreements,
        missed_deadlines: Some(missed),
        standing_bp: bp,
    }
    .into()];
    if removed(&policy, history) && n.in_pool {
        // Judged without the misses (see `removed`).
        let judged = standing_bp(
            &policy,
            History {
                missed: 0,
                ..history
            },
        );
        events.push(
            NodeRemovedFromPool {
                node_id: node,
                reason: format!(
                    "standing {judged} bp is below {} bp (valid {valid}, invalid {invalid}, disagreements {disagreements})",
                    policy.removal_below_bp
                ),
            }
            .into(),
        );
    }
    events
}

/// Flags every party of a comparison without a majority for review.
pub(super) fn review_flags(
    state: &CoordinatorState,
    task_id: TaskId,
    parties: &[NodeId],
    why: &str,
) -> Vec<Event> {
    let mut events = Vec::new();
    for &p in parties {
        events.push(
            NodeFlagged {
                node_id: p,
                task_id: Some(task_id),
                reason: format!("review: replicas disagree ({why})"),
            }
            .into(),
        );
        events.extend(standing_events(state, p, (0, 0, 1)));
    }
    events
}
