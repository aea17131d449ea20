//! The soak: one `prlx-coordinator serve` on a file log and several tiny-model `prlx-node run`s
//! on loopback under sustained load for minutes, with the resident memory of each process
//! sampled as it goes. The soak bench (tests/benches/soak.rs) runs it for ten minutes and
//! prints its figures; the short soak test (tests/tests/soak_short.rs) runs it for about a
//! minute and bounds the coordinator's memory per completed request.
//!
//! The load is a closed loop by default: `clients` submissions in flight at most, a new one
//! sent as soon as one ends (its `ResultReturned` or `RequestFailed` is on the log), so the
//! queue stays bounded and the nodes stay busy. An open loop (a fixed rate, whatever the
//! nodes keep up with) is there to compare.
//!
//! Memory is `VmRSS` of `/proc/PID/status`, sampled with the count of ended requests. The
//! first `warmup_percent` of the run is warm-up (allocator arenas, caches, the first epoch);
//! the figures are taken from the sample at its end to the last one. Latencies are the
//! coordinator's own `recorded_at` of each request's events, read back from the log after
//! the run: admitted (`RequestAccepted`) to its first `TaskDispatched`, and to its
//! `ResultReturned`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use prlx_commands::consent::ConsentDomain;
use prlx_commands::testkit::intake::signed;
use prlx_events::crypto::public_key_pem;
use prlx_events::log::{AnyReader, Batches, LogReader, LogUrl, Offset};
use prlx_events::{Envelope, Event};
use prlx_node::client::CoordinatorClient;
use tokio::sync::Semaphore;

use crate::harness::cluster::FileCluster;
use crate::harness::launch::NodeLaunch;
use crate::harness::models::{tiny_catalog, tiny_submission, TINY};
use crate::harness::process::{cpu_ms, cpu_ns, Proc};

/// The nodes' log filter: their per-job lines (three a request) would be most of what the run
/// prints, and every line crosses a pipe to this process.
const NODE_RUST_LOG: &str = "info,prlx_node::worker=warn,prlx_node::daemon::reporter=warn";

/// Each request's deadline: far above its latency under this load, so none expires unless
/// something is wrong.
const DEADLINE_SECONDS: u32 = 120;

/// Credits bought before the load starts: a request costs at most `10 + max_tokens` under
/// the tiny catalog, so this lasts millions of requests.
const CREDITS: u64 = 1_000_000_000;

/// How long the requests in flight when the load stops may take to end.
const DRAIN: Duration = Duration::from_secs(60);

/// How the load is offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// `clients` submissions in flight at most; one sent as soon as one ends.
    Closed { clients: usize },
    /// `per_second` submissions a second, however many are in flight.
    Open { per_second: u32 },
}

/// What one soak runs.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// Tiny-model nodes, one slot each.
    pub nodes: usize,
    pub load: Load,
    /// How long the load runs (the drain after it is not counted).
    pub duration: Duration,
    /// How often memory is sampled.
    pub sample_every: Duration,
    /// Share of `duration` counted as warm-up, in percent.
    pub warmup_percent: u32,
    /// Warm-up lasts at least until this many requests completed (the coordinator keeps a
    /// window of settled requests: its memory grows until the window is full).
    pub warmup_requests: u64,
    /// Each request's `max_tokens`.
    pub max_tokens: u32,
    /// More flags for `prlx-coordinator serve`.
    pub serve_args: Vec<String>,
}

impl Default for SoakConfig {
    /// Ten minutes, three nodes, two submissions in flight per node, a sample every 5 s.
    fn default() -> Self {
        SoakConfig {
            nodes: 3,
            load: Load::Closed { clients: 6 },
            duration: Duration::from_secs(600),
            sample_every: Duration::from_secs(5),
            warmup_percent: 20,
            warmup_requests: 0,
            max_tokens: 16,
            serve_args: Vec::new(),
        }
    }
}

/// One memory sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Milliseconds since the load started.
    pub at_ms: u64,
    /// Requests that have their result on the log so far.
    pub completed: u64,
    /// Requests that failed so far.
    pub failed: u64,
    /// The coordinator's `VmRSS`, KiB.
    pub coordinator_kib: u64,
    /// Each node's `VmRSS`, KiB.
    pub nodes_kib: Vec<u64>,
}

/// What a soak measured.
#[derive(Debug, Clone)]
pub struct SoakReport {
    pub config: SoakConfig,
    pub samples: Vec<Sample>,
    /// The sample that ends the warm-up.
    pub warm: usize,
    /// Submissions answered 202.
    pub accepted: u64,
    /// Submissions answered otherwise, or not at all.
    pub refused: u64,
    /// Accepted requests with neither a result nor a failure after the drain.
    pub unfinished: u64,
    /// Admitted to first dispatch, µs, sorted: the requests admitted after the warm-up.
    pub admit_to_dispatch_us: Vec<i64>,
    /// Admitted to result returned, µs, sorted: the requests admitted after the warm-up.
    pub admit_to_result_us: Vec<i64>,
    /// CPU time over the load, ms: the coordinator, each node, then this process.
    pub cpu_ms: Vec<f64>,
    /// One past the last record on the log at the end.
    pub log_records: u64,
}

/// Runs a soak; panics (its processes killed as the harness drops them) if the cluster
/// cannot be started or the log cannot be read.
pub fn run(config: &SoakConfig) -> SoakReport {
    let catalog = tiny_catalog(&[TINY], 5);
    // One loopback address for the client and every node: the per-caller rate limit would
    // throttle the load, not measure the coordinator.
    let mut serve_args = vec!["--rate-limit", "0"];
    serve_args.extend(config.serve_args.iter().map(String::as_str));
    let cluster = FileCluster::start_with(&catalog, "coordinator/1", &serve_args);
    let nodes: Vec<Proc> = (0..config.nodes)
        .map(|i| {
            let (proc, _) = cluster.spawn_node_with(&format!("node-{i}"), |launch| NodeLaunch {
                env: vec![("RUST_LOG".into(), NODE_RUST_LOG.into())],
                ..launch
            });
            proc
        })
        .collect();
    cluster.deposit(CREDITS);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(drive(config, &cluster, &nodes))
}

/// Submissions as the client counts their answers, and requests as the log follower counts
/// their ends.
#[derive(Debug, Default)]
struct Counts {
    completed: AtomicU64,
    failed: AtomicU64,
    accepted: AtomicU64,
    refused: AtomicU64,
}

async fn drive(config: &SoakConfig, cluster: &FileCluster, nodes: &[Proc]) -> SoakReport {
    let reader = LogUrl::parse(&cluster.log_url())
        .unwrap()
        .open_reader()
        .unwrap();
    let from = reader.end().await.unwrap();
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let clients = match config.load {
        Load::Closed { clients } => clients,
        Load::Open { .. } => 0,
    };
    let slots = Arc::new(Semaphore::new(clients));
    let follower = tokio::spawn(follow(
        reader,
        from,
        counts.clone(),
        slots.clone(),
        stop.clone(),
    ));

    // The coordinator, the nodes, and this process (the client and the log follower).
    let pids: Vec<u32> = std::iter::once(cluster.coordinator_pid())
        .chain(nodes.iter().map(Proc::pid))
        .chain([std::process::id()])
        .collect();
    let cpu_before: Vec<_> = pids.iter().map(|&pid| cpu_ns(pid)).collect();
    let submit = Arc::new(Submitter::new(cluster, config.max_tokens, counts.clone()));
    let started = Instant::now();
    let mut load = Vec::new();
    match config.load {
        Load::Closed { clients } => {
            for _ in 0..clients {
                let (submit, slots, stop) = (submit.clone(), slots.clone(), stop.clone());
                load.push(tokio::spawn(async move {
                    let client = submit.client();
                    loop {
                        slots.acquire().await.unwrap().forget();
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        if !submit.send(&client).await {
                            // Nothing is in flight for this slot: give it back, after a pause
                            // so that a refusing coordinator is not hammered.
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            slots.add_permits(1);
                        }
                    }
                }));
            }
        }
        Load::Open { per_second } => {
            let (submit, stop) = (submit.clone(), stop.clone());
            load.push(tokio::spawn(async move {
                // A few kept connections, taken in turn: sends overlap when answers are slow.
                let clients: Vec<_> = (0..16).map(|_| submit.client()).collect();
                let mut tick = tokio::time::interval(Duration::from_secs(1) / per_second.max(1));
                let mut sends = tokio::task::JoinSet::new();
                for i in 0.. {
                    tick.tick().await;
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let (submit, client) = (submit.clone(), clients[i % clients.len()].clone());
                    sends.spawn(async move { submit.send(&client).await });
                    while sends.try_join_next().is_some() {}
                }
                while sends.join_next().await.is_some() {}
            }));
        }
    }

    let mut samples = Vec::new();
    let mut warm = None;
    let mut warm_at = Utc::now();
    let warmup = config.duration * config.warmup_percent / 100;
    let mut tick = tokio::time::interval(config.sample_every);
    loop {
        tick.tick().await;
        let at = started.elapsed();
        let sample = Sample {
            at_ms: u64::try_from(at.as_millis()).unwrap(),
            completed: counts.completed.load(Ordering::SeqCst),
            failed: counts.failed.load(Ordering::SeqCst),
            coordinator_kib: rss_kib(pids[0]),
            nodes_kib: nodes.iter().map(|node| rss_kib(node.pid())).collect(),
        };
        // A process that exited reads as no memory at all, which would pass for flat.
        assert!(
            sample.coordinator_kib > 0,
            "the coordinator exited during the soak"
        );
        if let Some(i) = sample.nodes_kib.iter().position(|&k| k == 0) {
            panic!("node-{i} exited during the soak");
        }
        let completed = sample.completed;
        samples.push(sample);
        if warm.is_none() && at >= warmup && completed >= config.warmup_requests {
            warm = Some(samples.len() - 1);
            warm_at = Utc::now();
        }
        if at >= config.duration {
            break;
        }
    }
    let cpu: Vec<f64> = pids
        .iter()
        .zip(&cpu_before)
        .map(|(&pid, before)| cpu_ms(before, &cpu_ns(pid)))
        .collect();
    stop.store(true, Ordering::SeqCst);
    // Wake every closed-loop client so it sees the stop.
    slots.add_permits(clients);
    for task in load {
        task.await.unwrap();
    }
    let accepted = counts.accepted.load(Ordering::SeqCst);
    let ended = || counts.completed.load(Ordering::SeqCst) + counts.failed.load(Ordering::SeqCst);
    let drained = Instant::now() + DRAIN;
    while ended() < accepted && Instant::now() < drained {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if follower.is_finished() {
        // It follows until aborted: finished means it panicked, which says why.
        follower.await.unwrap();
    } else {
        follower.abort();
    }

    let reader = LogUrl::parse(&cluster.log_url())
        .unwrap()
        .open_reader()
        .unwrap();
    let (admit_to_dispatch_us, admit_to_result_us, log_records) =
        latencies(&reader, from, warm_at).await;
    SoakReport {
        config: config.clone(),
        samples,
        warm: warm.expect("the run is longer than its warm-up"),
        accepted,
        refused: counts.refused.load(Ordering::SeqCst),
        unfinished: accepted.saturating_sub(ended()),
        admit_to_dispatch_us,
        admit_to_result_us,
        cpu_ms: cpu,
        log_records,
    }
}

/// Sends the tiny model's submissions, each signed with an idempotency key of its own.
struct Submitter {
    url: String,
    cert: std::path::PathBuf,
    account: String,
    client_pem: String,
    /// What the client signs its submissions under.
    domain: ConsentDomain,
    max_tokens: u32,
    next: AtomicU64,
    counts: Arc<Counts>,
    /// Refusals printed so far: the first few say why, the rest are counted.
    told: AtomicU64,
}

impl Submitter {
    fn new(cluster: &FileCluster, max_tokens: u32, counts: Arc<Counts>) -> Submitter {
        // What `TestChain::signed` does, without the chain: the cluster's chain stays on the
        // thread that started it.
        prlx_commands::testkit::accounts::know(&prlx_chain::devchain::dev_signer(
            prlx_chain::devchain::dev_role::CLIENT,
        ));
        Submitter {
            url: cluster.url.clone(),
            cert: cluster.cert.clone(),
            account: cluster.account(),
            client_pem: public_key_pem(&cluster.client_key.to_public_key()),
            domain: cluster.chain.consent_domain(),
            max_tokens,
            next: AtomicU64::new(0),
            counts,
            told: AtomicU64::new(0),
        }
    }

    /// A client on a connection of its own.
    fn client(&self) -> CoordinatorClient {
        CoordinatorClient::new(&self.url, Some(&self.cert)).unwrap()
    }

    /// Sends one submission; whether it was accepted.
    async fn send(&self, client: &CoordinatorClient) -> bool {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let prompt = format!("soak {n}: tell me a story");
        let body = tiny_submission(
            &self.account,
            &prompt,
            self.max_tokens,
            DEADLINE_SECONDS,
            &self.client_pem,
        );
        let body = signed(body, &format!("soak-{n}"), &self.domain);
        let why = match client.post_json("/v1/requests", &body).await {
            Ok(answer) if answer.status == 202 => {
                self.counts.accepted.fetch_add(1, Ordering::SeqCst);
                return true;
            }
            Ok(answer) => answer.describe(),
            Err(e) => e.to_string(),
        };
        self.counts.refused.fetch_add(1, Ordering::SeqCst);
        if self.told.fetch_add(1, Ordering::SeqCst) < 5 {
            eprintln!("soak: submission {n} not accepted: {why}");
        }
        false
    }
}

/// Follows the log from `from`, counting requests as they end and handing each one's slot to
/// the next submission, until `stop` and the task is aborted.
async fn follow(
    reader: AnyReader,
    from: Offset,
    counts: Arc<Counts>,
    slots: Arc<Semaphore>,
    stop: Arc<AtomicBool>,
) {
    let mut next = from;
    loop {
        reader
            .wait_for(next, Duration::from_millis(200))
            .await
            .unwrap();
        for record in reader.read(next, 1024).await.unwrap() {
            next = record.offset + 1;
            let ended = match ending(&record.payload) {
                Some(Ending::Completed) => &counts.completed,
                Some(Ending::Failed) => &counts.failed,
                None => continue,
            };
            ended.fetch_add(1, Ordering::SeqCst);
            if !stop.load(Ordering::SeqCst) {
                slots.add_permits(1);
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Completed,
    Failed,
}

/// Whether a record ends a request.
fn ending(payload: &[u8]) -> Option<Ending> {
    match type_of(payload)? {
        b"ResultReturned" => Some(Ending::Completed),
        b"RequestFailed" => Some(Ending::Failed),
        _ => None,
    }
}

/// A record's event type, read off its head: the envelope names it before its payload
/// (`{"event_id":…,"type":"…"`), so most records are passed over without decoding them.
fn type_of(payload: &[u8]) -> Option<&[u8]> {
    const KEY: &[u8] = br#""type":""#;
    let head = &payload[..payload.len().min(128)];
    let at = head.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = head[at..].iter().position(|&b| b == b'"')?;
    Some(&head[at..at + len])
}

/// Each request's admit → first dispatch and admit → result, µs, sorted, for the requests
/// admitted at or after `since`; and the log's record count. Reads the log a batch at a
/// time: ten minutes of records would be hundreds of MB at once.
async fn latencies(
    reader: &AnyReader,
    from: Offset,
    since: DateTime<Utc>,
) -> (Vec<i64>, Vec<i64>, u64) {
    #[derive(Default)]
    struct Times {
        accepted: Option<DateTime<Utc>>,
        dispatched: Option<DateTime<Utc>>,
        returned: Option<DateTime<Utc>>,
    }
    let mut times: BTreeMap<u64, Times> = BTreeMap::new();
    let mut end = from;
    let mut batches = Batches::new(reader, from);
    while let Some(batch) = batches.next().await.unwrap() {
        for record in batch {
            end = record.offset + 1;
            let wanted: [&[u8]; 3] = [b"RequestAccepted", b"TaskDispatched", b"ResultReturned"];
            if !type_of(&record.payload).is_some_and(|t| wanted.contains(&t)) {
                continue;
            }
            let envelope = Envelope::decode(&record.payload).unwrap();
            let at = envelope.header.recorded_at;
            match envelope.event {
                Event::RequestAccepted(e) => {
                    times.entry(e.request_id.0).or_default().accepted = Some(at);
                }
                Event::TaskDispatched(e) => {
                    let t = times.entry(e.task_id.request.0).or_default();
                    t.dispatched.get_or_insert(at);
                }
                Event::ResultReturned(e) => {
                    times.entry(e.request_id.0).or_default().returned = Some(at);
                }
                _ => {}
            }
        }
    }
    let micros = |from: DateTime<Utc>, to: DateTime<Utc>| (to - from).num_microseconds().unwrap();
    let (mut dispatch, mut result) = (Vec::new(), Vec::new());
    for t in times.values() {
        let Some(accepted) = t.accepted.filter(|&a| a >= since) else {
            continue;
        };
        dispatch.extend(t.dispatched.map(|d| micros(accepted, d)));
        result.extend(t.returned.map(|r| micros(accepted, r)));
    }
    dispatch.sort_unstable();
    result.sort_unstable();
    (dispatch, result, end)
}

/// `VmRSS` of process `pid`, KiB; 0 once it has exited.
pub fn rss_kib(pid: u32) -> u64 {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return 0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The `p`th percentile (nearest rank) of `sorted`; `None` when it is empty.
pub fn percentile(sorted: &[i64], p: usize) -> Option<i64> {
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// The least-squares slope of `y` over `x`; 0 with fewer than two distinct `x`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x / n, sy + y / n));
    let (sxy, sxx) = points.iter().fold((0.0, 0.0), |(sxy, sxx), (x, y)| {
        (sxy + (x - mx) * (y - my), sxx + (x - mx) * (x - mx))
    });
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx
    }
}

/// Microseconds as milliseconds with two decimals.
fn ms(us: Option<i64>) -> String {
    match us {
        Some(us) => format!("{}.{:02}", us / 1000, (us % 1000).abs() / 10),
        None => "–".into(),
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

impl SoakReport {
    fn warm_sample(&self) -> &Sample {
        &self.samples[self.warm]
    }

    fn last(&self) -> &Sample {
        self.samples.last().expect("at least one sample")
    }

    /// Requests completed between the end of the warm-up and the last sample.
    pub fn completed_after_warmup(&self) -> u64 {
        self.last().completed - self.warm_sample().completed
    }

    /// Seconds between the end of the warm-up and the last sample.
    fn seconds_after_warmup(&self) -> f64 {
        (self.last().at_ms - self.warm_sample().at_ms) as f64 / 1e3
    }

    /// The coordinator's memory per completed request after the warm-up, bytes: (RSS at the
    /// end − RSS after the warm-up) / requests completed in between. `None` when none
    /// completed.
    pub fn bytes_per_completed_request(&self) -> Option<i64> {
        let completed = i64::try_from(self.completed_after_warmup()).unwrap();
        let grown = i64::try_from(self.last().coordinator_kib).unwrap()
            - i64::try_from(self.warm_sample().coordinator_kib).unwrap();
        (completed > 0).then(|| grown * 1024 / completed)
    }

    /// [`bytes_per_completed_request`](Self::bytes_per_completed_request) of each node,
    /// over every request completed (a node follows the whole log, not only its own work).
    pub fn node_bytes_per_completed_request(&self) -> Vec<Option<i64>> {
        let completed = i64::try_from(self.completed_after_warmup()).unwrap();
        let (warm, last) = (self.warm_sample(), self.last());
        warm.nodes_kib
            .iter()
            .zip(&last.nodes_kib)
            .map(|(&w, &l)| {
                let grown = i64::try_from(l).unwrap() - i64::try_from(w).unwrap();
                (completed > 0).then(|| grown * 1024 / completed)
            })
            .collect()
    }

    /// The least-squares slope of the coordinator's RSS after the warm-up: KiB per minute,
    /// and bytes per completed request.
    pub fn slopes(&self) -> (f64, f64) {
        let after = &self.samples[self.warm..];
        let over_time: Vec<(f64, f64)> = after
            .iter()
            .map(|s| (s.at_ms as f64 / 60e3, s.coordinator_kib as f64))
            .collect();
        let over_requests: Vec<(f64, f64)> = after
            .iter()
            .map(|s| (s.completed as f64, s.coordinator_kib as f64 * 1024.0))
            .collect();
        (slope(&over_time), slope(&over_requests))
    }

    fn load(&self) -> String {
        match self.config.load {
            Load::Closed { clients } => format!("closed loop, {clients} in flight"),
            Load::Open { per_second } => format!("open loop, {per_second} submissions/s"),
        }
    }

    /// The figures, as markdown tables ready for BENCHMARKS.md.
    pub fn markdown(&self) -> String {
        let c = &self.config;
        let (warm, last) = (self.warm_sample(), self.last());
        let (per_minute, per_request) = self.slopes();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} tiny-model nodes ({TINY}, 1 slot each), {}, max_tokens {}, {} s of load \
             (warm-up: the first {} %), RSS sampled every {} s",
            c.nodes,
            self.load(),
            c.max_tokens,
            c.duration.as_secs(),
            c.warmup_percent,
            c.sample_every.as_secs_f64()
        );
        let _ = writeln!(out);
        let _ = writeln!(out, "| soak | value |");
        let _ = writeln!(out, "|---|---:|");
        let mut row = |name: &str, value: String| {
            let _ = writeln!(out, "| {name} | {value} |");
        };
        row(
            "requests completed (failed; refused; unfinished after the drain)",
            format!(
                "{} ({}; {}; {})",
                last.completed, last.failed, self.refused, self.unfinished
            ),
        );
        row(
            "completed requests/s after warm-up",
            format!(
                "{:.1}",
                self.completed_after_warmup() as f64 / self.seconds_after_warmup()
            ),
        );
        row(
            "coordinator RSS: load start / after warm-up / end (MiB)",
            format!(
                "{} / {} / {}",
                mib(self.samples[0].coordinator_kib),
                mib(warm.coordinator_kib),
                mib(last.coordinator_kib)
            ),
        );
        row(
            "coordinator RSS slope after warm-up (least squares)",
            format!("{per_minute:.0} KiB/min, {per_request:.0} bytes per completed request"),
        );
        row(
            "coordinator memory per completed request after warm-up (bytes)",
            self.bytes_per_completed_request()
                .map_or("–".into(), |b| b.to_string()),
        );
        let nodes = |s: &Sample| {
            s.nodes_kib
                .iter()
                .map(|&k| mib(k))
                .collect::<Vec<_>>()
                .join(", ")
        };
        row(
            "node RSS after warm-up → end (MiB)",
            format!("{} → {}", nodes(warm), nodes(last)),
        );
        let per_node: Vec<String> = self
            .node_bytes_per_completed_request()
            .iter()
            .map(|b| b.map_or("–".into(), |b| b.to_string()))
            .collect();
        row(
            "node memory per completed request (any node's) after warm-up (bytes)",
            per_node.join(", "),
        );
        let seconds = last.at_ms as f64 / 1e3;
        let cpu: Vec<String> = self
            .cpu_ms
            .iter()
            .map(|ms| format!("{:.0} %", ms / seconds / 10.0))
            .collect();
        let n = self.config.nodes;
        row(
            "CPU over the load: coordinator; nodes; client (% of one core)",
            format!("{}; {}; {}", cpu[0], cpu[1..=n].join(", "), cpu[n + 1]),
        );
        row("log records at the end", self.log_records.to_string());
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| latency, requests admitted after warm-up (ms) | n | p50 | p90 | p99 | max |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
        for (name, v) in [
            ("admit → first dispatch", &self.admit_to_dispatch_us),
            ("admit → result returned", &self.admit_to_result_us),
        ] {
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} | {} | {} |",
                v.len(),
                ms(percentile(v, 50)),
                ms(percentile(v, 90)),
                ms(percentile(v, 99)),
                ms(v.last().copied())
            );
        }
        out
    }

    /// The samples as a table of at most `rows` rows (every nth sample, and the last).
    pub fn samples_table(&self, rows: usize) -> String {
        let every = self.samples.len().div_ceil(rows.max(1)).max(1);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| s | completed | coordinator RSS (MiB) | node RSS (MiB) |"
        );
        let _ = writeln!(out, "|---:|---:|---:|---|");
        let last = self.samples.len() - 1;
        for (i, s) in self.samples.iter().enumerate() {
            if i % every != 0 && i != last && i != self.warm {
                continue;
            }
            let nodes: Vec<String> = s.nodes_kib.iter().map(|&k| mib(k)).collect();
            let _ = writeln!(
                out,
                "| {}{} | {} | {} | {} |",
                s.at_ms / 1000,
                if i == self.warm { " (warm)" } else { "" },
                s.completed,
                mib(s.coordinator_kib),
                nodes.join(", ")
            );
        }
        out
    }

    /// Every sample as CSV: seconds, completed, failed, the coordinator's RSS and each
    /// node's, KiB.
    pub fn csv(&self) -> String {
        let mut out = String::from("ms,completed,failed,coordinator_kib");
        for i in 0..self.config.nodes {
            let _ = write!(out, ",node{i}_kib");
        }
        out.push('\n');
        for s in &self.samples {
            let _ = write!(
                out,
                "{},{},{},{}",
                s.at_ms, s.completed, s.failed, s.coordinator_kib
            );
            for k in &s.nodes_kib {
                let _ = write!(out, ",{k}");
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), Some(50));
        assert_eq!(percentile(&v, 99), Some(99));
        assert_eq!(percentile(&v, 100), Some(100));
        assert_eq!(percentile(&[7], 1), Some(7));
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn the_slope_of_a_line_is_its_gradient() {
        let points: Vec<(f64, f64)> = (0..10).map(|x| (x as f64, 3.0 * x as f64 + 2.0)).collect();
        assert!((slope(&points) - 3.0).abs() < 1e-9);
        assert_eq!(slope(&[(1.0, 5.0)]), 0.0);
    }

    #[test]
    fn ending_records_are_told_by_their_type_alone() {
        assert_eq!(type_of(br#"{"type":"LogSealed"}"#), Some(&b"LogSealed"[..]));
        assert_eq!(type_of(br#"{"event_id":"x"}"#), None);
        let record = |t: &str| {
            format!(
                r#"{{"event_id":"{}","type":"{t}","version":1}}"#,
                uuid::Uuid::nil()
            )
        };
        assert_eq!(
            ending(record("ResultReturned").as_bytes()),
            Some(Ending::Completed)
        );
        assert_eq!(
            ending(record("RequestFailed").as_bytes()),
            Some(Ending::Failed)
        );
        assert_eq!(ending(record("ResultSubmitted").as_bytes()), None);
    }
}
