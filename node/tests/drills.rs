//! Fault drills (`prlx-node run --fault KIND`): each makes a report with exactly the defect it
//! claims and no other, checked the way the coordinator checks a report (signature over the
//! result statement, the sealed result opened with the session key, the PoE recomputed).
//!
//! The drills' command line and their effect on a real coordinator, with real node processes,
//! are tested in prlx-tests (`tests/tests/node_faults.rs`).

use std::sync::OnceLock;

use chrono::Utc;
use prlx_events::crypto::{
    open_message, proof_of_execution, result_statement, verify, Direction, SessionKey,
};
use prlx_events::protocol::{DispatchBody, ResultBody, ResultReport};
use prlx_events::{Hash32, RequestId, TaskId};
use prlx_node::fault::{
    altered_result, decoy_node, decoy_request, Fault, FaultDrill, WRONG_RESULT_MARK,
};
use prlx_node::worker::{commit_result, Identity, Job};
use rsa::rand_core::OsRng;
use rsa::{RsaPrivateKey, RsaPublicKey};

fn new_key() -> RsaPrivateKey {
    // 2048 bits keeps the tests fast; a node makes 3072-bit keys itself.
    RsaPrivateKey::new(&mut OsRng, 2048).unwrap()
}

/// Two node identities, made once (key generation is the slow part of these tests).
fn identities() -> &'static [Identity; 2] {
    static IDS: OnceLock<[Identity; 2]> = OnceLock::new();
    IDS.get_or_init(|| [new_key(), new_key()].map(Identity::new))
}

fn public(identity: &Identity) -> RsaPublicKey {
    identity.key.to_public_key()
}

fn job(request: u64, session: &SessionKey) -> Job {
    Job {
        task: TaskId::whole(RequestId(request)),
        attempt: 1,
        epoch: 1,
        session: session.clone(),
        body: DispatchBody {
            request_id: RequestId(request),
            model: "tiny-test-v1".into(),
            prompt: "p".into(),
            max_tokens: 8,
            subtask: None,
        },
        deadline_at: Utc::now(),
        trace: None,
    }
}

fn honest_result() -> ResultBody {
    ResultBody {
        text: "Paris".into(),
        token_ids: vec![80, 97, 114, 105, 115],
        model_sha256: Hash32([5; 32]),
        decoding: "greedy".into(),
        stopped_at_eos: true,
    }
}

/// What the coordinator finds checking `report` from `identity` for `job`.
#[derive(Debug)]
struct Checked {
    signature_verifies: bool,
    /// The canonical bytes, when the result opens under the session key.
    opened: Option<Vec<u8>>,
    poe_matches: bool,
}

fn check(identity: &Identity, job: &Job, report: &ResultReport) -> Checked {
    let task = TaskId::whole(report.request_id);
    let statement = result_statement(
        report.request_id,
        task,
        identity.node,
        report.attempt,
        report.poe,
        Hash32::of(&report.sealed_result),
    );
    let opened = open_message(
        &job.session,
        Direction::Result,
        task,
        identity.node,
        report.attempt,
        report.epoch,
        &report.sealed_result,
    )
    .ok();
    let poe_matches = opened
        .as_ref()
        .is_some_and(|bytes| proof_of_execution(task, bytes, identity.node) == report.poe);
    Checked {
        signature_verifies: verify(&public(identity), &statement, &report.signature),
        opened,
        poe_matches,
    }
}

fn drill_report(fault: Fault, identity: &Identity, job: &Job) -> ResultReport {
    FaultDrill::new(fault).commit(identity, job, &honest_result(), 5, &mut OsRng)
}

#[test]
fn an_honest_report_passes_every_check() {
    let me = &identities()[0];
    let session = SessionKey::generate(&mut OsRng);
    let job = job(7, &session);
    let report = commit_result(me, &job, &honest_result(), 5, &mut OsRng);
    let c = check(me, &job, &report);
    assert!(c.signature_verifies && c.poe_matches, "{c:?}");
    assert_eq!(c.opened, Some(honest_result().canonical_bytes()));
}

#[test]
fn wrong_result_commits_honestly_to_an_altered_result() {
    let me = &identities()[0];
    let session = SessionKey::generate(&mut OsRng);
    let job = job(7, &session);
    let report = drill_report(Fault::WrongResult, me, &job);
    let c = check(me, &job, &report);
    // Every check passes: only a comparison with another node's result can catch it.
    assert!(c.signature_verifies, "the signature is valid");
    assert!(c.poe_matches, "the PoE commits to the bytes it sent");
    let bytes = c.opened.unwrap();
    assert_ne!(
        bytes,
        honest_result().canonical_bytes(),
        "the result is wrong"
    );
    assert_eq!(
        bytes,
        altered_result(&honest_result(), None).canonical_bytes()
    );
    let body: ResultBody = serde_json::from_slice(&bytes).unwrap();
    assert!(body.text.starts_with("Paris") && body.text.ends_with(WRONG_RESULT_MARK));
    let honest = honest_result();
    let changed: Vec<usize> = (0..honest.token_ids.len())
        .filter(|&i| honest.token_ids[i] != body.token_ids[i])
        .collect();
    assert_eq!(changed, vec![4], "exactly one token id is altered");
    assert_eq!(
        (&body.model_sha256, &body.decoding, body.stopped_at_eos),
        (
            &honest.model_sha256,
            &honest.decoding,
            honest.stopped_at_eos
        )
    );
    assert_eq!(report.token_count, 5);
}

#[test]
fn two_wrong_result_nodes_agree_and_two_unique_ones_do_not() {
    let [a, b] = identities();
    let session = SessionKey::generate(&mut OsRng);
    let job = job(8, &session);
    let opened = |fault, who: &Identity| {
        let c = check(who, &job, &drill_report(fault, who, &job));
        assert!(c.signature_verifies && c.poe_matches, "{fault}: {c:?}");
        c.opened.unwrap()
    };
    let honest = honest_result().canonical_bytes();
    let (wa, wb) = (opened(Fault::WrongResult, a), opened(Fault::WrongResult, b));
    assert_eq!(wa, wb, "colluding wrong-result nodes make the same bytes");
    assert_ne!(wa, honest);
    // The PoEs still differ: a PoE binds its node, so results are compared on bytes.
    let (ua, ub) = (
        opened(Fault::WrongResultUnique, a),
        opened(Fault::WrongResultUnique, b),
    );
    assert_ne!(ua, ub, "unique wrong results never agree");
    for u in [&ua, &ub] {
        assert_ne!(u, &honest);
        assert_ne!(u, &wa);
    }
    // Deterministic: the same node makes the same unique wrong result every time.
    assert_eq!(opened(Fault::WrongResultUnique, a), ua);
    // An empty generation still comes out wrong.
    let empty = ResultBody {
        text: String::new(),
        token_ids: vec![],
        ..honest_result()
    };
    assert_ne!(altered_result(&empty, None), empty);
}

#[test]
fn bad_poe_is_signed_and_sealed_but_commits_over_another_node() {
    let me = &identities()[0];
    let session = SessionKey::generate(&mut OsRng);
    let job = job(9, &session);
    let report = drill_report(Fault::BadPoe, me, &job);
    let c = check(me, &job, &report);
    assert!(
        c.signature_verifies,
        "signed by the node, so the report counts against it"
    );
    let bytes = c.opened.unwrap();
    assert_eq!(
        bytes,
        honest_result().canonical_bytes(),
        "the result is right"
    );
    assert!(!c.poe_matches, "the PoE does not match");
    assert_eq!(
        report.poe,
        proof_of_execution(job.task, &bytes, decoy_node(me.node)),
        "it commits over the decoy node id"
    );
}

#[test]
fn replay_signature_carries_a_signature_made_for_another_task() {
    let me = &identities()[0];
    let session = SessionKey::generate(&mut OsRng);
    let drill = FaultDrill::new(Fault::ReplaySignature);
    let first_job = job(10, &session);
    let second_job = job(11, &session);
    let first = drill.commit(me, &first_job, &honest_result(), 5, &mut OsRng);
    let second = drill.commit(me, &second_job, &honest_result(), 5, &mut OsRng);

    for (job, report) in [(&first_job, &first), (&second_job, &second)] {
        let c = check(me, job, report);
        assert!(
            !c.signature_verifies,
            "{}: the signature is not for it",
            job.task
        );
        assert!(c.poe_matches, "{}: the PoE is right", job.task);
        assert_eq!(c.opened, Some(honest_result().canonical_bytes()));
    }
    // The first report's signature is over another request id (nothing earlier to replay).
    let other = decoy_request(first_job.task.request);
    let decoy_statement = result_statement(
        other,
        TaskId::whole(other),
        me.node,
        1,
        first.poe,
        Hash32::of(&first.sealed_result),
    );
    assert!(verify(&public(me), &decoy_statement, &first.signature));
    // The second carries the signature the node made for the first task: valid there only.
    let first_statement = result_statement(
        first_job.task.request,
        first_job.task,
        me.node,
        first.attempt,
        first.poe,
        Hash32::of(&first.sealed_result),
    );
    assert!(verify(&public(me), &first_statement, &second.signature));
}

#[test]
fn silent_reports_nothing_and_the_others_report() {
    for fault in [
        Fault::WrongResult,
        Fault::WrongResultUnique,
        Fault::BadPoe,
        Fault::ReplaySignature,
    ] {
        assert!(FaultDrill::new(fault).reports(), "{fault}");
    }
    assert!(!FaultDrill::new(Fault::Silent).reports());
}
