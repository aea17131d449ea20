//! One `prlx-coordinator serve` on a fresh file log, for tests that add real nodes to it: its
//! keys, catalog and log in a temp dir, a private chain it credits from, a client key, and
//! calls to its API.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use prlx_events::crypto::public_key_pem;
use prlx_events::log::Offset;
use prlx_events::{Envelope, Event, Hash32, NodeId, RequestId};
use prlx_node::client::CoordinatorClient;
use rsa::RsaPrivateKey;
use serde_json::Value;

use super::chain::TestChain;
use super::client::{open_result, poll_result, read, read_log};
use super::keys::{new_key, write_private, CoordinatorKeys};
use super::launch::{NodeLaunch, ServeLaunch, SESSION_GRANTED, STARTUP};
use super::models::tiny_submission;
use super::process::Proc;

/// An idempotency key not used before in this process.
fn fresh_key() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "submit-{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// A coordinator on a fresh file log, a client key, and an HTTP client of the node's kind.
#[derive(Debug)]
pub struct FileCluster {
    /// Every key, the catalog and the log.
    pub dir: tempfile::TempDir,
    pub log_dir: PathBuf,
    pub keys: CoordinatorKeys,
    coordinator: Proc,
    /// How the coordinator was started and where it listens, for a restart.
    launch: ServeLaunch,
    addr: String,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// The coordinator's certificate, which its clients pin.
    pub cert: PathBuf,
    client: CoordinatorClient,
    rt: tokio::runtime::Runtime,
    /// The key results are sealed for.
    pub client_key: RsaPrivateKey,
    /// The chain the coordinator credits from; the client's account is on it.
    pub chain: TestChain,
}

impl FileCluster {
    /// Starts the coordinator with `catalog` (a catalog file's JSON) as `producer`; returns
    /// once it listens.
    pub fn start(catalog: &Value, producer: &str) -> FileCluster {
        FileCluster::start_with(catalog, producer, &[])
    }

    /// [`start`](Self::start) with more arguments to `serve` (`--rate-limit 0` for a load
    /// test, whose client and nodes all call from one loopback address).
    pub fn start_with(catalog: &Value, producer: &str, extra: &[&str]) -> FileCluster {
        let dir = tempfile::tempdir().unwrap();
        let catalog_path = dir.path().join("catalog.json");
        std::fs::write(&catalog_path, catalog.to_string()).unwrap();
        let keys = CoordinatorKeys::create(dir.path());
        let chain = TestChain::start_blocking(dir.path());
        let launch = ServeLaunch {
            chain: chain.serve_args(),
            extra: extra.iter().map(|a| a.to_string()).collect(),
            ..ServeLaunch::in_dir(dir.path(), &catalog_path, producer)
        };
        let (coordinator, addr) = launch.spawn("coordinator");
        let url = format!("https://{addr}");
        let cert = launch.cert();
        FileCluster {
            client: CoordinatorClient::new(&url, Some(&cert)).unwrap(),
            url,
            cert,
            log_dir: dir.path().join("log"),
            dir,
            keys,
            coordinator,
            launch,
            addr,
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            client_key: new_key(),
            chain,
        }
    }

    /// SIGKILLs the coordinator; [`start_coordinator`](Self::start_coordinator) brings it back.
    pub fn kill_coordinator(&mut self) {
        self.coordinator.kill();
    }

    /// Starts the coordinator again (after [`kill_coordinator`](Self::kill_coordinator)) on the
    /// same log, state, keys and address, so its nodes reach it again; returns once it
    /// listens.
    pub fn start_coordinator(&mut self) {
        let (coordinator, addr) = self.launch.spawn_at("coordinator", &self.addr);
        assert_eq!(
            addr, self.addr,
            "the restarted coordinator listens where it did"
        );
        self.coordinator = coordinator;
    }

    /// The coordinator's process id (for its memory and CPU time).
    pub fn coordinator_pid(&self) -> u32 {
        self.coordinator.pid()
    }

    /// The client's credit account (its chain address).
    pub fn account(&self) -> String {
        self.chain.client_account()
    }

    /// The log's URL.
    pub fn log_url(&self) -> String {
        format!("file://{}", self.log_dir.display())
    }

    /// A node of this coordinator with the key file `key`: it reads this log and pins this
    /// coordinator's signing key.
    pub fn node_launch(&self, key: &Path) -> NodeLaunch {
        NodeLaunch::new(
            &self.url,
            Some(&self.cert),
            &self.log_url(),
            key,
            &self.keys.public,
        )
    }

    /// Starts `prlx-node run` named `name` with a fresh key and `extra` arguments (a
    /// `--fault`, say); returns once it has its session grant and its first heartbeat is
    /// recorded.
    pub fn spawn_node(&self, name: &str, extra: &[&str]) -> (Proc, NodeId) {
        self.spawn_node_with(name, |launch| NodeLaunch {
            extra: extra.iter().map(|a| a.to_string()).collect(),
            ..launch
        })
    }

    /// [`spawn_node`](Self::spawn_node) with the launch as `edit` makes it from this
    /// cluster's (its variables, say).
    pub fn spawn_node_with(
        &self,
        name: &str,
        edit: impl FnOnce(NodeLaunch) -> NodeLaunch,
    ) -> (Proc, NodeId) {
        let key = self.dir.path().join(format!("{name}.pem"));
        write_private(&key, &new_key());
        let launch = edit(self.node_launch(&key));
        let (mut proc, id) = launch.spawn(name);
        proc.wait_line(SESSION_GRANTED, STARTUP);
        // A node that signed its registration takes work only once it heartbeats: up.
        self.wait_event(
            &format!("{name}'s first heartbeat"),
            STARTUP,
            |e| matches!(e, Event::NodeHeartbeat(h) if h.node_id == id),
        );
        (proc, id)
    }

    /// One exchange: `GET`, or a `POST` with a JSON `body` or none.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
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

    /// `GET path` as the client's account, with its read-access token: the reads of its
    /// balance and its requests.
    pub fn read(&self, path: &str) -> (u16, Value) {
        let addr = self
            .url
            .split_once("://")
            .map_or(self.url.as_str(), |(_, a)| a);
        self.rt.block_on(read(addr, path, &self.chain.read_token()))
    }

    /// The client buys `credits` credits on the chain; returns once the coordinator has
    /// credited them.
    pub fn deposit(&self, credits: u64) {
        let before = self.balance();
        self.rt.block_on(self.chain.buy_credits(credits));
        let until = Instant::now() + Duration::from_secs(30);
        while self.balance() < before + credits {
            assert!(
                Instant::now() < until,
                "the coordinator did not credit the deposit in 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The client account's balance (0 before its first deposit).
    pub fn balance(&self) -> u64 {
        let (status, body) = self.read(&format!("/v1/accounts/{}", self.account()));
        match status {
            200 => body["balance"].as_u64().unwrap(),
            404 => 0,
            _ => panic!("{status} {body}"),
        }
    }

    /// Submits `prompt` for the tiny model, sealed for [`client_key`](Self::client_key);
    /// returns the accepted request's id.
    pub fn submit(&self, prompt: &str, max_tokens: u32, deadline_seconds: u32) -> RequestId {
        let pem = public_key_pem(&self.client_key.to_public_key());
        let body = tiny_submission(&self.account(), prompt, max_tokens, deadline_seconds, &pem);
        let body = self.chain.signed(body, &fresh_key());
        let (status, accepted) = self.call("POST", "/v1/requests", Some(&body));
        assert_eq!(status, 202, "{accepted}");
        RequestId(accepted["request_id"].as_u64().unwrap())
    }

    /// Submits a general-path task of `class` with `params` (its prompt, as JSON text) on the
    /// tiny model's pool, sealed for [`client_key`](Self::client_key); returns the task's id
    /// and the price reserved.
    pub fn submit_task(
        &self,
        class: &str,
        params: &Value,
        deadline_seconds: u32,
    ) -> (RequestId, u64) {
        let (status, accepted) = self.try_submit_task(class, params, deadline_seconds);
        assert_eq!(status, 202, "{accepted}");
        (
            RequestId(accepted["request_id"].as_u64().unwrap()),
            accepted["price"].as_u64().unwrap(),
        )
    }

    /// [`submit_task`](Self::submit_task), answered as it comes: the status and body.
    pub fn try_submit_task(
        &self,
        class: &str,
        params: &Value,
        deadline_seconds: u32,
    ) -> (u16, Value) {
        let pem = public_key_pem(&self.client_key.to_public_key());
        let mut body = tiny_submission(
            &self.account(),
            &params.to_string(),
            64,
            deadline_seconds,
            &pem,
        );
        body["workload_class"] = Value::from(class);
        let body = self.chain.signed(body, &fresh_key());
        self.call("POST", "/v1/requests", Some(&body))
    }

    /// The request's status, as the client sees it.
    pub fn status(&self, request: RequestId) -> Value {
        let (code, body) = self.read(&format!("/v1/requests/{}", request.0));
        assert_eq!(code, 200, "{body}");
        body
    }

    /// Polls the request until it has a result; returns the request's status body.
    pub fn wait_result(&self, id: RequestId, timeout: Duration) -> Value {
        poll_result(id, timeout, Duration::from_millis(50), || self.status(id))
    }

    /// Opens a returned result as the client: the canonical bytes, the node, the PoE.
    pub fn open_result(&self, id: RequestId, status: &Value) -> (Vec<u8>, NodeId, Hash32) {
        open_result(&self.client_key, id, status)
    }

    /// Every event on the log, with its offset.
    pub fn events_with_offsets(&self) -> Vec<(Offset, Event)> {
        self.rt
            .block_on(read_log(&self.log_url()))
            .into_iter()
            .map(|(offset, payload)| (offset, Envelope::decode(&payload).unwrap().event))
            .collect()
    }

    /// Every event on the log.
    pub fn events(&self) -> Vec<Event> {
        self.events_with_offsets()
            .into_iter()
            .map(|(_, event)| event)
            .collect()
    }

    /// Waits until an event on the log matches `pred`; `what` names it if none does within
    /// `timeout`.
    pub fn wait_event(&self, what: &str, timeout: Duration, pred: impl Fn(&Event) -> bool) {
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
