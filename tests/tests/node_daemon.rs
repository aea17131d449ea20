//! `prlx-node run` against a real `prlx-coordinator serve`, each in its own process, through
//! the process kit ([`prlx_tests::harness`]: the binaries built by `cargo build --workspace
//! --bins`, the models of scripts/setup-models.sh; `PRLX_TEST_COORDINATOR_BIN=PATH` runs them
//! against another coordinator build).
//!
//! Every key, the log and the catalog live in a temp dir per test. The tests run one at a
//! time (a lock): they measure deadlines on a machine with few cores.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prlx_events::crypto::proof_of_execution;
use prlx_events::event::Verdict;
use prlx_events::log::Offset;
use prlx_events::protocol::ResultBody;
use prlx_events::{Event, NodeId, RequestId, TaskId};
use prlx_tests::harness::bins::workspace_root;
use prlx_tests::harness::cluster::FileCluster;
use prlx_tests::harness::keys::{new_key, write_private};
use prlx_tests::harness::launch::{node_run_to_exit, NodeLaunch, SESSION_GRANTED, STARTUP};
use prlx_tests::harness::models::{tiny_catalog, tiny_sha, TINY};
use prlx_tests::harness::process::Proc;
use rsa::RsaPrivateKey;

/// Served by the third node of the first test and asked for by no request. In that test's
/// registry and catalog it names the tiny model's files, so no big model is loaded.
const UNASKED: &str = "oss-chat-v1";

static SERIAL: Mutex<()> = Mutex::new(());

/// A coordinator on a fresh log whose catalog offers the tiny model as [`TINY`] and as
/// [`UNASKED`], with deadlines from `min_deadline_seconds`.
fn start_cluster(min_deadline_seconds: u32) -> FileCluster {
    FileCluster::start(
        &tiny_catalog(&[TINY, UNASKED], min_deadline_seconds),
        "node-test/1",
    )
}

struct Node {
    proc: Proc,
    id: NodeId,
    key: PathBuf,
}

/// Starts `prlx-node run`. With `key: None` the node creates its own key.
fn node(
    cluster: &FileCluster,
    name: &str,
    models: &str,
    key: Option<&RsaPrivateKey>,
    registry: Option<&Path>,
) -> Node {
    let key_path = cluster.dir.path().join(format!("{name}.pem"));
    if let Some(key) = key {
        write_private(&key_path, key);
    }
    run_node(cluster, name, models, &key_path, registry)
}

fn run_node(
    cluster: &FileCluster,
    name: &str,
    models: &str,
    key: &Path,
    registry: Option<&Path>,
) -> Node {
    let launch = NodeLaunch {
        models: models.to_owned(),
        registry: registry.map(Path::to_owned),
        drain_secs: Some(30),
        ..cluster.node_launch(key)
    };
    let (proc, id) = launch.spawn(name);
    Node {
        proc,
        id,
        key: key.to_owned(),
    }
}

/// A registry whose `oss-chat-v1` is the tiny model's files (paths relative to the root).
fn unasked_registry(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(workspace_root().join("node/models/registry.toml")).unwrap();
    let start = text
        .find(&format!("[models.{TINY}]"))
        .expect("the tiny model's section");
    let section = &text[start..];
    let end = section[1..].find("\n[").map_or(section.len(), |i| i + 1);
    let body = section[..end].replacen(
        &format!("[models.{TINY}]"),
        &format!("[models.{UNASKED}]"),
        1,
    );
    let path = dir.join("unasked-registry.toml");
    std::fs::write(&path, body).unwrap();
    path
}

fn dispatches(events: &[(Offset, Event)]) -> Vec<(Offset, TaskId, u32, NodeId)> {
    events
        .iter()
        .filter_map(|(o, e)| match e {
            Event::TaskDispatched(d) => Some((*o, d.task_id, d.attempt, d.node_id)),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------

#[test]
fn two_tiny_nodes_share_the_work_and_a_node_serving_another_model_gets_none() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let cluster = start_cluster(5);
    let registry = unasked_registry(cluster.dir.path());
    // Node a makes its own 3072-bit key on first start; b and c are given theirs.
    let mut a = node(&cluster, "node-a", TINY, None, None);
    let b = node(&cluster, "node-b", TINY, Some(&new_key()), None);
    let mut c = node(
        &cluster,
        "node-c",
        UNASKED,
        Some(&new_key()),
        Some(&registry),
    );
    let key_mode = std::fs::metadata(&a.key).unwrap().permissions().mode() & 0o777;
    assert_eq!(key_mode, 0o600, "a created node key is private");
    for node in [&mut a, &mut c] {
        node.proc.wait_line(SESSION_GRANTED, STARTUP);
    }
    // Both tiny nodes up (a signed node takes work only after its first heartbeat), so the
    // work can spread over them.
    for node in [&a, &b] {
        let id = node.id;
        cluster.wait_event(
            "a tiny node's first heartbeat",
            STARTUP,
            |e| matches!(e, Event::NodeHeartbeat(h) if h.node_id == id),
        );
    }

    cluster.deposit(10_000_000);
    let prompts = [
        "Hello, world",
        "The quick brown fox",
        "abc",
        "Hello, world",
        "The quick brown fox",
        "abc",
    ];
    let started = Instant::now();
    let ids: Vec<RequestId> = prompts.iter().map(|p| cluster.submit(p, 200, 30)).collect();
    let mut by_prompt: BTreeMap<&str, BTreeSet<Vec<u8>>> = BTreeMap::new();
    let mut served_by = BTreeMap::new();
    for (id, prompt) in ids.iter().zip(prompts) {
        let status = cluster.wait_result(*id, Duration::from_secs(120));
        let (bytes, node, poe) = cluster.open_result(*id, &status);
        let body: ResultBody = serde_json::from_slice(&bytes).unwrap();
        assert!(!body.text.is_empty(), "{id}: empty text");
        assert_eq!(body.canonical_bytes(), bytes, "{id}: not canonical bytes");
        assert_eq!(body.model_sha256.to_hex(), tiny_sha());
        assert_eq!(body.decoding, "greedy");
        assert_eq!(
            poe,
            proof_of_execution(TaskId::whole(*id), &bytes, node),
            "{id}: the PoE does not commit to the result"
        );
        by_prompt.entry(prompt).or_default().insert(bytes);
        *served_by.entry(node).or_insert(0) += 1;
    }
    eprintln!(
        "6 requests served in {:?}: {served_by:?}",
        started.elapsed()
    );
    for (prompt, results) in &by_prompt {
        assert_eq!(
            results.len(),
            1,
            "{prompt:?}: identical prompts gave different bytes"
        );
    }
    assert_eq!(by_prompt.len(), 3, "different prompts gave the same bytes");
    assert_eq!(
        served_by.keys().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([a.id, b.id]),
        "the work did not spread over both tiny nodes"
    );

    let events = cluster.events_with_offsets();
    let sent = dispatches(&events);
    assert!(
        sent.iter().all(|(_, _, _, node)| *node != c.id),
        "the node serving only {UNASKED} got a dispatch: {sent:?}"
    );
    assert!(c.proc.find("running ").is_none());
    // Each request ran once, or twice when the draw sampled it for a replica (10% by
    // default): the replica went to the other tiny node and agreed. None late.
    let mut results = BTreeMap::new();
    let mut sampled = BTreeSet::new();
    for (_, e) in &events {
        match e {
            Event::ResultSubmitted(r) => *results.entry(r.task_id).or_insert(0) += 1,
            Event::RedundancySampled(r) => {
                sampled.insert(r.task_id);
            }
            Event::ValidationResolved(v) if sampled.contains(&v.task_id) => assert!(
                matches!(v.verdict, Verdict::Agreed { .. }),
                "honest replicas of one class disagree: {v:?}"
            ),
            Event::LateResultDiscarded(l) => panic!("late result {l:?}"),
            _ => {}
        }
    }
    assert_eq!(results.len(), 6);
    assert!(
        results
            .iter()
            .all(|(t, &n)| n == 1 + usize::from(sampled.contains(t))),
        "{results:?}, sampled {sampled:?}"
    );

    // A restart with the same key reads the log from 0 and finds nothing left to run.
    a.proc.signal("-TERM");
    assert_eq!(a.proc.wait_exit(Duration::from_secs(30)).code(), Some(0));
    let key = a.key.clone();
    drop(a);
    let mut again = run_node(&cluster, "node-a2", TINY, &key, None);
    let caught_up = again.proc.wait_line("caught up with the log", STARTUP);
    assert!(
        caught_up.contains("0 dispatch(es) open for this node, 0 to run"),
        "{caught_up}"
    );
    assert!(again.proc.find("loaded node key").is_some(), "key reused");
    std::thread::sleep(Duration::from_millis(500));
    assert!(again.proc.find("running ").is_none(), "reran finished work");
    drop(b);
}

#[test]
fn a_killed_node_s_dispatch_is_redispatched_after_its_deadline() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let cluster = start_cluster(1);
    let mut nodes = [
        node(&cluster, "node-a", TINY, Some(&new_key()), None),
        node(&cluster, "node-b", TINY, Some(&new_key()), None),
    ];
    cluster.deposit(1_000_000);
    // "abc" generates to max_tokens without an EOS: about a second of work on one core,
    // well inside the 5 s deadline for the node that gets it second.
    let started = Instant::now();
    let id = cluster.submit("abc", 3000, 5);
    let running = format!("running {} attempt 0", TaskId::whole(id));
    let until = Instant::now() + Duration::from_secs(60);
    let victim = loop {
        if let Some(i) = nodes
            .iter_mut()
            .position(|n| n.proc.find(&running).is_some())
        {
            break i;
        }
        assert!(Instant::now() < until, "no node started {id}");
        std::thread::sleep(Duration::from_millis(5));
    };
    let victim_id = nodes[victim].id;
    let survivor_id = nodes[1 - victim].id;
    nodes[victim].proc.kill(); // SIGKILL, mid-generation

    let task = TaskId::whole(id);
    let until = Instant::now() + Duration::from_secs(30);
    while !cluster
        .events_with_offsets()
        .iter()
        .any(|(_, e)| matches!(e, Event::DeadlineExpired(d) if d.task_id == task))
    {
        assert!(
            Instant::now() < until,
            "the coordinator recorded no DeadlineExpired for {task} within 30 s of the kill (5 s \
             deadline): its timer service did not fire"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = cluster.wait_result(id, Duration::from_secs(60));
    eprintln!("completed after a kill in {:?}", started.elapsed());
    let (bytes, node, poe) = cluster.open_result(id, &status);
    assert_eq!(node, survivor_id, "the result came from the survivor");
    assert_eq!(poe, proof_of_execution(TaskId::whole(id), &bytes, node));
    assert_eq!(status["attempts"], 2, "{status}");

    let events = cluster.events_with_offsets();
    let expired = events
        .iter()
        .find_map(|(o, e)| match e {
            Event::DeadlineExpired(d) if d.task_id == task => Some((*o, d.attempt, d.node_id)),
            _ => None,
        })
        .expect("a DeadlineExpired for the killed node's attempt");
    assert_eq!((expired.1, expired.2), (0, victim_id));
    let scheduled: Vec<(Offset, u32, NodeId)> = events
        .iter()
        .filter_map(|(o, e)| match e {
            Event::RequestScheduled(s) if s.task_id == task => Some((*o, s.attempt, s.node_id)),
            _ => None,
        })
        .collect();
    assert_eq!(scheduled.len(), 2, "{scheduled:?}");
    assert_eq!((scheduled[0].1, scheduled[0].2), (0, victim_id));
    assert_eq!((scheduled[1].1, scheduled[1].2), (1, survivor_id));
    assert!(
        scheduled[0].0 < expired.0 && expired.0 < scheduled[1].0,
        "expected dispatch, DeadlineExpired, re-dispatch in log order: {scheduled:?} {expired:?}"
    );
}

/// The coordinator dies (SIGKILL) while a node runs its request, stays down until the node
/// has failed to report, and comes back on the same log and address: the node's report,
/// retried meanwhile, is taken by the restarted coordinator, and the request ends once, from
/// its first dispatch, charged once.
#[test]
fn a_coordinator_killed_mid_task_takes_the_result_after_its_restart() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut cluster = start_cluster(5);
    let mut a = node(&cluster, "node-a", TINY, Some(&new_key()), None);
    cluster.deposit(1_000_000);
    // As above: generates to max_tokens, long enough to be killed under; a deadline far
    // beyond the restart, so nothing is re-dispatched.
    let id = cluster.submit("abc", 3000, 120);
    let task = TaskId::whole(id);
    a.proc.wait_line(
        &format!("running {task} attempt 0"),
        Duration::from_secs(60),
    );
    cluster.kill_coordinator();
    assert!(
        !cluster
            .events()
            .iter()
            .any(|e| matches!(e, Event::ResultSubmitted(r) if r.task_id == task)),
        "the result was recorded before the kill: nothing was in flight"
    );
    a.proc.wait_line(
        &format!("reporting {task} attempt 0 failed"),
        Duration::from_secs(60),
    );
    cluster.start_coordinator();

    let status = cluster.wait_result(id, Duration::from_secs(90));
    let (bytes, node, poe) = cluster.open_result(id, &status);
    assert_eq!(node, a.id);
    assert_eq!(poe, proof_of_execution(task, &bytes, node));
    assert_eq!(status["attempts"], 1, "{status}");

    // The only request of the log: every count is its own.
    let events = cluster.events();
    let count = |what: fn(&Event) -> bool| events.iter().filter(|e| what(e)).count();
    assert_eq!(count(|e| matches!(e, Event::TaskDispatched(_))), 1);
    assert_eq!(count(|e| matches!(e, Event::ResultSubmitted(_))), 1);
    assert_eq!(count(|e| matches!(e, Event::ResultReturned(_))), 1);
    assert_eq!(count(|e| matches!(e, Event::DeadlineExpired(_))), 0);
    let charged: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::CreditsCharged(c) if c.request_id == id => Some(c.amount),
            _ => None,
        })
        .collect();
    assert_eq!(charged.len(), 1, "charged once: {charged:?}");
}

#[test]
fn sigterm_mid_request_finishes_and_reports_it_then_exits_0() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let cluster = start_cluster(5);
    // The only node: if it dropped the work, nobody else could answer.
    let mut node = node(&cluster, "node-a", TINY, Some(&new_key()), None);
    cluster.deposit(1_000_000);
    let id = cluster.submit("abc", 3000, 30);
    let task = TaskId::whole(id);
    node.proc
        .wait_line(&format!("running {task} attempt 0"), STARTUP);
    let signalled = Instant::now();
    node.proc.signal("-TERM");
    let exit = node.proc.wait_exit(Duration::from_secs(40));
    eprintln!("exited {:?} after SIGTERM", signalled.elapsed());
    assert_eq!(exit.code(), Some(0), "{exit:?}");
    assert!(node.proc.find("shutting down").is_some());
    assert!(
        node.proc
            .find(&format!("reported {task} attempt 0: recorded"))
            .is_some(),
        "the running request was reported before exit"
    );
    let status = cluster.wait_result(id, Duration::from_secs(5));
    let (bytes, by, poe) = cluster.open_result(id, &status);
    assert_eq!(by, node.id);
    assert_eq!(poe, proof_of_execution(task, &bytes, by));
    assert_eq!(status["attempts"], 1);
}

#[test]
fn a_node_key_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("node.pem");
    write_private(&key, &new_key());
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = node_run_to_exit(dir.path(), &key, &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("chmod 600"), "{stderr}");
    assert!(!stderr.contains("PRIVATE KEY"), "{stderr}");
}
