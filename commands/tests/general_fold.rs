//! The general path in `decide` and in the fold (what the auditor replays): an honest task's
//! history folds to a completed, charged task; each record a lying coordinator could write
//! instead (a plan priced wrong or missing, a sub-task released before its deps returned or
//! named on other inputs, an aggregate of other results or before the last sub-task, a charge
//! of a sub-task) is refused at that record; a failed sub-task fails its task, refunded.
//!
//! The task: a word count in two map shards and one reduce (ids 1 and 2 independent, id 3
//! depends on both), on a catalog model `chat` with two nodes.

use prlx_commands::decide::{decide, Command, Completion};
use prlx_commands::testkit::fixtures::{self, completion, t};
use prlx_commands::testkit::general::{
    accepted, aggregate, complete, honest, maps_returned, release,
};
use prlx_commands::testkit::{self, decide_at, dispatch_next, History};
use prlx_events::event::*;
use prlx_events::{Event, Hash32, RequestId};
use prlx_projections::coordinator::RequestStatus;
use prlx_projections::CoordinatorState;

fn fold(h: &History) -> Result<CoordinatorState, (String, String)> {
    testkit::fold(h).map_err(|e| (e.error.event_type.to_string(), e.error.reason))
}

#[test]
fn an_honest_task_folds_to_completed_and_charged_once() {
    let before = fold(&accepted()).unwrap();
    let task = &before.requests[&RequestId(0)];
    let price = task.price;
    assert!(price > 0);
    assert_eq!(task.reserved, price);
    assert_eq!(before.accounts[&fixtures::account()].reserved, price);
    // The reduce waits for its deps; the maps are queued.
    assert!(before.requests[&RequestId(3)].queued.is_none());
    assert!(before.requests[&RequestId(1)].queued.is_some());
    assert_eq!(before.next_request_id, 4);

    let st = fold(&honest()).expect("the honest history folds");
    let task = &st.requests[&RequestId(0)];
    assert_eq!(task.status, RequestStatus::Completed);
    assert_eq!((task.charged, task.reserved), (price, 0));
    let account = &st.accounts[&fixtures::account()];
    assert_eq!((account.balance, account.reserved), (1_000_000 - price, 0));
    for id in 1..=3 {
        let sub = &st.requests[&RequestId(id)];
        assert_eq!(sub.status, RequestStatus::Completed, "{id}");
        assert_eq!(sub.charged, 0, "a sub-task is never charged itself");
    }
    assert!(st.open_tasks.is_empty());
    assert!(st.unfinished_batch().is_none());
}

#[test]
fn decide_releases_and_aggregates_only_when_the_inputs_are_in() {
    let st = fold(&accepted()).unwrap();
    let early = decide(&st, release()).expect_err("no dep has returned");
    assert_eq!(early.field.as_deref(), Some("request_id"));
    let early = decide(&st, aggregate()).expect_err("no sub-task has returned");
    assert_eq!(early.field.as_deref(), Some("request_id"));

    let st = fold(&maps_returned()).unwrap();
    let Command::ReleaseSubtask(mut wrong) = release() else {
        unreachable!()
    };
    wrong.inputs.swap(0, 1);
    let refused = decide(&st, Command::ReleaseSubtask(wrong)).expect_err("other inputs");
    assert_eq!(refused.field.as_deref(), Some("inputs"));
    assert!(decide(&st, release()).is_ok());
}

/// Folds `h` with the record of type `at_type` (its `nth`) replaced by what `edit` makes of
/// it; the refused record's type and reason.
fn forged(h: &History, nth_of: &str, edit: impl FnOnce(Event) -> Event) -> (String, String) {
    let i = h
        .iter()
        .position(|e| e.type_name() == nth_of)
        .unwrap_or_else(|| panic!("no {nth_of}"));
    let mut f = h.clone();
    f.replace(i, edit(h[i].clone()));
    fold(&f).expect_err("the forged record is refused")
}

#[test]
fn a_plan_priced_or_shaped_other_than_the_catalog_says_is_refused() {
    let h = honest();
    let (event, reason) = forged(&h, "SubtasksPlanned", |e| {
        let Event::SubtasksPlanned(mut p) = e else {
            unreachable!()
        };
        p.subtasks[0].price += 1;
        p.into()
    });
    assert_eq!(event, "SubtasksPlanned");
    assert!(reason.contains("price"), "{reason}");

    let (_, reason) = forged(&h, "SubtasksPlanned", |e| {
        let Event::SubtasksPlanned(mut p) = e else {
            unreachable!()
        };
        p.subtasks[2].depends_on = vec![2];
        p.into()
    });
    assert!(reason.contains("earlier deps"), "{reason}");

    let (_, reason) = forged(&h, "SubtasksPlanned", |e| {
        let Event::SubtasksPlanned(mut p) = e else {
            unreachable!()
        };
        p.subtasks[1].request_id = RequestId(7);
        p.into()
    });
    assert!(reason.contains("expected 1 with 2"), "{reason}");
}

#[test]
fn a_task_accepted_without_its_plan_is_refused_at_the_next_decision() {
    let h = honest();
    let i = h
        .iter()
        .position(|e| matches!(e, Event::SubtasksPlanned(_)))
        .unwrap();
    // The plan replaced by a record that changes nothing of the task's (a rejection).
    let mut f = h.clone();
    f.replace(
        i,
        RequestRejected {
            idempotency_key: None,
            source: IntakeSource::Http,
            code: RejectionCode::MalformedRequest,
            field: None,
            message: "x".into(),
        },
    );
    let (_, reason) = fold(&f).expect_err("refused");
    assert!(
        reason.contains("never recorded SubtasksPlanned of request req-0"),
        "{reason}"
    );
}

#[test]
fn a_release_before_the_deps_returned_or_on_other_inputs_is_refused() {
    // Recorded after the first map only.
    let mut h = accepted();
    let a = dispatch_next(&mut h, t(11));
    dispatch_next(&mut h, t(11));
    complete(&mut h, 1, a, 12);
    let Command::ReleaseSubtask(r) = release() else {
        unreachable!()
    };
    h.record(t(13), [Event::from(*r)]);
    let (event, reason) = fold(&h).expect_err("refused");
    assert_eq!(event, "SubtaskReleased");
    assert!(reason.contains("before its dep 1 returned"), "{reason}");

    let (_, reason) = forged(&honest(), "SubtaskReleased", |e| {
        let Event::SubtaskReleased(mut r) = e else {
            unreachable!()
        };
        r.inputs[1] = Hash32([9; 32]);
        r.into()
    });
    assert!(
        reason.contains("not its deps' validated results"),
        "{reason}"
    );
}

#[test]
fn an_aggregate_of_other_results_or_before_the_last_sub_task_is_refused() {
    let (event, reason) = forged(&honest(), "AggregateReturned", |e| {
        let Event::AggregateReturned(mut a) = e else {
            unreachable!()
        };
        a.results.swap(0, 1);
        a.into()
    });
    assert_eq!(event, "AggregateReturned");
    assert!(reason.contains("validated results, in order"), "{reason}");

    let mut h = maps_returned();
    decide_at(&mut h, t(14), release());
    let Command::ReturnAggregate(a) = aggregate() else {
        unreachable!()
    };
    h.record(t(15), [Event::from(*a)]);
    let (_, reason) = fold(&h).expect_err("refused");
    assert!(
        reason.contains("before its sub-task 2 returned"),
        "{reason}"
    );
}

#[test]
fn a_charge_of_a_sub_task_is_refused() {
    let mut h = accepted();
    let a = dispatch_next(&mut h, t(11));
    let mut events = decide(
        &fold(&h).unwrap(),
        Command::CompleteTask(Box::new(Completion {
            now: t(12),
            ..completion(RequestId(1), a, 0)
        })),
    )
    .unwrap();
    assert!(events.iter().any(|e| matches!(e, Event::ResultReturned(_))));
    assert!(!events.iter().any(|e| matches!(e, Event::CreditsCharged(_))));
    events.push(
        CreditsCharged {
            account: fixtures::account(),
            request_id: RequestId(1),
            amount: 0,
        }
        .into(),
    );
    h.record(t(12), events);
    let (event, reason) = fold(&h).expect_err("refused");
    assert_eq!(event, "CreditsCharged");
    assert!(
        reason.contains("nothing in this decision owes it"),
        "{reason}"
    );
}

#[test]
fn a_failed_sub_task_fails_its_task_refunded_and_its_waiting_siblings() {
    let mut h = accepted();
    let st = fold(&h).unwrap();
    let due = t(10) + st.queue_timeout();
    let events = decide_at(
        &mut h,
        due,
        Command::ExpireQueued {
            request: RequestId(1),
            now: due,
        },
    );
    let failed: Vec<RequestId> = events
        .iter()
        .filter_map(|e| match e {
            Event::RequestFailed(f) => Some(f.request_id),
            _ => None,
        })
        .collect();
    // The map that timed out, its task, and the two siblings that never started.
    assert_eq!(
        failed,
        vec![RequestId(1), RequestId(0), RequestId(2), RequestId(3)]
    );
    let st = fold(&h).expect("the failure folds");
    let account = &st.accounts[&fixtures::account()];
    assert_eq!((account.balance, account.reserved), (1_000_000, 0));
    for id in 0..=3 {
        assert_eq!(st.requests[&RequestId(id)].status, RequestStatus::Failed);
    }
    assert!(st.open_tasks.is_empty());
}

#[test]
fn results_that_do_not_combine_fail_the_task_refunded_but_only_once_some_returned() {
    let fail = || Command::FailTask {
        task: RequestId(0),
        reason: "the reduce's input".into(),
    };
    let mut h = maps_returned();
    let events = decide_at(&mut h, t(14), fail());
    assert!(matches!(&events[0], Event::RequestFailed(f)
        if f.request_id == RequestId(0) && f.cause == Some(FailureCause::OutputsRefused)));
    let st = fold(&h).expect("the failure folds");
    assert_eq!(st.requests[&RequestId(0)].status, RequestStatus::Failed);
    assert_eq!(st.requests[&RequestId(3)].status, RequestStatus::Failed);
    let account = &st.accounts[&fixtures::account()];
    assert_eq!((account.balance, account.reserved), (1_000_000, 0));

    // Claimed before any sub-task returned a result: nothing could have been refused.
    let mut h = accepted();
    let events = decide(&fold(&h).unwrap(), fail()).unwrap();
    h.record(t(11), events);
    let (event, reason) = fold(&h).expect_err("refused");
    assert_eq!(event, "RequestFailed");
    assert!(reason.contains("OutputsRefused"), "{reason}");
}
