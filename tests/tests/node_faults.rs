//! Fault drills (`prlx-node run --fault KIND`) with real processes, through the process kit
//! ([`prlx_tests::harness`]: the binaries built by `cargo build --workspace --bins`, the models
//! of scripts/setup-models.sh; `PRLX_TEST_COORDINATOR_BIN=PATH` names another coordinator
//! build). The reports each drill makes are checked one by one in the node's own tests
//! (`node/tests/drills.rs`).
//!
//! The command line: the flag is documented, checked, and loud. The end-to-end tests run a
//! real `prlx-coordinator serve` with faulty and honest nodes, each a process, as
//! `node_daemon.rs` does: a bad PoE (check 1: rejected, flagged, completed elsewhere), a
//! replayed signature (refused before anything is recorded, the node not flagged, the work
//! completed elsewhere once its dispatch expires), and sampled redundancy (check 2) with every
//! request sampled: a wrong primary, a wrong replica, a colluding pair, three different
//! results, an honest pair. Each asserts the request's events on the log in order. Which node gets which dispatch is fixed
//! by stopping nodes (SIGSTOP) between their session grant and the next node's (see
//! `Cluster::in_order`).

use std::ops::Deref;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use prlx_events::crypto::proof_of_execution;
use prlx_events::event::Verdict;
use prlx_events::protocol::ResultBody;
use prlx_events::{Event, Hash32, NodeId, RequestId, TaskId};
use prlx_node::fault::{altered_result, WRONG_RESULT_MARK};
use prlx_tests::harness::cluster::FileCluster;
use prlx_tests::harness::keys::{new_key, write_private};
use prlx_tests::harness::launch::{node_command, node_run_to_exit, STARTUP};
use prlx_tests::harness::models::{tiny_catalog, TINY};
use prlx_tests::harness::process::Proc;
use serde_json::json;

// ---------------------------------------------------------------------------------------------
// The command line.

#[test]
fn the_fault_flag_is_documented_checked_and_loud() {
    let help = node_command().args(["run", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--fault <KIND>"), "{help}");
    for name in [
        "wrong-result",
        "wrong-result-unique",
        "bad-poe",
        "replay-signature",
        "silent",
    ] {
        assert!(help.contains(&format!("- {name}:")), "{name} in {help}");
    }

    // A run that stops early (a key others can read is refused) says whether it is a drill.
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("node.pem");
    write_private(&key, &new_key());
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = |extra: &[&str]| {
        let out = node_run_to_exit(dir.path(), &key, extra);
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let drill = run(&["--fault", "bad-poe"]);
    assert!(drill.contains("WARNING: FAULT DRILL bad-poe"), "{drill}");
    assert!(drill.contains("never run it on a real network"), "{drill}");
    let honest = run(&[]);
    assert!(!honest.contains("FAULT DRILL"), "{honest}");
    let bad = run(&["--fault", "sloppy"]);
    assert!(bad.contains("invalid value 'sloppy'"), "{bad}");
}

// ---------------------------------------------------------------------------------------------
// End to end: a coordinator, a `--fault bad-poe` node and an honest node, each a process.

/// The kit's coordinator on a file log, with what these tests add: nodes with faults, and
/// funded submissions.
struct Cluster(FileCluster);

impl Deref for Cluster {
    type Target = FileCluster;

    fn deref(&self) -> &FileCluster {
        &self.0
    }
}

impl Cluster {
    /// A coordinator whose catalog samples `sampling_bp` of the requests (`None`: the
    /// default rate), with no probation and no hold (see `tiny_catalog`).
    fn start(sampling_bp: Option<u32>) -> Cluster {
        let mut doc = tiny_catalog(&[TINY], 5);
        if let Some(bp) = sampling_bp {
            doc["validation"]["sampling_bp"] = json!(bp);
        }
        Cluster(FileCluster::start(&doc, "fault-test/1"))
    }

    /// Starts `prlx-node run` serving the tiny model, with `extra` arguments; returns once it
    /// has its session grant.
    fn node(&self, name: &str, extra: &[&str]) -> (Proc, NodeId) {
        self.spawn_node(name, extra)
    }

    /// Buys the client credits on the chain the first time, and submits `prompt`.
    fn funded_submit(&self, prompt: &str, max_tokens: u32, deadline_seconds: u32) -> RequestId {
        if self.balance() == 0 {
            self.deposit(1_000_000);
        }
        self.submit(prompt, max_tokens, deadline_seconds)
    }
}

#[test]
fn a_bad_poe_node_is_flagged_and_an_honest_node_completes_the_request() {
    let _serial = serial();
    let cluster = Cluster::start(None);
    // The faulty node alone first, so the dispatch is surely its; it is held (SIGSTOP) until
    // the honest node is in the pool, since a rejected commitment with no untried node left
    // fails the request at once.
    let (mut faulty, faulty_id) = cluster.node("node-bad-poe", &["--fault", "bad-poe"]);
    assert!(faulty.find("WARNING: FAULT DRILL bad-poe").is_some());
    faulty.signal("-STOP");
    let id = cluster.funded_submit("Hello, world", 20, 120);
    let task = TaskId::whole(id);
    assert_eq!(cluster.wait_dispatch(task, 0), faulty_id);
    let (_honest, honest_id) = cluster.node("node-honest", &[]);
    faulty.signal("-CONT");
    faulty.wait_line(
        &format!("FAULT DRILL bad-poe: the report of {task} attempt 0"),
        STARTUP,
    );
    cluster.wait_event(
        "CommitmentRejected",
        STARTUP,
        |e| matches!(e, Event::CommitmentRejected(r) if r.task_id == task),
    );

    // The work goes back to the queue, for the honest node, which completes it.
    let until = Instant::now() + Duration::from_secs(120);
    let status = loop {
        let (code, body) = cluster.read(&format!("/v1/requests/{}", id.0));
        assert_eq!(code, 200, "{body}");
        if body.get("result").is_some() {
            break body;
        }
        assert_ne!(body["status"], "failed", "{id} failed: {body}");
        assert!(Instant::now() < until, "{id} has no result: {body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let by: NodeId = status["result"]["node_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        by, honest_id,
        "the honest node's result is the one returned"
    );

    let events = cluster.events();
    let rejected: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::CommitmentRejected(r) => Some((r.task_id, r.attempt, r.node_id)),
            _ => None,
        })
        .collect();
    assert_eq!(rejected, vec![(task, 0, faulty_id)]);
    let flagged: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::NodeFlagged(f) => Some((f.node_id, f.task_id)),
            _ => None,
        })
        .collect();
    assert!(
        flagged.contains(&(faulty_id, Some(task))),
        "the faulty node is flagged: {flagged:?}"
    );
    assert!(
        flagged.iter().all(|(node, _)| *node != honest_id),
        "the honest node is not flagged: {flagged:?}"
    );
    assert!(
        events.iter().any(|e| matches!(e,
            Event::CommitmentVerified(v) if v.task_id == task && v.node_id == honest_id)),
        "the honest node's commitment is verified"
    );
    // Real nodes' signed heartbeats are taken (refused ones would let a node lapse): one of
    // the node that ran all along reaches the log, and it never saw one refused.
    cluster.wait_event(
        "NodeHeartbeat",
        STARTUP,
        |e| matches!(e, Event::NodeHeartbeat(h) if h.node_id == faulty_id),
    );
    assert!(
        faulty.find("heartbeat failed").is_none(),
        "a heartbeat was refused"
    );
}

// ---------------------------------------------------------------------------------------------
// End to end: sampled redundancy (check 2) with real nodes, honest and faulty.

/// The end-to-end tests run one at a time: each starts up to four processes on few cores.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Every request of these tests asks for the same generation, so an honest node's result is
/// known from any honest node.
const PROMPT: &str = "Hello, world";
const MAX_TOKENS: u32 = 20;
const DEADLINE_SECONDS: u32 = 60;

/// A node of an end-to-end test: the process, its id, and the name it has in a [`story`].
struct Member {
    name: &'static str,
    proc: Proc,
    id: NodeId,
}

impl Cluster {
    /// Starts a node named `name` with `fault` (`None`: honest).
    fn member(&self, name: &'static str, fault: Option<&str>) -> Member {
        let extra: Vec<&str> = fault.map_or(vec![], |f| vec!["--fault", f]);
        let (proc, id) = self.node(name, &extra);
        Member { name, proc, id }
    }

    /// Waits for dispatch `attempt` of `task`; returns the node it went to.
    fn wait_dispatch(&self, task: TaskId, attempt: u32) -> NodeId {
        let find = |events: &[Event]| {
            events.iter().find_map(|e| match e {
                Event::TaskDispatched(d) if d.task_id == task && d.attempt == attempt => {
                    Some(d.node_id)
                }
                _ => None,
            })
        };
        self.wait_event(&format!("dispatch {attempt} of {task}"), STARTUP, |e| {
            find(std::slice::from_ref(e)).is_some()
        });
        find(&self.events()).unwrap()
    }

    /// Waits until the request is settled (a `ResultReturned` or a `RequestFailed`).
    fn wait_settled(&self, request: RequestId) {
        self.wait_event(&format!("the end of {request}"), STARTUP, |e| {
            matches!(e, Event::ResultReturned(r) if r.request_id == request)
                || matches!(e, Event::RequestFailed(f) if f.request_id == request)
        });
    }

    /// The released result opened as the client opens it, and the node it is credited to.
    fn released_result(&self, request: RequestId) -> (ResultBody, NodeId) {
        let status = self.status(request);
        let (bytes, node, poe) = self.open_result(request, &status);
        let body: ResultBody = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            body.canonical_bytes(),
            bytes,
            "{request}: not canonical bytes"
        );
        assert_eq!(
            poe,
            proof_of_execution(TaskId::whole(request), &bytes, node),
            "{request}: the released PoE does not commit to the released result"
        );
        (body, node)
    }

    /// Starts one node per entry of `faults`, in order, and submits one request, so that
    /// the request's dispatches go to them in that order: the primary, its replica, the
    /// tie-breaker. Each node but the last is stopped (SIGSTOP) once it has its session grant
    /// and continued only after the next one is in the pool: its dispatch is on the log while
    /// it cannot report, and when it reports, the next node is the only untried one of the
    /// class, yet already registered (so validation never runs short of a peer).
    fn in_order(&self, nodes: &[(&'static str, Option<&str>)]) -> (Vec<Member>, RequestId) {
        let mut members: Vec<Member> = Vec::new();
        let mut request = None;
        for (i, &(name, fault)) in nodes.iter().enumerate() {
            let member = self.member(name, fault);
            if i + 1 < nodes.len() {
                member.proc.signal("-STOP");
            }
            match members.last() {
                None => request = Some(self.funded_submit(PROMPT, MAX_TOKENS, DEADLINE_SECONDS)),
                Some(previous) => previous.proc.signal("-CONT"),
            }
            let task = TaskId::whole(request.unwrap());
            let to = self.wait_dispatch(task, i as u32);
            assert_eq!(to, member.id, "dispatch {i} of {task} went to {name}");
            members.push(member);
        }
        (members, request.unwrap())
    }
}

/// The request's validation as a list of lines, in log order: its dispatches, results,
/// commitments, sampling, verdict, flags, standing, pool removals and settlement, each node
/// by its name in `members`. Events of other nodes or requests are left out.
fn story(events: &[Event], request: RequestId, members: &[Member]) -> Vec<String> {
    let task = TaskId::whole(request);
    let name = |id: &NodeId| -> String {
        members
            .iter()
            .find(|m| m.id == *id)
            .map_or_else(|| format!("unknown node {id}"), |m| m.name.to_owned())
    };
    let names = |ids: &[NodeId]| ids.iter().map(name).collect::<Vec<_>>().join(",");
    let ours = |id: &NodeId| members.iter().any(|m| m.id == *id);
    events
        .iter()
        .filter_map(|e| match e {
            Event::TaskDispatched(d) if d.task_id == task => {
                Some(format!("TaskDispatched {} {}", d.attempt, name(&d.node_id)))
            }
            Event::ResultSubmitted(r) if r.task_id == task => Some(format!(
                "ResultSubmitted {} {}",
                r.attempt,
                name(&r.node_id)
            )),
            Event::CommitmentVerified(v) if v.task_id == task => Some(format!(
                "CommitmentVerified {} {}",
                v.attempt,
                name(&v.node_id)
            )),
            Event::CommitmentRejected(r) if r.task_id == task => Some(format!(
                "CommitmentRejected {} {}: {}",
                r.attempt,
                name(&r.node_id),
                r.reason
            )),
            Event::DeadlineExpired(d) if d.task_id == task => Some(format!(
                "DeadlineExpired {} {}",
                d.attempt,
                name(&d.node_id)
            )),
            Event::LateResultDiscarded(d) if d.task_id == task => Some(format!(
                "LateResultDiscarded {} {}",
                d.attempt,
                name(&d.node_id)
            )),
            Event::RedundancySampled(s) if s.task_id == task => Some(format!(
                "RedundancySampled primary {}",
                s.primary.as_ref().map_or("-".into(), name)
            )),
            Event::ValidationResolved(v) if v.task_id == task => Some(format!(
                "ValidationResolved {}",
                match &v.verdict {
                    Verdict::Accepted => "Accepted".to_owned(),
                    Verdict::Agreed { nodes } => format!("Agreed {}", names(nodes)),
                    Verdict::Majority {
                        winners,
                        dissenters,
                    } => format!(
                        "Majority winners {} dissenters {}",
                        names(winners),
                        names(dissenters)
                    ),
                    Verdict::NoMajority { parties } => format!("NoMajority {}", names(parties)),
                    Verdict::Unconfirmed { reason } => format!("Unconfirmed: {reason}"),
                }
            )),
            Event::NodeFlagged(f) if f.task_id == Some(task) || ours(&f.node_id) => {
                Some(format!("NodeFlagged {}", name(&f.node_id)))
            }
            Event::StandingChanged(s) if ours(&s.node_id) => Some(format!(
                "StandingChanged {} valid {} invalid {} disagreements {} standing {}",
                name(&s.node_id),
                s.valid,
                s.invalid,
                s.disagreements,
                s.standing_bp
            )),
            Event::NodeRemovedFromPool(r) if ours(&r.node_id) => {
                Some(format!("NodeRemovedFromPool {}", name(&r.node_id)))
            }
            Event::ResultReturned(r) if r.request_id == request => {
                Some(format!("ResultReturned {}", name(&r.node_id)))
            }
            Event::CreditsCharged(c) if c.request_id == request => {
                Some(format!("CreditsCharged {}", c.amount))
            }
            Event::CreditsRefunded(c) if c.request_id == request => {
                Some(format!("CreditsRefunded {}", c.amount))
            }
            Event::RequestFailed(f) if f.request_id == request => {
                Some(format!("RequestFailed: {}", f.reason))
            }
            _ => None,
        })
        .collect()
}

fn assert_story(events: &[Event], request: RequestId, members: &[Member], expected: &[&str]) {
    let got = story(events, request, members);
    assert_eq!(
        got,
        expected,
        "the log tells another story:\n{}",
        got.join("\n")
    );
}

/// What the request was priced at (the charge of a released result).
fn price(cluster: &Cluster, request: RequestId) -> u64 {
    cluster.status(request)["price"].as_u64().unwrap()
}

/// The `result_hash` each node's verified commitment recorded for `request`.
fn result_hashes(events: &[Event], request: RequestId) -> Vec<(NodeId, Hash32)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::CommitmentVerified(v) if v.task_id == TaskId::whole(request) => {
                Some((v.node_id, v.result_hash.expect("a result hash")))
            }
            _ => None,
        })
        .collect()
}

fn hash_of(body: &ResultBody) -> Hash32 {
    Hash32::of(&body.canonical_bytes())
}

/// The deadline of the replayed-signature test: its first dispatch can only expire, so a short
/// one keeps the test short; the tiny model answers in well under it.
const REFUSED_DEADLINE_SECONDS: u32 = 15;

#[test]
fn a_replayed_signature_is_refused_and_the_node_is_not_flagged() {
    let _serial = serial();
    // No sampling: the honest node's result is released as soon as it verifies.
    let cluster = Cluster::start(Some(0));
    // The faulty node alone first, so the dispatch is surely its; it is held (SIGSTOP) until
    // the honest node is in the pool, so the work has somewhere to go when it moves on.
    let mut replay = cluster.member("replay", Some("replay-signature"));
    replay.proc.signal("-STOP");
    let id = cluster.funded_submit(PROMPT, MAX_TOKENS, REFUSED_DEADLINE_SECONDS);
    let task = TaskId::whole(id);
    assert_eq!(cluster.wait_dispatch(task, 0), replay.id);
    let honest = cluster.member("honest", None);
    replay.proc.signal("-CONT");
    replay.proc.wait_line(
        &format!("FAULT DRILL replay-signature: the report of {task} attempt 0"),
        STARTUP,
    );
    // A signature that is not over this report proves nothing about who sent it: refused
    // before anything is recorded, so it cannot be held against the node it names.
    let refused = replay.proc.wait_line(
        &format!("the coordinator refused the report of {task} attempt 0"),
        STARTUP,
    );
    assert!(
        refused.contains("report_refused") && refused.contains("signature"),
        "{refused}"
    );
    // The node reported nothing that counts, so its dispatch expires and the work goes to
    // the honest node, which completes it.
    cluster.wait_settled(id);

    let members = [replay, honest];
    let charge = price(&cluster, id);
    let events = cluster.events();
    assert_story(
        &events,
        id,
        &members,
        &[
            "TaskDispatched 0 replay",
            // The miss is the node's own (it sent no report it signed), weighed as one.
            "DeadlineExpired 0 replay",
            "StandingChanged replay valid 0 invalid 0 disagreements 0 standing 5000",
            "TaskDispatched 1 honest",
            "ResultSubmitted 1 honest",
            "CommitmentVerified 1 honest",
            "ValidationResolved Accepted",
            "ResultReturned honest",
            &format!("CreditsCharged {charge}"),
        ],
    );
    // Nothing of the refused report is on the log: no result, no rejected commitment, no flag.
    let replay_id = members[0].id;
    let against: Vec<&str> = events
        .iter()
        .filter(|e| match e {
            Event::ResultSubmitted(r) => r.node_id == replay_id,
            Event::CommitmentRejected(c) => c.node_id == replay_id,
            Event::NodeFlagged(f) => f.node_id == replay_id,
            _ => false,
        })
        .map(Event::type_name)
        .collect();
    assert!(against.is_empty(), "held against the node: {against:?}");
    let (body, by) = cluster.released_result(id);
    assert_eq!(by, members[1].id);
    assert!(!body.text.contains(WRONG_RESULT_MARK), "{body:?}");
    assert_eq!(cluster.status(id)["status"], "completed");
}

#[test]
fn a_wrong_primary_is_outvoted_by_two_honest_replicas_flagged_and_removed() {
    let _serial = serial();
    let cluster = Cluster::start(Some(10_000));
    let (members, id) = cluster.in_order(&[
        ("wrong", Some("wrong-result")),
        ("honest-a", None),
        ("honest-b", None),
    ]);
    cluster.wait_settled(id);
    let events = cluster.events();
    let charge = price(&cluster, id);
    assert_story(
        &events,
        id,
        &members,
        &[
            "TaskDispatched 0 wrong",
            "ResultSubmitted 0 wrong",
            "CommitmentVerified 0 wrong",
            "RedundancySampled primary wrong",
            "TaskDispatched 1 honest-a",
            "ResultSubmitted 1 honest-a",
            "CommitmentVerified 1 honest-a",
            "TaskDispatched 2 honest-b",
            "ResultSubmitted 2 honest-b",
            "CommitmentVerified 2 honest-b",
            "ValidationResolved Majority winners honest-a,honest-b dissenters wrong",
            "NodeFlagged wrong",
            "StandingChanged honest-a valid 1 invalid 0 disagreements 0 standing 10000",
            "StandingChanged honest-b valid 1 invalid 0 disagreements 0 standing 10000",
            "StandingChanged wrong valid 0 invalid 1 disagreements 0 standing 2000",
            "NodeRemovedFromPool wrong",
            "ResultReturned honest-b",
            &format!("CreditsCharged {charge}"),
        ],
    );
    // The released result is the honest one, and the wrong node's was the drill's alteration.
    let (body, by) = cluster.released_result(id);
    assert_eq!(by, members[2].id);
    assert!(!body.text.contains(WRONG_RESULT_MARK), "{body:?}");
    let hashes = result_hashes(&events, id);
    let honest = hash_of(&body);
    assert_eq!(
        hashes,
        vec![
            (members[0].id, hash_of(&altered_result(&body, None))),
            (members[1].id, honest),
            (members[2].id, honest),
        ]
    );
    assert!(events.iter().any(|e| matches!(e,
        Event::ValidationResolved(v) if v.task_id == TaskId::whole(id)
            && v.result_hash == Some(honest))));
    let status = cluster.status(id);
    assert_eq!(
        (&status["status"], &status["charged"]),
        (&json!("completed"), &json!(charge))
    );
}

#[test]
fn a_replica_that_disagrees_with_an_honest_primary_is_outvoted_by_a_third_honest_node() {
    let _serial = serial();
    let cluster = Cluster::start(Some(10_000));
    let (members, id) = cluster.in_order(&[
        ("honest-a", None),
        ("wrong", Some("wrong-result-unique")),
        ("honest-b", None),
    ]);
    cluster.wait_settled(id);
    let events = cluster.events();
    let charge = price(&cluster, id);
    assert_story(
        &events,
        id,
        &members,
        &[
            "TaskDispatched 0 honest-a",
            "ResultSubmitted 0 honest-a",
            "CommitmentVerified 0 honest-a",
            "RedundancySampled primary honest-a",
            "TaskDispatched 1 wrong",
            "ResultSubmitted 1 wrong",
            "CommitmentVerified 1 wrong",
            "TaskDispatched 2 honest-b",
            "ResultSubmitted 2 honest-b",
            "CommitmentVerified 2 honest-b",
            "ValidationResolved Majority winners honest-a,honest-b dissenters wrong",
            "NodeFlagged wrong",
            "StandingChanged honest-a valid 1 invalid 0 disagreements 0 standing 10000",
            "StandingChanged honest-b valid 1 invalid 0 disagreements 0 standing 10000",
            "StandingChanged wrong valid 0 invalid 1 disagreements 0 standing 2000",
            "NodeRemovedFromPool wrong",
            "ResultReturned honest-b",
            &format!("CreditsCharged {charge}"),
        ],
    );
    let (body, _) = cluster.released_result(id);
    assert!(!body.text.contains(WRONG_RESULT_MARK), "{body:?}");
    let honest = hash_of(&body);
    assert_eq!(
        result_hashes(&events, id),
        vec![
            (members[0].id, honest),
            (
                members[1].id,
                hash_of(&altered_result(&body, Some(members[1].id)))
            ),
            (members[2].id, honest),
        ]
    );
    assert_eq!(cluster.status(id)["status"], "completed");
}

#[test]
fn three_different_results_have_no_majority_every_node_is_flagged_and_the_request_refunded() {
    let _serial = serial();
    let cluster = Cluster::start(Some(10_000));
    let (members, id) = cluster.in_order(&[
        ("unique-a", Some("wrong-result-unique")),
        ("unique-b", Some("wrong-result-unique")),
        ("unique-c", Some("wrong-result-unique")),
    ]);
    cluster.wait_settled(id);
    let events = cluster.events();
    let reserved = events
        .iter()
        .find_map(|e| match e {
            Event::CreditsReserved(r) if r.request_id == id => Some(r.amount),
            _ => None,
        })
        .expect("the request's reservation");
    let review = |n: &str| {
        // 1 / (1 + 1·1): flagged for review, standing 5000 bp, not under the floor.
        format!("StandingChanged {n} valid 0 invalid 0 disagreements 1 standing 5000")
    };
    assert_story(
        &events,
        id,
        &members,
        &[
            "TaskDispatched 0 unique-a",
            "ResultSubmitted 0 unique-a",
            "CommitmentVerified 0 unique-a",
            "RedundancySampled primary unique-a",
            "TaskDispatched 1 unique-b",
            "ResultSubmitted 1 unique-b",
            "CommitmentVerified 1 unique-b",
            "TaskDispatched 2 unique-c",
            "ResultSubmitted 2 unique-c",
            "CommitmentVerified 2 unique-c",
            "ValidationResolved NoMajority unique-a,unique-b,unique-c",
            "NodeFlagged unique-a",
            &review("unique-a"),
            "NodeFlagged unique-b",
            &review("unique-b"),
            "NodeFlagged unique-c",
            &review("unique-c"),
            "RequestFailed: three replicas returned three different results",
            &format!("CreditsRefunded {reserved}"),
        ],
    );
    let status = cluster.status(id);
    assert_eq!(status["status"], "failed");
    assert!(status.get("result").is_none(), "{status}");
    assert_eq!(status["charged"], 0, "{status}");
}

/// The other pair that disagrees with a third honest node: two colluding nodes (the same
/// wrong result) on either side of an honest replica. Majority voting decides for the pair,
/// so the honest node is the one outvoted, flagged and (fresh, one invalid) removed, and the
/// wrong result is released. This is the limit of sampled majority voting that the sabotage
/// simulation measures; the test records what the protocol does, so a change shows here.
#[test]
fn a_colluding_pair_outvotes_the_honest_replica_between_them() {
    let _serial = serial();
    let cluster = Cluster::start(Some(10_000));
    let (members, id) = cluster.in_order(&[
        ("colluder-a", Some("wrong-result")),
        ("honest", None),
        ("colluder-b", Some("wrong-result")),
    ]);
    cluster.wait_settled(id);
    let events = cluster.events();
    let charge = price(&cluster, id);
    assert_story(
        &events,
        id,
        &members,
        &[
            "TaskDispatched 0 colluder-a",
            "ResultSubmitted 0 colluder-a",
            "CommitmentVerified 0 colluder-a",
            "RedundancySampled primary colluder-a",
            "TaskDispatched 1 honest",
            "ResultSubmitted 1 honest",
            "CommitmentVerified 1 honest",
            "TaskDispatched 2 colluder-b",
            "ResultSubmitted 2 colluder-b",
            "CommitmentVerified 2 colluder-b",
            "ValidationResolved Majority winners colluder-a,colluder-b dissenters honest",
            "NodeFlagged honest",
            "StandingChanged colluder-a valid 1 invalid 0 disagreements 0 standing 10000",
            "StandingChanged colluder-b valid 1 invalid 0 disagreements 0 standing 10000",
            "StandingChanged honest valid 0 invalid 1 disagreements 0 standing 2000",
            "NodeRemovedFromPool honest",
            "ResultReturned colluder-b",
            &format!("CreditsCharged {charge}"),
        ],
    );
    let (body, _) = cluster.released_result(id);
    assert!(body.text.ends_with(WRONG_RESULT_MARK), "{body:?}");
    let hashes = result_hashes(&events, id);
    assert_eq!(hashes[0].1, hashes[2].1, "the colluders agree");
    assert_eq!(hashes[0].1, hash_of(&body));
    // The honest replica's result is the generation the drill altered.
    let mut honest = body.clone();
    honest.text = body
        .text
        .strip_suffix(&format!(" {WRONG_RESULT_MARK}"))
        .unwrap()
        .to_owned();
    *honest.token_ids.last_mut().unwrap() ^= 1;
    assert_eq!(altered_result(&honest, None), body);
    assert_eq!(hashes[1], (members[1].id, hash_of(&honest)));
}

#[test]
fn an_honest_pair_agrees_both_gain_standing_and_the_result_is_released() {
    let _serial = serial();
    let cluster = Cluster::start(Some(10_000));
    let (members, id) = cluster.in_order(&[("honest-a", None), ("honest-b", None)]);
    cluster.wait_settled(id);
    let events = cluster.events();
    let charge = price(&cluster, id);
    assert_story(
        &events,
        id,
        &members,
        &[
            "TaskDispatched 0 honest-a",
            "ResultSubmitted 0 honest-a",
            "CommitmentVerified 0 honest-a",
            "RedundancySampled primary honest-a",
            "TaskDispatched 1 honest-b",
            "ResultSubmitted 1 honest-b",
            "CommitmentVerified 1 honest-b",
            "ValidationResolved Agreed honest-a,honest-b",
            "StandingChanged honest-a valid 1 invalid 0 disagreements 0 standing 10000",
            "StandingChanged honest-b valid 1 invalid 0 disagreements 0 standing 10000",
            "ResultReturned honest-b",
            &format!("CreditsCharged {charge}"),
        ],
    );
    let (body, _) = cluster.released_result(id);
    assert!(!body.text.is_empty() && !body.text.contains(WRONG_RESULT_MARK));
    let honest = hash_of(&body);
    assert_eq!(
        result_hashes(&events, id),
        vec![(members[0].id, honest), (members[1].id, honest)]
    );
    let status = cluster.status(id);
    assert_eq!(
        (&status["status"], &status["charged"]),
        (&json!("completed"), &json!(charge))
    );
}
