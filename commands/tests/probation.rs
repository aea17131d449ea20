//! Probation (docs/validation.md, "Probation"): a new node's first verified results are
//! sampled at the catalog's probation rate, the rest at its sampling rate; the fold
//! re-derives which rate each draw was made at from the node's verified count, and the
//! seed's reveal refuses a log that skipped a probation replica.

use prlx_commands::decide::{decide, Command, Completion};
use prlx_commands::testkit::fixtures::{completion, node};
use prlx_commands::testkit::sampling::{
    complete, dispatch, node_of, opened, refused, reveal, state, types, SEED,
};
use prlx_commands::testkit::History;
use prlx_events::event::*;
use prlx_events::{Hash32, RequestId};

/// Nothing sampled at the catalog's rate; a node's first three results always.
fn probation() -> ValidationPolicy {
    ValidationPolicy {
        sampling_bp: 0,
        probation_results: 3,
        probation_sampling_bp: 10_000,
        ..Default::default()
    }
}

/// Dispatches request `id` and serves it, replicas agreeing; returns whether it was sampled.
fn serve(h: &mut History, id: RequestId) -> bool {
    let primary = dispatch(h);
    assert_eq!(primary.request, id, "requests are served in order");
    let events = complete(h, id, primary.node, b"answer");
    let sampled = types(&events).contains(&"RedundancySampled");
    while state(h).requests[&id].validating() {
        let replica = dispatch(h);
        complete(h, id, replica.node, b"answer");
    }
    sampled
}

#[test]
fn a_new_nodes_first_results_are_sampled_on_probation_then_at_the_catalogs_rate() {
    // Given two new nodes of one class and a catalog that samples only on probation
    let mut h = opened(probation(), vec![node_of(1, "cpu"), node_of(2, "cpu")], 5);
    // When five requests are served (node 1 is the primary of each; node 2 the replica)
    let drawn: Vec<bool> = (0..5).map(|id| serve(&mut h, RequestId(id))).collect();
    // Then node 1's first three results were sampled, and the rest released at once
    assert_eq!(drawn, [true, true, true, false, false]);
    let st = state(&h);
    assert_eq!(st.nodes[&node(1)].verified, 5);
    assert_eq!(
        st.nodes[&node(2)].verified,
        3,
        "a replica's result is verified too"
    );
    let epoch = st.sampling.current.as_ref().unwrap();
    assert_eq!(
        epoch.probation.iter().map(|r| r.0).collect::<Vec<_>>(),
        [0, 1, 2],
        "the fold re-derived which draws were on probation"
    );
    // And the reveal re-derives every draw at the rate it was made at
    reveal(&mut h);
    assert!(refused(&h).is_none(), "{:?}", refused(&h));
}

#[test]
fn a_log_that_skips_a_probation_replica_is_refused_at_the_reveal_naming_the_request() {
    // Given a new node's first result
    let mut h = opened(probation(), vec![node_of(1, "cpu"), node_of(2, "cpu")], 1);
    let primary = dispatch(&mut h);
    // When the log releases it at once, as if the node were past probation
    let mut veteran = state(&h);
    veteran.nodes.get_mut(&primary.node).unwrap().verified = 100;
    let now = h.next_time();
    let events = decide(
        &veteran,
        Command::CompleteTask(Box::new(Completion {
            result_hash: Hash32::of(b"answer"),
            seed: Some(SEED),
            now,
            ..completion(RequestId(0), primary.node, primary.attempt)
        })),
    )
    .unwrap();
    assert_eq!(
        types(&events),
        [
            "ResultSubmitted",
            "CommitmentVerified",
            "ValidationResolved",
            "ResultReturned",
            "CreditsCharged"
        ],
        "the catalog's rate (0) samples nothing"
    );
    h.record(now, events);
    // Then it folds while the seed is secret
    assert!(refused(&h).is_none(), "{:?}", refused(&h));
    // But the reveal re-derives the probation rate and refuses it, naming the request
    reveal(&mut h);
    let err = refused(&h).expect("the skipped replica is caught");
    assert_eq!(err.error.event_type, "SamplingSeedRevealed");
    let message = err.to_string();
    let named = format!("sampled: request {} recorded false", RequestId(0));
    assert!(message.contains(&named), "{message}");
    assert!(message.contains("at 10000 bp"), "{message}");
}

#[test]
fn probation_is_the_catalogs_when_the_epoch_opens() {
    // A catalog without probation (as a catalog recorded before it is read) samples a new
    // node's results at the catalog's rate from the first.
    let none = ValidationPolicy {
        probation_results: 0,
        ..probation()
    };
    let mut h = opened(none, vec![node_of(1, "cpu"), node_of(2, "cpu")], 1);
    assert!(!serve(&mut h, RequestId(0)));
    // A probation rate under the catalog's never lowers it.
    let lower = ValidationPolicy {
        sampling_bp: 10_000,
        probation_sampling_bp: 0,
        ..probation()
    };
    let mut h = opened(lower, vec![node_of(1, "cpu"), node_of(2, "cpu")], 1);
    assert!(serve(&mut h, RequestId(0)));
}
