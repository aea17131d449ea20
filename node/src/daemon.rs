//! The I/O shell of `prlx-node run`: key, engines, registration, heartbeats, following the
//! log, handing dispatches to workers and reporting results.
//!
//! Tasks and threads:
//! - the main task follows the log: it reads records, folds them into [`Assignments`] (pure),
//!   unwraps this node's session grants, opens the dispatches that fold hands out and queues
//!   them for the workers;
//! - one OS thread per engine ([`WorkerPool`]) generates, commits and signs;
//! - a reporter task posts each finished result, retrying while the coordinator is
//!   unreachable or answers 5xx;
//! - a heartbeat task posts a heartbeat every `heartbeat` interval, and registers again if
//!   the coordinator no longer knows the node.
//!
//! On shutdown the main task stops following (no new dispatches), the pool drains (running
//! jobs finish, queued ones are left to the coordinator's deadline re-dispatch) and the
//! reporter gets up to `drain` to deliver what finished.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use chrono::Utc;
use prlx_events::backoff::Backoff;
use prlx_events::crypto::{accept_session, node_id_of, parse_public_key_pem, public_key_pem};
use prlx_events::event::ExecutionClass;
use prlx_events::log::feed::FeedTopics;
use prlx_events::log::{AnyReader, LogError, LogReader, LogUrl, Offset};
use prlx_events::{Envelope, Hash32, NodeId};
use rsa::RsaPublicKey;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::client::{ClientError, CoordinatorClient};
use crate::commit::{Identity, Job};
use crate::engine::{
    resolve_ort_library, Engine, EngineError, EngineOptions, ModelFiles, Provider,
};
use crate::fault::{Fault, FaultDrill};
use crate::follow::{Applied, Assigned, Assignments, DispatchKey, FollowError, GrantToAccept};
use crate::keys::{self, KeyError, KeySource, NODE_KEY_BITS};
use crate::registry::{Registry, RegistryError};
use crate::trace::{self, JobTrace};
use crate::worker::{Finished, WorkerPool};

/// Records read from the log per batch.
const READ_BATCH: usize = 256;
/// How long the follower waits for the log to grow before looking again.
const FOLLOW_WAIT: Duration = Duration::from_secs(1);
/// Retry backoff bounds for calls to the coordinator and reads of its log.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The pauses between retries of a call to the coordinator or a read of its log.
fn retry_backoff() -> Backoff {
    Backoff::new(BACKOFF_MIN, BACKOFF_MAX)
}
/// A result not delivered after this long of retrying is given up on (the coordinator has
/// long since re-dispatched the work).
const REPORT_GIVE_UP: Duration = Duration::from_secs(15 * 60);

/// Everything `prlx-node run` is told.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// `http://HOST:PORT`.
    pub coordinator: String,
    /// The coordinator's log, e.g. `file:///var/lib/prlx/log`.
    pub log: String,
    /// The node's private key (PKCS#8 PEM); created on first start.
    pub key: PathBuf,
    /// Registry references of the served models.
    pub models: Vec<String>,
    pub hardware_tier: u8,
    pub slots: u32,
    pub stake: u64,
    /// ONNX Runtime intra-op threads per engine.
    pub threads: usize,
    pub registry: PathBuf,
    /// The directory the registry's paths are relative to.
    pub root: PathBuf,
    pub provider: Provider,
    pub ort_library: Option<PathBuf>,
    pub heartbeat: Duration,
    pub drain: Duration,
    /// A pinned coordinator signing key (PEM, SPKI).
    pub coordinator_key: Option<PathBuf>,
    /// A fault drill: report defective results on purpose (tests of the coordinator's
    /// validation only). `None` for an honest node.
    pub fault: Option<Fault>,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("pinned coordinator key {}: {reason}", path.display())]
    PinnedKey { path: PathBuf, reason: String },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("loading model {model}: {error}")]
    Engine { model: String, error: EngineError },
    #[error("no models to serve: --models names none")]
    NoModels,
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the coordinator refused the registration: {0}")]
    Registration(String),
    #[error("the coordinator's log: {0}")]
    Log(#[from] LogError),
    #[error("--log {url}: {reason}")]
    LogUrl { url: String, reason: String },
    #[error(
        "this node's feed {url} cannot be read ({error}): does the active coordinator serve \
         with --node-feed-topic and the same template?"
    )]
    Feed { url: String, error: LogError },
    #[error(transparent)]
    Follow(#[from] FollowError),
    #[error("starting worker threads: {0}")]
    Threads(std::io::Error),
}

/// How the daemon stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Asked to stop before it served anything.
    BeforeServing,
    /// Every job running at shutdown finished and its report was delivered or given up.
    Drained,
    /// The drain timeout passed with work still in flight.
    DrainTimedOut,
}

/// What the node sends to `POST /v1/nodes`.
#[derive(Debug, Clone, Serialize)]
pub struct Registration {
    pub public_key_pem: String,
    pub hardware_tier: u8,
    pub models: Vec<String>,
    pub slots: u32,
    pub stake: u64,
    pub execution_class: ExecutionClass,
}

/// The device part of the execution class: what must match, besides the runtime, for two
/// nodes to produce the same bytes (ONNX Runtime picks CPU kernels by instruction set).
pub fn device_name(provider: Provider) -> String {
    match provider {
        Provider::Cpu => format!("cpu-{}{}", std::env::consts::ARCH, simd_level()),
        Provider::Cuda => "cuda".to_owned(),
    }
}

fn simd_level() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "-avx512f";
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return "-avx2";
        }
    }
    ""
}

/// `onnxruntime-<version>` from the runtime library's file name (`libonnxruntime.so.1.32.0`,
/// `libonnxruntime.1.32.0.dylib`), following a symlink when the name has no version.
pub fn runtime_name(library: &Path) -> String {
    let version_of = |path: &Path| -> Option<String> {
        let name = path.file_name()?.to_str()?;
        let parts: Vec<&str> = name
            .split('.')
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .collect();
        (!parts.is_empty()).then(|| parts.join("."))
    };
    let version = version_of(library).or_else(|| {
        std::fs::canonicalize(library)
            .ok()
            .and_then(|p| version_of(&p))
    });
    format!(
        "onnxruntime-{}",
        version.unwrap_or_else(|| "unknown".into())
    )
}

/// The engines (one per slot per model), the served models' SHA-256 and the execution class.
struct Loaded {
    engines: Vec<Engine>,
    served: BTreeMap<String, Hash32>,
    class: ExecutionClass,
}

fn load_engines(config: &DaemonConfig) -> Result<Loaded, DaemonError> {
    if config.models.is_empty() {
        return Err(DaemonError::NoModels);
    }
    let registry = Registry::load(&config.registry, &config.root)?;
    let library =
        resolve_ort_library(config.ort_library.as_deref(), &config.root).map_err(|error| {
            DaemonError::Engine {
                model: config.models.join(","),
                error,
            }
        })?;
    let options = EngineOptions {
        intra_op_threads: config.threads,
        provider: config.provider,
        ort_library: Some(library.clone()),
    };
    let class = ExecutionClass {
        device: device_name(config.provider),
        driver: match config.provider {
            Provider::Cpu => "none".into(),
            Provider::Cuda => "unknown".into(),
        },
        runtime: runtime_name(&library),
    };
    info!(
        "execution provider {} ({} intra-op thread(s) per engine), runtime {} from {}, device {}",
        config.provider,
        config.threads.max(1),
        class.runtime,
        library.display(),
        class.device
    );
    let mut engines = Vec::new();
    let mut served = BTreeMap::new();
    for model in &config.models {
        let entry = registry.get(model)?;
        let engine_err = |error| DaemonError::Engine {
            model: model.clone(),
            error,
        };
        let files = ModelFiles::load(entry).map_err(engine_err)?;
        for _ in 0..config.slots {
            engines.push(Engine::with_files(entry, &files, &options).map_err(engine_err)?);
        }
        let sha: Hash32 = files
            .model
            .sha256
            .parse()
            .expect("the registry checked the file against a 64-hex-character SHA-256");
        info!("loaded {model} (sha256 {sha}): {} engine(s)", config.slots);
        served.insert(model.clone(), sha);
    }
    Ok(Loaded {
        engines,
        served,
        class,
    })
}

fn read_pinned_key(path: &Path) -> Result<RsaPublicKey, DaemonError> {
    let err = |reason: String| DaemonError::PinnedKey {
        path: path.to_owned(),
        reason,
    };
    let pem = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    parse_public_key_pem(&pem).map_err(|e| err(format!("not an RSA public key in PEM: {e}")))
}

/// Resolves when shutdown was asked for; cheap to clone and to check.
#[derive(Debug, Clone)]
struct StopFlag(watch::Receiver<bool>);

impl StopFlag {
    fn new(shutdown: impl Future<Output = ()> + Send + 'static) -> StopFlag {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = tx.send(true);
            // Keep the sender: a dropped sender would read as "never".
            std::future::pending::<()>().await;
        });
        StopFlag(rx)
    }

    fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    async fn wait(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// Runs the daemon until `shutdown` resolves (or a fatal error). See the module docs.
pub async fn run(
    config: DaemonConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Stopped, DaemonError> {
    let mut stop = StopFlag::new(shutdown);
    if let Some(fault) = config.fault {
        warn_fault_drill(fault);
    }

    let (node_key, source) = keys::load_or_create(&config.key, NODE_KEY_BITS)?;
    let node = node_id_of(&node_key.to_public_key());
    info!(
        "{} node key {}; node id {}",
        match source {
            KeySource::Loaded => "loaded",
            KeySource::Created => "created a new",
        },
        config.key.display(),
        node.0
    );
    let pinned = config
        .coordinator_key
        .as_deref()
        .map(read_pinned_key)
        .transpose()?;
    let client = CoordinatorClient::new(&config.coordinator)?;
    let (log_url, feed) = follow_url(&config.log, node)?;
    if let Some(feed) = &feed {
        info!("reading this node's feed {feed}");
    }

    let loading = config.clone();
    let loaded = tokio::task::spawn_blocking(move || load_engines(&loading))
        .await
        .expect("loading engines does not panic")?;
    if stop.is_set() {
        return Ok(Stopped::BeforeServing);
    }

    let registration = Registration {
        public_key_pem: public_key_pem(&node_key.to_public_key()),
        hardware_tier: config.hardware_tier,
        models: config.models.clone(),
        slots: config.slots,
        stake: config.stake,
        execution_class: loaded.class.clone(),
    };
    let status = tokio::select! {
        () = stop.wait() => return Ok(Stopped::BeforeServing),
        r = register(&client, &registration) => r?,
    };
    info!(
        "registered with {} ({})",
        client.authority(),
        if status == 201 {
            "new"
        } else {
            "already registered"
        }
    );
    println!("node_id {}", node.0);

    let reader = tokio::select! {
        () = stop.wait() => return Ok(Stopped::BeforeServing),
        r = open_log(&log_url, feed.is_some()) => match r {
            Err(DaemonError::Log(error)) if feed.is_some() => {
                return Err(DaemonError::Feed { url: feed.unwrap_or_default(), error })
            }
            r => r?,
        },
    };

    let identity = Arc::new(Identity {
        node,
        key: node_key,
    });
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let drill = config.fault.map(|fault| Arc::new(FaultDrill::new(fault)));
    let pool = WorkerPool::start(loaded.engines, Arc::clone(&identity), done_tx, drill)
        .map_err(DaemonError::Threads)?;
    let reporter = tokio::spawn(report_results(client.clone(), node, done_rx));
    let heartbeat = tokio::spawn(heartbeats(
        client.clone(),
        Arc::clone(&identity),
        registration,
        config.heartbeat,
    ));

    let mut follower = Follower {
        reader,
        url: log_url.clone(),
        next: 0,
        state: Assignments::new(node, pinned),
        sessions: BTreeMap::new(),
        identity,
        served: loaded.served,
        caught_up: false,
        traces: BTreeMap::new(),
    };
    let followed = follow(&mut follower, &pool, &mut stop).await;
    heartbeat.abort();
    if let Err(e) = followed {
        let _ = pool.drain();
        return Err(e);
    }

    info!(
        "shutting down: taking no new dispatches; {} running job(s) finish and report \
         (up to {} s); dispatches not started are left to the coordinator's deadline re-dispatch",
        pool.busy(),
        config.drain.as_secs()
    );
    let _workers = pool.drain();
    match tokio::time::timeout(config.drain, reporter).await {
        Ok(_) => {
            info!("stopped");
            Ok(Stopped::Drained)
        }
        Err(_) => {
            warn!(
                "warning: work still in flight after {} s; stopping anyway (the coordinator \
                 re-dispatches it after its deadline)",
                config.drain.as_secs()
            );
            Ok(Stopped::DrainTimedOut)
        }
    }
}

/// Loud on purpose: a node with a fault drill must never be mistaken for an honest one.
fn warn_fault_drill(fault: Fault) {
    let bar = "!".repeat(78);
    warn!("{bar}");
    warn!(
        "WARNING: FAULT DRILL {fault}: this node {}.",
        fault.describe()
    );
    warn!("It exists to test the coordinator's validation: never run it on a real network.");
    warn!("{bar}");
}

/// Follows the log until asked to stop.
async fn follow(
    follower: &mut Follower,
    pool: &WorkerPool,
    stop: &mut StopFlag,
) -> Result<(), DaemonError> {
    let mut backoff = retry_backoff();
    let mut log_trouble: Option<std::time::Instant> = None;
    loop {
        if stop.is_set() {
            return Ok(());
        }
        let step = match follower.step().await {
            Ok(step) => {
                if let Some(since) = log_trouble.take() {
                    info!(
                        "reading the coordinator's log again (after {} s)",
                        since.elapsed().as_secs()
                    );
                }
                backoff.reset();
                step
            }
            // The log's backend away for a while (a broker restarting, a partition changing
            // leader): nothing was folded from the failed read, so the same read is tried
            // again. A node that exited here would stop heartbeating and lapse. Which errors
            // are worth waiting out is the log's own rule, the one the coordinator follows too.
            Err(DaemonError::Log(e)) if e.is_retryable() => {
                if log_trouble.is_none() {
                    warn!("warning: reading the coordinator's log failed ({e}); retrying");
                    log_trouble = Some(std::time::Instant::now());
                }
                tokio::select! {
                    () = stop.wait() => return Ok(()),
                    () = backoff.pause() => {}
                }
                // A Kafka consumer that lost every broker can take minutes to find them again
                // (seen in the broker-restart test); a fresh reader reconnects at once, and
                // `next` says where to resume. If opening fails too, the next round retries.
                if let Ok(reader) = follower.url.open_reader() {
                    follower.reader = reader;
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        for (assigned, job) in step.ready {
            match job {
                Ok(job) => {
                    if let Err(job) = pool.submit(job) {
                        warn!(
                            "warning: not running {} attempt {}: this node does not serve \
                             model {:?}; nothing is reported, the coordinator re-dispatches it \
                             after its deadline",
                            job.task, job.attempt, job.body.model
                        );
                    }
                }
                Err(why) => warn!(
                    "warning: not running {} attempt {}: {why}; the coordinator re-dispatches \
                     it after its deadline",
                    assigned.task, assigned.attempt
                ),
            }
        }
        if step.read == 0 {
            tokio::select! {
                () = stop.wait() => return Ok(()),
                // A failed wait is noticed by the next read, which retries.
                _ = follower.reader.wait_for(follower.next, FOLLOW_WAIT) => {}
            }
        }
    }
}

/// The log reader and the fold over it.
struct Follower {
    reader: AnyReader,
    /// Where `reader` reads, to open a fresh one when the backend was away.
    url: LogUrl,
    next: Offset,
    state: Assignments,
    /// Session keys accepted from grants, by epoch.
    sessions: BTreeMap<u64, prlx_events::crypto::SessionKey>,
    identity: Arc<Identity>,
    served: BTreeMap<String, Hash32>,
    caught_up: bool,
    /// With `PRLX_NODE_TRACE` set: the traces of the dispatches read and not yet opened.
    traces: BTreeMap<DispatchKey, JobTrace>,
}

struct Step {
    read: usize,
    ready: Vec<(Assigned, Result<Job, String>)>,
}

impl Follower {
    /// Reads one batch and folds it; at the end of the log, hands out what is open.
    async fn step(&mut self) -> Result<Step, DaemonError> {
        // The end is read first: once everything below it is folded, a dispatch still open
        // was open at that moment (its closing event, if any, came later). A short batch alone
        // would not say so: a backend may return fewer records than asked mid-log.
        let end = self.reader.end().await?;
        let records = self.reader.read(self.next, READ_BATCH).await?;
        for record in &records {
            self.next = record.offset + 1;
            match Envelope::decode(&record.payload) {
                Ok(envelope) => {
                    let applied = self.state.apply(&envelope.event)?;
                    if trace::enabled() {
                        self.trace(&applied, envelope.header.recorded_at);
                    }
                    self.on_applied(applied);
                }
                // A record this build cannot read (a newer coordinator's event type, say)
                // is no business of a node's: the auditor is the one who checks the log.
                Err(e) => warn!("warning: skipping log record {}: {e}", record.offset),
            }
        }
        let mut ready = Vec::new();
        if records.is_empty() || self.next >= end {
            let runnable = self.state.take_runnable(Utc::now());
            if !self.caught_up {
                self.caught_up = true;
                info!(
                    "caught up with the log at offset {}: {} dispatch(es) open for this node, \
                     {} to run",
                    self.next,
                    self.state.open_count(),
                    runnable.run.len()
                );
            }
            for assigned in runnable.past_deadline {
                info!(
                    "not running {} attempt {}: its deadline passed before this node read it",
                    assigned.task, assigned.attempt
                );
            }
            for assigned in runnable.run {
                let job = self.open(&assigned);
                ready.push((assigned, job));
            }
        }
        Ok(Step {
            read: records.len(),
            ready,
        })
    }

    fn open(&mut self, assigned: &Assigned) -> Result<Job, String> {
        let mut trace = self.traces.remove(&assigned.key());
        let body = crate::follow::open_dispatch(&self.sessions, self.identity.node, assigned)
            .map_err(|e| e.to_string())?;
        let epoch = assigned.epoch.expect("open_dispatch needs an epoch");
        if let Some(trace) = &mut trace {
            trace.mark("opened");
        }
        Ok(Job {
            task: assigned.task,
            attempt: assigned.attempt,
            epoch,
            session: self.sessions[&epoch].clone(),
            body,
            deadline_at: assigned.deadline_at,
            trace,
        })
    }

    /// Starts the trace of a dispatch just read; forgets that of one the log closed.
    fn trace(&mut self, applied: &Applied, recorded_at: chrono::DateTime<Utc>) {
        match applied {
            Applied::Dispatched(key) => {
                if let Some(mut trace) = JobTrace::start(recorded_at) {
                    trace.mark("read");
                    self.traces.insert(*key, trace);
                }
            }
            Applied::Closed(key) => {
                self.traces.remove(key);
            }
            _ => {}
        }
    }

    fn on_applied(&mut self, applied: Applied) {
        match applied {
            Applied::Grant(grant) => self.accept(grant),
            Applied::Catalog(catalog) => {
                for (model, sha) in &self.served {
                    match catalog.get(model) {
                        None => warn!(
                            "warning: the coordinator's catalog has no model {model}; no \
                             request will name it"
                        ),
                        Some(want) if want != sha => warn!(
                            "warning: the catalog says {model} is sha256 {want}, this node \
                             serves {sha}: its results will not match other nodes'"
                        ),
                        Some(_) => {}
                    }
                }
            }
            Applied::CoordinatorKey
            | Applied::Ignored
            | Applied::Dispatched(_)
            | Applied::Closed(_) => {}
        }
    }

    /// Verifies a grant's signature, then (only then) unwraps it with the node's key.
    fn accept(&mut self, g: GrantToAccept) {
        let epoch = g.grant.epoch;
        if self.sessions.contains_key(&epoch) {
            return;
        }
        let Some(coordinator) = g.coordinator_key else {
            warn!(
                "warning: a session grant for epoch {epoch} arrived before any coordinator key; \
                 it cannot be checked and is not used"
            );
            return;
        };
        match accept_session(&coordinator, &self.identity.key, &g.grant) {
            Ok(session) => {
                info!("accepted the session grant for epoch {epoch}");
                self.sessions.insert(epoch, session);
            }
            Err(e) => warn!("warning: refused the session grant for epoch {epoch}: {e}"),
        }
    }
}

/// What the node follows: the `--log` URL, or, when it holds `{node}`, this node's feed (the
/// template filled in with its id; its URL is returned too).
pub fn follow_url(log: &str, node: NodeId) -> Result<(LogUrl, Option<String>), DaemonError> {
    if !FeedTopics::is_template(log) {
        return Ok((LogUrl::parse(log)?, None));
    }
    let bad = |reason: String| DaemonError::LogUrl {
        url: log.to_owned(),
        reason,
    };
    let Some(rest) = log.strip_prefix("kafka://") else {
        return Err(bad(
            "{node} names a per-node feed, which only a kafka:// log has".into(),
        ));
    };
    let (bootstrap, topic) = rest
        .split_once('/')
        .ok_or_else(|| bad("no topic after the broker address".into()))?;
    let (template, query) = match topic.split_once('?') {
        Some((t, q)) => (t, Some(q)),
        None => (topic, None),
    };
    let topics = FeedTopics::parse(template).map_err(|e| bad(e.reason))?;
    let url = match query {
        Some(q) => format!("kafka://{bootstrap}/{}?{q}", topics.topic(node)),
        None => format!("kafka://{bootstrap}/{}", topics.topic(node)),
    };
    Ok((LogUrl::parse(&url)?, Some(url)))
}

async fn open_log(url: &LogUrl, feed: bool) -> Result<AnyReader, DaemonError> {
    // The coordinator creates the log before it answers, so this rarely waits; a log on a
    // slow shared mount may still appear a moment late. A node's feed is made by the
    // coordinator's feed projector when it copies the registration, a moment after the
    // registration is answered.
    let mut backoff = retry_backoff();
    let mut tries = 0;
    loop {
        match url.open_reader() {
            Ok(reader) => return Ok(reader),
            Err(e @ LogError::Io { .. }) if tries < 20 => {
                if tries == 0 {
                    info!("waiting for the log: {e}");
                }
            }
            Err(e @ LogError::NoSuchTopic { .. }) if feed && tries < 20 => {
                if tries == 0 {
                    info!("waiting for this node's feed: {e}");
                }
            }
            Err(e) => return Err(e.into()),
        }
        tries += 1;
        backoff.pause().await;
    }
}

/// Registers, retrying while the coordinator is unreachable or failing. Returns the status
/// (201 new, 200 already registered with the same parameters).
async fn register(
    client: &CoordinatorClient,
    registration: &Registration,
) -> Result<u16, DaemonError> {
    let mut backoff = retry_backoff();
    let mut failures: u32 = 0;
    loop {
        let why = match client.post_json("/v1/nodes", registration).await {
            Ok(a) if a.status == 200 || a.status == 201 => return Ok(a.status),
            Ok(a) if a.status >= 500 => a.describe(),
            Ok(a) => return Err(DaemonError::Registration(a.describe())),
            Err(e) if e.is_retryable_call() => e.to_string(),
            Err(e) => return Err(e.into()),
        };
        if failures.is_multiple_of(10) {
            info!("registration not done yet ({why}); retrying");
        }
        failures += 1;
        backoff.pause().await;
    }
}

/// A heartbeat signed by the node's key over its id and the time (the coordinator takes a
/// signed time once, and only near its own clock).
#[derive(Debug, Serialize)]
struct HeartbeatBody {
    at: i64,
    /// Base64.
    signature: String,
}

async fn signed_heartbeat(identity: &Arc<Identity>) -> HeartbeatBody {
    let identity = Arc::clone(identity);
    // RSA signing takes milliseconds: off the runtime's threads.
    tokio::task::spawn_blocking(move || {
        let at = Utc::now().timestamp();
        let statement = prlx_events::crypto::heartbeat_statement(identity.node, at);
        let signature =
            prlx_events::crypto::sign(&identity.key, &statement, &mut rsa::rand_core::OsRng);
        HeartbeatBody {
            at,
            signature: base64::engine::general_purpose::STANDARD.encode(signature),
        }
    })
    .await
    .expect("signing does not panic")
}

async fn heartbeats(
    client: CoordinatorClient,
    identity: Arc<Identity>,
    registration: Registration,
    every: Duration,
) {
    let path = format!("/v1/nodes/{}/heartbeat", identity.node.0);
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate; registration just happened
    let mut failing = false;
    loop {
        ticker.tick().await;
        let body = signed_heartbeat(&identity).await;
        let problem = match client.post_json(&path, &body).await {
            Ok(a) if a.is_success() => None,
            Ok(a) if a.status == 404 => {
                // The coordinator does not know us (a fresh log): join again.
                info!("the coordinator does not know this node; registering again");
                match client.post_json("/v1/nodes", &registration).await {
                    Ok(r) if r.is_success() => None,
                    Ok(r) => Some(format!("registering again: {}", r.describe())),
                    Err(e) => Some(format!("registering again: {e}")),
                }
            }
            Ok(a) => Some(a.describe()),
            Err(e) => Some(e.to_string()),
        };
        match problem {
            Some(why) if !failing => {
                failing = true;
                warn!(
                    "warning: heartbeat failed ({why}); retrying every {} s",
                    every.as_secs()
                );
            }
            None if failing => {
                failing = false;
                info!("heartbeats delivered again");
            }
            _ => {}
        }
    }
}

/// Posts every finished result; ends when the workers are gone and every post is done.
async fn report_results(
    client: CoordinatorClient,
    node: NodeId,
    mut done: mpsc::UnboundedReceiver<Finished>,
) {
    let mut posts = JoinSet::new();
    loop {
        tokio::select! {
            finished = done.recv() => match finished {
                Some(f) => {
                    posts.spawn(report_one(client.clone(), node, f));
                }
                None => break,
            },
            Some(_) = posts.join_next(), if !posts.is_empty() => {}
        }
    }
    while posts.join_next().await.is_some() {}
}

/// Posts one result until the coordinator answers 200 (recorded or duplicate) or refuses it.
async fn report_one(client: CoordinatorClient, node: NodeId, mut finished: Finished) {
    let path = format!("/v1/nodes/{}/results", node.0);
    let (task, attempt) = (finished.task, finished.attempt);
    if let Some(trace) = &mut finished.trace {
        trace.mark("posting");
    }
    let started = tokio::time::Instant::now();
    let mut backoff = retry_backoff();
    let mut failures: u32 = 0;
    loop {
        let why = match client.post_json(&path, &finished.report).await {
            Ok(a) if a.status == 200 => {
                if let Some(trace) = &mut finished.trace {
                    trace.mark("reported");
                    trace::report(trace, format_args!("{task} attempt {attempt}"));
                }
                let outcome = a.json()["outcome"].as_str().unwrap_or("ok").to_owned();
                info!("reported {task} attempt {attempt}: {outcome}");
                return;
            }
            Ok(a) if a.status >= 500 => a.describe(),
            Ok(a) => {
                warn!(
                    "warning: the coordinator refused the result of {task} attempt {attempt}: {}",
                    a.describe()
                );
                return;
            }
            Err(e) => e.to_string(),
        };
        if started.elapsed() > REPORT_GIVE_UP {
            warn!(
                "warning: giving up on reporting {task} attempt {attempt} after {} s: {why}",
                REPORT_GIVE_UP.as_secs()
            );
            return;
        }
        if failures.is_multiple_of(10) {
            info!("reporting {task} attempt {attempt} failed ({why}); retrying");
        }
        failures += 1;
        backoff.pause().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_is_named_by_the_library_version() {
        assert_eq!(
            runtime_name(Path::new("/x/libonnxruntime.so.1.32.0")),
            "onnxruntime-1.32.0"
        );
        assert_eq!(
            runtime_name(Path::new("/x/libonnxruntime.1.22.1.dylib")),
            "onnxruntime-1.22.1"
        );
        assert_eq!(
            runtime_name(Path::new("/nonexistent/onnxruntime.dll")),
            "onnxruntime-unknown"
        );
    }

    #[test]
    fn runtime_follows_a_symlink_without_a_version() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("libonnxruntime.so.1.20.0");
        std::fs::write(&real, b"").unwrap();
        let link = dir.path().join("libonnxruntime.so");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(runtime_name(&link), "onnxruntime-1.20.0");
    }

    #[test]
    fn cpu_devices_name_the_architecture() {
        let device = device_name(Provider::Cpu);
        assert!(
            device.starts_with(&format!("cpu-{}", std::env::consts::ARCH)),
            "{device}"
        );
        assert_eq!(device_name(Provider::Cuda), "cuda");
    }

    #[test]
    fn a_log_url_with_node_names_this_node_s_feed() {
        let node = NodeId(Hash32([0xcd; 32]));
        let hex = "cd".repeat(32);
        let (url, feed) = follow_url(
            "kafka://127.0.0.1:9092/prlx-node.{node}?fetch_wait_ms=20",
            node,
        )
        .unwrap();
        let want = format!("kafka://127.0.0.1:9092/prlx-node.{hex}?fetch_wait_ms=20");
        assert_eq!(feed.as_deref(), Some(want.as_str()));
        assert_eq!(url, LogUrl::parse(&want).unwrap());
        // A plain log URL is the log itself.
        let (url, feed) = follow_url("kafka://127.0.0.1:9092/prlx-events", node).unwrap();
        assert_eq!(feed, None);
        assert_eq!(
            url,
            LogUrl::parse("kafka://127.0.0.1:9092/prlx-events").unwrap()
        );
        for (bad, why) in [
            ("file:///tmp/{node}", "only a kafka:// log"),
            ("kafka://h:1/a/{node}", "[a-zA-Z0-9._-]"),
            ("kafka://h:1/{node}{node}", "exactly once"),
        ] {
            let err = follow_url(bad, node).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
