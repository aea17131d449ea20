//! Scheduling, dispatch, deadlines and completion, Given/When/Then, plus the fold's check of
//! recorded scheduling receipts.

use std::collections::BTreeMap;

use prlx_commands::decide::{decide, task_price, Command, Completion, Dispatch};
use prlx_commands::testkit::fixtures::{
    self, accepted_and_reserved, account, model, node, registered, request_accepted, t,
};
use prlx_commands::testkit::{envelopes, given, History};
use prlx_events::event::*;
use prlx_events::{Event, Hash32, NodeId, RequestId, TaskId};
use prlx_projections::coordinator::RequestStatus;
use prlx_projections::scheduler::{next_assignment, Choice};
use prlx_projections::{CoordinatorState, Fold};

fn catalog(weight: u32) -> Event {
    catalog_with(weight, Default::default())
}

fn catalog_with(weight: u32, validation: ValidationPolicy) -> Event {
    CatalogPublished {
        reputation_weight_pct: weight,
        max_attempts: 2,
        validation,
        ..fixtures::catalog(vec![
            model("chat", Hash32([1; 32])),
            model("other", Hash32([2; 32])),
        ])
    }
    .into()
}

fn register(n: u8, tier: u8, slots: u32, models: &[&str]) -> Event {
    NodeRegistered {
        hardware_tier: tier,
        models: models.iter().map(|m| m.to_string()).collect(),
        slots,
        ..registered(n)
    }
    .into()
}

fn accept(id: u64, model: &str, tier: u8, priority: Priority) -> Vec<Event> {
    let r = request_accepted(id);
    // The fold re-derives the price from the catalog: every model here has the fixtures'.
    let price = task_price(
        &fixtures::model(model, Hash32([0; 32])),
        priority,
        r.max_tokens,
    )
    .expect("fits");
    accepted_and_reserved(RequestAccepted {
        model: model.into(),
        hardware_tier: tier,
        priority,
        price,
        ..r
    })
}

/// Folds `history` and returns the state, as the shell would hold it.
fn state(history: &History) -> CoordinatorState {
    given(history).state().clone()
}

/// The catalog at t(0), credit at t(1), then the nodes a second apart.
fn base(nodes: Vec<Event>) -> History {
    let mut h: History = vec![catalog(100), fixtures::deposited(1_000).into()].into();
    h.extend(nodes);
    h
}

/// Decides the next dispatch from `history` at `now`, as the shell does, and returns its
/// events.
fn dispatch_next(history: &History, now: i64) -> Vec<Event> {
    let st = state(history);
    let choice = next_assignment(&st, None).expect("something to dispatch");
    decide(
        &st,
        Command::Dispatch(Box::new(Dispatch {
            choice,
            sealed_work: Sealed(vec![1, 2, 3]),
            now: t(now),
            seed: None,
        })),
    )
    .unwrap()
}

/// Decides the next dispatch at `now`, records it, and returns its events.
fn dispatched(h: &mut History, now: i64) -> Vec<Event> {
    let events = dispatch_next(h, now);
    h.record(t(now), events.clone());
    events
}

/// Decides `command` (made at `now`) against `h` and records what it decides.
fn decided(h: &mut History, now: i64, command: Command) -> Vec<Event> {
    let events = given(&*h).when(command).events();
    h.record(t(now), events.clone());
    events
}

fn scheduled_node(events: &[Event]) -> NodeId {
    match &events[0] {
        Event::RequestScheduled(s) => s.node_id,
        other => panic!("expected RequestScheduled, got {other:?}"),
    }
}

#[test]
fn best_fit_picks_the_smallest_capable_tier_and_records_its_reasons() {
    let mut h = base(vec![
        register(1, 5, 1, &["chat"]),
        register(2, 2, 1, &["chat"]),
        register(3, 3, 1, &["chat"]),
        register(4, 1, 4, &["chat"]),
        register(5, 2, 1, &["other"]),
    ]);
    h.extend(accept(0, "chat", 2, Priority::Standard));
    let events = dispatch_next(&h, 0);
    assert_eq!(
        scheduled_node(&events),
        node(2),
        "tier 2 fits a tier-2 request; tier 1 is too small, 3 and 5 too big"
    );
    let Event::RequestScheduled(s) = &events[0] else {
        unreachable!()
    };
    assert_eq!(
        s.candidates_considered, 3,
        "nodes 2, 3 and 1 (tier 5) are capable; 4 is too small, 5 lacks the model"
    );
    let ranked: Vec<_> = s
        .ranked
        .iter()
        .map(|c| (c.node_id, c.hardware_tier))
        .collect();
    assert_eq!(ranked, vec![(node(2), 2), (node(3), 3), (node(1), 5)]);
    let Event::TaskDispatched(d) = &events[1] else {
        panic!("{:?}", events[1])
    };
    assert_eq!(d.deadline_at, t(30));
    assert_eq!(d.task_id, TaskId::whole(RequestId(0)));
}

#[test]
fn reputation_breaks_ties_within_a_tier_only_when_weighted() {
    // One bad result with invalid weight 1 halves a fresh node's standing: 1 / (1 + 1).
    let lenient = ValidationPolicy {
        invalid_weight: 1,
        removal_below_bp: 0,
        ..Default::default()
    };
    for (weight, expected) in [(100, node(2)), (0, node(1))] {
        let mut h = base(vec![
            register(1, 2, 2, &["chat"]),
            register(2, 2, 2, &["chat"]),
        ]);
        h.replace(0, catalog_with(weight, lenient.clone()));
        h.extend(accept(0, "chat", 1, Priority::Standard));
        let d = dispatched(&mut h, 10);
        assert_eq!(
            scheduled_node(&d),
            node(1),
            "equal standing: the node id decides"
        );
        let bad = completion(node(1), 0, Err("PoE does not match".into()), 11);
        decided(&mut h, 11, bad);
        assert_eq!(state(&h).nodes[&node(1)].standing_bp, 5_000);
        let d = dispatched(&mut h, 12);
        assert_eq!(scheduled_node(&d), node(2), "the re-dispatch avoids node 1");
        // Node 1 has more free slots (2 against 1) but half the standing.
        h.extend(accept(1, "chat", 1, Priority::Standard));
        assert_eq!(
            scheduled_node(&dispatch_next(&h, 20)),
            expected,
            "reputation weight {weight}%"
        );
    }
}

/// `node`'s report of request 0's `attempt`, made at `now`.
fn completion(node: NodeId, attempt: u32, commitment: Result<(), String>, now: i64) -> Command {
    Command::CompleteTask(Box::new(Completion {
        commitment,
        now: t(now),
        ..fixtures::completion(RequestId(0), node, attempt)
    }))
}

#[test]
fn requests_wait_when_no_node_has_capacity_and_go_in_priority_order() {
    let mut h = base(vec![register(1, 1, 1, &["chat"])]);
    h.extend(accept(0, "chat", 1, Priority::Low));
    h.extend(accept(1, "chat", 1, Priority::High));
    let first = dispatched(&mut h, 10);
    let Event::RequestScheduled(s) = &first[0] else {
        unreachable!()
    };
    assert_eq!(s.task_id.request, RequestId(1), "high priority goes first");
    let st = state(&h);
    assert_eq!(
        next_assignment(&st, None),
        None,
        "the only slot is taken: request 0 waits"
    );
    assert_eq!(st.sched.queued(), 1);
    // A stale choice (the slot is taken) is refused, not recorded.
    let stale = Choice {
        request: RequestId(0),
        node: node(1),
        attempt: 0,
        candidates_considered: 1,
        ranked: vec![],
    };
    assert!(decide(
        &st,
        Command::Dispatch(Box::new(Dispatch {
            choice: stale,
            sealed_work: Sealed(vec![]),
            now: t(11),
            seed: None,
        }))
    )
    .is_err());
}

/// Request 0's attempt on `node` expired.
fn deadline_expired(node: NodeId, attempt: u32) -> Event {
    DeadlineExpired {
        task_id: TaskId::whole(RequestId(0)),
        attempt,
        node_id: node,
    }
    .into()
}

/// Two capable nodes of one slot, request 0 accepted and dispatched (at 10, deadline 40) to
/// one of them, which is returned.
fn one_request_dispatched_to_one_of_two_nodes() -> (History, NodeId) {
    let mut h = base(vec![
        register(1, 1, 1, &["chat"]),
        register(2, 1, 1, &["chat"]),
    ]);
    h.extend(accept(0, "chat", 1, Priority::Standard));
    let first = dispatched(&mut h, 10);
    (h, scheduled_node(&first))
}

#[test]
fn a_missed_deadline_redispatches_to_another_node_then_fails_with_a_refund() {
    let (mut h, n1) = one_request_dispatched_to_one_of_two_nodes();
    let expire = |node, attempt, now| Command::ExpireDeadline {
        request: RequestId(0),
        node,
        attempt,
        now: t(now),
        release: None,
    };
    // Not before the deadline; the timer service's index holds it until then.
    assert_eq!(
        state(&h).sched.deadlines.first(),
        Some(&(t(40), RequestId(0)))
    );
    assert!(decide(&state(&h), expire(n1, 0, 39)).is_err());
    // The miss lowers node 1's standing (weight 1: 1 / 2); node 2 is untried, so the request
    // waits for it.
    let missed = StandingChanged {
        node_id: n1,
        valid: 0,
        invalid: 0,
        disagreements: 0,
        missed_deadlines: Some(1),
        standing_bp: 5_000,
    };
    given(&h)
        .when(expire(n1, 0, 40))
        .then_expect([deadline_expired(n1, 0), missed.clone().into()]);
    h.record(t(40), [deadline_expired(n1, 0), missed.into()]);
    let second = dispatched(&mut h, 40);
    let n2 = scheduled_node(&second);
    assert_ne!(n2, n1, "a re-dispatch goes to a different node");
    // The late result of attempt 0 is recorded and discarded.
    let late = Completion {
        now: t(41),
        ..fixtures::completion(RequestId(0), n1, 0)
    };
    given(h.clone())
        .when(Command::CompleteTask(Box::new(late)))
        .then_expect([LateResultDiscarded {
            task_id: TaskId::whole(RequestId(0)),
            attempt: 0,
            node_id: n1,
        }
        .into()]);
    // The second attempt also expires: max_attempts is 2, so the request fails and is refunded in full.
    let events = given(&h).when(expire(n2, 1, 70)).events();
    assert!(
        matches!(&events[2], Event::RequestFailed(f) if f.request_id == RequestId(0)
            && f.cause == Some(FailureCause::AttemptsExhausted)),
        "{events:?}"
    );
    assert_eq!(
        events[3],
        CreditsRefunded {
            account: account(),
            request_id: RequestId(0),
            amount: 15
        }
        .into()
    );
    h.record(t(70), events);
    let st = state(&h);
    assert!(
        st.sched.deadlines.is_empty(),
        "no deadline left to watch: {:?}",
        st.sched.deadlines
    );
    assert_eq!(st.requests[&RequestId(0)].status, RequestStatus::Failed);
    assert_eq!(st.accounts[&account()].reserved, 0);
    assert_eq!(
        st.nodes[&n1].busy + st.nodes[&n2].busy,
        0,
        "both slots are free again"
    );
}

#[test]
fn a_verified_result_is_returned_and_charged_and_a_bad_commitment_redispatches() {
    let mut h = base(vec![
        register(1, 1, 1, &["chat"]),
        register(2, 1, 1, &["chat"]),
    ]);
    h.extend(accept(0, "chat", 1, Priority::Standard));
    let d = dispatched(&mut h, 10);
    let n = scheduled_node(&d);
    let completion = |commitment| Completion {
        commitment,
        now: t(11),
        ..fixtures::completion(RequestId(0), n, 0)
    };
    let ok = given(&h)
        .when(Command::CompleteTask(Box::new(completion(Ok(())))))
        .events();
    let types: Vec<_> = ok.iter().map(Event::type_name).collect();
    assert_eq!(
        types,
        [
            "ResultSubmitted",
            "CommitmentVerified",
            "ValidationResolved",
            "ResultReturned",
            "CreditsCharged"
        ]
    );
    let mut done = h.clone();
    done.record(t(11), ok);
    let st = state(&done);
    assert_eq!(st.requests[&RequestId(0)].status, RequestStatus::Completed);
    assert_eq!(
        (
            st.accounts[&account()].balance,
            st.accounts[&account()].reserved
        ),
        (985, 0)
    );

    let bad = given(&h)
        .when(Command::CompleteTask(Box::new(completion(Err(
            "poe mismatch".into(),
        )))))
        .events();
    let types: Vec<_> = bad.iter().map(Event::type_name).collect();
    assert_eq!(
        types,
        [
            "ResultSubmitted",
            "CommitmentRejected",
            "NodeFlagged",
            "StandingChanged",
            "NodeRemovedFromPool"
        ],
        "a fresh node's first bad result drops its standing to 2_000 bp, under the floor"
    );
    h.record(t(11), bad);
    let again = dispatch_next(&h, 12);
    assert_ne!(scheduled_node(&again), n, "the work goes to another node");
}

#[test]
fn the_fold_refuses_a_scheduling_receipt_the_state_does_not_give() {
    let mut h = base(vec![
        register(1, 1, 1, &["chat"]),
        register(2, 1, 1, &["other"]),
    ]);
    h.extend(accept(0, "chat", 1, Priority::Standard));
    let mut events = dispatch_next(&h, 10);
    // Claim the request went to node 2, which does not serve the model.
    if let Event::RequestScheduled(s) = &mut events[0] {
        s.node_id = node(2);
    }
    h.record(t(10), events);
    let mut fold = Fold::<CoordinatorState>::default();
    let envs = h.envelopes();
    let err = envs
        .iter()
        .enumerate()
        .find_map(|(i, e)| fold.feed(i as u64, e).err())
        .expect("the fold must refuse it");
    assert_eq!(err.error.event_type, "RequestScheduled");
    assert!(
        err.error.reason.contains("scheduling receipt differs"),
        "{}",
        err.error.reason
    );
}

#[test]
fn a_silent_node_lapses_gets_no_work_and_a_heartbeat_brings_it_back() {
    // The testkit's clock starts at t(0) and ticks a second per event: the registrations land
    // at t(2) and t(3). A one-second timeout keeps the history short.
    let mut h = base(vec![
        register(1, 1, 1, &["chat"]),
        register(2, 1, 1, &["chat"]),
    ]);
    let Event::CatalogPublished(mut c) = h[0].clone() else {
        unreachable!()
    };
    c.node_timeout_seconds = 1;
    h.replace(0, c);
    let lapse = |n: u8, now: i64| Command::LapseNode {
        node_id: node(n),
        now: t(now),
    };
    assert!(
        decide(&state(&h), lapse(1, 2)).is_err(),
        "not before the timeout"
    );
    let events = given(&h).when(lapse(1, 40)).events();
    assert_eq!(
        events,
        [NodeLapsed {
            node_id: node(1),
            last_heartbeat: t(2),
        }
        .into()]
    );
    h.record(t(40), events);
    assert!(
        given(&h).when(lapse(1, 41)).events().is_empty(),
        "lapsing twice is a no-op"
    );
    h.extend(accept(0, "chat", 1, Priority::Standard));
    let d = dispatched(&mut h, 42);
    assert_eq!(
        scheduled_node(&d),
        node(2),
        "the lapsed node is passed over"
    );
    h.extend(accept(1, "chat", 1, Priority::Standard));
    assert_eq!(
        next_assignment(&state(&h), None),
        None,
        "node 1 is lapsed, node 2 busy"
    );
    let at = h.next_time();
    h.record(at, [fixtures::heartbeat_recorded(node(1), at).into()]);
    assert_eq!(
        scheduled_node(&dispatch_next(&h, 50)),
        node(1),
        "back after a heartbeat"
    );
}

#[test]
fn the_fold_refuses_a_lapse_before_the_timeout() {
    let mut h = base(vec![register(1, 1, 1, &["chat"])]);
    h.push(
        NodeLapsed {
            node_id: node(1),
            last_heartbeat: t(2),
        }
        .into(),
    );
    // Recorded at t(3): one second after the registration, not thirty.
    let mut fold = Fold::<CoordinatorState>::default();
    let err = h
        .envelopes()
        .iter()
        .enumerate()
        .find_map(|(i, env)| fold.feed(i as u64, env).err())
        .expect("refused");
    assert_eq!(err.error.event_type, "NodeLapsed");
}

/// Per-node feeds: each event of a missed-deadline history reaches exactly the nodes it is
/// addressed to, judged by the feeds' fold before it, as the projector routes it.
#[test]
fn feeds_route_each_event_to_the_nodes_it_is_addressed_to() {
    use prlx_commands::feeds::{audience, Audience, FeedState};
    let (mut h, n1) = one_request_dispatched_to_one_of_two_nodes();
    h.record(t(40), [deadline_expired(n1, 0)]);
    let second = dispatched(&mut h, 40);
    let n2 = scheduled_node(&second);
    decided(
        &mut h,
        70,
        Command::ExpireDeadline {
            request: RequestId(0),
            node: n2,
            attempt: 1,
            now: t(70),
            release: None,
        },
    );

    let mut routed = Vec::new();
    let mut feeds_state = FeedState::default();
    for e in h.iter() {
        routed.push((e.clone(), audience(&feeds_state, e)));
        feeds_state.apply(e);
    }
    let mut feeds: BTreeMap<NodeId, Vec<&'static str>> = BTreeMap::new();
    for (e, to) in &routed {
        let name = e.type_name();
        match to {
            Audience::Nobody => {}
            Audience::Registered(n) => feeds.entry(*n).or_default().push(name),
            Audience::Nodes(ns) => {
                for n in ns {
                    feeds.entry(*n).or_default().push(name);
                }
            }
        }
    }
    assert_eq!(
        feeds[&n1],
        [
            "NodeRegistered",
            "TaskDispatched",
            "DeadlineExpired",
            "RequestFailed"
        ],
        "{routed:#?}"
    );
    assert_eq!(
        feeds[&n2],
        [
            "NodeRegistered",
            "TaskDispatched",
            "DeadlineExpired",
            "RequestFailed"
        ]
    );
    // The catalog came before any node registered: nobody's feed yet (a new node's feed
    // starts with the latest one instead).
    assert_eq!(routed[0].1, Audience::Nodes(vec![]));
    // A catalog published now goes to every registered node.
    assert_eq!(
        audience(&feeds_state, &catalog(100)),
        Audience::Nodes(vec![node(1), node(2)])
    );
}

/// A report decided at or after its dispatch's `deadline_at` is late, even if the timer has
/// not expired the dispatch yet: the dispatch expires, the work goes to another node, and the
/// result is discarded unused. One second earlier it counts.
#[test]
fn a_report_at_its_deadline_is_late_whatever_the_timer_did() {
    let mut h = base(vec![
        register(1, 1, 1, &["chat"]),
        register(2, 1, 1, &["chat"]),
    ]);
    h.extend(accept(0, "chat", 1, Priority::Standard));
    let d = dispatched(&mut h, 10);
    let n = scheduled_node(&d);
    // The fixtures' requests have 30 s deadlines: due at t(40).
    let at = |secs| {
        Command::CompleteTask(Box::new(Completion {
            now: t(secs),
            ..fixtures::completion(RequestId(0), n, 0)
        }))
    };
    let late = given(&h).when(at(40)).events();
    let types: Vec<_> = late.iter().map(Event::type_name).collect();
    assert_eq!(
        types,
        ["DeadlineExpired", "StandingChanged", "LateResultDiscarded"],
        "a late report is a missed deadline: it lowers the node's standing too"
    );
    let mut after = h.clone();
    after.record(t(40), late);
    let st = state(&after);
    assert!(st.requests[&RequestId(0)].running.is_none());
    let next = next_assignment(&st, None).expect("the request is queued again");
    assert_ne!(next.node, n, "the late node is not asked again");

    let on_time = given(&h).when(at(39)).events();
    assert_eq!(on_time[0].type_name(), "ResultSubmitted");
    // The fold holds the log to the same rule: a result recorded at its deadline does not
    // fold, nor an expiry recorded before it.
    let mut forged = h.clone();
    forged.record(t(40), on_time[..1].to_vec());
    let err = fold_from(&forged).unwrap_err();
    assert!(err.contains("at or after its deadline"), "{err}");
    let mut early = h.clone();
    early.record(t(39), late_expiry(n));
    let err = fold_from(&early).unwrap_err();
    assert!(err.contains("before its deadline"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Liveness: no head-of-line blocking, failing at once when no node is left, the queue's
// admission bound, missed deadlines in standing.

/// The timer's expiry of request `id`'s `attempt` on `node` at `now`.
fn expire_at(id: u64, node: NodeId, attempt: u32, now: i64) -> Command {
    Command::ExpireDeadline {
        request: RequestId(id),
        node,
        attempt,
        now: t(now),
        release: None,
    }
}

/// Records `node`'s verified report of request `id`'s `attempt`, made at `now`.
fn verified(h: &mut History, id: u64, node: NodeId, attempt: u32, now: i64) -> Vec<Event> {
    let report = Completion {
        now: t(now),
        ..fixtures::completion(RequestId(id), node, attempt)
    };
    decided(h, now, Command::CompleteTask(Box::new(report)))
}

/// Request 0's attempt 0 on `node` expired, as the timer records it.
fn late_expiry(node: NodeId) -> Vec<Event> {
    vec![deadline_expired(node, 0)]
}

/// Folds `history` as recorded, or says why the fold refuses it.
fn fold_from(history: &History) -> Result<CoordinatorState, String> {
    prlx_commands::testkit::fold(history).map_err(|e| e.error.reason)
}

#[test]
fn a_stranded_retry_no_longer_blocks_a_placeable_request_behind_it() {
    let mut h = base(vec![
        register(1, 1, 1, &["chat"]),
        register(2, 1, 1, &["chat"]),
    ]);
    h.extend(accept(0, "chat", 1, Priority::Standard));
    h.extend(accept(1, "chat", 1, Priority::Standard));
    let first = dispatched(&mut h, 10);
    assert_eq!(scheduled_node(&first), node(1));
    let second = dispatched(&mut h, 20);
    assert_eq!(scheduled_node(&second), node(2));
    // Request 0 misses its deadline on node 1 (due at 40): it goes back to the head of the
    // queue, for node 2 only, which is busy with request 1 (due at 50).
    decided(&mut h, 40, expire_at(0, node(1), 0, 40));
    h.extend(accept(2, "chat", 1, Priority::Standard));
    let st = state(&h);
    assert_eq!(
        st.sched.queues["chat"][&1]
            .iter()
            .map(|e| e.request)
            .collect::<Vec<_>>(),
        [RequestId(0), RequestId(2)],
        "the stranded retry is at the head"
    );
    // Node 1 is idle; request 2 behind the stranded head takes it.
    let choice = next_assignment(&st, None).expect("request 2 can be placed");
    assert_eq!((choice.request, choice.node), (RequestId(2), node(1)));
    dispatched(&mut h, 43);
    assert!(
        state(&h).requests[&RequestId(0)].queued.is_some(),
        "request 0 still waits for node 2"
    );
    // Node 2 returns request 1: request 0 goes to it at last.
    verified(&mut h, 1, node(2), 0, 45);
    let choice = next_assignment(&state(&h), None).expect("node 2 is free");
    assert_eq!((choice.request, choice.node), (RequestId(0), node(2)));
}

#[test]
fn a_plain_request_that_cannot_be_placed_ends_the_walk_of_its_queue() {
    // One node, busy: the plain head cannot be placed, so neither can anything behind it,
    // and the decision says so without looking further.
    let mut h = base(vec![register(1, 1, 1, &["chat"])]);
    for id in 0..3 {
        h.extend(accept(id, "chat", 1, Priority::Standard));
    }
    dispatched(&mut h, 10);
    assert_eq!(next_assignment(&state(&h), None), None);
}

#[test]
fn a_failed_dispatch_with_no_untried_capable_node_fails_at_once_with_a_refund() {
    // Node 2 serves another model, node 3 is too small: node 1 is the only capable node.
    let mut h = base(vec![
        register(1, 2, 1, &["chat"]),
        register(2, 2, 1, &["other"]),
        register(3, 1, 1, &["chat"]),
    ]);
    h.extend(accept(0, "chat", 2, Priority::Standard));
    let d = dispatched(&mut h, 10);
    assert_eq!(scheduled_node(&d), node(1));
    let events = given(&h).when(expire_at(0, node(1), 0, 40)).events();
    let types: Vec<_> = events.iter().map(Event::type_name).collect();
    assert_eq!(
        types,
        [
            "DeadlineExpired",
            "StandingChanged",
            "RequestFailed",
            "CreditsRefunded"
        ],
        "max_attempts is 2, but no second node could take it: {events:?}"
    );
    let Event::RequestFailed(f) = &events[2] else {
        unreachable!()
    };
    assert_eq!(f.cause, Some(FailureCause::NoCapableNode));
    assert!(
        f.reason
            .contains("no node that has not tried it serves chat at tier 2+"),
        "{}",
        f.reason
    );
    let mut done = h.clone();
    done.record(t(40), events.clone());
    let st = state(&done);
    assert_eq!(st.requests[&RequestId(0)].status, RequestStatus::Failed);
    assert_eq!(st.accounts[&account()].reserved, 0, "refunded in full");
    assert_eq!(st.sched.queued(), 0, "nothing left waiting");

    // With a second capable node registered, the same expiry re-queues instead, and a log
    // that fails the request for want of a node anyway does not fold.
    h.push(register(4, 3, 1, &["chat"]));
    let requeued = given(&h).when(expire_at(0, node(1), 0, 40)).events();
    assert_eq!(requeued.len(), 2, "{requeued:?}");
    let mut lying = h.clone();
    lying.record(t(40), events);
    let err = fold_from(&lying).unwrap_err();
    assert!(
        err.starts_with("cause: recorded Some(NoCapableNode)"),
        "{err}"
    );
}

/// The schedule tests' catalog with a 100 s admission bound.
fn bounded(history: &mut History) {
    let Event::CatalogPublished(mut c) = history[0].clone() else {
        unreachable!()
    };
    c.queue_timeout_seconds = 100;
    history.replace(0, c);
}

#[test]
fn a_request_no_registered_node_serves_fails_once_nodes_had_time_to_register() {
    // Node 1 serves only `chat`; request 0 asks for `other`. Accepted at t(3); the catalog
    // gives nodes 30 s (node_timeout_seconds) to register before such a request fails.
    let mut h = base(vec![register(1, 1, 1, &["chat"])]);
    bounded(&mut h);
    h.extend(accept(0, "other", 1, Priority::Standard));
    let events = expire_queued_at(&h, 33);
    assert_eq!(
        events,
        [
            RequestFailed {
                request_id: RequestId(0),
                reason: "no registered node serves other at tier 1+ (in the pool, not \
                         draining), 30 s after its acceptance (the catalog's \
                         node_timeout_seconds)"
                    .into(),
                cause: Some(FailureCause::NoCapableNode),
            }
            .into(),
            CreditsRefunded {
                account: account(),
                request_id: RequestId(0),
                amount: 15,
            }
            .into(),
        ]
    );
    // The fold re-derives it from the recorded time and the nodes.
    let failed_at = |at| {
        let mut failed = h.clone();
        failed.record(t(at), events.clone());
        fold_from(&failed)
    };
    assert_eq!(
        failed_at(33).expect("after the grace").requests[&RequestId(0)].status,
        RequestStatus::Failed
    );
    let err = failed_at(32).unwrap_err();
    assert!(
        err.starts_with("cause: recorded Some(NoCapableNode)"),
        "{err}"
    );
}

#[test]
fn a_request_only_a_lapsed_node_serves_fails_at_the_queue_bound_with_a_refund() {
    // Node 1 serves `other` but lapses at t(32) (registered at t(2), 30 s timeout): it may
    // come back, so request 0 (accepted at t(3)) waits for the queue bound.
    let mut h = base(vec![register(1, 1, 1, &["chat", "other"])]);
    bounded(&mut h);
    h.extend(accept(0, "other", 1, Priority::Standard));
    h.record(
        t(32),
        [NodeLapsed {
            node_id: node(1),
            last_heartbeat: t(2),
        }
        .into()],
    );
    let st = state(&h);
    assert_eq!(st.sched.waiting.first(), Some(&(t(3), RequestId(0))));
    assert_eq!(st.queue_deadline(RequestId(0)), Some(t(103)));
    let events = expire_queued_at(&h, 103);
    assert_eq!(
        events,
        [
            RequestFailed {
                request_id: RequestId(0),
                reason: "still queued 100 s after its acceptance (the catalog's \
                         queue_timeout_seconds): no node serves it (other at tier 1+, in the \
                         pool, not draining, not lapsed)"
                    .into(),
                cause: Some(FailureCause::QueueTimeout),
            }
            .into(),
            CreditsRefunded {
                account: account(),
                request_id: RequestId(0),
                amount: 15,
            }
            .into(),
        ]
    );
    // The fold re-derives the bound from the recorded time: at t(103) it folds, one second
    // earlier it does not.
    let failed_at = |at| {
        let mut failed = h.clone();
        failed.record(t(at), [events[0].clone()]);
        fold_from(&failed)
    };
    let st = failed_at(103).expect("at the bound");
    assert_eq!(st.requests[&RequestId(0)].status, RequestStatus::Failed);
    assert!(st.sched.waiting.is_empty(), "out of the timer's index");
    let err = failed_at(102).unwrap_err();
    assert!(
        err.starts_with("cause: recorded Some(QueueTimeout)"),
        "{err}"
    );
    // Once failed, a second expiry is a no-op.
    let mut done = h.clone();
    done.record(t(103), events);
    let st = fold_from(&done).unwrap();
    assert_eq!(st.accounts[&account()].reserved, 0, "refunded in full");
    assert_eq!(
        decide(
            &st,
            Command::ExpireQueued {
                request: RequestId(0),
                now: t(200)
            }
        ),
        Ok(vec![])
    );
}

#[test]
fn a_dispatched_request_leaves_the_queue_bound_and_a_requeued_one_keeps_its_acceptance_time() {
    let mut h = base(vec![
        register(1, 1, 1, &["chat"]),
        register(2, 1, 1, &["chat"]),
        register(3, 1, 1, &["chat"]),
    ]);
    bounded(&mut h);
    h.extend(accept(0, "chat", 1, Priority::Standard));
    dispatched(&mut h, 10);
    let st = state(&h);
    assert!(st.sched.waiting.is_empty(), "running, not waiting");
    assert_eq!(st.queue_deadline(RequestId(0)), None);
    assert!(
        given(&h)
            .when(Command::ExpireQueued {
                request: RequestId(0),
                now: t(500),
            })
            .events()
            .is_empty(),
        "a running request does not time out of the queue"
    );
    // Its attempt expires: back in the queue, bound still counted from its acceptance (t(5)).
    decided(&mut h, 40, expire_at(0, node(1), 0, 40));
    let st = state(&h);
    assert_eq!(st.queue_deadline(RequestId(0)), Some(t(105)));
    assert_eq!(st.sched.waiting.first(), Some(&(t(5), RequestId(0))));
}

#[test]
fn a_missed_deadline_ranks_the_node_below_others_but_never_removes_it() {
    let (mut h, n1) = one_request_dispatched_to_one_of_two_nodes();
    assert_eq!(n1, node(1), "equal standing: the node id decides");
    decided(&mut h, 40, expire_at(0, node(1), 0, 40));
    assert_eq!(state(&h).nodes[&node(1)].standing_bp, 5_000);
    // Request 0 goes to node 2 (untried); once it is back, a new request prefers node 2
    // over node 1, which is free but missed a deadline.
    let d = dispatched(&mut h, 40);
    assert_eq!(scheduled_node(&d), node(2));
    verified(&mut h, 0, node(2), 1, 45);
    h.extend(accept(1, "chat", 1, Priority::Standard));
    assert_eq!(
        scheduled_node(&dispatch_next(&h, 50)),
        node(2),
        "the node that missed its deadline is passed over while another is free"
    );
    // Miss after miss lowers both nodes further, and never removes either from the pool.
    for round in 0..4u64 {
        h.extend(accept(2 + round, "chat", 1, Priority::Standard));
        while next_assignment(&state(&h), None).is_some() {
            let now = (h.next_time() - t(0)).num_seconds();
            let d = dispatched(&mut h, now);
            let Event::RequestScheduled(s) = &d[0] else {
                unreachable!()
            };
            let expiry = expire_at(s.task_id.request.0, s.node_id, s.attempt, now + 30);
            let events = decided(&mut h, now + 30, expiry);
            assert!(
                !events
                    .iter()
                    .any(|e| matches!(e, Event::NodeRemovedFromPool(_))),
                "round {round}: {events:?}"
            );
        }
    }
    let st = state(&h);
    assert!(st.nodes[&node(1)].in_pool && st.nodes[&node(2)].in_pool);
    assert!(
        st.nodes[&node(1)].standing_bp < 5_000,
        "{:?}",
        st.nodes[&node(1)]
    );
}

#[test]
fn the_fold_refuses_a_standing_change_that_leaves_out_a_missed_deadline() {
    let (mut h, n1) = one_request_dispatched_to_one_of_two_nodes();
    // Recorded as if the miss did not count: full standing, no misses.
    h.record(
        t(40),
        [
            deadline_expired(n1, 0),
            StandingChanged {
                node_id: n1,
                valid: 0,
                invalid: 0,
                disagreements: 0,
                missed_deadlines: Some(0),
                standing_bp: 10_000,
            }
            .into(),
        ],
    );
    let err = fold_from(&h).unwrap_err();
    assert!(err.starts_with("standing: recorded"), "{err}");
}

/// The fold re-derives each accepted request's price from the catalog in force: a log that
/// bills another price, even one whose reservation matches it, does not fold.
#[test]
fn the_fold_refuses_a_price_the_catalog_does_not_give() {
    let honest = accept(0, "chat", 1, Priority::Standard);
    let mut fold = Fold::<CoordinatorState>::default();
    for (i, env) in envelopes(base(vec![]).iter().cloned().chain(honest))
        .iter()
        .enumerate()
    {
        fold.feed(i as u64, env).unwrap();
    }
    let repriced = accepted_and_reserved(RequestAccepted {
        price: 16,
        ..request_accepted(0)
    });
    let mut fold = Fold::<CoordinatorState>::default();
    let err = envelopes(base(vec![]).iter().cloned().chain(repriced))
        .iter()
        .enumerate()
        .find_map(|(i, env)| fold.feed(i as u64, env).err())
        .expect("refused");
    assert_eq!(err.error.event_type, "RequestAccepted");
    assert!(err.to_string().contains("price"), "{err}");
}

/// The fold checks queue and priority order: a dispatch of a request while another comes
/// before it in the queues, and a node could take that one, does not fold.
#[test]
fn the_fold_refuses_a_dispatch_out_of_queue_order() {
    let mut h = base(vec![register(1, 1, 1, &["chat"])]);
    h.extend(accept(0, "chat", 1, Priority::Low));
    h.extend(accept(1, "chat", 1, Priority::High));
    let st = state(&h);
    assert_eq!(
        next_assignment(&st, None).map(|c| c.request),
        Some(RequestId(1)),
        "high priority first"
    );
    // The honest dispatch of request 1, re-recorded as if it were request 0's (decide itself
    // refuses a choice out of order, so the forgery is the log's).
    let honest = dispatch_next(&h, 10);
    let forged_events: Vec<Event> = honest
        .into_iter()
        .map(|e| match e {
            Event::RequestScheduled(mut s) => {
                s.task_id = TaskId::whole(RequestId(0));
                s.into()
            }
            Event::TaskDispatched(mut d) => {
                d.task_id = TaskId::whole(RequestId(0));
                d.into()
            }
            other => other,
        })
        .collect();
    let mut forged = h.clone();
    forged.record(t(10), forged_events);
    let err = fold_from(&forged).unwrap_err();
    assert!(err.starts_with("order: request req-0 scheduled"), "{err}");
}

/// `ExpireQueued` of request 0: refused (naming `now`) a second before `at`, decided at `at`;
/// its events then.
fn expire_queued_at(h: &History, at: i64) -> Vec<Event> {
    let expire = |now| Command::ExpireQueued {
        request: RequestId(0),
        now: t(now),
    };
    given(h)
        .when(expire(at - 1))
        .then_reject(RejectionCode::MalformedRequest, "now");
    given(h).when(expire(at)).events()
}
