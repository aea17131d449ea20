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
//! The binaries come from the process kit ([`prlx_tests::harness`]): build them first (`cargo
//! build --workspace --bins`; scripts/test.sh does), which also builds them with the Kafka
//! backend. The cases fail, rather than skip, when one is missing or older than its sources,
//! and when the tiny model of scripts/setup-models.sh is missing.
//!
//! Clients reach the coordinators through a small TCP front in this file that forwards each
//! connection to whichever instance answers `GET /healthz` with 200: what a load balancer's
//! health check does in a deployment (docs/adr/04-kafka-failover.md).
#![cfg(feature = "kafka")]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prlx_events::crypto::{proof_of_execution, public_key_pem};
use prlx_events::log::Offset;
use prlx_events::protocol::ResultBody;
use prlx_events::{Envelope, Event, NodeId, RequestId, TaskId};
use prlx_tests::harness::bins::{workspace_bin, workspace_root};
use prlx_tests::harness::chain::TestChain;
use prlx_tests::harness::client::{endpoint, open_result, pin, poll_result, read_log, try_http};
use prlx_tests::harness::keys::{new_key, write_private, CoordinatorKeys};
use prlx_tests::harness::launch::{NodeLaunch, ServeLaunch, SESSION_GRANTED, STARTUP};
use prlx_tests::harness::models::{tiny_catalog, tiny_sha, tiny_submission, TINY};
use prlx_tests::harness::process::Proc;
use rsa::RsaPrivateKey;
use serde_json::Value;

/// One case at a time: they start several processes each on a small machine, and one
/// restarts the broker under the others.
static SERIAL: Mutex<()> = Mutex::new(());

fn bootstrap() -> Option<String> {
    prlx_tests::kafka::bootstrap()
}

fn fresh_topic(tag: &str) -> String {
    prlx_tests::kafka::fresh_topic("e2e", tag)
}

// ---------------------------------------------------------------------------------------------
// The front: a TCP forwarder to the healthy coordinator, like a load balancer.

/// The status code of `GET /healthz` at `addr` (over https, pinned: the process kit knows
/// each coordinator's certificate), or `None` when it does not answer.
fn health(addr: &str) -> Option<u16> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async {
        let probe = try_http(addr, "GET", "/healthz", None, None);
        match tokio::time::timeout(Duration::from_secs(2), probe).await {
            Ok(Ok((status, _))) => Some(status),
            _ => None,
        }
    })
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
    keys: CoordinatorKeys,
    front: Front,
    rt: tokio::runtime::Runtime,
    client_key: RsaPrivateKey,
    /// The chain every coordinator instance credits from.
    chain: TestChain,
}

impl Cluster {
    fn new(bootstrap: &str, tag: &str) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let catalog = dir.path().join("catalog.json");
        std::fs::write(&catalog, tiny_catalog(&[TINY], 5).to_string()).unwrap();
        let chain = TestChain::start_blocking(dir.path());
        Cluster {
            bootstrap: bootstrap.to_owned(),
            log: format!("kafka://{bootstrap}/{}", fresh_topic(tag)),
            feeds: None,
            keys: CoordinatorKeys::create(dir.path()),
            dir,
            catalog,
            front: Front::start(),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            client_key: new_key(),
            chain,
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
        let launch = ServeLaunch {
            log: self.log.clone(),
            node_feed_topic: self.feeds.clone(),
            chain: self.chain.serve_args(),
            // Clients and nodes reach it through the front, under the front's address.
            allowed_hosts: vec![self.front.addr.clone()],
            ..ServeLaunch::in_dir(
                self.dir.path(),
                &self.catalog,
                &format!("coordinator/{name}"),
            )
        };
        let (proc, addr) = launch.spawn(name);
        // The front forwards bytes: its clients speak TLS to the instance behind it, and
        // every instance serves the one certificate beside the keys they share.
        pin(&self.front.addr, &launch.cert());
        self.front.add(&addr);
        (proc, addr)
    }

    /// Starts `prlx-node run` on the tiny model, reaching the coordinator through the front
    /// and reading the Kafka log; returns once it has its session grant.
    fn node(&self, name: &str) -> (Proc, NodeId) {
        let key = self.dir.path().join(format!("{name}.pem"));
        write_private(&key, &new_key());
        let follow = match &self.feeds {
            Some(template) => format!("kafka://{}/{template}", self.bootstrap),
            None => self.log.clone(),
        };
        let coordinator = format!("https://{}", self.front.addr);
        let cert = ServeLaunch::in_dir(self.dir.path(), &self.catalog, "").cert();
        let launch = NodeLaunch {
            drain_secs: Some(30),
            ..NodeLaunch::new(&coordinator, Some(&cert), &follow, &key, &self.keys.public)
        };
        let (mut proc, id) = launch.spawn(name);
        proc.wait_line(SESSION_GRANTED, STARTUP);
        // A node that signed its registration takes work only once it heartbeats: up.
        let until = Instant::now() + STARTUP;
        loop {
            let (_, nodes) = self.call_until_answered("GET", "/v1/nodes", None, None);
            let up = nodes.as_array().into_iter().flatten().any(|n| {
                n["node_id"] == id.0.to_hex() && n["last_heartbeat"] != n["registered_at"]
            });
            if up {
                break;
            }
            assert!(Instant::now() < until, "{name} never heartbeat");
            std::thread::sleep(Duration::from_millis(100));
        }
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
        // The client's reads carry its read-access token; other calls ignore it.
        let token = self.chain.read_token();
        let mut headers = vec![("Authorization", token.as_str())];
        headers.extend(key.map(|k| ("Idempotency-Key", k)));
        let front = endpoint(&self.front.addr);
        self.rt.block_on(async {
            let exchange =
                prlx_commands::client::request_with(&front, method, path, body, &headers);
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

    /// The client buys `credits` credits on the chain; returns once the active coordinator
    /// has credited them.
    fn deposit(&self, credits: u64) {
        self.rt.block_on(self.chain.buy_credits(credits));
        let path = format!("/v1/accounts/{}", self.chain.client_account());
        let until = Instant::now() + Duration::from_secs(120);
        loop {
            let (status, body) = self.call_until_answered("GET", &path, None, None);
            if status == 200 && body["balance"].as_u64() >= Some(credits) {
                return;
            }
            assert!(Instant::now() < until, "not credited in 120 s: {body}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Submits with `key` as the Idempotency-Key until accepted; the request id.
    fn submit(&self, key: &str, prompt: &str, max_tokens: u32) -> RequestId {
        let pem = public_key_pem(&self.client_key.to_public_key());
        let body = tiny_submission(&self.chain.client_account(), prompt, max_tokens, 60, &pem);
        let body = self.chain.signed(body, key);
        let (status, accepted) =
            self.call_until_answered("POST", "/v1/requests", Some(&body), Some(key));
        assert!(status == 202 || status == 200, "{status} {accepted}");
        RequestId(accepted["request_id"].as_u64().unwrap())
    }

    /// Polls the request until it has a result; returns the request's status body.
    fn wait_result(&self, id: RequestId, timeout: Duration) -> Value {
        poll_result(id, timeout, Duration::from_millis(100), || {
            let (status, body) =
                self.call_until_answered("GET", &format!("/v1/requests/{}", id.0), None, None);
            assert_eq!(status, 200, "{body}");
            body
        })
    }

    /// Opens a returned result as the client and checks it: its text, model and PoE.
    fn check_result(&self, id: RequestId, status: &Value) -> (Vec<u8>, NodeId) {
        let (bytes, node, poe) = open_result(&self.client_key, id, status);
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
        self.rt.block_on(read_log(url))
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
        let out = Command::new(workspace_bin("prlx-replay"))
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
    a.kill(); // SIGKILL, with work in flight
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
        let script = workspace_root().join("scripts/kafka.sh");
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
