//! The soak (the figures are in `report`): one `prlx-coordinator serve` on a file log and several tiny-model `prlx-node run`s
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

mod report;
pub use report::percentile;

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

#[cfg(test)]
mod tests {
    use super::*;

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
