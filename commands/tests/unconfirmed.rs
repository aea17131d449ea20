//! The hold on a result waiting for a replica (docs/validation.md, "Bounds"): a sampled
//! result whose replica cannot be placed now waits in the queue for the catalog's
//! `unconfirmed_hold_seconds` (a peer of its class may join, heartbeat back or free a slot),
//! then the timer releases it `Unconfirmed` (two results that differ: no majority); the fold
//! checks the release against recorded time, and the client reads the verdict.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::Duration;
use http_body_util::BodyExt;
use prlx_commands::actor;
use prlx_commands::consent::ConsentDomain;
use prlx_commands::decide::{decide, Command, Rejection};
use prlx_commands::http::app;
use prlx_commands::shell::Coordinator;
use prlx_commands::testkit::accounts::read_token;
use prlx_commands::testkit::fixtures::{account, node};
use prlx_commands::testkit::sampling::{
    complete, dispatch, node_of, opened, refused, state, types, SEED,
};
use prlx_commands::testkit::History;
use prlx_events::event::*;
use prlx_events::log::{LogUrl, LogWriter};
use prlx_events::seal::StorageKey;
use prlx_events::{Event, RequestId};
use prlx_projections::coordinator::{RequestStatus, ValidationOutcome};
use prlx_projections::scheduler::next_assignment;
use prlx_projections::validation::hold_deadline;
use serde_json::Value;
use tower::ServiceExt;

/// Every result sampled, no probation, and a hold of `seconds`.
fn hold(seconds: u32) -> ValidationPolicy {
    ValidationPolicy {
        sampling_bp: 10_000,
        probation_results: 0,
        unconfirmed_hold_seconds: seconds,
        ..Default::default()
    }
}

/// The timer's command for request 0 at `secs` after `since`, releasing `result`.
fn release_at(
    h: &History,
    since: chrono::DateTime<chrono::Utc>,
    secs: i64,
) -> Result<Vec<Event>, Rejection> {
    decide(
        &state(h),
        Command::ReleaseUnconfirmed {
            request: RequestId(0),
            now: since + Duration::seconds(secs),
            release: Some(Sealed(b"answer".to_vec())),
        },
    )
}

fn verdict(events: &[Event]) -> Verdict {
    events
        .iter()
        .find_map(|e| match e {
            Event::ValidationResolved(v) => Some(v.verdict.clone()),
            _ => None,
        })
        .expect("a verdict")
}

/// Node 1 (cpu) and node 2 (cuda), no peer for each other; request 0's result from node 1,
/// sampled and held. Returns the history and when the wait began.
fn held_alone(seconds: u32) -> (History, chrono::DateTime<chrono::Utc>) {
    let mut h = opened(
        hold(seconds),
        vec![node_of(1, "cpu"), node_of(2, "cuda")],
        1,
    );
    let primary = dispatch(&mut h);
    let events = complete(&mut h, RequestId(0), primary.node, b"answer");
    assert_eq!(
        types(&events),
        ["ResultSubmitted", "CommitmentVerified", "RedundancySampled"],
        "no peer of its class now: held, not released"
    );
    let since = h.last_time();
    (h, since)
}

#[test]
fn a_result_with_no_peer_is_held_for_the_bound_then_released_unconfirmed() {
    // Given a sampled result with no peer of its class, held since `since`
    let (mut h, since) = held_alone(60);
    let st = state(&h);
    let req = &st.requests[&RequestId(0)];
    assert_eq!(
        (
            req.replica_since(),
            req.queued.is_some(),
            req.result.is_some()
        ),
        (Some(since), true, false)
    );
    assert!(st.sched.replicas.contains(&(since, RequestId(0))));
    assert_eq!(
        hold_deadline(&st, RequestId(0)),
        Some(since + Duration::seconds(60))
    );
    // When the timer fires a second early, then at the bound
    let early = release_at(&h, since, 59).expect_err("not due yet");
    assert_eq!(early.field.as_deref(), Some("now"), "{early}");
    let events = release_at(&h, since, 60).unwrap();
    // Then the result goes out unconfirmed, charged, naming the gap
    assert_eq!(
        types(&events),
        ["ValidationResolved", "ResultReturned", "CreditsCharged"]
    );
    let Verdict::Unconfirmed { reason } = verdict(&events) else {
        panic!("{events:?}")
    };
    assert!(reason.contains("within 60 s"), "{reason}");
    h.record(since + Duration::seconds(60), events);
    let st = state(&h);
    let req = &st.requests[&RequestId(0)];
    assert_eq!(
        (req.status, req.outcome(), req.replica_since()),
        (
            RequestStatus::Completed,
            Some(ValidationOutcome::Unconfirmed),
            None
        )
    );
    assert!(st.sched.replicas.is_empty(), "the timer's index is empty");
    assert_eq!(st.accounts[&account()].balance, 985);
}

#[test]
fn a_peer_that_joins_within_the_hold_takes_the_replica() {
    // Given a result held for want of a peer
    let (mut h, since) = held_alone(60);
    // When a node of its class registers
    h.push(node_of(3, "cpu"));
    // Then it takes the replica, which confirms the result
    let replica = dispatch(&mut h);
    assert_eq!((replica.request, replica.node), (RequestId(0), node(3)));
    complete(&mut h, RequestId(0), node(3), b"answer");
    let st = state(&h);
    assert_eq!(
        st.requests[&RequestId(0)].outcome(),
        Some(ValidationOutcome::Confirmed)
    );
    // And the timer, when it fires, has nothing left to do
    assert_eq!(release_at(&h, since, 60).unwrap(), vec![]);
}

#[test]
fn a_replica_waiting_for_a_busy_peer_gets_the_same_bound() {
    // Given two nodes of one class, each running a request (deadlines of 30 s)
    let mut h = opened(hold(20), vec![node_of(1, "cpu"), node_of(2, "cpu")], 2);
    assert_eq!(dispatch(&mut h).node, node(1));
    assert_eq!(dispatch(&mut h).node, node(2));
    // When node 1's result is sampled while its only peer is busy
    let events = complete(&mut h, RequestId(0), node(1), b"answer");
    assert_eq!(types(&events).last(), Some(&"RedundancySampled"));
    let since = h.last_time();
    let st = state(&h);
    assert_eq!(
        next_assignment(&st, Some(&SEED)),
        None,
        "the peer exists, but has no free slot"
    );
    // Then it waits no longer than the hold, though a peer exists
    let events = release_at(&h, since, 20).unwrap();
    assert!(matches!(verdict(&events), Verdict::Unconfirmed { .. }));
    h.record(since + Duration::seconds(20), events);
    assert!(refused(&h).is_none(), "{:?}", refused(&h));
}

#[test]
fn two_results_that_differ_and_no_tie_breaker_in_time_have_no_majority() {
    // Given two nodes of one class that disagree, and no third
    let mut h = opened(hold(60), vec![node_of(1, "cpu"), node_of(2, "cpu")], 1);
    let primary = dispatch(&mut h);
    complete(&mut h, RequestId(0), primary.node, b"a");
    let replica = dispatch(&mut h);
    let events = complete(&mut h, RequestId(0), replica.node, b"b");
    assert_eq!(
        types(&events),
        ["ResultSubmitted", "CommitmentVerified"],
        "held for a tie-breaker"
    );
    let since = h.last_time();
    // When the hold runs out
    let events = release_at(&h, since, 60).unwrap();
    // Then both are flagged for review and the request fails, refunded
    assert_eq!(
        verdict(&events),
        Verdict::NoMajority {
            parties: vec![primary.node, replica.node]
        }
    );
    assert_eq!(types(&events)[5..], ["RequestFailed", "CreditsRefunded"]);
    h.record(since + Duration::seconds(60), events);
    let st = state(&h);
    let req = &st.requests[&RequestId(0)];
    assert_eq!(
        (req.status, req.outcome()),
        (RequestStatus::Failed, Some(ValidationOutcome::NoMajority))
    );
    assert_eq!(st.accounts[&account()].reserved, 0);
}

#[test]
fn a_release_recorded_before_the_hold_ran_out_is_refused() {
    // Given the timer's release at the bound, recorded instead half-way through the hold
    let (mut h, since) = held_alone(60);
    let events = release_at(&h, since, 60).unwrap();
    let at = h.len();
    h.record(since + Duration::seconds(30), events);
    // Then the fold refuses the verdict where it is recorded
    let err = refused(&h).expect("an early release does not fold");
    assert_eq!(
        (err.offset as usize, err.error.event_type),
        (at, "ValidationResolved")
    );
    assert!(err.to_string().contains("hold 60 s"), "{err}");
}

#[tokio::test]
async fn the_client_reads_whether_its_result_was_confirmed() {
    // Given a log where request 0 went out unconfirmed
    let (mut h, since) = held_alone(60);
    let events = release_at(&h, since, 60).unwrap();
    h.record(since + Duration::seconds(60), events);
    let dir = tempfile::tempdir().unwrap();
    let url = LogUrl::parse(&format!("file://{}", dir.path().join("log").display())).unwrap();
    {
        let writer = url.open_writer().unwrap();
        let records = h.envelopes().iter().map(|e| e.encode()).collect();
        writer.append(records).await.unwrap();
    }
    // When the client asks for it
    let coord = Coordinator::open(&url, "unconfirmed-test", StorageKey::from_bytes([7; 32]))
        .await
        .unwrap();
    let log = coord.writer().reader();
    let (handle, _task) = actor::spawn(coord);
    // (as the request's account: only it reads its requests)
    let token = read_token("ai", &account().0, 600, &ConsentDomain::default());
    let req = Request::get("/v1/requests/0").header("Authorization", token);
    let res = app(handle, log)
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value =
        serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
    // Then it says the result is out, unconfirmed
    assert_eq!(
        (&body["status"], &body["stage"], &body["validation"]),
        (
            &Value::from("completed"),
            &Value::from("done"),
            &Value::from("unconfirmed")
        ),
        "{body}"
    );
    assert!(body["result"].is_object(), "{body}");
}
