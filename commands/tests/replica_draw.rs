//! The replica draw (docs/validation.md, "Replicas"): a sampled request's replica is drawn
//! under the epoch's committed seed among every eligible peer, not given to the best-ranked
//! node; the fold checks the peer's eligibility when it applies the dispatch and re-derives
//! the draw when the seed is revealed, refusing a forged choice there, naming the request.

use prlx_commands::decide::{decide, Command, Dispatch};
use prlx_commands::testkit::fixtures::node;
use prlx_commands::testkit::sampling::{
    complete, dispatch, node_of, opened, refused, reveal, state, types, SEED,
};
use prlx_commands::testkit::History;
use prlx_events::event::*;
use prlx_events::{Event, Hash32, NodeId, RequestId, TaskId};
use prlx_projections::scheduler::{
    next_assignment, replica_index, replica_peers, replica_receipt, Choice,
};

/// Every result sampled, and no probation: the catalog's rate is the only one in play.
fn every_result() -> ValidationPolicy {
    ValidationPolicy {
        sampling_bp: 10_000,
        ..Default::default()
    }
}

/// Nodes 1 to `same` of class `cpu`, then node `same + 1` of class `cuda`; request 0
/// dispatched to node 1 and its result sampled.
fn sampled_primary(same: u8) -> History {
    let mut nodes: Vec<Event> = (1..=same).map(|n| node_of(n, "cpu")).collect();
    nodes.push(node_of(same + 1, "cuda"));
    let mut h = opened(every_result(), nodes, 1);
    let primary = dispatch(&mut h);
    assert_eq!(
        primary.node,
        node(1),
        "a plain dispatch goes to the best-ranked node"
    );
    assert_eq!(
        types(&complete(&mut h, RequestId(0), node(1), b"answer")),
        ["ResultSubmitted", "CommitmentVerified", "RedundancySampled"]
    );
    h
}

/// Records the dispatch `choice` describes, as `decide` would have recorded it.
fn record_dispatch(h: &mut History, choice: &Choice) {
    let now = h.next_time();
    h.record(
        now,
        [
            RequestScheduled {
                task_id: TaskId::whole(choice.request),
                attempt: choice.attempt,
                node_id: choice.node,
                candidates_considered: choice.candidates_considered,
                ranked: choice.ranked.clone(),
            }
            .into(),
            TaskDispatched {
                task_id: TaskId::whole(choice.request),
                attempt: choice.attempt,
                node_id: choice.node,
                sealed_work: Sealed(vec![1]),
                deadline_at: now + chrono::Duration::seconds(30),
            }
            .into(),
        ],
    );
}

#[test]
fn a_replica_is_drawn_under_the_seed_among_every_eligible_peer() {
    // Given a primary result of class cpu, seven untried cpu peers and one cuda node
    let mut h = sampled_primary(8);
    let st = state(&h);
    let peers: Vec<NodeId> = replica_peers(&st, &st.requests[&RequestId(0)])
        .iter()
        .map(|p| p.key.node)
        .collect();
    assert_eq!(
        peers,
        (2..=8).map(node).collect::<Vec<_>>(),
        "the class, untried, free, sorted by id"
    );
    // When the replica is dispatched
    let replica = dispatch(&mut h);
    // Then it is the peer the seed draws for (request 0, round 1), with every peer counted
    let i = replica_index(&SEED, RequestId(0), 1, peers.len()).unwrap();
    assert_eq!(replica.node, peers[i]);
    assert_eq!(
        (
            replica.attempt,
            replica.candidates_considered,
            replica.ranked.len()
        ),
        (1, 7, 1),
        "the draw is the reason: the drawn peer alone is ranked"
    );
    assert_eq!(replica.ranked[0].node_id, replica.node);
    // And an honest run folds through the reveal, which re-derives the draw
    complete(&mut h, RequestId(0), replica.node, b"answer");
    reveal(&mut h);
    assert!(refused(&h).is_none(), "{:?}", refused(&h));
    assert_eq!(state(&h).sampling.verified_epochs, 1);
}

#[test]
fn without_the_committed_seed_no_replica_is_placed() {
    // Given a sampled request waiting for its replica
    let h = sampled_primary(3);
    let st = state(&h);
    // Then the scheduler cannot place it without the seed
    assert_eq!(next_assignment(&st, None), None);
    let drawn = next_assignment(&st, Some(&SEED)).expect("a peer is free");
    let when = |seed: Option<Hash32>| {
        decide(
            &st,
            Command::Dispatch(Box::new(Dispatch {
                choice: drawn.clone(),
                sealed_work: Sealed(vec![1]),
                now: h.next_time(),
                seed,
            })),
        )
    };
    // And `decide` refuses the draw without the seed, or with another seed than committed
    let err = when(None).expect_err("no seed, no replica");
    assert_eq!(err.field.as_deref(), Some("choice"), "{err}");
    let err = when(Some(Hash32([7; 32]))).expect_err("not the committed seed");
    assert_eq!(err.field.as_deref(), Some("seed"), "{err}");
    assert!(when(Some(SEED)).is_ok());
}

#[test]
fn a_forged_replica_choice_folds_until_the_reveal_which_refuses_it_naming_the_request() {
    // Given a sampled request and the peer the seed does not draw
    let mut h = sampled_primary(4);
    let st = state(&h);
    let req = &st.requests[&RequestId(0)];
    let peers = replica_peers(&st, req);
    let drawn = replica_index(&SEED, RequestId(0), req.attempts, peers.len()).unwrap();
    let forged = replica_receipt(RequestId(0), req, &peers, (drawn + 1) % peers.len()).unwrap();
    // When a log gives the replica to that peer, receipt and all, and the replica agrees
    record_dispatch(&mut h, &forged);
    complete(&mut h, RequestId(0), forged.node, b"answer");
    // Then it folds while the seed is secret
    assert!(refused(&h).is_none(), "{:?}", refused(&h));
    // But the reveal refuses it, naming the request
    reveal(&mut h);
    let err = refused(&h).expect("the forged draw is caught at the reveal");
    assert_eq!(err.error.event_type, "SamplingSeedRevealed");
    assert_eq!(err.offset as usize, h.len() - 1);
    let message = err.to_string();
    let named = format!("replica: request {} attempt 1", RequestId(0));
    assert!(message.contains(&named), "{message}");
}

#[test]
fn a_replica_given_to_a_node_that_is_no_eligible_peer_is_refused_where_it_is_recorded() {
    let h = sampled_primary(3);
    let st = state(&h);
    let req = &st.requests[&RequestId(0)];
    let peers = replica_peers(&st, req);
    let honest = replica_receipt(RequestId(0), req, &peers, 0).unwrap();
    // Node 4 is of another class; node 1 is the primary (it already holds a result).
    for outsider in [node(4), node(1)] {
        let mut forged = h.clone();
        let choice = Choice {
            node: outsider,
            ranked: vec![CandidateScore {
                node_id: outsider,
                ..honest.ranked[0].clone()
            }],
            ..honest.clone()
        };
        record_dispatch(&mut forged, &choice);
        let err = refused(&forged).expect("refused at once");
        assert_eq!(err.error.event_type, "RequestScheduled");
        assert!(
            err.to_string()
                .contains("is not one of the 2 eligible peers"),
            "{err}"
        );
    }
    // A receipt that names an eligible peer but miscounts the candidates is refused too.
    let mut miscounted = h.clone();
    record_dispatch(
        &mut miscounted,
        &Choice {
            candidates_considered: 9,
            ..honest
        },
    );
    let err = refused(&miscounted).expect("refused at once");
    assert_eq!(err.error.event_type, "RequestScheduled");
}
