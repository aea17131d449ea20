//! Fault drills (`prlx-node run --fault KIND`): each makes a report with exactly the defect it
//! claims and no other, checked the way the coordinator checks a report (signature over the
//! result statement, the sealed result opened with the session key, the PoE recomputed).
//!
//! The last test runs a real `prlx-coordinator serve` with a `--fault bad-poe` node and an
//! honest node, as `tests/daemon.rs` does (same prerequisites: `cargo build --workspace
//! --bins`, scripts/setup-models.sh; `PRLX_TEST_COORDINATOR_BIN=PATH` names another build).

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use chrono::Utc;
use prlx_events::crypto::{
    node_id_of, open_message, proof_of_execution, public_key_pem, result_statement, verify,
    Direction, SessionKey,
};
use prlx_events::log::{LogReader, LogUrl};
use prlx_events::protocol::{DispatchBody, ResultBody, ResultReport};
use prlx_events::{Envelope, Event, Hash32, NodeId, RequestId, TaskId};
use prlx_node::client::CoordinatorClient;
use prlx_node::fault::{
    altered_result, decoy_node, decoy_request, Fault, FaultDrill, WRONG_RESULT_MARK,
};
use prlx_node::registry::Registry;
use prlx_node::worker::{commit_result, Identity, Job};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::rand_core::OsRng;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// The reports, checked as the coordinator checks them.

fn new_key() -> RsaPrivateKey {
    // 2048 bits keeps the tests fast; a node makes 3072-bit keys itself.
    RsaPrivateKey::new(&mut OsRng, 2048).unwrap()
}

/// Two node identities, made once (key generation is the slow part of these tests).
fn identities() -> &'static [Identity; 2] {
    static IDS: OnceLock<[Identity; 2]> = OnceLock::new();
    IDS.get_or_init(|| {
        [new_key(), new_key()].map(|key| Identity {
            node: node_id_of(&key.to_public_key()),
            key,
        })
    })
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
        },
        deadline_at: Utc::now(),
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
    let decoy_statement = result_statement(other, TaskId::whole(other), me.node, 1, first.poe);
    assert!(verify(&public(me), &decoy_statement, &first.signature));
    // The second carries the signature the node made for the first task: valid there only.
    let first_statement = result_statement(
        first_job.task.request,
        first_job.task,
        me.node,
        first.attempt,
        first.poe,
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

// ---------------------------------------------------------------------------------------------
// The command line.

fn node_cmd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_prlx-node"));
    for var in [
        "PRLX_COORDINATOR",
        "PRLX_LOG",
        "PRLX_NODE_KEY",
        "PRLX_COORDINATOR_KEY",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn write_private(path: &Path, key: &RsaPrivateKey, mode: u32) {
    let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap();
    std::fs::write(path, pem.as_bytes()).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn the_fault_flag_is_documented_checked_and_loud() {
    let help = node_cmd().args(["run", "--help"]).output().unwrap();
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
    write_private(&key, &identities()[0].key, 0o644);
    let run = |extra: &[&str]| {
        let out = node_cmd()
            .args(["run", "--coordinator", "http://127.0.0.1:9"])
            .arg("--log")
            .arg(format!("file://{}", dir.path().join("log").display()))
            .arg("--key")
            .arg(&key)
            .args(["--models", "tiny-test-v1", "--tier", "1", "--slots", "1"])
            .args(["--stake", "1"])
            .args(extra)
            .output()
            .unwrap();
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

const TINY: &str = "tiny-test-v1";
const STARTUP: Duration = Duration::from_secs(90);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("node/ has a parent")
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

/// The built `prlx-coordinator` (see the module docs); fails, rather than skips, when it is
/// missing or older than its sources.
fn coordinator_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("PRLX_TEST_COORDINATOR_BIN") {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "$PRLX_TEST_COORDINATOR_BIN: {}",
            bin.display()
        );
        return bin;
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_prlx-node"))
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
            "{} is older than {src}: run `cargo build --workspace --bins` first",
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

/// A child process whose output lines are collected; killed when dropped.
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
        let streams: [Box<dyn std::io::Read + Send>; 2] = [
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        for stream in streams {
            let (tx, name) = (tx.clone(), name.to_owned());
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

    fn find(&mut self, needle: &str) -> Option<String> {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen.iter().find(|l| l.contains(needle)).cloned()
    }

    fn wait_line(&mut self, needle: &str, timeout: Duration) -> String {
        let until = Instant::now() + timeout;
        loop {
            if let Some(line) = self.find(needle) {
                return line;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
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
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

impl Cluster {
    fn start() -> Cluster {
        let bin = coordinator_bin();
        let sha = tiny_sha();
        let dir = tempfile::tempdir().unwrap();
        let log_dir = dir.path().join("log");
        let catalog = dir.path().join("catalog.json");
        let doc = json!({
            "models": [{
                "model": TINY, "sha256": sha, "min_tier": 1, "base_price": 10,
                "per_token_price": 1, "max_tokens_limit": 4096
            }],
            "max_tier": 5,
            "min_deadline_seconds": 5,
            "max_deadline_seconds": 3600,
            "max_attempts": 3,
        });
        std::fs::write(&catalog, doc.to_string()).unwrap();
        let signing = new_key();
        let signing_path = dir.path().join("coordinator-signing.pem");
        write_private(&signing_path, &signing, 0o600);
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
            .args(["--producer", "fault-test/1"]);
        let mut coordinator = Proc::spawn("coordinator", cmd);
        let line = coordinator.wait_line("listening on http://", STARTUP);
        let url = format!(
            "http://{}",
            line.trim().strip_prefix("listening on http://").unwrap()
        );
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

    /// Starts `prlx-node run` serving the tiny model, with `extra` arguments.
    fn node(&self, name: &str, extra: &[&str]) -> (Proc, NodeId) {
        let key = self.dir.path().join(format!("{name}.pem"));
        write_private(&key, &new_key(), 0o600);
        let mut cmd = node_cmd();
        cmd.arg("run")
            .args(["--coordinator", &self.url])
            .arg("--log")
            .arg(format!("file://{}", self.log_dir.display()))
            .arg("--key")
            .arg(&key)
            .args(["--models", TINY, "--tier", "1", "--slots", "1"])
            .args(["--stake", "1000", "--heartbeat-secs", "1"])
            .arg("--root")
            .arg(root())
            .arg("--coordinator-key")
            .arg(&self.coordinator_pub)
            .args(extra);
        let mut proc = Proc::spawn(name, cmd);
        let line = proc.wait_line("node_id ", STARTUP);
        let id = line
            .trim()
            .strip_prefix("node_id ")
            .unwrap()
            .parse()
            .unwrap();
        proc.wait_line("accepted the session grant for epoch", STARTUP);
        (proc, id)
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

    fn submit(&self, prompt: &str, max_tokens: u32, deadline_seconds: u32) -> RequestId {
        let (status, body) = self.call(
            "POST",
            "/v1/accounts/ai/deposits",
            Some(&json!({"tx_ref": "0xfault-test", "amount": 1_000_000})),
        );
        assert_eq!(status, 200, "{body}");
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

    fn events(&self) -> Vec<Event> {
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
                    out.push(Envelope::decode(&r.payload).unwrap().event);
                }
            }
        })
    }

    fn wait_event(&self, what: &str, timeout: Duration, pred: impl Fn(&Event) -> bool) {
        let until = Instant::now() + timeout;
        while !self.events().iter().any(&pred) {
            assert!(
                Instant::now() < until,
                "no {what} on the log in {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn a_bad_poe_node_is_flagged_and_an_honest_node_completes_the_request() {
    let cluster = Cluster::start();
    // The faulty node alone first, so the dispatch is surely its.
    let (mut faulty, faulty_id) = cluster.node("node-bad-poe", &["--fault", "bad-poe"]);
    assert!(faulty.find("WARNING: FAULT DRILL bad-poe").is_some());
    let id = cluster.submit("Hello, world", 20, 120);
    let task = TaskId::whole(id);
    faulty.wait_line(
        &format!("FAULT DRILL bad-poe: the report of {task} attempt 0"),
        STARTUP,
    );
    cluster.wait_event(
        "CommitmentRejected",
        STARTUP,
        |e| matches!(e, Event::CommitmentRejected(r) if r.task_id == task),
    );

    // The work goes back to the queue; the honest node that joins now completes it.
    let (_honest, honest_id) = cluster.node("node-honest", &[]);
    let until = Instant::now() + Duration::from_secs(120);
    let status = loop {
        let (code, body) = cluster.call("GET", &format!("/v1/requests/{}", id.0), None);
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
}
