//! A tier claim checked against the work a node returns (issue 16): a run of verified results
//! slower than its tier's floor moves the node down, recorded as `NodeTierLowered` in the
//! decision of the result that completes the run; the fold re-derives it and refuses a log
//! that forges, alters or drops one.

use prlx_commands::decide::{decide, Command, Completion};
use prlx_commands::testkit::fixtures::{
    self, accepted_and_reserved, completion, deposited, model, node, registered, request_accepted,
    t,
};
use prlx_commands::testkit::{dispatch_next, fold, History};
use prlx_events::event::*;
use prlx_events::{Event, Hash32, RequestId};

/// "chat" with floors of 10 tok/s at tier 2 and 50 at tier 3; node 1 claims tier 3; four
/// requests of 100 tokens waiting.
fn history() -> History {
    let mut h = History::new();
    let chat = CatalogModel {
        tier_floors_tps: vec![10, 50],
        ..model("chat", Hash32([1; 32]))
    };
    h.record(t(-100), [fixtures::catalog(vec![chat]).into()]);
    h.record(t(-90), [deposited(10_000).into()]);
    let tier_3 = NodeRegistered {
        hardware_tier: 3,
        ..registered(1)
    };
    h.record(t(-80), [tier_3.into()]);
    for id in 0..4 {
        accept(&mut h, id, -70);
    }
    h
}

/// Request `id` for 100 tokens of "chat" accepted at `at`.
fn accept(h: &mut History, id: u64, at: i64) {
    let accepted = RequestAccepted {
        max_tokens: 100,
        price: 110,
        deadline_seconds: 60,
        ..request_accepted(id)
    };
    h.record(t(at), accepted_and_reserved(accepted));
}

/// Request `id` dispatched at `at` and its result of `tokens` tokens recorded `secs` later;
/// returns the events of the result's decision.
fn serve(h: &mut History, id: u64, at: i64, secs: i64, tokens: u32) -> Vec<Event> {
    dispatch_next(h, t(at));
    let events = result(h, id, t(at + secs), tokens);
    h.record(t(at + secs), events.clone());
    events
}

/// What `decide` makes of node 1's result of `tokens` tokens for request `id`, at `now`.
fn result(h: &History, id: u64, now: chrono::DateTime<chrono::Utc>, tokens: u32) -> Vec<Event> {
    let st = fold(h).expect("the history folds");
    let attempt = st.requests[&RequestId(id)]
        .running
        .as_ref()
        .unwrap()
        .attempt;
    decide(
        &st,
        Command::CompleteTask(Box::new(Completion {
            token_count: tokens,
            now,
            ..completion(RequestId(id), node(1), attempt)
        })),
    )
    .expect("a result for the running dispatch")
}

fn lowered(events: &[Event]) -> Vec<&NodeTierLowered> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::NodeTierLowered(l) => Some(l),
            _ => None,
        })
        .collect()
}

#[test]
fn three_slow_results_in_a_row_move_a_node_down_to_the_tier_its_rate_meets() {
    let mut h = history();
    // 40 tokens in 2 s: 20 tok/s, under tier 3's floor (50), over tier 2's (10).
    assert!(lowered(&serve(&mut h, 0, 0, 2, 40)).is_empty());
    // A result at the floor ends the run: 100 tokens in 2 s.
    assert!(lowered(&serve(&mut h, 1, 10, 2, 100)).is_empty());
    assert!(lowered(&serve(&mut h, 2, 20, 2, 40)).is_empty());
    assert!(lowered(&serve(&mut h, 3, 30, 2, 40)).is_empty());
    assert_eq!(fold(&h).unwrap().nodes[&node(1)].tier_run, 2);
    // The third in a row.
    accept(&mut h, 4, 35);
    dispatch_next(&mut h, t(40));
    let before = h.clone();
    let events = result(&h, 4, t(42), 40);
    h.record(t(42), events.clone());
    assert_eq!(
        lowered(&events),
        [&NodeTierLowered {
            node_id: node(1),
            from_tier: 3,
            to_tier: 2,
            model: "chat".into(),
            measured_milli_tps: 20_000,
        }]
    );
    let state = fold(&h).expect("the fold follows");
    assert_eq!(state.nodes[&node(1)].hardware_tier, 2);
    assert_eq!(
        state.rewards.operators[&node(1)].tier,
        2,
        "slots weigh at tier 2"
    );
    assert_eq!(state.nodes[&node(1)].tier_run, 0);

    // A log that forges the figure, or drops the record, does not fold.
    let at = h
        .envelopes()
        .iter()
        .position(|e| matches!(e.event, Event::NodeTierLowered(_)))
        .unwrap();
    let mut forged = h.clone();
    forged.replace(
        at,
        NodeTierLowered {
            node_id: node(1),
            from_tier: 3,
            to_tier: 1,
            model: "chat".into(),
            measured_milli_tps: 20_000,
        },
    );
    let refused = fold(&forged).unwrap_err();
    assert_eq!(refused.offset, at as u64, "{refused}");
    let mut dropped = before;
    let kept = events
        .iter()
        .filter(|e| !matches!(e, Event::NodeTierLowered(_)));
    dropped.record(t(42), kept.cloned());
    dropped.record(t(50), [NodeDrained { node_id: node(1) }.into()]);
    let refused = fold(&dropped).unwrap_err();
    assert!(
        refused.to_string().contains("NodeTierLowered"),
        "a lowering that is due must be recorded: {refused}"
    );
}

#[test]
fn a_lowering_nothing_measured_is_refused() {
    let mut h = history();
    serve(&mut h, 0, 0, 2, 40);
    let mut forged = h.clone();
    let st = fold(&h).unwrap();
    assert_eq!(st.nodes[&node(1)].tier_run, 1);
    forged.record(
        t(5),
        [NodeTierLowered {
            node_id: node(1),
            from_tier: 3,
            to_tier: 1,
            model: "chat".into(),
            measured_milli_tps: 1,
        }
        .into()],
    );
    assert!(fold(&forged).is_err(), "nothing owes it");
}

#[test]
fn short_results_are_not_measured() {
    let mut h = history();
    // 15 tokens over 10 s: too short to time; the run does not move.
    for (id, at) in [(0, 0), (1, 20), (2, 40), (3, 60)] {
        assert!(lowered(&serve(&mut h, id, at, 10, 15)).is_empty());
    }
    assert_eq!(fold(&h).unwrap().nodes[&node(1)].tier_run, 0);
}
