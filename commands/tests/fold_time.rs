//! The fold's checks of time and of records nothing owes: a dispatch's deadline is
//! re-derived from the time it is recorded at, an expiry counts only at or after that
//! deadline, a result only before it, a heartbeat only with a fresh signed statement, and
//! `SubtasksPlanned` that no acceptance owes is refused.
//!
//! Each case folds an honest history first, so a refusal is the forged record's doing.

use prlx_commands::decide::{decide, Command, Completion};
use prlx_commands::testkit::fixtures::{
    self, accepted_and_reserved, completion, model, registered, request_accepted, t,
};
use prlx_commands::testkit::{self, dispatch_next, History};
use prlx_events::event::*;
use prlx_events::{Event, Hash32, RequestId, TaskId};
use prlx_projections::CoordinatorState;

/// Folds `h`; the refused event's type and reason if the fold refuses a record.
fn fold(h: &History) -> Result<CoordinatorState, (String, String)> {
    testkit::fold(h).map_err(|e| (e.error.event_type.to_string(), e.error.reason))
}

/// A catalog, credit, one node and request 0 (deadline 30 s), then its dispatch decided and
/// recorded at t(10); returns the history and the dispatch's deadline.
fn dispatched_at_10() -> (History, chrono::DateTime<chrono::Utc>) {
    let mut h: History = vec![
        fixtures::catalog(vec![model("chat", Hash32([1; 32]))]).into(),
        fixtures::deposited(1_000).into(),
        registered(1).into(),
    ]
    .into();
    h.extend(accepted_and_reserved(request_accepted(0)));
    fold(&h).expect("the base folds");
    dispatch_next(&mut h, t(10));
    let due = fold(&h).expect("the dispatch folds").requests[&RequestId(0)]
        .running
        .as_ref()
        .and_then(|a| a.deadline_at)
        .expect("a deadline");
    assert_eq!(due, t(40), "30 s from the time the dispatch is recorded at");
    (h, due)
}

fn expiry() -> Event {
    DeadlineExpired {
        task_id: TaskId::whole(RequestId(0)),
        node_id: fixtures::node(1),
        attempt: 0,
    }
    .into()
}

/// Node 1's verified report of request 0, decided at `now`.
fn report_at(h: &History, now: chrono::DateTime<chrono::Utc>) -> Vec<Event> {
    decide(
        &fold(h).unwrap(),
        Command::CompleteTask(Box::new(Completion {
            now,
            ..completion(RequestId(0), fixtures::node(1), 0)
        })),
    )
    .expect("the report is decided")
}

#[test]
fn a_dispatch_granting_another_deadline_than_the_request_asked_is_refused() {
    let (honest, _) = dispatched_at_10();
    let at = honest
        .iter()
        .position(|e| matches!(e, Event::TaskDispatched(_)))
        .unwrap();
    for shift in [-1, 1, 3_600] {
        let mut forged = honest.clone();
        let Event::TaskDispatched(mut d) = forged[at].clone() else {
            unreachable!()
        };
        d.deadline_at += chrono::Duration::seconds(shift);
        forged.replace(at, d);
        let (event, reason) = fold(&forged).expect_err("refused");
        assert_eq!(event, "TaskDispatched");
        assert!(reason.starts_with("deadline_at:"), "{reason}");
    }
}

#[test]
fn a_deadline_expires_at_its_time_and_never_before() {
    let (h, due) = dispatched_at_10();
    let mut on_time = h.clone();
    on_time.record(due, [expiry()]);
    fold(&on_time).expect("an expiry at the deadline folds");

    let mut early = h;
    early.record(due - chrono::Duration::milliseconds(1), [expiry()]);
    let (event, reason) = fold(&early).expect_err("refused");
    assert_eq!(event, "DeadlineExpired");
    assert!(reason.starts_with("recorded_at:"), "{reason}");
}

#[test]
fn a_result_recorded_at_or_after_its_deadline_does_not_count() {
    let (h, due) = dispatched_at_10();
    let before = due - chrono::Duration::milliseconds(1);
    let mut in_time = h.clone();
    in_time.record(before, report_at(&h, before));
    fold(&in_time).expect("a result before the deadline folds");

    // The events of an in-time report, recorded as if they came at the deadline.
    let mut late = h.clone();
    late.record(due, report_at(&h, before));
    let (event, reason) = fold(&late).expect_err("refused");
    assert_eq!(event, "ResultSubmitted");
    assert!(reason.contains("is late"), "{reason}");
}

#[test]
fn a_plan_nothing_owes_is_refused() {
    // Request 0 is an inference request: no acceptance of a general-path task owes a plan.
    let (mut h, _) = dispatched_at_10();
    h.push(
        SubtasksPlanned {
            request_id: RequestId(0),
            class: "render.tiles".into(),
            plan_digest: prlx_events::Hash32([0; 32]),
            subtasks: vec![],
        }
        .into(),
    );
    let (event, reason) = fold(&h).expect_err("refused");
    assert_eq!(event, "SubtasksPlanned");
    assert!(
        reason.contains("nothing in this decision owes it"),
        "{reason}"
    );
}

/// A heartbeat earns uptime, so the fold takes only one the node signed, at a time near the
/// time it is recorded at and after the node's previous one.
#[test]
fn a_heartbeat_is_folded_only_with_a_fresh_signed_statement() {
    let (h, _) = dispatched_at_10();
    let node = fixtures::node(1);
    let with = |heartbeat: NodeHeartbeat, recorded: i64| {
        let mut h = h.clone();
        h.record(t(recorded), [heartbeat.into()]);
        fold(&h)
    };
    let mut twice = h.clone();
    twice.record(t(20), [fixtures::heartbeat_recorded(node, t(20)).into()]);
    twice.record(t(21), [fixtures::heartbeat_recorded(node, t(21)).into()]);
    fold(&twice).expect("two statements, each newer, fold");

    let unsigned = NodeHeartbeat {
        signature: None,
        ..fixtures::heartbeat_recorded(node, t(20))
    };
    let (event, reason) = with(unsigned, 20).expect_err("refused");
    assert_eq!(event, "NodeHeartbeat");
    assert!(reason.contains("signed statement"), "{reason}");

    let (_, reason) =
        with(fixtures::heartbeat_recorded(node, t(20)), 20 + 121).expect_err("refused");
    assert!(
        reason.contains("from the time it is recorded at"),
        "{reason}"
    );

    let mut replayed = twice;
    replayed.record(t(22), [fixtures::heartbeat_recorded(node, t(21)).into()]);
    let (_, reason) = fold(&replayed).expect_err("refused");
    assert!(
        reason.contains("not after the node's previous heartbeat"),
        "{reason}"
    );
}

/// A report kept out as late names an attempt that is over; a log cannot file the running
/// attempt's result, or one never dispatched, as late.
#[test]
fn a_discarded_late_report_must_be_of_an_attempt_that_is_over() {
    let (h, due) = dispatched_at_10();
    let late = |attempt: u32| -> Event {
        LateResultDiscarded {
            task_id: TaskId::whole(RequestId(0)),
            attempt,
            node_id: fixtures::node(1),
        }
        .into()
    };
    let mut running = h.clone();
    running.record(t(20), [late(0)]);
    let (event, reason) = fold(&running).expect_err("the running attempt is not late");
    assert_eq!(event, "LateResultDiscarded");
    assert!(reason.contains("is not one that is over"), "{reason}");

    let mut over = h;
    over.record(due, [expiry()]);
    let mut honest = over.clone();
    honest.record(due, [late(0)]);
    fold(&honest).expect("an expired attempt's report is discarded");
    over.record(due, [late(1)]);
    fold(&over).expect_err("attempt 1 was never dispatched");
}
