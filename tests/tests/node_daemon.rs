//! `prlx-node run` against a real `prlx-coordinator serve`, each in its own process.
//!
//! Both binaries are other packages', which cargo does not build for this test: build them
//! first (`cargo build --workspace --bins`; scripts/test.sh does). The tests fail, rather than
//! skip, when one is missing or older than its sources, and when the models of
//! scripts/setup-models.sh are missing. `PRLX_TEST_COORDINATOR_BIN=PATH` runs them against
//! another coordinator build.
//!
//! Every key, the log and the catalog live in a temp dir per test. The tests run one at a
//! time (a lock): they measure deadlines on a machine with few cores.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use prlx_events::crypto::{open_with_private_key, proof_of_execution, public_key_pem};
use prlx_events::event::Verdict;
use prlx_events::log::{LogReader, LogUrl, Offset};
use prlx_events::protocol::ResultBody;
use prlx_events::{Envelope, Event, Hash32, NodeId, RequestId, TaskId};
use prlx_node::client::CoordinatorClient;
use prlx_node::registry::Registry;
use prlx_tests::harness::bins::workspace_bin;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::RsaPrivateKey;
use serde_json::{json, Value};

const TINY: &str = "tiny-test-v1";
/// Served by the third node of the first test and asked for by no request. In that test's
/// registry and catalog it names the tiny model's files, so no big model is loaded.
const UNASKED: &str = "oss-chat-v1";
const STARTUP: Duration = Duration::from_secs(90);

static SERIAL: Mutex<()> = Mutex::new(());

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

fn newest_mtime(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        let t = if meta.is_dir() {
            newest_mtime(&entry.path())
        } else {
            meta.modified().unwrap()
        };
        newest = newest.max(t);
    }
    newest
}

/// The built `prlx-coordinator`, next to this package's binary; `$PRLX_TEST_COORDINATOR_BIN`
/// names another build (checked only for existence).
fn coordinator_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("PRLX_TEST_COORDINATOR_BIN") {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "$PRLX_TEST_COORDINATOR_BIN: {} is missing",
            bin.display()
        );
        return bin;
    }
    let bin = workspace_bin("prlx-node")
        .parent()
        .unwrap()
        .join("prlx-coordinator");
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing: run `cargo build --workspace --bins` first (scripts/test.sh does)",
                bin.display()
            )
        });
    for src in ["commands/src", "projections/src", "events/src"] {
        assert!(
            newest_mtime(&root().join(src)) <= built,
            "{} is older than {src}: run `cargo build --workspace --bins` first \
             (scripts/test.sh does)",
            bin.display()
        );
    }
    bin
}

fn tiny_sha() -> String {
    let root = root();
    let registry = Registry::load(&root.join("node/models/registry.toml"), &root).unwrap();
    let entry = registry.get(TINY).unwrap();
    assert!(
        entry.path.is_file(),
        "{} is missing: run scripts/setup-models.sh",
        entry.path.display()
    );
    entry.sha256.clone()
}

fn new_key() -> RsaPrivateKey {
    // 2048 bits keeps the tests fast; a node makes 3072-bit keys itself.
    RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap()
}

fn write_private(path: &Path, key: &RsaPrivateKey) {
    let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap();
    std::fs::write(path, pem.as_bytes()).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Processes.

/// A child process whose stdout and stderr lines are collected; killed if the test fails.
struct Proc {
    name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for stream in [
            Box::new(out) as Box<dyn std::io::Read + Send>,
            Box::new(err) as Box<dyn std::io::Read + Send>,
        ] {
            let tx = tx.clone();
            let name = name.to_owned();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    eprintln!("[{name}] {line}");
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Proc {
            name: name.to_owned(),
            child,
            lines,
            seen: Vec::new(),
        }
    }

    fn pump(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    fn find(&mut self, needle: &str) -> Option<String> {
        self.pump();
        self.seen.iter().find(|l| l.contains(needle)).cloned()
    }

    fn wait_line(&mut self, needle: &str, timeout: Duration) -> String {
        let until = Instant::now() + timeout;
        loop {
            if let Some(line) = self.find(needle) {
                return line;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.pump();
                panic!("{} exited ({status}) before printing {needle:?}", self.name);
            }
            assert!(
                Instant::now() < until,
                "{} printed no {needle:?} within {timeout:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {signal} {}", self.name);
    }

    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let until = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader threads hand over the last lines.
                std::thread::sleep(Duration::from_millis(100));
                self.pump();
                return status;
            }
            assert!(
                Instant::now() < until,
                "{} still running {timeout:?} after the signal",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A coordinator on a fresh log, a client key and an HTTP client.
struct Cluster {
    dir: tempfile::TempDir,
    log_dir: PathBuf,
    coordinator_pub: PathBuf,
    _coordinator: Proc,
    url: String,
    client: CoordinatorClient,
    rt: tokio::runtime::Runtime,
    client_key: RsaPrivateKey,
}

struct Node {
    proc: Proc,
    id: NodeId,
    key: PathBuf,
}

impl Cluster {
    fn start(min_deadline_seconds: u32) -> Cluster {
        let bin = coordinator_bin();
        let sha = tiny_sha();
        let dir = tempfile::tempdir().unwrap();
        let log_dir = dir.path().join("log");
        let catalog = dir.path().join("catalog.json");
        let model = |name: &str| {
            json!({
                "model": name, "sha256": sha, "min_tier": 1, "base_price": 10,
                "per_token_price": 1, "max_tokens_limit": 4096
            })
        };
        let doc = json!({
            "models": [model(TINY), model(UNASKED)],
            "max_tier": 5,
            "min_deadline_seconds": min_deadline_seconds,
            "max_deadline_seconds": 3600,
            "max_attempts": 3,
        });
        std::fs::write(&catalog, doc.to_string()).unwrap();
        let signing = new_key();
        let signing_path = dir.path().join("coordinator-signing.pem");
        write_private(&signing_path, &signing);
        let coordinator_pub = dir.path().join("coordinator.pub.pem");
        std::fs::write(&coordinator_pub, public_key_pem(&signing.to_public_key())).unwrap();

        let mut cmd = Command::new(bin);
        for var in [
            "PRLX_LOG",
            "PRLX_LISTEN",
            "PRLX_KEY_FILE",
            "PRLX_CATALOG",
            "PRLX_PRODUCER",
            "PRLX_SIGNING_KEY",
        ] {
            cmd.env_remove(var);
        }
        cmd.arg("serve")
            .arg("--log")
            .arg(format!("file://{}", log_dir.display()))
            .args(["--listen", "127.0.0.1:0"])
            .arg("--key-file")
            .arg(dir.path().join("storage.key"))
            .arg("--signing-key")
            .arg(&signing_path)
            .arg("--catalog")
            .arg(&catalog)
            .args(["--producer", "node-test/1"]);
        let mut coordinator = Proc::spawn("coordinator", cmd);
        let line = coordinator.wait_line("listening on http://", STARTUP);
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap()
            .to_owned();
        let url = format!("http://{addr}");
        Cluster {
            client: CoordinatorClient::new(&url).unwrap(),
            url,
            dir,
            log_dir,
            coordinator_pub,
            _coordinator: coordinator,
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            client_key: new_key(),
        }
    }

    /// Starts `prlx-node run`. With `key: None` the node creates its own key.
    fn node(
        &self,
        name: &str,
        models: &str,
        key: Option<&RsaPrivateKey>,
        registry: Option<&Path>,
    ) -> Node {
        let key_path = self.dir.path().join(format!("{name}.pem"));
        if let Some(key) = key {
            write_private(&key_path, key);
        }
        self.run_node(name, models, &key_path, registry)
    }

    fn run_node(&self, name: &str, models: &str, key: &Path, registry: Option<&Path>) -> Node {
        let mut cmd = Command::new(workspace_bin("prlx-node"));
        for var in [
            "PRLX_COORDINATOR",
            "PRLX_LOG",
            "PRLX_NODE_KEY",
            "PRLX_COORDINATOR_KEY",
        ] {
            cmd.env_remove(var);
        }
        cmd.arg("run")
            .args(["--coordinator", &self.url])
            .arg("--log")
            .arg(format!("file://{}", self.log_dir.display()))
            .arg("--key")
            .arg(key)
            .args(["--models", models])
            .args(["--tier", "1", "--slots", "1", "--stake", "1000"])
            .args(["--heartbeat-secs", "1", "--drain-secs", "30"])
            .arg("--root")
            .arg(root())
            .arg("--coordinator-key")
            .arg(&self.coordinator_pub);
        if let Some(registry) = registry {
            cmd.arg("--registry").arg(registry);
        }
        let mut proc = Proc::spawn(name, cmd);
        let line = proc.wait_line("node_id ", STARTUP);
        let id: NodeId = line
            .trim()
            .strip_prefix("node_id ")
            .unwrap()
            .parse()
            .unwrap();
        Node {
            proc,
            id,
            key: key.to_owned(),
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let answer = self
            .rt
            .block_on(async {
                match (method, body) {
                    ("GET", _) => self.client.get(path).await,
                    (_, Some(body)) => self.client.post_json(path, body).await,
                    (_, None) => self.client.post_empty(path).await,
                }
            })
            .unwrap();
        (answer.status, answer.json())
    }

    fn deposit(&self, amount: u64) {
        let (status, body) = self.call(
            "POST",
            "/v1/accounts/ai/deposits",
            Some(&json!({"tx_ref": "0xnode-test", "amount": amount})),
        );
        assert_eq!(status, 200, "{body}");
    }

    fn submit(&self, prompt: &str, max_tokens: u32, deadline_seconds: u32) -> RequestId {
        let body = json!({
            "workload_class": "ai.inference",
            "model": TINY,
            "hardware_tier": 1,
            "priority": "standard",
            "deadline_seconds": deadline_seconds,
            "credit_account": "ai",
            "client_pubkey": public_key_pem(&self.client_key.to_public_key()),
            "prompt": prompt,
            "max_tokens": max_tokens,
            "payload_hash": Hash32::of(prompt.as_bytes()).to_hex(),
        });
        let (status, accepted) = self.call("POST", "/v1/requests", Some(&body));
        assert_eq!(status, 202, "{accepted}");
        RequestId(accepted["request_id"].as_u64().unwrap())
    }

    /// Polls the request until it has a result; returns the request's status body.
    fn wait_result(&self, id: RequestId, timeout: Duration) -> Value {
        let until = Instant::now() + timeout;
        loop {
            let (status, body) = self.call("GET", &format!("/v1/requests/{}", id.0), None);
            assert_eq!(status, 200, "{body}");
            if body.get("result").is_some() {
                return body;
            }
            assert_ne!(body["status"], "failed", "{id} failed: {body}");
            assert!(
                Instant::now() < until,
                "{id} has no result after {timeout:?}: {body}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Opens a returned result as the client: the canonical bytes, the node, the PoE.
    fn open_result(&self, id: RequestId, status: &Value) -> (Vec<u8>, NodeId, Hash32) {
        let result = &status["result"];
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(result["sealed_for_client"].as_str().unwrap())
            .unwrap();
        let bytes = open_with_private_key(&self.client_key, &id.0.to_be_bytes(), &sealed)
            .unwrap_or_else(|e| panic!("{id}: the result does not open for the client: {e}"));
        let node: NodeId = result["node_id"].as_str().unwrap().parse().unwrap();
        let poe: Hash32 = result["poe"].as_str().unwrap().parse().unwrap();
        (bytes, node, poe)
    }

    /// Every event on the log, with its offset.
    fn events(&self) -> Vec<(Offset, Event)> {
        let url = LogUrl::parse(&format!("file://{}", self.log_dir.display())).unwrap();
        let reader = url.open_reader().unwrap();
        self.rt.block_on(async {
            let mut out = Vec::new();
            let mut next = 0;
            loop {
                let records = reader.read(next, 1024).await.unwrap();
                if records.is_empty() {
                    return out;
                }
                for r in records {
                    next = r.offset + 1;
                    out.push((r.offset, Envelope::decode(&r.payload).unwrap().event));
                }
            }
        })
    }
}

/// A registry whose `oss-chat-v1` is the tiny model's files (paths relative to the root).
fn unasked_registry(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(root().join("node/models/registry.toml")).unwrap();
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
    let cluster = Cluster::start(5);
    let registry = unasked_registry(cluster.dir.path());
    // Node a makes its own 3072-bit key on first start; b and c are given theirs.
    let mut a = cluster.node("node-a", TINY, None, None);
    let b = cluster.node("node-b", TINY, Some(&new_key()), None);
    let mut c = cluster.node("node-c", UNASKED, Some(&new_key()), Some(&registry));
    let key_mode = std::fs::metadata(&a.key).unwrap().permissions().mode() & 0o777;
    assert_eq!(key_mode, 0o600, "a created node key is private");
    for node in [&mut a, &mut c] {
        node.proc
            .wait_line("accepted the session grant for epoch", STARTUP);
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

    let events = cluster.events();
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
    let mut again = cluster.run_node("node-a2", TINY, &key, None);
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
    let cluster = Cluster::start(1);
    let mut nodes = [
        cluster.node("node-a", TINY, Some(&new_key()), None),
        cluster.node("node-b", TINY, Some(&new_key()), None),
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
    nodes[victim].proc.child.kill().unwrap(); // SIGKILL, mid-generation
    nodes[victim].proc.child.wait().unwrap();

    let task = TaskId::whole(id);
    let until = Instant::now() + Duration::from_secs(30);
    while !cluster
        .events()
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

    let events = cluster.events();
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

#[test]
fn sigterm_mid_request_finishes_and_reports_it_then_exits_0() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let cluster = Cluster::start(5);
    // The only node: if it dropped the work, nobody else could answer.
    let mut node = cluster.node("node-a", TINY, Some(&new_key()), None);
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
    let out = Command::new(workspace_bin("prlx-node"))
        .env_remove("PRLX_NODE_KEY")
        .args(["run", "--coordinator", "http://127.0.0.1:9"])
        .arg("--log")
        .arg(format!("file://{}", dir.path().join("log").display()))
        .arg("--key")
        .arg(&key)
        .args([
            "--models", TINY, "--tier", "1", "--slots", "1", "--stake", "1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("chmod 600"), "{stderr}");
    assert!(!stderr.contains("PRIVATE KEY"), "{stderr}");
}
