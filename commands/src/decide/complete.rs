//! A node's result: its commitment judged, the sampling draw, replicas compared, the result
//! released, standing moved.

use prlx_events::event::*;
use prlx_events::{Event, Hash32, NodeId, TaskId};
use prlx_projections::coordinator::{calibration, Assignment, ReplicaClass, RequestView};
use prlx_projections::validation::{
    compare, on_probation, peer_exists, sampled, sampling_rate, unconfirmed_hold, Comparison,
};
use prlx_projections::CoordinatorState;

use crate::decide::command::Completion;
use crate::decide::rejection::{internal, known_request, Rejection};
use crate::decide::work::{
    after_failure, give_up, missed_deadline, release_result, review_flags, standing_events,
    without_peer, HistoryDelta,
};

pub(super) fn complete(state: &CoordinatorState, c: Completion) -> Result<Vec<Event>, Rejection> {
    let req = known_request(state, c.request)?;
    let task_id = TaskId::whole(c.request);
    let running = matches!(&req.running, Some(a) if a.node == c.node && a.attempt == c.attempt && a.deadline_at.is_some());
    if !running {
        // A result for an attempt that expired (or a request already settled): recorded, unused.
        if req.tried.contains(&c.node) && c.attempt < req.attempts {
            return Ok(vec![LateResultDiscarded {
                task_id,
                attempt: c.attempt,
                node_id: c.node,
            }
            .into()]);
        }
        return Err(Rejection::new(
            RejectionCode::UnknownNode,
            Some("node_id"),
            format!("{} has no dispatch {} of {}", c.node, c.attempt, c.request),
        ));
    }
    if let Some(Assignment {
        deadline_at: Some(deadline),
        ..
    }) = &req.running
    {
        if c.now >= *deadline {
            // Late by the time it is recorded at, even if the timer has not fired yet: the
            // dispatch expires now and the result is kept out, as if it came after the timer.
            let mut events = missed_deadline(state, req, c.request, c.node, c.attempt, c.earlier);
            events.push(
                LateResultDiscarded {
                    task_id,
                    attempt: c.attempt,
                    node_id: c.node,
                }
                .into(),
            );
            return Ok(events);
        }
    }
    // Measured before the report's parts move into its events.
    let lowered = tier_lowered(state, req, &c);
    let mut events: Vec<Event> = vec![ResultSubmitted {
        task_id,
        attempt: c.attempt,
        node_id: c.node,
        sealed_result: c.sealed_result,
        poe: c.poe,
        signature: c.signature,
        token_count: c.token_count,
        ciphertext_hash: Some(c.ciphertext_hash),
    }
    .into()];
    if let Err(reason) = c.commitment {
        // Check 1 failed: the result is dropped, the node flagged, the work goes elsewhere.
        events.push(
            CommitmentRejected {
                task_id,
                attempt: c.attempt,
                node_id: c.node,
                reason: reason.clone(),
            }
            .into(),
        );
        events.push(
            NodeFlagged {
                node_id: c.node,
                task_id: Some(task_id),
                reason,
            }
            .into(),
        );
        events.extend(standing_events(state, c.node, (0, 1, 0)));
        // The removal above does not change whether a peer exists: the node was tried.
        events.extend(after_failure(
            state,
            req,
            c.request,
            Some(c.sealed_for_client),
        ));
        return Ok(events);
    }
    events.push(
        CommitmentVerified {
            task_id,
            attempt: c.attempt,
            node_id: c.node,
            result_hash: Some(c.result_hash),
        }
        .into(),
    );
    events.extend(lowered);
    // The results as the fold will hold them after `CommitmentVerified`.
    let mut results = req.results.clone();
    results.push(prlx_projections::validation::VerifiedResult {
        node: c.node,
        attempt: c.attempt,
        result_hash: c.result_hash,
        poe: c.poe,
        sealed_result: Sealed(Vec::new()),
    });
    match compare(&results) {
        Comparison::Single => {
            // Check 2: the draw. Made now that the node has committed to its result.
            let draw = match (&state.sampling.current, c.seed) {
                (Some(open), Some(seed)) if Hash32::of(&seed.0) == open.seed_hash => {
                    // This result is its node's `ordinal`-th verified one: probation?
                    let ordinal = state.nodes.get(&c.node).map_or(1, |n| n.verified + 1);
                    let rate = sampling_rate(open, on_probation(open, ordinal));
                    Some((open.epoch, sampled(&seed, c.request, rate)))
                }
                (Some(open), _) => {
                    return Err(internal(
                        "seed",
                        format!("is not the committed seed of open epoch {}", open.epoch),
                    ))
                }
                (None, _) => None,
            };
            match draw {
                Some((epoch, true)) => {
                    events.push(
                        RedundancySampled {
                            task_id,
                            epoch,
                            primary: Some(c.node),
                        }
                        .into(),
                    );
                    // No peer of the class exists: with a hold, the request waits for one
                    // in the queue (the timer releases it); without, it goes out now.
                    let class = ReplicaClass::of(&state.nodes[&c.node], &req.model);
                    if !held(state) && !peer_exists(state, req, &class) {
                        let mut sampled_req = req.clone();
                        sampled_req.results = results;
                        sampled_req.replica_class = Some(class);
                        events.extend(without_peer(
                            state,
                            &sampled_req,
                            c.request,
                            c.sealed_for_client,
                            None,
                        ));
                    }
                }
                _ => {
                    events.push(
                        ValidationResolved {
                            task_id,
                            verdict: Verdict::Accepted,
                            result_hash: Some(c.result_hash),
                        }
                        .into(),
                    );
                    events.extend(release_result(
                        req,
                        c.request,
                        c.sealed_for_client,
                        c.poe,
                        c.node,
                    ));
                }
            }
        }
        Comparison::Tiebreak => {
            // Two replicas disagree: a third decides, if the class has one left.
            let class = req.replica_class.as_ref().expect("sampled");
            if !held(state) && !peer_exists(state, req, class) {
                let mut req = req.clone();
                req.results = results;
                events.extend(without_peer(
                    state,
                    &req,
                    c.request,
                    Sealed(Vec::new()),
                    None,
                ));
            }
        }
        Comparison::Resolved(verdict) => {
            let mut deltas: Vec<(NodeId, HistoryDelta)> = Vec::new();
            match &verdict {
                Verdict::Agreed { nodes } => deltas.extend(nodes.iter().map(|n| (*n, (1, 0, 0)))),
                Verdict::Majority {
                    winners,
                    dissenters,
                } => {
                    deltas.extend(winners.iter().map(|n| (*n, (1, 0, 0))));
                    deltas.extend(dissenters.iter().map(|n| (*n, (0, 1, 0))));
                }
                _ => {}
            }
            let winner_hash = match &verdict {
                Verdict::Agreed { .. } | Verdict::Majority { .. } => Some(c.result_hash),
                _ => None,
            };
            events.push(
                ValidationResolved {
                    task_id,
                    verdict: verdict.clone(),
                    result_hash: winner_hash,
                }
                .into(),
            );
            if let Verdict::Majority { dissenters, .. } = &verdict {
                for &d in dissenters {
                    events.push(
                        NodeFlagged {
                            node_id: d,
                            task_id: Some(task_id),
                            reason: "outvoted: its result differs from the majority".into(),
                        }
                        .into(),
                    );
                }
            }
            for (n, delta) in deltas {
                events.extend(standing_events(state, n, delta));
            }
            match verdict {
                // The latest result is always on the winning side: the first two disagreed,
                // so any majority of three includes the third.
                Verdict::Agreed { .. } | Verdict::Majority { .. } => events.extend(release_result(
                    req,
                    c.request,
                    c.sealed_for_client,
                    c.poe,
                    c.node,
                )),
                Verdict::NoMajority { parties } => {
                    events.extend(review_flags(
                        state,
                        task_id,
                        &parties,
                        "three different results",
                    ));
                    events.extend(give_up(
                        state,
                        c.request,
                        FailureCause::NoMajority,
                        "three replicas returned three different results".into(),
                    ));
                }
                Verdict::Accepted | Verdict::Unconfirmed { .. } => {}
            }
        }
    }
    Ok(events)
}

/// Whether the catalog holds a result that waits for a replica (else one with no peer left
/// goes out at once).
fn held(state: &CoordinatorState) -> bool {
    unconfirmed_hold(&state.validation_policy()).is_some()
}

/// The tier this result's measurement moves its node to, when it completes a run of slow
/// results (`prlx_projections::coordinator::calibration`; the fold re-derives it).
fn tier_lowered(state: &CoordinatorState, req: &RequestView, c: &Completion) -> Option<Event> {
    let node = state.nodes.get(&c.node)?;
    let model = state.catalog_model(&req.model)?;
    let rate = calibration::measure(req, c.token_count, c.now);
    let (_, lowered) = calibration::judge(node.hardware_tier, node.tier_run, model, rate);
    Some(
        NodeTierLowered {
            node_id: c.node,
            from_tier: node.hardware_tier,
            to_tier: lowered?,
            model: req.model.clone(),
            measured_milli_tps: rate.unwrap_or(0),
        }
        .into(),
    )
}
