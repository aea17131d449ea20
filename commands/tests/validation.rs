//! Validation (step 7) decided and folded: the sampling draw, replicas from the same execution
//! class, agreement, majority, no majority, no peer, and the fold's re-derivation of each
//! verdict, standing change and (at the seed's reveal) sampling decision.

use prlx_commands::decide::{decide, Command, Completion, Dispatch};
use prlx_commands::testkit::fixtures::{
    accepted_and_reserved, account, completion, node, request_accepted,
};
use prlx_commands::testkit::sampling::{node_of, opened, state, SEED};
use prlx_commands::testkit::{given, History};
use prlx_events::event::*;
use prlx_events::{Event, Hash32, NodeId, RequestId, TaskId};
use prlx_projections::coordinator::RequestStatus;
use prlx_projections::scheduler::{next_assignment, Choice};
use prlx_projections::validation::sampled;
use prlx_projections::{CoordinatorState, Fold};

/// The catalog's rate alone: probation has its own tests (probation.rs), and no hold: a
/// result with no peer left goes out at once (as catalogs recorded before the hold are read;
/// the hold has its own tests, unconfirmed.rs).
fn policy(sampling_bp: u32) -> ValidationPolicy {
    ValidationPolicy {
        sampling_bp,
        probation_results: 0,
        unconfirmed_hold_seconds: 0,
        ..Default::default()
    }
}

fn accept(id: u64) -> Vec<Event> {
    accepted_and_reserved(request_accepted(id))
}

/// A catalog, credit, the nodes, an open sampling epoch under [`SEED`], and request 0, a
/// second apart.
fn history(sampling_bp: u32, nodes: Vec<Event>) -> History {
    opened(policy(sampling_bp), nodes, 1)
}

/// Decides the next dispatch a second after the last event, records it, and returns the
/// chosen node.
fn dispatch(h: &mut History) -> NodeId {
    let choice = next_assignment(&state(h), Some(&SEED)).expect("something to dispatch");
    let n = choice.node;
    dispatch_choice(h, choice);
    n
}

/// Decides and records `choice`'s dispatch a second after the last event.
fn dispatch_choice(h: &mut History, choice: Choice) {
    let now = h.next_time();
    let events = decide(
        &state(h),
        Command::Dispatch(Box::new(Dispatch {
            choice,
            sealed_work: Sealed(vec![1]),
            now,
            seed: Some(SEED),
        })),
    )
    .unwrap();
    h.record(now, events);
}

/// `node` returns `result` for its running attempt of request 0 a second after the last
/// event; returns the event types.
fn complete(h: &mut History, node: NodeId, result: &[u8]) -> Vec<&'static str> {
    let st = state(h);
    let attempt = st.requests[&RequestId(0)].running.as_ref().unwrap().attempt;
    let now = h.next_time();
    let events = decide(
        &st,
        Command::CompleteTask(Box::new(Completion {
            result_hash: Hash32::of(result),
            sealed_for_client: Sealed(result.to_vec()),
            seed: Some(SEED),
            now,
            ..completion(RequestId(0), node, attempt)
        })),
    )
    .unwrap();
    let types = events.iter().map(Event::type_name).collect();
    h.record(now, events);
    types
}

fn verdict(h: &[Event]) -> Verdict {
    h.iter()
        .rev()
        .find_map(|e| match e {
            Event::ValidationResolved(v) => Some(v.verdict.clone()),
            _ => None,
        })
        .expect("a verdict")
}

fn stage(h: &History) -> (RequestStatus, bool, bool) {
    let st = state(h);
    let r = &st.requests[&RequestId(0)];
    (r.status, r.validating(), r.result.is_some())
}

#[test]
fn an_unsampled_result_is_released_at_once() {
    let mut h = history(0, vec![node_of(1, "cpu"), node_of(2, "cpu")]);
    let n = dispatch(&mut h);
    let types = complete(&mut h, n, b"answer");
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
    assert_eq!(verdict(&h), Verdict::Accepted);
    assert!(
        !state(&h).sampling.current.as_ref().unwrap().decisions[&RequestId(0)],
        "the draw is recorded for the auditor"
    );
}

#[test]
fn a_sampled_result_waits_for_a_replica_of_its_class_and_agreement_releases_it() {
    // Node 2 is of another class; node 3 shares node 1's.
    let mut h = history(
        10_000,
        vec![node_of(1, "cpu"), node_of(2, "cuda"), node_of(3, "cpu")],
    );
    let primary = dispatch(&mut h);
    assert_eq!(primary, node(1));
    assert_eq!(
        complete(&mut h, primary, b"answer"),
        ["ResultSubmitted", "CommitmentVerified", "RedundancySampled"]
    );
    assert_eq!(
        stage(&h),
        (RequestStatus::Accepted, true, false),
        "nothing released while validating"
    );
    let replica = dispatch(&mut h);
    assert_eq!(replica, node(3), "same class, not the primary");
    assert_eq!(
        complete(&mut h, replica, b"answer"),
        [
            "ResultSubmitted",
            "CommitmentVerified",
            "ValidationResolved",
            "StandingChanged",
            "StandingChanged",
            "ResultReturned",
            "CreditsCharged"
        ]
    );
    assert_eq!(
        verdict(&h),
        Verdict::Agreed {
            nodes: vec![node(1), node(3)]
        }
    );
    let st = state(&h);
    assert_eq!(stage(&h), (RequestStatus::Completed, false, true));
    assert_eq!((st.nodes[&node(1)].valid, st.nodes[&node(3)].valid), (1, 1));
    assert_eq!(st.accounts[&account()].balance, 985, "charged once");
}

#[test]
fn disagreement_brings_a_third_and_the_majority_flags_the_dissenter() {
    let mut h = history(
        10_000,
        vec![node_of(1, "cpu"), node_of(2, "cpu"), node_of(3, "cpu")],
    );
    let primary = dispatch(&mut h);
    complete(&mut h, primary, b"wrong");
    let replica = dispatch(&mut h);
    assert_eq!(
        complete(&mut h, replica, b"right"),
        ["ResultSubmitted", "CommitmentVerified"],
        "two results that differ: no verdict yet"
    );
    assert!(stage(&h).1, "still validating");
    let third = dispatch(&mut h);
    assert!(third != primary && third != replica);
    let types = complete(&mut h, third, b"right");
    assert_eq!(
        types,
        [
            "ResultSubmitted",
            "CommitmentVerified",
            "ValidationResolved",
            "NodeFlagged",
            "StandingChanged",
            "StandingChanged",
            "StandingChanged",
            "NodeRemovedFromPool",
            "ResultReturned",
            "CreditsCharged"
        ]
    );
    assert_eq!(
        verdict(&h),
        Verdict::Majority {
            winners: vec![replica, third],
            dissenters: vec![primary]
        }
    );
    let st = state(&h);
    let p = &st.nodes[&primary];
    assert_eq!((p.invalid, p.standing_bp, p.in_pool), (1, 2_000, false));
    assert_eq!(p.stake, 100, "standing never touches stake");
    let r = st.requests[&RequestId(0)].result.as_ref().unwrap();
    assert_eq!(r.sealed_for_client, Sealed(b"right".to_vec()));
}

#[test]
fn three_different_results_have_no_majority_every_party_is_flagged_and_the_request_refunded() {
    let mut h = history(
        10_000,
        vec![node_of(1, "cpu"), node_of(2, "cpu"), node_of(3, "cpu")],
    );
    let mut parties = Vec::new();
    for result in [&b"a"[..], b"b", b"c"] {
        let n = dispatch(&mut h);
        complete(&mut h, n, result);
        parties.push(n);
    }
    assert_eq!(
        verdict(&h),
        Verdict::NoMajority { parties },
        "the parties in the order they reported"
    );
    let flagged = h
        .iter()
        .filter(|e| matches!(e, Event::NodeFlagged(_)))
        .count();
    assert_eq!(flagged, 3);
    let st = state(&h);
    assert_eq!(st.requests[&RequestId(0)].status, RequestStatus::Failed);
    assert_eq!(
        (
            st.accounts[&account()].balance,
            st.accounts[&account()].reserved
        ),
        (1_000, 0),
        "refunded in full"
    );
    assert!(
        st.nodes.values().all(|n| n.disagreements == 1 && n.in_pool),
        "review lowers standing to 5_000 bp: flagged, not removed"
    );
}

#[test]
fn without_a_peer_of_the_class_and_no_hold_the_result_is_released_unconfirmed_at_once() {
    let mut h = history(10_000, vec![node_of(1, "cpu"), node_of(2, "cuda")]);
    let primary = dispatch(&mut h);
    assert_eq!(
        complete(&mut h, primary, b"answer"),
        [
            "ResultSubmitted",
            "CommitmentVerified",
            "RedundancySampled",
            "ValidationResolved",
            "ResultReturned",
            "CreditsCharged"
        ]
    );
    assert!(matches!(verdict(&h), Verdict::Unconfirmed { .. }));
    assert_eq!(stage(&h), (RequestStatus::Completed, false, true));
}

#[test]
fn a_replica_that_misses_its_deadline_is_replaced_and_the_last_peer_gone_releases_unconfirmed() {
    let mut h = history(10_000, vec![node_of(1, "cpu"), node_of(2, "cpu")]);
    let primary = dispatch(&mut h);
    complete(&mut h, primary, b"answer");
    let replica = dispatch(&mut h);
    let st = state(&h);
    let running = st.requests[&RequestId(0)].running.as_ref().unwrap();
    // The timer fires at the deadline, the first moment the dispatch may expire.
    let due = running
        .deadline_at
        .expect("a dispatched attempt has a deadline");
    let events = given(&h)
        .when(Command::ExpireDeadline {
            request: RequestId(0),
            node: replica,
            attempt: running.attempt,
            now: due,
            release: Some(Sealed(b"answer".to_vec())),
        })
        .events();
    let types: Vec<_> = events.iter().map(Event::type_name).collect();
    assert_eq!(
        types,
        [
            "DeadlineExpired",
            "StandingChanged",
            "ValidationResolved",
            "ResultReturned",
            "CreditsCharged"
        ],
        "the replica's miss lowers its standing; no third node of the class: the primary's \
         result goes out unconfirmed"
    );
    h.record(due, events);
    assert_eq!(
        state(&h).requests[&RequestId(0)].failures,
        0,
        "a replica's miss is not the request's"
    );
}

#[test]
fn the_reveal_re_derives_every_draw_of_the_epoch() {
    // Half the requests are sampled; find one the seed samples and one it does not.
    let bp = 5_000;
    let hit = (0..).find(|&i| sampled(&SEED, RequestId(i), bp)).unwrap();
    let miss = (0..).find(|&i| !sampled(&SEED, RequestId(i), bp)).unwrap();
    let mut h = history(bp, vec![node_of(1, "cpu"), node_of(2, "cpu")]);
    for id in 1..=hit.max(miss) {
        h.extend(accept(id));
    }
    let reveal: Event = SamplingSeedRevealed {
        epoch: 1,
        seed: SEED,
    }
    .into();
    // An honest run: serve `miss` (drawn: not sampled) and reveal.
    let mut honest = h.clone();
    let drawn = serve(&mut honest, RequestId(miss));
    assert_eq!(drawn, "ValidationResolved");
    let unrevealed = honest.clone();
    honest.push(reveal.clone());
    assert_eq!(state(&honest).sampling.verified_epochs, 1);

    // A log that skips the replica of `hit`: its Accepted verdict folds (the seed is secret),
    // but the reveal exposes it.
    let mut forged = h.clone();
    assert_eq!(serve(&mut forged, RequestId(hit)), "RedundancySampled");
    let at = forged
        .iter()
        .rposition(|e| matches!(e, Event::RedundancySampled(_)))
        .unwrap();
    forged.replace(
        at,
        ValidationResolved {
            task_id: TaskId::whole(RequestId(hit)),
            verdict: Verdict::Accepted,
            result_hash: None,
        },
    );
    forged.push(reveal);
    let mut fold = Fold::<CoordinatorState>::default();
    let err = forged
        .envelopes()
        .iter()
        .enumerate()
        .find_map(|(i, env)| fold.feed(i as u64, env).err())
        .expect("the forged draw is caught");
    assert_eq!(err.error.event_type, "SamplingSeedRevealed");
    assert!(
        err.error
            .to_string()
            .contains(&format!("request {}", RequestId(hit))),
        "{err}"
    );

    // A wrong seed does not open the commitment.
    let mut wrong = unrevealed;
    wrong.push(
        SamplingSeedRevealed {
            epoch: 1,
            seed: Hash32([7; 32]),
        }
        .into(),
    );
    let mut fold = Fold::<CoordinatorState>::default();
    assert!(wrong
        .envelopes()
        .iter()
        .enumerate()
        .any(|(i, env)| fold.feed(i as u64, env).is_err()));
}

/// Serves requests in queue order, each with the same result and replicas agreeing, until
/// `id` has been served; returns the type of the event that followed `id`'s verified
/// commitment (the draw: `ValidationResolved` or `RedundancySampled`).
fn serve(h: &mut History, id: RequestId) -> &'static str {
    loop {
        let choice = next_assignment(&state(h), Some(&SEED)).expect("work");
        let follows = dispatch_and_complete(h, choice.clone());
        if choice.request == id {
            return follows;
        }
        // Finish any replica so the next request's dispatch is the next in line.
        while state(h).requests[&choice.request].validating() {
            let Some(c) = next_assignment(&state(h), Some(&SEED)) else {
                break;
            };
            dispatch_and_complete(h, c);
        }
    }
}

/// Records `choice`'s dispatch and its node's verified result; returns the type of the event
/// after `CommitmentVerified`.
fn dispatch_and_complete(h: &mut History, choice: Choice) -> &'static str {
    dispatch_choice(h, choice.clone());
    let now = h.next_time();
    let events = decide(
        &state(h),
        Command::CompleteTask(Box::new(Completion {
            result_hash: Hash32::of(b"r"),
            seed: Some(SEED),
            now,
            ..completion(choice.request, choice.node, choice.attempt)
        })),
    )
    .unwrap();
    let follows = events[2].type_name();
    h.record(now, events);
    follows
}
