//! A decision's events complete within their batch: its money movements, each of exactly the
//! amount the request's state gives, from the request's own account, and its flags and
//! removals, each following from the validation history. A log that breaks any of them is
//! refused at a record, never folded into wrapped-around numbers or a panic.

use prlx_commands::decide::{decide, Command, Completion};
use prlx_commands::testkit::fixtures::{
    self, accepted_and_reserved, account, completion, model, registered, request_accepted, t,
};
use prlx_commands::testkit::{self, dispatch_next, History};
use prlx_events::event::*;
use prlx_events::{AccountId, Event, Hash32, RequestId};
use prlx_projections::CoordinatorState;

/// Folds `h`: the state, or the refused record's offset, type and reason.
fn fold(h: &History) -> Result<CoordinatorState, (usize, String, String)> {
    testkit::fold(h).map_err(|e| {
        (
            e.offset as usize,
            e.error.event_type.to_string(),
            e.error.reason,
        )
    })
}

fn base() -> History {
    vec![
        fixtures::catalog(vec![model("chat", Hash32([1; 32]))]).into(),
        fixtures::deposited(1_000).into(),
        CreditsDeposited {
            account: AccountId("other".into()),
            tx_ref: "t-other".into(),
            amount: 1_000,
            chain: None,
        }
        .into(),
        registered(1).into(),
    ]
    .into()
}

/// Request 0 accepted and reserved, dispatched at t(10) and reported at t(11): returns the
/// history before the report and the report's events (ResultReturned, CreditsCharged).
fn served() -> (History, Vec<Event>) {
    let mut h = base();
    h.extend(accepted_and_reserved(request_accepted(0)));
    dispatch_next(&mut h, t(10));
    let report = decide(
        &fold(&h).unwrap(),
        Command::CompleteTask(Box::new(Completion {
            now: t(11),
            ..completion(RequestId(0), fixtures::node(1), 0)
        })),
    )
    .unwrap();
    (h, report)
}

#[test]
fn an_honest_history_folds_and_ends_with_nothing_owed() {
    let (mut h, report) = served();
    assert!(
        report.iter().any(|e| matches!(e, Event::CreditsCharged(_))),
        "{report:?}"
    );
    h.record(t(11), report);
    let st = fold(&h).expect("folds");
    assert_eq!(st.unfinished_batch(), None);
    let r = &st.requests[&RequestId(0)];
    assert_eq!((r.reserved, r.charged), (0, r.price));
}

#[test]
fn a_decision_without_its_charge_is_refused_at_the_next_record() {
    let (mut h, report) = served();
    let without: Vec<Event> = report
        .into_iter()
        .filter(|e| !matches!(e, Event::CreditsCharged(_)))
        .collect();
    h.record(t(11), without);
    let st = fold(&h).expect("the log so far folds");
    let open = st
        .unfinished_batch()
        .expect("the log ends inside a decision");
    assert!(open.contains("CreditsCharged of request"), "{open}");

    let next = h.len();
    h.push(fixtures::deposited(1).into());
    let (at, event, reason) = fold(&h).expect_err("refused");
    assert_eq!((at, event.as_str()), (next, "CreditsDeposited"));
    assert!(
        reason.contains("the decision before this record is incomplete")
            && reason.contains("CreditsCharged"),
        "{reason}"
    );
}

#[test]
fn an_acceptance_without_its_reservation_is_refused() {
    let mut h = base();
    h.push(request_accepted(0).into());
    h.push(fixtures::deposited(1).into());
    let (_, _, reason) = fold(&h).expect_err("refused");
    assert!(reason.contains("CreditsReserved of request"), "{reason}");
}

/// Each forged movement, recorded in the decision it would belong to, is refused at itself
/// with the field it gets wrong; none panics or wraps a balance around.
#[test]
fn movements_of_another_account_or_amount_are_refused_where_they_stand() {
    let accepted = request_accepted(0);
    let price = accepted.price;
    let reserve = |account: &str, amount: u64| -> Event {
        CreditsReserved {
            account: AccountId(account.into()),
            request_id: RequestId(0),
            amount,
        }
        .into()
    };
    for (forged, why) in [
        (reserve("other", price), "belongs to"),
        (reserve("nobody", 0), "belongs to"),
        (reserve(&account().0, price - 1), "whose price is"),
        (reserve(&account().0, u64::MAX), "whose price is"),
    ] {
        let mut h = base();
        h.extend([accepted.clone().into(), forged]);
        let (at, event, reason) = fold(&h).expect_err("refused");
        assert_eq!((at, event.as_str()), (h.len() - 1, "CreditsReserved"));
        assert!(reason.contains(why), "{reason}");
    }
    // Reserved twice: the second owes nothing.
    let mut h = base();
    let mut twice = accepted_and_reserved(accepted.clone());
    twice.push(reserve("ai", price));
    h.extend(twice);
    let (_, _, reason) = fold(&h).expect_err("refused");
    assert!(
        reason.contains("nothing in this decision owes it"),
        "{reason}"
    );

    // A charge of another amount, or from another account.
    let (h, report) = served();
    let ai = account().0;
    for (account, amount, why) in [
        (ai.clone(), price + 1, "which owes"),
        (ai.clone(), price - 1, "which owes"),
        ("other".to_owned(), price, "belongs to"),
    ] {
        let mut h = h.clone();
        let forged: Vec<Event> = report
            .iter()
            .map(|e| match e {
                Event::CreditsCharged(c) => CreditsCharged {
                    account: AccountId(account.clone()),
                    amount,
                    ..c.clone()
                }
                .into(),
                other => other.clone(),
            })
            .collect();
        h.record(t(11), forged);
        let (_, event, reason) = fold(&h).expect_err("refused");
        assert_eq!(event, "CreditsCharged");
        assert!(reason.contains(why), "{reason}");
    }
}

#[test]
fn a_failure_refunds_all_its_credit_in_its_decision() {
    let mut h = base();
    h.extend(accepted_and_reserved(request_accepted(0)));
    let st = fold(&h).unwrap();
    let events = decide(
        &st,
        Command::ExpireQueued {
            request: RequestId(0),
            now: t(100_000),
        },
    )
    .expect("the queue bound has passed");
    let refund = events
        .iter()
        .position(|e| matches!(e, Event::CreditsRefunded(_)))
        .expect("a refund");
    let mut honest = h.clone();
    honest.record(t(100_000), events.clone());
    assert_eq!(
        fold(&honest).unwrap().accounts[&fixtures::account()].reserved,
        0
    );

    // Half a refund.
    let mut partial = events.clone();
    if let Event::CreditsRefunded(r) = &mut partial[refund] {
        r.amount /= 2;
    }
    let mut forged = h.clone();
    forged.record(t(100_000), partial);
    let (_, event, reason) = fold(&forged).expect_err("refused");
    assert_eq!(event, "CreditsRefunded");
    assert!(reason.contains("a refund returns all of it"), "{reason}");

    // No refund at all: the next decision finds the failure's refund missing.
    let mut none = events;
    none.remove(refund);
    let mut forged = h;
    forged.record(t(100_000), none);
    forged.push(fixtures::deposited(1).into());
    let (_, _, reason) = fold(&forged).expect_err("refused");
    assert!(reason.contains("CreditsRefunded of request"), "{reason}");
}

/// Node 1's report of request 0 whose commitment does not check, decided at t(11).
fn rejected() -> (History, Vec<Event>) {
    let (h, _) = served();
    let report = decide(
        &fold(&h).unwrap(),
        Command::CompleteTask(Box::new(Completion {
            now: t(11),
            commitment: Err("PoE does not match".into()),
            ..completion(RequestId(0), fixtures::node(1), 0)
        })),
    )
    .unwrap();
    (h, report)
}

#[test]
fn a_rejected_commitment_flags_its_node_and_a_low_standing_removes_it() {
    let (h, report) = rejected();
    let types: Vec<_> = report.iter().map(Event::type_name).collect();
    assert!(
        types.contains(&"NodeFlagged") && types.contains(&"NodeRemovedFromPool"),
        "a fresh node's first bad result takes it under the floor: {types:?}"
    );
    let mut honest = h.clone();
    honest.record(t(11), report.clone());
    assert!(!fold(&honest).unwrap().nodes[&fixtures::node(1)].in_pool);

    // The same decision without its flag, or without its removal: the next record is refused.
    for (left_out, owed) in [
        ("NodeFlagged", "NodeFlagged of node"),
        ("NodeRemovedFromPool", "NodeRemovedFromPool of node"),
    ] {
        let mut forged = h.clone();
        forged.record(
            t(11),
            report.iter().filter(|e| e.type_name() != left_out).cloned(),
        );
        forged.push(fixtures::deposited(1).into());
        let (_, _, reason) = fold(&forged).expect_err("refused");
        assert!(reason.contains(owed), "{left_out}: {reason}");
    }
}

#[test]
fn a_flag_or_a_removal_nothing_calls_for_is_refused() {
    let (h, _) = served();
    let node = fixtures::node(1);
    for forged in [
        Event::from(NodeFlagged {
            node_id: node,
            task_id: None,
            reason: "made up".into(),
        }),
        Event::from(NodeRemovedFromPool {
            node_id: node,
            reason: "made up".into(),
        }),
    ] {
        let mut h = h.clone();
        let name = forged.type_name();
        h.push(forged);
        let (at, event, reason) = fold(&h).expect_err("refused");
        assert_eq!((at, event.as_str()), (h.len() - 1, name));
        assert!(
            reason.contains("nothing in this decision owes it"),
            "{reason}"
        );
    }
}

/// A dispatch that uses up a request's last attempt fails the request in the same decision.
#[test]
fn a_request_with_no_attempt_left_fails_in_the_decision_that_used_it_up() {
    let mut h: History = vec![
        CatalogPublished {
            max_attempts: 1,
            ..fixtures::catalog(vec![model("chat", Hash32([1; 32]))])
        }
        .into(),
        fixtures::deposited(1_000).into(),
        registered(1).into(),
        registered(2).into(),
    ]
    .into();
    h.extend(accepted_and_reserved(request_accepted(0)));
    let node = dispatch_next(&mut h, t(10));
    let expired = decide(
        &fold(&h).unwrap(),
        Command::ExpireDeadline {
            request: RequestId(0),
            node,
            attempt: 0,
            now: t(40),
            release: None,
        },
    )
    .unwrap();
    let types: Vec<_> = expired.iter().map(Event::type_name).collect();
    assert!(types.contains(&"RequestFailed"), "{types:?}");
    let mut honest = h.clone();
    honest.record(t(40), expired.clone());
    fold(&honest).expect("the honest decision folds");

    // The same decision without its failure (nor the refund the failure would owe).
    let mut forged = h;
    forged.record(
        t(40),
        expired
            .into_iter()
            .filter(|e| !matches!(e, Event::RequestFailed(_) | Event::CreditsRefunded(_))),
    );
    forged.push(fixtures::deposited(1).into());
    let (_, _, reason) = fold(&forged).expect_err("refused");
    assert!(reason.contains("RequestFailed of request"), "{reason}");
}
