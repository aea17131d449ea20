//! Result reports over HTTP (`POST /v1/nodes/{id}/results`, `app()` with `oneshot` on a real
//! file log): only a report whose signature is the node's over this task, attempt, PoE and
//! these very sealed bytes may change the node's standing. Whoever captured a report can
//! resend its ciphertext, under a bad signature, another task's, or with its bytes altered:
//! each is refused (400, field `signature`), and nothing is recorded or held against the node.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use base64::Engine as _;
use http_body_util::BodyExt;
use prlx_commands::actor;
use prlx_commands::shell::Coordinator;
use prlx_commands::testkit::intake::assert_error_body;
use prlx_commands::testkit::session::{node_with_dispatches, publish_chat_and_credit, SessionNode};
use prlx_events::crypto::{proof_of_execution, result_statement, seal_message, sign, Direction};
use prlx_events::log::{AnyReader, LogReader, LogUrl};
use prlx_events::protocol::ResultReport;
use prlx_events::seal::{StorageKey, NONCE_LEN};
use prlx_events::{Envelope, Event, Hash32, NodeId, RequestId, TaskId};
use rsa::rand_core::{OsRng, RngCore};
use rsa::RsaPrivateKey;
use serde_json::{json, Value};
use tower::ServiceExt;

fn new_key() -> RsaPrivateKey {
    RsaPrivateKey::new(&mut OsRng, 2048).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Seals `result` for `request`'s first attempt under `node`'s session key, as the daemon
/// does.
fn seal(node: &SessionNode, request: RequestId, result: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let task = TaskId::whole(request);
    seal_message(
        &node.session,
        Direction::Result,
        task,
        node.id,
        0,
        node.epoch,
        nonce,
        result,
    )
}

/// `node`'s signature over `request`'s result statement for `poe` and `sealed`.
fn signed(node: &SessionNode, request: RequestId, poe: Hash32, sealed: &[u8]) -> Vec<u8> {
    let statement = result_statement(
        request,
        TaskId::whole(request),
        node.id,
        0,
        poe,
        Hash32::of(sealed),
    );
    sign(&node.key, &statement, &mut OsRng)
}

/// `node`'s honest report of `result` for `request`'s first attempt.
fn report(node: &SessionNode, request: RequestId, result: &[u8]) -> ResultReport {
    let poe = proof_of_execution(TaskId::whole(request), result, node.id);
    let sealed_result = seal(node, request, result);
    ResultReport {
        request_id: request,
        attempt: 0,
        epoch: node.epoch,
        signature: signed(node, request, poe, &sealed_result),
        sealed_result,
        poe,
        token_count: 3,
    }
}

fn body(r: &ResultReport) -> Value {
    json!({
        "request_id": r.request_id.0, "attempt": r.attempt, "epoch": r.epoch,
        "sealed_result": b64(&r.sealed_result), "poe": r.poe.to_hex(),
        "signature": b64(&r.signature), "token_count": r.token_count,
    })
}

async fn events(log: &impl LogReader) -> Vec<Event> {
    log.read(0, 100_000)
        .await
        .unwrap()
        .iter()
        .map(|r| Envelope::decode(&r.payload).unwrap().event)
        .collect()
}

/// The HTTP intake of a coordinator with one node (two slots) holding the dispatches of two
/// requests; a reader of its log.
struct Served {
    _dir: tempfile::TempDir,
    app: Router,
    handle: actor::CoordinatorHandle,
    log: AnyReader,
    node: SessionNode,
    requests: [RequestId; 2],
}

async fn serve_two_dispatches() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let url = LogUrl::parse(&format!("file://{}", dir.path().join("log").display())).unwrap();
    let signing = new_key();
    let coordinator_key = signing.to_public_key();
    let mut coord = Coordinator::open(&url, "reports-test", StorageKey::from_bytes([7; 32]))
        .await
        .unwrap()
        .with_signing_key(signing);
    publish_chat_and_credit(&mut coord).await;
    let (node, dispatches) =
        node_with_dispatches(&mut coord, &coordinator_key, 2, &["one", "two"]).await;
    let [first, second] = dispatches.as_slice() else {
        panic!("both requests go to the node: {dispatches:?}")
    };
    let requests = [first.task_id.request, second.task_id.request];
    let log = coord.writer().reader();
    let app_log = coord.writer().reader();
    let (handle, _task) = actor::spawn(coord);
    Served {
        _dir: dir,
        app: prlx_commands::http::app(handle.clone(), app_log),
        handle,
        log,
        node,
        requests,
    }
}

#[track_caller]
fn assert_refused(got: &(StatusCode, Value), what: &str) {
    let (status, answer) = got;
    assert_error_body(
        *status,
        answer,
        StatusCode::BAD_REQUEST,
        "report_refused",
        Some("signature"),
    );
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("signature")),
        "{what}: {answer}"
    );
}

async fn post(app: &Router, node: NodeId, body: &Value) -> (StatusCode, Value) {
    let req = Request::post(format!("/v1/nodes/{}/results", node.0.to_hex()))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

/// Whether any record counts against `node`: a rejected commitment, a flag, a standing change.
fn held_against(events: &[Event], node: NodeId) -> Vec<&'static str> {
    events
        .iter()
        .filter(|e| match e {
            Event::CommitmentRejected(c) => c.node_id == node,
            Event::NodeFlagged(f) => f.node_id == node,
            Event::StandingChanged(s) => s.node_id == node,
            _ => false,
        })
        .map(Event::type_name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_ciphertext_under_any_signature_but_its_own_changes_nothing() {
    // The log's folder lives as long as `_dir`.
    let Served {
        _dir,
        app,
        handle,
        log,
        node,
        requests: [first, second],
    } = serve_two_dispatches().await;

    // What the node sends for each request; an eavesdropper sees both.
    let captured = report(&node, first, b"the result of one");
    let other_task = report(&node, second, b"the result of two");
    let id = node.id;
    let standing = || async {
        handle
            .read_state(move |s| {
                let n = &s.nodes[&id];
                (n.standing_bp, n.valid, n.invalid, n.in_pool)
            })
            .await
            .unwrap()
    };
    let before = standing().await;
    let end = log.end().await.unwrap();

    let stranger = new_key();
    let mut altered = captured.clone();
    altered.sealed_result[0] ^= 0x01;
    // The node's own bytes for this very task, sealed again: a signature over one ciphertext
    // does not pass for another, even of the same result.
    let resealed = ResultReport {
        sealed_result: seal(&node, first, b"the result of one"),
        ..captured.clone()
    };
    let statement = result_statement(
        first,
        TaskId::whole(first),
        id,
        0,
        captured.poe,
        Hash32::of(&captured.sealed_result),
    );
    let with_signature = |signature: Vec<u8>| ResultReport {
        signature,
        ..captured.clone()
    };
    let attempts = [
        (
            "a stranger's signature over the captured statement",
            with_signature(sign(&stranger, &statement, &mut OsRng)),
        ),
        ("garbage for a signature", with_signature(vec![0x5a; 256])),
        (
            "the node's signature of another task",
            with_signature(other_task.signature.clone()),
        ),
        ("the captured report with one sealed byte flipped", altered),
        ("the node's signature over another ciphertext", resealed),
    ];
    for (what, report) in &attempts {
        assert_refused(&post(&app, id, &body(report)).await, what);
        assert_eq!(log.end().await.unwrap(), end, "{what}: nothing is recorded");
    }
    assert_eq!(standing().await, before);
    assert!(held_against(&events(&log).await, id).is_empty());

    // The node's own report still counts, once, and its record carries the hash its
    // signature covers.
    let (status, answer) = post(&app, id, &body(&captured)).await;
    assert_eq!(
        (status, &answer["outcome"]),
        (StatusCode::OK, &json!("recorded"))
    );
    let recorded = events(&log).await;
    let submitted = recorded
        .iter()
        .find_map(|e| match e {
            Event::ResultSubmitted(r) if r.task_id == TaskId::whole(first) => Some(r.clone()),
            _ => None,
        })
        .expect("the result is recorded");
    assert_eq!(
        submitted.ciphertext_hash,
        Some(Hash32::of(&captured.sealed_result))
    );
    assert!(recorded
        .iter()
        .any(|e| matches!(e, Event::CommitmentVerified(c) if c.task_id == TaskId::whole(first))));
    assert!(held_against(&recorded, id).is_empty());
    // Replayed after it was recorded, under a signature not its own: still refused.
    let (what, replayed) = &attempts[2];
    assert_refused(&post(&app, id, &body(replayed)).await, what);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_the_node_signed_is_held_against_it_when_its_result_does_not_open() {
    let Served {
        _dir,
        app,
        log,
        node,
        requests: [first, _],
        ..
    } = serve_two_dispatches().await;
    // Bytes that do not open under the session key, signed by the node over exactly them:
    // the node's own doing, so its commitment is rejected and it is flagged.
    let mut report = report(&node, first, b"the result of one");
    report.sealed_result = vec![7; report.sealed_result.len()];
    report.signature = signed(&node, first, report.poe, &report.sealed_result);
    let (status, answer) = post(&app, node.id, &body(&report)).await;
    assert_eq!(
        (status, &answer["outcome"]),
        (StatusCode::OK, &json!("recorded"))
    );
    let recorded = events(&log).await;
    let against = held_against(&recorded, node.id);
    assert!(
        against.contains(&"CommitmentRejected") && against.contains(&"NodeFlagged"),
        "{against:?}"
    );
}
