//! The fold moves a request only along the lifecycle's table (`coordinator::lifecycle`): an
//! event its phase does not take is refused at its record, naming the phase and the event.
//!
//! Each case folds an honest history first, so a refusal is the forged record's doing.

use prlx_commands::testkit::fixtures::{
    self, accepted_and_reserved, model, registered, request_accepted, t,
};
use prlx_commands::testkit::{self, dispatch_next, History};
use prlx_events::event::*;
use prlx_events::{Event, Hash32, RequestId, TaskId};
use prlx_projections::coordinator::{RequestPhase, RequestStatus};
use prlx_projections::CoordinatorState;

/// Folds `h`; the refused record's offset, type and reason if the fold refuses one.
fn fold(h: &History) -> Result<CoordinatorState, (usize, String, String)> {
    testkit::fold(h).map_err(|e| {
        (
            e.offset as usize,
            e.error.event_type.to_string(),
            e.error.reason,
        )
    })
}

/// A catalog, credit, one node and request 0, accepted and waiting in its queue.
fn queued() -> History {
    let mut h: History = vec![
        fixtures::catalog(vec![model("chat", Hash32([1; 32]))]).into(),
        fixtures::deposited(1_000).into(),
        registered(1).into(),
    ]
    .into();
    h.extend(accepted_and_reserved(request_accepted(0)));
    h
}

fn verdict_accepted() -> Event {
    ValidationResolved {
        task_id: TaskId::whole(RequestId(0)),
        verdict: Verdict::Accepted,
        result_hash: None,
    }
    .into()
}

#[test]
fn a_verdict_for_a_request_with_no_verified_result_is_refused() {
    // Given request 0 in its queue, no node has run it
    let h = queued();
    let st = fold(&h).expect("the base folds");
    let req = &st.requests[&RequestId(0)];
    assert!(matches!(req.phase(), RequestPhase::Queued(_)), "{req:?}");
    assert_eq!(req.status, RequestStatus::Accepted);
    // When a verdict is recorded for it
    let mut forged = h.clone();
    forged.push(verdict_accepted());
    // Then the fold refuses it where it stands, naming the phase and the event
    let (at, event, reason) = fold(&forged).expect_err("no result to validate");
    assert_eq!((at, event.as_str()), (h.len(), "ValidationResolved"));
    assert!(
        reason.contains("req-0: a request queued does not take ValidationResolved"),
        "{reason}"
    );
}

#[test]
fn a_settlement_while_a_node_runs_the_request_is_refused() {
    // Given request 0 dispatched to node 1
    let mut h = queued();
    fold(&h).expect("the base folds");
    dispatch_next(&mut h, t(10));
    let st = fold(&h).expect("the dispatch folds");
    let running = st.requests[&RequestId(0)].running.clone().expect("running");
    assert_eq!(
        st.requests[&RequestId(0)].phase(),
        &RequestPhase::Running(running.clone())
    );
    // When it is failed, or its result returned, before the node answers
    let failed: Event = RequestFailed {
        request_id: RequestId(0),
        reason: "forged".into(),
        cause: None,
    }
    .into();
    let returned: Event = ResultReturned {
        request_id: RequestId(0),
        sealed_for_client: Sealed(vec![2]),
        poe: Hash32([3; 32]),
        node_id: running.node,
    }
    .into();
    for (forged, name) in [(failed, "RequestFailed"), (returned, "ResultReturned")] {
        let mut f = h.clone();
        f.record(t(11), [forged]);
        // Then the fold refuses it, naming the running attempt
        let (at, event, reason) = fold(&f).expect_err("refused");
        assert_eq!((at, event.as_str()), (h.len(), name));
        assert!(
            reason.contains(&format!("a request running attempt 0 on {}", running.node))
                && reason.contains(name),
            "{reason}"
        );
    }
}
