//! A node declining a dispatch it cannot run (`DispatchRefused`), Given/When/Then, and the
//! fold's re-derivation of it: a failed dispatch that moves no standing, and the request
//! failed with a full refund once a second node of the same model file declines it.

use prlx_commands::decide::{decide, Command, Refusal};
use prlx_commands::testkit::fixtures::{
    self, accepted_and_reserved, context_exceeded, model, node, refusal, registered,
    request_accepted, t,
};
use prlx_commands::testkit::{self, dispatch_next, given, History};
use prlx_events::event::*;
use prlx_events::{Event, Hash32, NodeId, RequestId, TaskId};
use prlx_projections::coordinator::RequestStatus;
use prlx_projections::CoordinatorState;

const FILE: Hash32 = Hash32([1; 32]);
const OTHER_FILE: Hash32 = Hash32([2; 32]);
const REQUEST: RequestId = RequestId(0);

fn catalog(max_attempts: u32, file: Hash32) -> Event {
    CatalogPublished {
        max_attempts,
        ..fixtures::catalog(vec![model("chat", file)])
    }
    .into()
}

/// Node `n` serving `chat` from the model file `file`.
fn serving(n: u8, file: Hash32) -> Event {
    NodeRegistered {
        model_hashes: [("chat".to_owned(), file)].into(),
        ..registered(n)
    }
    .into()
}

/// The catalog (`max_attempts`), credit, `nodes`, then request 0 accepted and reserved.
fn base(max_attempts: u32, nodes: Vec<Event>) -> History {
    let mut h: History = vec![
        catalog(max_attempts, FILE),
        fixtures::deposited(1_000).into(),
    ]
    .into();
    h.extend(nodes);
    h.extend(accepted_and_reserved(request_accepted(0)));
    h
}

fn state(h: &History) -> CoordinatorState {
    given(h).state().clone()
}

/// The refusal of the attempt `node` holds of request 0, decided at `now`.
fn refusal_at(h: &History, who: NodeId, now: i64) -> Refusal {
    let attempt = state(h).requests[&REQUEST]
        .running
        .as_ref()
        .map_or(0, |a| a.attempt);
    Refusal {
        now: t(now),
        ..refusal(REQUEST, who, attempt)
    }
}

/// Decides `node`'s refusal of its running attempt at `now`, records and returns its events.
fn refused(h: &mut History, who: NodeId, now: i64) -> Vec<Event> {
    let events = given(&*h)
        .when(Command::RefuseDispatch(Box::new(refusal_at(h, who, now))))
        .events();
    h.record(t(now), events.clone());
    events
}

fn recorded(who: NodeId, attempt: u32) -> Event {
    DispatchRefused {
        task_id: TaskId::whole(REQUEST),
        attempt,
        node_id: who,
        reason: context_exceeded(),
        signature: Sealed(vec![6]),
    }
    .into()
}

fn types(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(Event::type_name).collect()
}

/// Folds `h`: the state, or the refused record's offset, type and reason.
fn fold(h: &History) -> Result<CoordinatorState, (usize, String, String)> {
    testkit::fold(h).map_err(|e| {
        (
            e.offset as usize,
            e.error.event_type.to_string(),
            e.error.to_string(),
        )
    })
}

#[test]
fn a_refusal_requeues_the_request_for_another_node_and_moves_no_standing() {
    let mut h = base(3, vec![serving(1, FILE), serving(2, FILE)]);
    let first = dispatch_next(&mut h, t(10));
    let events = refused(&mut h, first, 11);
    assert_eq!(
        events,
        vec![recorded(first, 0)],
        "no StandingChanged, no failure"
    );

    let st = fold(&h).expect("folds");
    let req = &st.requests[&REQUEST];
    assert_eq!(req.status, RequestStatus::Accepted);
    assert!(req.queued.is_some() && req.running.is_none());
    assert_eq!((req.failures, req.refused.get(&first)), (1, Some(&0)));
    let n = &st.nodes[&first];
    assert_eq!(n.refusals, 1);
    assert_eq!(
        (n.standing_bp, n.missed, n.invalid, n.busy),
        (10_000, 0, 0, 0),
        "a refusal is no fault of the node's"
    );
    assert_eq!(st.unfinished_batch(), None);

    let second = dispatch_next(&mut h, t(12));
    assert_ne!(
        second, first,
        "a re-dispatch goes to a node that has not tried it"
    );
}

#[test]
fn a_second_refusal_of_the_same_model_file_fails_the_request_refunded_in_full() {
    let mut h = base(
        5,
        vec![serving(1, FILE), serving(2, FILE), serving(3, FILE)],
    );
    let first = dispatch_next(&mut h, t(10));
    refused(&mut h, first, 11);
    let second = dispatch_next(&mut h, t(12));
    let events = refused(&mut h, second, 13);
    assert_eq!(
        types(&events),
        ["DispatchRefused", "RequestFailed", "CreditsRefunded"]
    );
    let Event::RequestFailed(failed) = &events[1] else {
        unreachable!()
    };
    assert_eq!(failed.cause, Some(FailureCause::Refused));
    assert!(
        failed.reason.contains(&first.to_string()) && failed.reason.contains(&second.to_string()),
        "{}",
        failed.reason
    );
    assert_eq!(
        events[2],
        CreditsRefunded {
            account: fixtures::account(),
            request_id: REQUEST,
            amount: 15,
        }
        .into()
    );

    let st = fold(&h).expect("the fold re-derives the failure");
    assert_eq!(st.requests[&REQUEST].status, RequestStatus::Failed);
    let account = &st.accounts[&fixtures::account()];
    assert_eq!((account.balance, account.reserved), (1_000, 0));
    assert_eq!(st.unfinished_batch(), None);
    // The third node was never asked: two nodes of one file cannot run it.
    assert_eq!(st.requests[&REQUEST].attempts, 2);
}

#[test]
fn the_last_attempt_declined_by_a_second_node_of_the_file_fails_as_refused() {
    let mut h = base(2, vec![serving(1, FILE), serving(2, FILE)]);
    let first = dispatch_next(&mut h, t(10));
    refused(&mut h, first, 11);
    let second = dispatch_next(&mut h, t(12));
    let events = refused(&mut h, second, 13);
    assert!(
        matches!(&events[1], Event::RequestFailed(f) if f.cause == Some(FailureCause::Refused)),
        "{events:?}"
    );
    fold(&h).expect("either cause is re-derived; the refusal names the real one");
}

#[test]
fn a_refusal_by_a_node_of_another_model_file_requeues() {
    // Node 1 registered under a catalog with another file of `chat`; nodes 2 and 3 run the
    // file of the catalog in force.
    let mut h: History = vec![catalog(5, OTHER_FILE), fixtures::deposited(1_000).into()].into();
    h.push(serving(1, OTHER_FILE));
    h.push(catalog(5, FILE));
    h.extend([serving(2, FILE), serving(3, FILE)]);
    h.extend(accepted_and_reserved(request_accepted(0)));

    let mut asked = Vec::new();
    let mut now = 10;
    loop {
        let who = dispatch_next(&mut h, t(now));
        asked.push(who);
        let events = refused(&mut h, who, now + 1);
        now += 2;
        if events.len() > 1 {
            assert_eq!(
                types(&events),
                ["DispatchRefused", "RequestFailed", "CreditsRefunded"]
            );
            break;
        }
    }
    // It fails exactly when the second node of one file declines, whoever came first.
    let files: Vec<Hash32> = asked
        .iter()
        .map(|n| if *n == node(1) { OTHER_FILE } else { FILE })
        .collect();
    assert_eq!(files.iter().filter(|f| **f == FILE).count(), 2, "{asked:?}");
    assert_eq!(files.last(), Some(&FILE));
    fold(&h).expect("folds");
}

#[test]
fn nodes_that_reported_no_model_file_never_fail_a_request_by_refusals() {
    let mut h = base(
        5,
        vec![
            registered(1).into(),
            registered(2).into(),
            registered(3).into(),
        ],
    );
    let first = dispatch_next(&mut h, t(10));
    refused(&mut h, first, 11);
    let second = dispatch_next(&mut h, t(12));
    assert_eq!(refused(&mut h, second, 13), vec![recorded(second, 1)]);
    fold(&h).expect("folds");
}

#[test]
fn a_refusal_of_an_attempt_the_node_does_not_hold_is_rejected() {
    let mut h = base(3, vec![serving(1, FILE), serving(2, FILE)]);
    let holder = dispatch_next(&mut h, t(10));
    let other = if holder == node(1) { node(2) } else { node(1) };
    for r in [
        Refusal {
            now: t(11),
            ..refusal(REQUEST, other, 0)
        },
        Refusal {
            now: t(11),
            ..refusal(REQUEST, holder, 1)
        },
    ] {
        given(&h)
            .when(Command::RefuseDispatch(Box::new(r)))
            .then_reject(RejectionCode::UnknownNode, "attempt");
    }
}

#[test]
fn a_repeated_refusal_is_a_duplicate_and_changes_nothing() {
    let mut h = base(
        3,
        vec![serving(1, FILE), serving(2, FILE), serving(3, FILE)],
    );
    let first = dispatch_next(&mut h, t(10));
    let again = Refusal {
        now: t(12),
        ..refusal_at(&h, first, 11)
    };
    refused(&mut h, first, 11);
    given(&h)
        .when(Command::RefuseDispatch(Box::new(again.clone())))
        .then_expect([]);
    // Still a duplicate once another node holds the request.
    dispatch_next(&mut h, t(13));
    given(&h)
        .when(Command::RefuseDispatch(Box::new(Refusal {
            now: t(14),
            ..again
        })))
        .then_expect([]);

    // The log cannot record it twice either.
    let mut forged = h.clone();
    forged.record(t(14), [recorded(first, 0)]);
    let (_, event, why) = fold(&forged).expect_err("a second refusal of one attempt");
    assert_eq!(event, "DispatchRefused");
    assert!(why.contains("does not take DispatchRefused"), "{why}");
}

#[test]
fn a_refusal_at_or_after_its_deadline_is_too_late() {
    let mut h = base(3, vec![serving(1, FILE), serving(2, FILE)]);
    let holder = dispatch_next(&mut h, t(10));
    // The request's deadline is 30 s: the dispatch is due at t(40).
    given(&h)
        .when(Command::RefuseDispatch(Box::new(refusal_at(
            &h, holder, 40,
        ))))
        .then_reject(RejectionCode::UnknownNode, "attempt");
    let mut late = h.clone();
    late.record(t(40), [recorded(holder, 0)]);
    let (_, event, why) = fold(&late).expect_err("a late refusal");
    assert_eq!(event, "DispatchRefused");
    assert!(why.contains("is late"), "{why}");
}

#[test]
fn a_refusal_whose_numbers_do_not_add_up_is_rejected_and_does_not_fold() {
    let mut h = base(3, vec![serving(1, FILE), serving(2, FILE)]);
    let holder = dispatch_next(&mut h, t(10));
    let reasons = [
        // It fits: 10 + 5 <= 4096.
        (10, 5, 4096),
        // Not the request's max_tokens (5), or not the catalog's context (4096).
        (4095, 6, 4096),
        (4092, 5, 2048),
    ];
    for (prompt_tokens, max_tokens, context) in reasons {
        let reason = RefusalReason::ContextExceeded {
            prompt_tokens,
            max_tokens,
            context,
        };
        given(&h)
            .when(Command::RefuseDispatch(Box::new(Refusal {
                reason: reason.clone(),
                ..refusal_at(&h, holder, 11)
            })))
            .then_reject(RejectionCode::MalformedRequest, "reason");
        let mut forged = h.clone();
        forged.record(
            t(11),
            [DispatchRefused {
                task_id: TaskId::whole(REQUEST),
                attempt: 0,
                node_id: holder,
                reason,
                signature: Sealed(vec![6]),
            }
            .into()],
        );
        let (_, event, why) = fold(&forged).expect_err("numbers that do not add up");
        assert_eq!(event, "DispatchRefused");
        assert!(why.contains("reason"), "{why}");
    }
}

#[test]
fn a_log_that_requeues_after_a_second_refusal_of_the_file_is_refused() {
    let mut h = base(
        5,
        vec![serving(1, FILE), serving(2, FILE), serving(3, FILE)],
    );
    let first = dispatch_next(&mut h, t(10));
    refused(&mut h, first, 11);
    let second = dispatch_next(&mut h, t(12));
    // The second refusal recorded without the failure and refund it owes.
    h.record(t(13), [recorded(second, 1)]);
    let st = fold(&h).expect("the log so far folds");
    assert!(
        st.unfinished_batch()
            .is_some_and(|why| why.contains("RequestFailed of request req-0")),
        "{:?}",
        st.unfinished_batch()
    );
    h.push(fixtures::deposited(5).into());
    let (offset, _, why) = fold(&h).expect_err("the next batch starts with a failure owed");
    assert_eq!(offset, h.len() - 1);
    assert!(why.contains("RequestFailed of request req-0"), "{why}");
}

#[test]
fn a_failure_on_refusals_that_one_node_alone_declined_is_refused() {
    let mut h = base(3, vec![serving(1, FILE), serving(2, FILE)]);
    let first = dispatch_next(&mut h, t(10));
    refused(&mut h, first, 11);
    h.record(
        t(12),
        [
            RequestFailed {
                request_id: REQUEST,
                reason: "forged".into(),
                cause: Some(FailureCause::Refused),
            }
            .into(),
            CreditsRefunded {
                account: fixtures::account(),
                request_id: REQUEST,
                amount: 15,
            }
            .into(),
        ],
    );
    let (_, event, why) = fold(&h).expect_err("one refusal fails nothing");
    assert_eq!(event, "RequestFailed");
    assert!(why.contains("cause"), "{why}");
}

#[test]
fn a_log_that_lowers_standing_for_a_refusal_is_refused() {
    let mut h = base(3, vec![serving(1, FILE), serving(2, FILE)]);
    let first = dispatch_next(&mut h, t(10));
    h.record(
        t(11),
        [
            recorded(first, 0),
            StandingChanged {
                node_id: first,
                valid: 0,
                invalid: 0,
                disagreements: 0,
                missed_deadlines: Some(1),
                standing_bp: 9_000,
            }
            .into(),
        ],
    );
    let (_, event, why) = fold(&h).expect_err("a refusal moves no standing");
    assert_eq!(event, "StandingChanged");
    assert!(why.contains("standing"), "{why}");
}

#[test]
fn decide_and_the_fold_agree_on_every_refusal_above() {
    // Whatever decide records for a refusal, the fold takes as it is: one refusal, then the
    // second of the file, decided against the fold of the history before each.
    let mut h = base(3, vec![serving(1, FILE), serving(2, FILE)]);
    for now in [10, 12] {
        let who = dispatch_next(&mut h, t(now));
        let events = decide(
            &state(&h),
            Command::RefuseDispatch(Box::new(refusal_at(&h, who, now + 1))),
        )
        .unwrap();
        h.record(t(now + 1), events);
        fold(&h).expect("folds");
    }
}
