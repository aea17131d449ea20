//! Nodes prove themselves (issue 16): a registration signed by the node's key and checked by
//! `decide`, models only from the catalog with its files, a bond that counts only from the
//! operator the node signed, and no work before a node's first heartbeat. Each rule with an
//! outsider refused; the HTTP door's refusals (no, another key's, a stale or a replayed
//! statement) are in `http.rs`, `node_registration_conflict_and_heartbeat`.

use prlx_commands::decide::Command;
use prlx_commands::settle::SettlementCommand;
use prlx_commands::testkit::fixtures::{
    self, accepted_and_reserved, model, node, registered, registration, request_accepted,
    reward_policy, t,
};
use prlx_commands::testkit::{decide_at as run, fold, given, settle_due, History};
use prlx_events::crypto::{node_id_of, public_key_pem, sign_registration};
use prlx_events::event::*;
use prlx_events::{Event, Hash32};
use prlx_projections::scheduler::next_assignment;

const OPERATOR: &str = "0x90f79bf6eb2c4f870365e785982e1f101e93b906";
const THIEF: &str = "0x00000000000000000000000000000000000000bb";

fn catalog() -> Event {
    fixtures::catalog(vec![model("chat", Hash32([1; 32]))]).into()
}

/// Node `n` as a signed registration records it, naming `operator`, signed at `at` (the
/// fold checks the time; the signature is the auditor's to verify).
fn signed(n: u8, operator: &str, at: chrono::DateTime<chrono::Utc>) -> Event {
    NodeRegistered {
        stake: 0,
        model_hashes: [("chat".to_owned(), Hash32([1; 32]))].into(),
        operator: Some(operator.into()),
        signed_at: Some(at.timestamp()),
        signature: Some(Sealed(vec![7; 4])),
        ..registered(n)
    }
    .into()
}

fn staked(n: u8, staker: &str, i: u64) -> Event {
    ChainStakeChanged {
        node_id: node(n),
        staker: staker.into(),
        change: StakeChange::Staked,
        amount_wei: (500 * CREDIT_UNIT_WEI).to_string(),
        bonded_wei: (500 * CREDIT_UNIT_WEI).to_string(),
        stake: 500,
        chain: fixtures::chain_place(i),
    }
    .into()
}

#[test]
fn decide_refuses_a_forged_registration_and_models_outside_the_catalog() {
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let public = key.to_public_key();
    let honest = NodeRegistered {
        model_hashes: [("chat".to_owned(), Hash32([1; 32]))].into(),
        operator: Some(OPERATOR.into()),
        ..registration(node_id_of(&public), public_key_pem(&public))
    };
    let mut signed = honest.clone();
    sign_registration(&key, &mut signed, 1_780_000_000, &mut rsa::rand_core::OsRng);
    let register = |n: &NodeRegistered| Command::RegisterNode(Box::new(n.clone()));
    given([catalog()])
        .when(register(&signed))
        .then_expect([signed.clone().into()]);

    // Another operator (who would be paid) under the node's signature: refused.
    let stolen = NodeRegistered {
        operator: Some(THIEF.into()),
        ..signed.clone()
    };
    given([catalog()])
        .when(register(&stolen))
        .then_reject(RejectionCode::MalformedRequest, "signature");
    // Signed by another key than the one registered.
    let stranger = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let mut forged = honest.clone();
    sign_registration(
        &stranger,
        &mut forged,
        1_780_000_000,
        &mut rsa::rand_core::OsRng,
    );
    given([catalog()])
        .when(register(&forged))
        .then_reject(RejectionCode::MalformedRequest, "signature");

    // A model outside the catalog, another file, or none reported for a catalog model.
    let outside = NodeRegistered {
        models: vec!["chat".into(), "gpt-omega".into()],
        ..honest.clone()
    };
    given([catalog()])
        .when(register(&outside))
        .then_reject(RejectionCode::MalformedRequest, "models[1]");
    let other_file = NodeRegistered {
        model_hashes: [("chat".to_owned(), Hash32([2; 32]))].into(),
        ..honest.clone()
    };
    given([catalog()])
        .when(register(&other_file))
        .then_reject(RejectionCode::MalformedRequest, "model_hashes.chat");
    let no_file = NodeRegistered {
        model_hashes: Default::default(),
        ..honest
    };
    given([catalog()])
        .when(register(&no_file))
        .then_reject(RejectionCode::MalformedRequest, "model_hashes.chat");
}

#[test]
fn the_fold_refuses_a_stale_statement_and_a_misspelt_operator() {
    let mut h = History::new();
    h.record(t(0), [catalog()]);
    h.record(t(500), [signed(1, OPERATOR, t(0))]);
    let e = fold(&h).unwrap_err().to_string();
    assert!(e.contains("signed_at"), "{e}");

    let mut h = History::new();
    h.record(t(0), [catalog()]);
    h.record(
        t(1),
        [signed(
            1,
            &OPERATOR.to_uppercase().replace("0X", "0x"),
            t(1),
        )],
    );
    let e = fold(&h).unwrap_err().to_string();
    assert!(e.contains("operator"), "{e}");
}

/// Node 1's id was staked for first by a stranger (front-running its operator); node 2 by the
/// operator it signed. Both heartbeat through epoch 0.
#[test]
fn a_bond_counts_only_from_the_operator_the_node_signed() {
    let mut h = History::new();
    h.record(t(-200), [catalog()]);
    h.record(t(-190), [staked(1, THIEF, 1), staked(2, OPERATOR, 2)]);
    h.record(
        t(-180),
        [signed(1, OPERATOR, t(-180)), signed(2, OPERATOR, t(-180))],
    );
    run(
        &mut h,
        t(-30),
        Command::Settlement(SettlementCommand::PublishPolicy(reward_policy())),
    );
    let state = fold(&h).unwrap();
    assert_eq!(
        state.nodes[&node(1)].stake,
        0,
        "the thief's bond is not node 1's"
    );
    assert_eq!(state.nodes[&node(2)].stake, 500);
    for slot in 0..10 {
        for n in [1, 2] {
            let at = t(60 * slot + 5 * n);
            run(&mut h, at, fixtures::heartbeat(node(n as u8), at));
        }
    }
    let settled = settle_due(&mut h, t(600)).pop().expect("epoch 0 settles");
    let weight = |n: u8| {
        settled
            .payouts
            .iter()
            .find(|p| p.node_id == node(n))
            .map(|p| (p.weight, p.amount > 0))
    };
    assert_eq!(
        weight(1),
        Some((0, false)),
        "node 1 weighs nothing: {settled:?}"
    );
    assert!(
        weight(2).is_some_and(|(w, paid)| w > 0 && paid),
        "{settled:?}"
    );
    let prepared = run(&mut h, t(601), Command::PrepareRoot { epoch: 0 });
    let Event::RewardRootPrepared(r) = &prepared[0] else {
        panic!("{prepared:?}")
    };
    assert_eq!(r.leaves.len(), 1);
    assert_eq!(r.leaves[0].recipient, OPERATOR, "the thief is no leaf");
}

#[test]
fn a_signed_node_gets_no_work_before_its_first_heartbeat() {
    let mut h: History = vec![catalog(), fixtures::deposited(1_000).into()].into();
    h.push(signed(1, OPERATOR, fixtures::t(2)));
    h.extend(accepted_and_reserved(RequestAccepted {
        model: "chat".into(),
        ..request_accepted(0)
    }));
    let state = fold(&h).unwrap();
    assert!(!state.nodes[&node(1)].available(), "registered, never up");
    assert_eq!(next_assignment(&state, None), None, "the request waits");

    let at = h.next_time();
    run(&mut h, at, fixtures::heartbeat(node(1), at));
    let state = fold(&h).unwrap();
    let choice = next_assignment(&state, None).expect("up now: it gets the request");
    assert_eq!(choice.node, node(1));
    // A registration from before nodes signed keeps its rule: work at once.
    let mut old: History = vec![catalog(), fixtures::deposited(1_000).into()].into();
    old.push(registered(1).into());
    old.extend(accepted_and_reserved(request_accepted(0)));
    assert!(next_assignment(&fold(&old).unwrap(), None).is_some());
}
