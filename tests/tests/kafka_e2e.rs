//! The protocol end to end on a real Apache Kafka broker, as real processes: `prlx-coordinator
//! serve` on a `kafka://` log, two `prlx-node run` on the tiny model each reading its own
//! feed (`--node-feed-topic`; checked against the log record by record), requests over HTTP
//! whose results the client opens, and `prlx-replay verify` on the log.
//! Then the faults: the active coordinator SIGKILLed with a standby beside it, and the broker
//! restarted mid-run. Each time: every accepted request appears once, gets exactly one
//! answer, and the auditor agrees with the log.
//!
//! The broker comes from `PRLX_KAFKA_BOOTSTRAP` (`scripts/test.sh` starts one with
//! `scripts/kafka.sh start` and sets it). Without it every case says it was skipped and
//! returns. The broker-restart case restarts the broker with `scripts/kafka.sh`, so it also
//! says it was skipped when the broker is not the one that script runs.
//!
//! The binaries are other packages': build them first (`cargo build --workspace --bins`;
//! scripts/test.sh does), which also builds them with the Kafka backend. The cases fail,
//! rather than skip, when one is missing or older than its sources, and when the tiny model
//! of scripts/setup-models.sh is missing.
//!
//! Clients reach the coordinators through a small TCP front in this file that forwards each
//! connection to whichever instance answers `GET /healthz` with 200: what a load balancer's
//! health check does in a deployment (docs/adr/04-kafka-failover.md).
#![cfg(feature = "kafka")]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use prlx_events::crypto::{open_with_private_key, proof_of_execution, public_key_pem};
use prlx_events::event::Sealed;
use prlx_events::log::{LogReader, LogUrl, Offset};
use prlx_events::protocol::ResultBody;
use prlx_events::{Envelope, Event, Hash32, NodeId, RequestId, TaskId};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::RsaPrivateKey;
use serde_json::{json, Value};

const TINY: &str = "tiny-test-v1";
const STARTUP: Duration = Duration::from_secs(120);

/// One case at a time: they start several processes each on a small machine, and one
/// restarts the broker under the others.
static SERIAL: Mutex<()> = Mutex::new(());

fn bootstrap() -> Option<String> {
    prlx_tests::kafka::bootstrap()
}

fn fresh_topic(tag: &str) -> String {
    prlx_tests::kafka::fresh_topic("e2e", tag)
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The newest modification time of the sources under `dir`; of the files in a `bin/`
/// folder only `binary`'s own counts (another binary's changes do not rebuild this one).
fn newest_source(dir: &Path, binary: &str) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    let in_bin = dir.file_name().is_some_and(|n| n == "bin");
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if in_bin && p.file_stem().is_some_and(|s| s != binary) {
            continue;
        }
        let t = if p.is_dir() {
            newest_source(&p, binary)
        } else {
            std::fs::metadata(&p).unwrap().modified().unwrap()
        };
        newest = newest.max(t);
    }
    newest
}

/// A binary of this workspace, built before the tests run; a stale one is refused.
fn bin(name: &str) -> PathBuf {
    let dir = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_owned();
    let path = dir.join(name);
    let hint = "run `cargo build --workspace --bins` first (scripts/test.sh does)";
    let built = std::fs::metadata(&path)
        .unwrap_or_else(|_| panic!("{} is missing: {hint}", path.display()))
        .modified()
        .unwrap();
    let crates: &[&str] = match name {
        "prlx-coordinator" => &["events", "projections", "commands"],
        "prlx-node" => &["events", "node"],
        _ => &["events", "projections", "replay"],
    };
    for krate in crates {
        assert!(
            newest_source(&root().join(krate).join("src"), name) <= built,
            "{} is older than the sources of {krate}: {hint}",
            path.display()
        );
    }
    path
}

/// The tiny model's SHA-256 from the registry, after checking its file is there.
fn tiny_sha() -> String {
    let registry = std::fs::read_to_string(root().join("node/models/registry.toml")).unwrap();
    let section = &registry[registry
        .find(&format!("[models.{TINY}]"))
        .expect("the tiny model's section")..];
    let field = |name: &str| -> String {
        let line = section
            .lines()
            .find(|l| l.starts_with(&format!("{name} =")))
            .unwrap_or_else(|| panic!("{TINY} has no {name}"));
        line.split('"').nth(1).unwrap().to_owned()
    };
    let path = root().join(field("path"));
    assert!(
        path.is_file(),
        "{} is missing: run scripts/setup-models.sh",
        path.display()
    );
    field("sha256")
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
            Box::new(out) as Box<dyn Read + Send>,
            Box::new(err) as Box<dyn Read + Send>,
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

    fn count(&mut self, needle: &str) -> usize {
        self.pump();
        self.seen.iter().filter(|l| l.contains(needle)).count()
    }

    fn wait_line(&mut self, needle: &str, timeout: Duration) -> String {
        let until = Instant::now() + timeout;
        loop {
            if let Some(line) = self.find(needle) {
                return line;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                self.pump();
                panic!(
                    "{} exited ({status}) before printing {needle:?}:\n{}",
                    self.name,
                    self.seen.join("\n")
                );
            }
            assert!(
                Instant::now() < until,
                "{} printed no {needle:?} within {timeout:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
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

// ---------------------------------------------------------------------------------------------
// The front: a TCP forwarder to the healthy coordinator, like a load balancer.

/// The status code of `GET /healthz` at `addr`, or `None` when it does not answer.
fn health(addr: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

struct Front {
    addr: String,
    backends: Arc<Mutex<Vec<String>>>,
    active: Arc<Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
}

impl Front {
    fn start() -> Front {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let backends = Arc::new(Mutex::new(Vec::<String>::new()));
        let active = Arc::new(Mutex::new(None::<String>));
        let stop = Arc::new(AtomicBool::new(false));
        {
            // Health checks every 100 ms; the first backend that answers 200 gets the traffic.
            let (backends, active, stop) = (backends.clone(), active.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let list = backends.lock().unwrap().clone();
                    let healthy = list.into_iter().find(|b| health(b) == Some(200));
                    *active.lock().unwrap() = healthy;
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
        }
        {
            let (active, stop) = (active.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(client) = conn else { continue };
                    let active = active.clone();
                    std::thread::spawn(move || forward(client, &active));
                }
            });
        }
        Front {
            addr,
            backends,
            active,
            stop,
        }
    }

    fn add(&self, backend: &str) {
        self.backends.lock().unwrap().push(backend.to_owned());
    }

    fn active(&self) -> Option<String> {
        self.active.lock().unwrap().clone()
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(&self.addr);
    }
}

/// Pipes one client connection to the active backend (waiting up to 30 s for one).
fn forward(client: TcpStream, active: &Mutex<Option<String>>) {
    let until = Instant::now() + Duration::from_secs(30);
    let backend = loop {
        if let Some(b) = active.lock().unwrap().clone() {
            if let Ok(s) = TcpStream::connect(&b) {
                break s;
            }
        }
        if Instant::now() > until {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let pipe = |mut from: TcpStream, mut to: TcpStream| {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Write);
            let _ = from.shutdown(Shutdown::Read);
        })
    };
    let up = pipe(client.try_clone().unwrap(), backend.try_clone().unwrap());
    let down = pipe(backend, client);
    let _ = up.join();
    let _ = down.join();
}

// ---------------------------------------------------------------------------------------------
// A cluster on one Kafka log.

struct Cluster {
    dir: tempfile::TempDir,
    bootstrap: String,
    log: String,
    /// The per-node feed template the coordinators write and the nodes read, when on.
    feeds: Option<String>,
    catalog: PathBuf,
    signing: PathBuf,
    coordinator_pub: PathBuf,
    front: Front,
    rt: tokio::runtime::Runtime,
    client_key: RsaPrivateKey,
}

impl Cluster {
    fn new(bootstrap: &str, tag: &str) -> Cluster {
        let sha = tiny_sha();
        let dir = tempfile::tempdir().unwrap();
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
        let signing_key = new_key();
        let signing = dir.path().join("coordinator-signing.pem");
        write_private(&signing, &signing_key);
        let coordinator_pub = dir.path().join("coordinator.pub.pem");
        std::fs::write(
            &coordinator_pub,
            public_key_pem(&signing_key.to_public_key()),
        )
        .unwrap();
        Cluster {
            bootstrap: bootstrap.to_owned(),
            log: format!("kafka://{bootstrap}/{}", fresh_topic(tag)),
            feeds: None,
            dir,
            catalog,
            signing,
            coordinator_pub,
            front: Front::start(),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            client_key: new_key(),
        }
    }

    /// The same cluster with per-node feeds: coordinators copy each node's events to a topic
    /// of its own, and nodes read that instead of the log.
    fn with_feeds(mut self) -> Cluster {
        self.feeds = Some(format!("{}.{{node}}", fresh_topic("feed")));
        self
    }

    /// Starts `prlx-coordinator serve` on the log; every instance shares the storage and
    /// signing keys (a standby must open what the active one sealed). Returns once it
    /// listens, with its address added to the front.
    fn coordinator(&self, name: &str) -> (Proc, String) {
        let mut cmd = Command::new(bin("prlx-coordinator"));
        for var in [
            "PRLX_LOG",
            "PRLX_LISTEN",
            "PRLX_KEY_FILE",
            "PRLX_CATALOG",
            "PRLX_PRODUCER",
            "PRLX_SIGNING_KEY",
            "PRLX_REWARD_POLICY",
            "PRLX_REWARD_MODE",
            "PRLX_LEASE_SESSION_MS",
            "PRLX_NODE_FEED_TOPIC",
        ] {
            cmd.env_remove(var);
        }
        cmd.arg("serve")
            .args(["--log", &self.log])
            .args(["--listen", "127.0.0.1:0"])
            .arg("--key-file")
            .arg(self.dir.path().join("storage.key"))
            .arg("--signing-key")
            .arg(&self.signing)
            .arg("--catalog")
            .arg(&self.catalog)
            .args(["--producer", &format!("coordinator/{name}")]);
        if let Some(template) = &self.feeds {
            cmd.args(["--node-feed-topic", template]);
        }
        let mut proc = Proc::spawn(name, cmd);
        let line = proc.wait_line("listening on http://", STARTUP);
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap()
            .to_owned();
        self.front.add(&addr);
        (proc, addr)
    }

    /// Starts `prlx-node run` on the tiny model, reaching the coordinator through the front
    /// and reading the Kafka log; returns once it has its session grant.
    fn node(&self, name: &str) -> (Proc, NodeId) {
        let key = self.dir.path().join(format!("{name}.pem"));
        write_private(&key, &new_key());
        let mut cmd = Command::new(bin("prlx-node"));
        for var in [
            "PRLX_COORDINATOR",
            "PRLX_LOG",
            "PRLX_NODE_KEY",
            "PRLX_COORDINATOR_KEY",
        ] {
            cmd.env_remove(var);
        }
        let follow = match &self.feeds {
            Some(template) => format!("kafka://{}/{template}", self.bootstrap),
            None => self.log.clone(),
        };
        cmd.arg("run")
            .args(["--coordinator", &format!("http://{}", self.front.addr)])
            .args(["--log", &follow])
            .arg("--key")
            .arg(&key)
            .args(["--models", TINY])
            .args(["--tier", "1", "--slots", "1", "--stake", "1000"])
            .args(["--heartbeat-secs", "1", "--drain-secs", "30"])
            .arg("--root")
            .arg(root())
            .arg("--coordinator-key")
            .arg(&self.coordinator_pub);
        let mut proc = Proc::spawn(name, cmd);
        let line = proc.wait_line("node_id ", STARTUP);
        let id: NodeId = line
            .trim()
            .strip_prefix("node_id ")
            .unwrap()
            .parse()
            .unwrap();
        proc.wait_line("accepted the session grant for epoch", STARTUP);
        (proc, id)
    }

    /// One exchange through the front; `None` when it did not answer in time.
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> Option<(u16, Value)> {
        self.rt.block_on(async {
            let exchange =
                prlx_commands::client::request(&self.front.addr, method, path, body, key);
            match tokio::time::timeout(Duration::from_secs(20), exchange).await {
                Ok(Ok(answer)) => Some(answer),
                _ => None,
            }
        })
    }

    /// Calls until the answer is not a 5xx nor missing (a coordinator away, a failover),
    /// as a client with a retry policy does; the retries carry the same Idempotency-Key.
    fn call_until_answered(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> (u16, Value) {
        let until = Instant::now() + Duration::from_secs(120);
        loop {
            match self.call(method, path, body, key) {
                Some((status, body)) if status < 500 => return (status, body),
                _ => {}
            }
            assert!(
                Instant::now() < until,
                "{method} {path}: no answer in 120 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn deposit(&self, amount: u64) {
        let (status, body) = self.call_until_answered(
            "POST",
            "/v1/accounts/ai/deposits",
            Some(&json!({"tx_ref": "0xkafka-e2e", "amount": amount})),
            None,
        );
        assert_eq!(status, 200, "{body}");
    }

    /// Submits with `key` as the Idempotency-Key until accepted; the request id.
    fn submit(&self, key: &str, prompt: &str, max_tokens: u32) -> RequestId {
        let body = json!({
            "workload_class": "ai.inference",
            "model": TINY,
            "hardware_tier": 1,
            "priority": "standard",
            "deadline_seconds": 60,
            "credit_account": "ai",
            "client_pubkey": public_key_pem(&self.client_key.to_public_key()),
            "prompt": prompt,
            "max_tokens": max_tokens,
            "payload_hash": Hash32::of(prompt.as_bytes()).to_hex(),
        });
        let (status, accepted) =
            self.call_until_answered("POST", "/v1/requests", Some(&body), Some(key));
        assert!(status == 202 || status == 200, "{status} {accepted}");
        RequestId(accepted["request_id"].as_u64().unwrap())
    }

    /// Polls the request until it has a result; returns the request's status body.
    fn wait_result(&self, id: RequestId, timeout: Duration) -> Value {
        let until = Instant::now() + timeout;
        loop {
            let (status, body) =
                self.call_until_answered("GET", &format!("/v1/requests/{}", id.0), None, None);
            assert_eq!(status, 200, "{body}");
            if body.get("result").is_some() {
                return body;
            }
            assert_ne!(body["status"], "failed", "{id} failed: {body}");
            assert!(
                Instant::now() < until,
                "{id} has no result after {timeout:?}: {body}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Opens a returned result as the client and checks it: its text, model and PoE.
    fn check_result(&self, id: RequestId, status: &Value) -> (Vec<u8>, NodeId) {
        let result = &status["result"];
        let sealed: Sealed = serde_json::from_value(result["sealed_for_client"].clone()).unwrap();
        let bytes = open_with_private_key(&self.client_key, &id.0.to_be_bytes(), &sealed.0)
            .unwrap_or_else(|e| panic!("{id}: the result does not open for the client: {e}"));
        let node: NodeId = result["node_id"].as_str().unwrap().parse().unwrap();
        let poe: Hash32 = result["poe"].as_str().unwrap().parse().unwrap();
        let body: ResultBody = serde_json::from_slice(&bytes).unwrap();
        assert!(!body.text.is_empty(), "{id}: empty text");
        assert_eq!(body.model_sha256.to_hex(), tiny_sha());
        assert_eq!(
            poe,
            proof_of_execution(TaskId::whole(id), &bytes, node),
            "{id}: the PoE does not commit to the result"
        );
        (bytes, node)
    }

    /// Every event on the log, with its offset and producer.
    fn events(&self) -> Vec<(Offset, String, Event)> {
        self.records(&self.log)
            .into_iter()
            .map(|(offset, payload)| {
                let env = Envelope::decode(&payload).unwrap();
                (offset, env.header.producer.clone(), env.event)
            })
            .collect()
    }

    /// Every record of the log at `url` (committed), with its offset.
    fn records(&self, url: &str) -> Vec<(Offset, Vec<u8>)> {
        let reader = LogUrl::parse(url).unwrap().open_reader().unwrap();
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
                    out.push((r.offset, r.payload));
                }
            }
        })
    }

    /// Checks each node's feed against the log: every record is one of the log's, byte for
    /// byte and in the log's order; it starts with the key and catalog; it holds every event
    /// the log addresses to that node and nothing addressed to another. Returns how many
    /// records each feed holds.
    fn feeds_hold_what_each_node_needs_and_nothing_else(&self, nodes: &[NodeId]) -> Vec<usize> {
        let template = self.feeds.as_ref().expect("a cluster with feeds");
        let log = self.records(&self.log);
        let position: BTreeMap<&[u8], Offset> =
            log.iter().map(|(o, p)| (p.as_slice(), *o)).collect();
        let addressed_to = |e: &Event| -> Option<NodeId> {
            match e {
                Event::SessionKeyIssued(e) => Some(e.node_id),
                Event::TaskDispatched(e) => Some(e.node_id),
                Event::ResultSubmitted(e) => Some(e.node_id),
                Event::DeadlineExpired(e) => Some(e.node_id),
                Event::LateResultDiscarded(e) => Some(e.node_id),
                Event::NodeRegistered(e) => Some(e.node_id),
                _ => None,
            }
        };
        let events = self.events();
        let mut sizes = Vec::new();
        for node in nodes {
            let topic = template.replace("{node}", &node.0.to_hex());
            let url = format!("kafka://{}/{topic}", self.bootstrap);
            // The projector copies a transaction behind the log: wait until this feed holds
            // as many records addressed to the node as the log does.
            let want = events
                .iter()
                .filter(|e| addressed_to(&e.2) == Some(*node))
                .count();
            let until = Instant::now() + Duration::from_secs(30);
            let feed = loop {
                let feed = self.records(&url);
                let got = feed
                    .iter()
                    .filter(|(_, p)| addressed_to(&Envelope::decode(p).unwrap().event).is_some())
                    .count();
                if got >= want || Instant::now() > until {
                    break feed;
                }
                std::thread::sleep(Duration::from_millis(100));
            };
            let mut last = None;
            let mut types = Vec::new();
            for (i, (_, payload)) in feed.iter().enumerate() {
                let env = Envelope::decode(payload).unwrap();
                let at = position.get(payload.as_slice()).copied();
                assert!(
                    at.is_some(),
                    "{node}'s feed record {i} ({}) is not a record of the log",
                    env.event.type_name()
                );
                // The key and catalog copies repeat earlier records; the rest follow the log.
                if i >= 2 {
                    assert!(
                        at > last,
                        "{node}'s feed record {i} is out of the log's order"
                    );
                    last = at;
                }
                if let Some(to) = addressed_to(&env.event) {
                    assert_eq!(
                        to,
                        *node,
                        "{node}'s feed holds {}'s {}",
                        to,
                        env.event.type_name()
                    );
                }
                types.push(env.event.type_name());
            }
            assert_eq!(
                types[..3],
                [
                    "CoordinatorKeyPublished",
                    "CatalogPublished",
                    "NodeRegistered"
                ],
                "{node}'s feed starts with the key, the catalog and its registration"
            );
            let mine = |e: &&(Offset, String, Event)| addressed_to(&e.2) == Some(*node);
            let want: Vec<&str> = events
                .iter()
                .filter(mine)
                .map(|e| e.2.type_name())
                .collect();
            let got: Vec<&str> = types
                .iter()
                .copied()
                .filter(|t| *t != "CoordinatorKeyPublished" && *t != "CatalogPublished")
                .filter(|t| *t != "RequestFailed")
                .collect();
            assert_eq!(
                got, want,
                "{node}'s feed lacks or adds events addressed to it"
            );
            assert!(want.contains(&"TaskDispatched"), "{node} got no work");
            sizes.push(feed.len());
        }
        sizes
    }

    /// `prlx-replay verify --json` on the log: exit 0 and `ok`.
    fn replay_verifies(&self, requests: usize) {
        let started = Instant::now();
        let out = Command::new(bin("prlx-replay"))
            .args(["verify", "--json", "--log", &self.log])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(report["ok"], true, "{report}");
        assert_eq!(report["requests"], requests, "{report}");
        eprintln!("replay verified the log in {:?}", started.elapsed());
    }
}

/// Checks the log against what the client was told: each accepted request (by its
/// Idempotency-Key) was accepted once, under the id the client got, and answered once.
fn exactly_once(events: &[(Offset, String, Event)], told: &BTreeMap<String, RequestId>) {
    let mut accepted: BTreeMap<RequestId, Option<String>> = BTreeMap::new();
    let mut answers: BTreeMap<RequestId, Vec<&'static str>> = BTreeMap::new();
    for (offset, _, e) in events {
        match e {
            Event::RequestAccepted(a) => {
                let again = accepted.insert(a.request_id, a.idempotency_key.clone());
                assert!(
                    again.is_none(),
                    "{} accepted twice (offset {offset})",
                    a.request_id
                );
            }
            Event::ResultReturned(r) => answers.entry(r.request_id).or_default().push("result"),
            Event::RequestFailed(f) => answers.entry(f.request_id).or_default().push("failed"),
            _ => {}
        }
    }
    let keys: BTreeSet<&String> = accepted.values().flatten().collect();
    assert_eq!(
        keys.len(),
        accepted.len(),
        "an Idempotency-Key was accepted twice"
    );
    assert_eq!(
        accepted.len(),
        told.len(),
        "accepted {accepted:?}, told {told:?}"
    );
    for (key, id) in told {
        assert_eq!(
            accepted.get(id).cloned().flatten().as_deref(),
            Some(key.as_str()),
            "{id} is not on the log under {key}"
        );
        assert_eq!(
            answers.get(id).map(Vec::as_slice),
            Some(&["result"][..]),
            "{id}: want exactly one ResultReturned"
        );
    }
}

// ---------------------------------------------------------------------------------------------

#[test]
fn coordinator_and_two_nodes_on_kafka_serve_requests_and_replay_verifies() {
    let Some(bootstrap) = bootstrap() else { return };
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let started = Instant::now();
    // Nodes read per-node feeds, as a deployment that keeps nodes from seeing each other's
    // work does (the broker-restart case has them read the log itself).
    let cluster = Cluster::new(&bootstrap, "e2e").with_feeds();
    let (mut coordinator, _) = cluster.coordinator("a");
    coordinator.wait_line("active: serving", STARTUP);
    let (_a, a) = cluster.node("node-a");
    let (_b, b) = cluster.node("node-b");
    eprintln!("cluster up in {:?}", started.elapsed());

    cluster.deposit(10_000_000);
    let prompts = ["Hello, world", "The quick brown fox", "abc"];
    let serving = Instant::now();
    let mut told = BTreeMap::new();
    for i in 0..6 {
        let key = format!("e2e-{i}");
        let id = cluster.submit(&key, prompts[i % 3], 200);
        // A retry with the same key is the same request.
        assert_eq!(cluster.submit(&key, prompts[i % 3], 200), id);
        told.insert(key, id);
    }
    let mut by_prompt: BTreeMap<&str, BTreeSet<Vec<u8>>> = BTreeMap::new();
    let mut served_by = BTreeMap::new();
    for (i, id) in told.values().enumerate() {
        let status = cluster.wait_result(*id, Duration::from_secs(120));
        let (bytes, node) = cluster.check_result(*id, &status);
        by_prompt.entry(prompts[i % 3]).or_default().insert(bytes);
        *served_by.entry(node).or_insert(0) += 1;
    }
    eprintln!(
        "6 requests served in {:?}: {served_by:?}",
        serving.elapsed()
    );
    assert!(
        by_prompt.values().all(|r| r.len() == 1),
        "identical prompts gave different bytes"
    );
    assert_eq!(
        served_by.keys().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([a, b]),
        "the work did not spread over both nodes"
    );
    exactly_once(&cluster.events(), &told);
    let sizes = cluster.feeds_hold_what_each_node_needs_and_nothing_else(&[a, b]);
    eprintln!(
        "feeds of {} and {} hold {sizes:?} records, the log {}",
        a,
        b,
        cluster.events().len()
    );
    cluster.replay_verifies(6);
    eprintln!("end to end on Kafka in {:?}", started.elapsed());
}

#[test]
fn a_standby_takes_over_when_the_active_coordinator_is_killed_and_nothing_is_lost_or_doubled() {
    let Some(bootstrap) = bootstrap() else { return };
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // With feeds: what the killed instance left uncommitted must not reach a node's feed,
    // and the new active instance carries the feeds on.
    let cluster = Cluster::new(&bootstrap, "failover").with_feeds();
    let (mut a, a_addr) = cluster.coordinator("a");
    a.wait_line("active: serving", STARTUP);
    let (mut b, b_addr) = cluster.coordinator("b");
    b.wait_line("standby: waiting for the log's lease", STARTUP);
    // Starting a second instance must not fence or unseat the first: after the group has
    // rebalanced with b in it (one session timeout is ample), a still serves and b answers 503.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        health(&a_addr),
        Some(200),
        "the active instance was unseated"
    );
    assert_eq!(health(&b_addr), Some(503), "the standby serves");
    assert!(a.find("stepping down").is_none() && b.find("elected").is_none());

    let (_n1, n1) = cluster.node("node-a");
    let (_n2, n2) = cluster.node("node-b");
    cluster.deposit(10_000_000);
    let mut told = BTreeMap::new();
    let prompt = |i: usize| format!("Request {i}: the quick brown fox");
    // Generations long enough that some are running, or their reports on the way, when a
    // dies.
    for i in 0..6 {
        let key = format!("failover-{i}");
        told.insert(key.clone(), cluster.submit(&key, &prompt(i), 400));
    }
    a.child.kill().unwrap(); // SIGKILL, with work in flight
    a.child.wait().unwrap();
    let killed = Instant::now();
    // Submissions carry on through the failover: retried (same key) until accepted.
    for i in 6..12 {
        let key = format!("failover-{i}");
        told.insert(key.clone(), cluster.submit(&key, &prompt(i), 400));
    }
    b.wait_line("active: serving", Duration::from_secs(60));
    let took_over = b.find("active: serving").map(|_| killed.elapsed()).unwrap();
    eprintln!("b took over {took_over:?} after the kill (lease session 6 s)");
    assert_eq!(cluster.front.active(), Some(b_addr.clone()));

    for id in told.values() {
        let status = cluster.wait_result(*id, Duration::from_secs(180));
        cluster.check_result(*id, &status);
    }
    // The same keys again: the same requests, nothing new.
    for (key, id) in &told {
        let i: usize = key.rsplit('-').next().unwrap().parse().unwrap();
        assert_eq!(cluster.submit(key, &prompt(i), 400), *id, "{key}");
    }
    let events = cluster.events();
    exactly_once(&events, &told);
    let producers: BTreeSet<&str> = events.iter().map(|(_, p, _)| p.as_str()).collect();
    assert!(
        producers.contains("coordinator/a") && producers.contains("coordinator/b"),
        "both instances wrote: {producers:?}"
    );
    cluster.feeds_hold_what_each_node_needs_and_nothing_else(&[n1, n2]);
    cluster.replay_verifies(12);
    assert!(b.alive());
}

/// Restarts the broker through `scripts/kafka.sh` if it is that script's broker at
/// `bootstrap`; `None` (after saying the case is skipped) when it is another broker.
struct BrokerRestart {
    script: PathBuf,
    stopped: bool,
}

impl BrokerRestart {
    fn new(bootstrap: &str) -> Option<BrokerRestart> {
        let script = root().join("scripts/kafka.sh");
        let out = Command::new(&script).arg("status").output().unwrap();
        let status = String::from_utf8_lossy(&out.stdout);
        if !status.contains(&format!("bootstrap={bootstrap}")) {
            let _ = writeln!(
                std::io::stderr(),
                "skipped: the broker at {bootstrap} is not scripts/kafka.sh's ({status:?}); \
                 this case restarts it"
            );
            return None;
        }
        Some(BrokerRestart {
            script,
            stopped: false,
        })
    }

    fn run(&mut self, command: &str) {
        let out = Command::new(&self.script).arg(command).output().unwrap();
        assert!(
            out.status.success(),
            "scripts/kafka.sh {command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn stop(&mut self) {
        self.stopped = true;
        self.run("stop");
    }

    fn start(&mut self) {
        self.run("start");
        self.stopped = false;
    }
}

impl Drop for BrokerRestart {
    /// Whatever happened, later cases get their broker back.
    fn drop(&mut self) {
        if self.stopped {
            let _ = Command::new(&self.script).arg("start").output();
        }
    }
}

#[test]
#[ignore = "soak: restarts the shared broker; it failed once in CI when the nodes' Kafka consumers did not reconnect within 180 s (they now reopen their reader, and reconnect in ~8 s): run with `cargo test -p prlx-tests --test kafka_e2e -- --ignored`"]
fn the_coordinator_and_nodes_ride_out_a_broker_restart_with_nothing_lost_or_doubled() {
    let Some(bootstrap) = bootstrap() else { return };
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(mut broker) = BrokerRestart::new(&bootstrap) else {
        return;
    };
    let cluster = Arc::new(Cluster::new(&bootstrap, "restart"));
    let (mut coordinator, _) = cluster.coordinator("a");
    coordinator.wait_line("active: serving", STARTUP);
    let (mut n1, _) = cluster.node("node-a");
    let (mut n2, _) = cluster.node("node-b");
    cluster.deposit(10_000_000);
    let prompt = |i: usize| format!("Request {i}: hello, world");
    let mut told = BTreeMap::new();
    for i in 0..4 {
        let key = format!("restart-{i}");
        told.insert(key.clone(), cluster.submit(&key, &prompt(i), 400));
    }

    // Submissions go on in the background while the broker is down and back.
    let submitter = {
        let cluster = Arc::clone(&cluster);
        std::thread::spawn(move || {
            let mut told = BTreeMap::new();
            for i in 4..12 {
                let key = format!("restart-{i}");
                told.insert(key.clone(), cluster.submit(&key, &prompt(i), 400));
                std::thread::sleep(Duration::from_millis(500));
            }
            told
        })
    };
    std::thread::sleep(Duration::from_millis(700));
    let down = Instant::now();
    broker.stop();
    eprintln!("broker stopped in {:?}", down.elapsed());
    std::thread::sleep(Duration::from_secs(3));
    broker.start();
    eprintln!("broker back {:?} after the stop began", down.elapsed());
    told.extend(submitter.join().unwrap());

    for id in told.values() {
        let status = cluster.wait_result(*id, Duration::from_secs(180));
        cluster.check_result(*id, &status);
    }
    eprintln!("all 12 answered {:?} after the stop began", down.elapsed());
    for (name, p) in [
        ("coordinator", &mut coordinator),
        ("node-a", &mut n1),
        ("node-b", &mut n2),
    ] {
        assert!(p.alive(), "{name} did not survive the broker restart");
    }
    eprintln!(
        "the coordinator stepped down {} time(s) during the restart",
        coordinator.count("stepping down")
    );
    exactly_once(&cluster.events(), &told);
    cluster.replay_verifies(12);
    // A clean stop still works after all that.
    coordinator.signal("-TERM");
    assert_eq!(
        coordinator.wait_exit(Duration::from_secs(60)).code(),
        Some(0)
    );
}
