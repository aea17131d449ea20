//! Liveness with real processes (the process kit: `cargo build --workspace --bins` and
//! scripts/setup-models.sh first): no request waits without bound.
//!
//! The drill: two nodes that take dispatches and never answer (`--fault silent`),
//! 5 s deadlines. The request they strand fails with its credit refunded once no untried node
//! is left (not after `max_attempts`, and not never); each miss lowers the silent node's
//! standing, so a later request goes to an honest node at once. Beside it, a request for a
//! model no node serves fails at the catalog's admission bound, and a `max_tokens` that
//! leaves no room in the model's context for a prompt is refused at intake. A prompt that
//! fits no node's context is declined by signed refusals, and fails at once.

use std::time::{Duration, Instant};

use prlx_events::event::FailureCause;
use prlx_events::{Envelope, Event, NodeId, RequestId, TaskId};
use prlx_tests::harness::client::read_log;
use prlx_tests::harness::cluster::FileCluster;
use prlx_tests::harness::models::{tiny_catalog, tiny_submission, TINY};

/// The catalog's admission bound in this test.
const QUEUE_TIMEOUT_SECONDS: u64 = 10;
/// A model in the catalog that no node serves.
const UNSERVED: &str = "unserved-v1";

/// When the request failed, its cause, and what was refunded; `None` while it has not.
fn failure(events: &[Event], request: RequestId) -> Option<(Option<FailureCause>, u64)> {
    let cause = events.iter().find_map(|e| match e {
        Event::RequestFailed(f) if f.request_id == request => Some(f.cause),
        _ => None,
    })?;
    let refunded = events
        .iter()
        .filter_map(|e| match e {
            Event::CreditsRefunded(r) if r.request_id == request => Some(r.amount),
            _ => None,
        })
        .sum();
    Some((cause, refunded))
}

/// Waits until `request` fails; returns how long after `since` that was seen, its cause and
/// the refund.
fn wait_failed(
    cluster: &FileCluster,
    request: RequestId,
    since: Instant,
    within: Duration,
) -> (Duration, Option<FailureCause>, u64) {
    loop {
        if let Some((cause, refunded)) = failure(&cluster.events(), request) {
            return (since.elapsed(), cause, refunded);
        }
        assert!(
            since.elapsed() < within,
            "{request} has not failed within {within:?}: {}",
            cluster.status(request)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn stranded_work_fails_refunded_and_silent_nodes_stop_getting_work() {
    let mut catalog = tiny_catalog(&[TINY, UNSERVED], 5);
    catalog["queue_timeout_seconds"] = QUEUE_TIMEOUT_SECONDS.into();
    // No redundant execution: this drill counts dispatches, and a sampled result would send
    // a replica to a silent node and wait out its deadline (validation has suites of its own).
    catalog["validation"]["sampling_bp"] = 0.into();
    let cluster = FileCluster::start(&catalog, "liveness-test/1");
    cluster.deposit(1_000_000);

    // Intake: the tiny model's context is 4096 tokens, so 4096 of output leave no room.
    let pem = prlx_events::crypto::public_key_pem(&cluster.client_key.to_public_key());
    let (code, body) = cluster.call(
        "POST",
        "/v1/requests",
        Some(&cluster.chain.signed(
            tiny_submission(&cluster.account(), "abc", 4096, 30, &pem),
            "too-long",
        )),
    );
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["error"]["field"], "max_tokens", "{body}");

    // A request for a model no node serves: accepted, then bounded by the queue timeout.
    let mut unserved = tiny_submission(&cluster.account(), "abc", 5, 30, &pem);
    unserved["model"] = UNSERVED.into();
    let unserved = cluster.chain.signed(unserved, "unserved");
    let unserved_at = Instant::now();
    let (code, body) = cluster.call("POST", "/v1/requests", Some(&unserved));
    assert_eq!(code, 202, "{body}");
    let unserved_id = RequestId(body["request_id"].as_u64().unwrap());

    // Two silent nodes, and a request only they can take.
    let (_silent_a, a) = cluster.spawn_node("silent-a", &["--fault", "silent"]);
    let (_silent_b, b) = cluster.spawn_node("silent-b", &["--fault", "silent"]);
    let stranded_at = Instant::now();
    let stranded = cluster.submit("Hello, world", 20, 5);
    let price = cluster.status(stranded)["price"].as_u64().unwrap();

    // Two 5 s deadlines, then no untried node is left: it fails at once, in full refunded,
    // although `max_attempts` (3) would allow a third dispatch.
    let (took, cause, refunded) =
        wait_failed(&cluster, stranded, stranded_at, Duration::from_secs(30));
    eprintln!("the stranded request failed after {took:?}");
    assert_eq!(cause, Some(FailureCause::NoCapableNode));
    assert_eq!(refunded, price, "refunded in full");
    assert!(
        took >= Duration::from_secs(10),
        "two deadlines of 5 s: {took:?}"
    );
    let events = cluster.events();
    let task = TaskId::whole(stranded);
    let expired: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::DeadlineExpired(d) if d.task_id == task => Some(d.node_id),
            _ => None,
        })
        .collect();
    assert_eq!(expired.len(), 2, "{expired:?}");
    assert!(expired.contains(&a) && expired.contains(&b), "{expired:?}");
    for node in [a, b] {
        assert!(
            events.iter().any(|e| matches!(e,
                Event::StandingChanged(s) if s.node_id == node
                    && s.missed_deadlines == Some(1) && s.standing_bp == 5_000)),
            "{node}'s miss lowered its standing"
        );
    }
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::NodeRemovedFromPool(_))),
        "misses never remove a node"
    );

    // An honest node joins: the next request goes to it at once, not to a silent node that
    // is free but missed its deadline.
    let (_honest, honest) = cluster.spawn_node("honest", &[]);
    let served = cluster.submit("Hello, world", 20, 30);
    let status = cluster.wait_result(served, Duration::from_secs(30));
    let (_, by, _) = cluster.open_result(served, &status);
    assert_eq!(by, honest);
    assert_eq!(
        status["attempts"], 1,
        "no dispatch to a silent node first: {status}"
    );

    // The request no node serves failed at its bound, counted from its acceptance in log
    // time, and was refunded; the account holds nothing for either failure.
    wait_failed(
        &cluster,
        unserved_id,
        unserved_at,
        Duration::from_secs(QUEUE_TIMEOUT_SECONDS + 30),
    );
    let (cause, refunded) = failure(&cluster.events(), unserved_id).unwrap();
    assert_eq!(cause, Some(FailureCause::QueueTimeout));
    assert!(refunded > 0);
    let recorded = |pred: &dyn Fn(&Event) -> bool| {
        envelopes(&cluster)
            .into_iter()
            .find(|env| pred(&env.event))
            .map(|env| env.header.recorded_at)
            .unwrap()
    };
    let accepted =
        recorded(&|e| matches!(e, Event::RequestAccepted(r) if r.request_id == unserved_id));
    let failed = recorded(&|e| matches!(e, Event::RequestFailed(f) if f.request_id == unserved_id));
    let waited = (failed - accepted).to_std().unwrap();
    assert!(
        waited >= Duration::from_secs(QUEUE_TIMEOUT_SECONDS)
            && waited < Duration::from_secs(QUEUE_TIMEOUT_SECONDS + 5),
        "failed {waited:?} after its acceptance"
    );
    let (code, account) = cluster.read(&format!("/v1/accounts/{}", cluster.account()));
    assert_eq!(code, 200, "{account}");
    assert_eq!(account["reserved"], 0, "{account}");

    // The auditor re-derives every failure's cause and every standing change from the log.
    audit(&cluster);
}

/// The drill of a prompt too long for the context (4096 tokens). Intake accepts `max_tokens`
/// up to 4095 (one position left for a prompt), but every prompt, with its chat template,
/// takes more: each node's engine finds it too long, and the node posts a signed refusal
/// instead of letting the deadline pass. The first refusal re-queues the request without
/// lowering the node's standing; the second, from a node of the same model file, fails it
/// with a full refund, well before its deadline and before the third node is asked.
#[test]
fn a_prompt_too_long_for_the_context_is_declined_twice_and_fails_refunded_at_once() {
    const DEADLINE_SECONDS: u32 = 60;
    let mut catalog = tiny_catalog(&[TINY], 5);
    // No redundant execution: the served request at the end is checked by its node alone.
    catalog["validation"]["sampling_bp"] = 0.into();
    let cluster = FileCluster::start(&catalog, "refusal-test/1");
    cluster.deposit(1_000_000);
    let nodes: Vec<(_, NodeId)> = ["node-a", "node-b", "node-c"]
        .iter()
        .map(|name| cluster.spawn_node(name, &[]))
        .collect();

    let submitted = Instant::now();
    let request = cluster.submit("Hello, world", 4095, DEADLINE_SECONDS);
    let price = cluster.status(request)["price"].as_u64().unwrap();
    let (took, cause, refunded) =
        wait_failed(&cluster, request, submitted, Duration::from_secs(30));
    eprintln!("the declined request failed after {took:?}");
    assert_eq!(cause, Some(FailureCause::Refused));
    assert_eq!(refunded, price, "refunded in full");
    assert!(
        took < Duration::from_secs(u64::from(DEADLINE_SECONDS)),
        "no deadline was waited for: {took:?}"
    );

    let events = cluster.events();
    let task = TaskId::whole(request);
    let refusers: Vec<NodeId> = events
        .iter()
        .filter_map(|e| match e {
            Event::DispatchRefused(r) if r.task_id == task => Some(r.node_id),
            _ => None,
        })
        .collect();
    assert_eq!(refusers.len(), 2, "{refusers:?}");
    assert_ne!(refusers[0], refusers[1]);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::DeadlineExpired(d) if d.task_id == task)),
        "no deadline passed"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::StandingChanged(s) if refusers.contains(&s.node_id))),
        "a refusal moves no standing"
    );
    let (code, listed) = cluster.call("GET", "/v1/nodes", None);
    assert_eq!(code, 200, "{listed}");
    for (_, node) in &nodes {
        let view = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["node_id"] == node.0.to_hex())
            .unwrap();
        let declined = u64::from(refusers.contains(node));
        assert_eq!(
            (&view["refusals"], &view["standing_bp"]),
            (&declined.into(), &10_000.into()),
            "{view}"
        );
    }

    // The nodes still serve what fits; the account holds nothing.
    let served = cluster.submit("Hello, world", 5, DEADLINE_SECONDS);
    cluster.wait_result(served, Duration::from_secs(30));
    let (code, account) = cluster.read(&format!("/v1/accounts/{}", cluster.account()));
    assert_eq!(code, 200, "{account}");
    assert_eq!(account["reserved"], 0, "{account}");

    // The auditor re-derives the refusals' consequences and verifies their signatures.
    audit(&cluster);
}

/// Runs the auditor over the cluster's log; it must find nothing.
fn audit(cluster: &FileCluster) {
    let report = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(prlx_replay::verify(
            &prlx_replay::VerifyOptions {
                log: cluster.log_url(),
                ..Default::default()
            },
            |_| (),
        ))
        .unwrap();
    assert!(report.ok, "{}", report.to_text());
}

/// Every record of the cluster's log, decoded with its header.
fn envelopes(cluster: &FileCluster) -> Vec<Envelope> {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(read_log(&cluster.log_url()))
        .into_iter()
        .map(|(_, payload)| Envelope::decode(&payload).unwrap())
        .collect()
}
