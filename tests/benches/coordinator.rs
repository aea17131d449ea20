//! Coordinator throughput on the file log: requests admitted -> scheduled -> dispatched, all
//! durable, side by side with a raw append of the same event bytes to the same kind of log.
//!
//! `cargo bench -p prlx-tests --bench coordinator` (`PRLX_BENCH_QUICK=1` for a short run).
//!
//! - coordinator: the real actor (decide, fold, sealing, group-committed appends), with 64
//!   registered nodes of 512 slots each and session grants issued before the clock starts;
//!   `PRLX_BENCH_CONCURRENCY` clients (256 by default) submit; the clock stops when a read
//!   (answered only after every earlier append is durable) sees nothing left in the queue.
//! - raw: the same records, read back from the coordinator's log, appended to a fresh file log
//!   in the same batches (one per command) by as many tasks: no deciding, folding or
//!   sealing, only the log.
//! - with `PRLX_BENCH_KAFKA` and `PRLX_BENCH_FEEDS=1`, each round also runs the coordinator
//!   with the nodes' feed projector beside it (`--node-feed-topic`): that row against the
//!   coordinator's is what the projector costs the coordinator, and "feeds complete" is when
//!   the projector had copied every dispatch to its node's topic (same clock).
//! - CPU per request: the process's CPU time (all threads, user and system) over the timed
//!   part, per request. Steadier than the rates on a shared machine, and it tells a side
//!   bound by its CPU from one bound by the log's syncs.
//! - on Kafka, the broker's CPU too (its pid from `scripts/kafka.sh`'s pid file or
//!   `PRLX_BENCH_KAFKA_PID`), since the broker does the log's work there.
//! - CPU by thread: each thread's CPU over the timed part as a share of its wall clock (1.0:
//!   a core busy all along; threads of one name summed), which tells a stage that saturates.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prlx_commands::actor::{self, Intake};
use prlx_commands::decide::{Command, Submission};
use prlx_commands::shell::{Coordinator, Outcome};
use prlx_commands::testkit::accounts;
use prlx_commands::testkit::fixtures::{self, catalog, cpu, model, registration};
use prlx_events::crypto::{node_id_of, public_key_pem};
use prlx_events::event::*;
use prlx_events::log::file::{FileLogOptions, FileLogWriter};
use prlx_events::log::{LogUrl, LogWriter};
use prlx_events::seal::StorageKey;
use prlx_events::{Envelope, Hash32};
use prlx_tests::harness::client::read_records;
use prlx_tests::harness::process::cpu_ns_by_name;

/// Concurrent clients (and raw appenders): `PRLX_BENCH_CONCURRENCY`, 256 by default. The
/// ratio depends on it: raw append is bound by the log's syncs, so more appenders in flight
/// make its group commits larger and it faster, while the coordinator measured flat from 64
/// to 1024 clients (BENCHMARKS.md).
fn concurrency() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| {
        std::env::var("PRLX_BENCH_CONCURRENCY")
            .ok()
            .map(|v| v.parse().expect("PRLX_BENCH_CONCURRENCY: a number"))
            .unwrap_or(256)
    })
}
const NODES: usize = 64;

/// A signed submission and its payload, taken once by the client that sends it.
type Prepared = std::sync::Mutex<Option<(Submission, Vec<u8>)>>;

fn submission(i: usize) -> (Submission, Vec<u8>) {
    let prompt = format!("prompt number {i}: what is the capital of France?");
    (
        Submission {
            source: IntakeSource::Local,
            deadline_seconds: 3600,
            credit_account: accounts::account("bench"),
            ..fixtures::submission("bench-model", prompt.as_bytes())
        }
        .signed(),
        prompt.into_bytes(),
    )
}

async fn run_coordinator(
    url: &str,
    requests: usize,
    keys: &[rsa::RsaPrivateKey],
    feeds: Option<&str>,
) -> (Timed, Vec<(usize, Vec<u8>)>, Option<Duration>) {
    let url = LogUrl::parse(url).unwrap();
    let coord = Coordinator::open(&url, "bench/1", StorageKey::from_bytes([3; 32]))
        .await
        .unwrap()
        .with_signing_key(keys[0].clone());
    let projector = feeds.map(|template| feeds::start(&url, template));
    let (handle, task) = actor::spawn(coord);
    handle
        .execute_command(Command::PublishCatalog(CatalogPublished {
            max_deadline_seconds: 7200,
            ..catalog(vec![CatalogModel {
                base_price: 1,
                per_token_price: 0,
                max_tokens_limit: 64,
                ..model("bench-model", Hash32([0; 32]))
            }])
        }))
        .await
        .unwrap();
    handle
        .execute_command(Command::DepositCredits {
            account: accounts::account("bench"),
            tx_ref: "t".into(),
            amount: u64::MAX / 4,
        })
        .await
        .unwrap();
    for key in &keys[1..] {
        let public = key.to_public_key();
        let registered = handle
            .execute_command(Command::RegisterNode(Box::new(NodeRegistered {
                models: vec!["bench-model".into()],
                slots: 512,
                stake: 1,
                execution_class: cpu("onnxruntime-1.22"),
                // A node serving a catalog model reports the catalog's file.
                model_hashes: [("bench-model".to_owned(), Hash32([0; 32]))]
                    .into_iter()
                    .collect(),
                ..registration(node_id_of(&public), public_key_pem(&public))
            })))
            .await
            .unwrap();
        assert!(matches!(registered, Outcome::Appended(_)), "{registered:?}");
    }
    // Grants are issued by housekeeping; a read returns once they are durable.
    handle.read_state(|_| ()).await.unwrap();
    if projector.is_some() {
        // The feeds' topics are made as the projector copies the registrations (a broker
        // round trip each): setup, not the steady state measured below.
        feeds::wait_for_position(&url, Instant::now()).await;
    }

    // Signed before the clock starts: the account signs on its side, and the door recovers
    // the key before the actor (neither is what this measures).
    let prepared: Arc<Vec<Prepared>> = Arc::new(
        (0..requests)
            .map(|i| std::sync::Mutex::new(Some(submission(i))))
            .collect(),
    );
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t = Timer::start();
    let clients: Vec<_> = (0..concurrency())
        .map(|_| {
            let handle = handle.clone();
            let next = Arc::clone(&next);
            let prepared = Arc::clone(&prepared);
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= requests {
                        break;
                    }
                    let (s, payload) = prepared[i].lock().unwrap().take().unwrap();
                    handle
                        .execute(
                            Intake::Submission {
                                submission: Box::new(s),
                                payload,
                            },
                            |_, _| (),
                        )
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    let (queued, running) = handle
        .read_state(|s| {
            (
                s.sched.queued(),
                s.requests.values().filter(|r| r.running.is_some()).count(),
            )
        })
        .await
        .unwrap();
    let elapsed = t.stop();
    assert_eq!(
        (queued, running),
        (0, requests),
        "every request was dispatched"
    );
    drop(handle);
    task.await.unwrap().unwrap();
    let feeds_complete = match projector {
        Some(projector) => Some(feeds::caught_up(&url, projector, t.wall).await),
        None => None,
    };

    // The records of the timed part, grouped into the batches they were appended in (one
    // command's events share a correlation id).
    let records = read_records(&url.open_reader().unwrap(), 0).await;
    let first_timed = records
        .iter()
        .position(|r| {
            matches!(
                Envelope::decode(&r.payload).unwrap().event,
                Event::RequestAccepted(_)
            )
        })
        .unwrap();
    // Rebuild as (batch index, record) pairs.
    let mut grouped = Vec::new();
    let mut idx = 0;
    let mut last_corr = None;
    for r in &records[first_timed..] {
        let corr = Envelope::decode(&r.payload).unwrap().header.correlation_id;
        if last_corr.is_some() && corr != last_corr {
            idx += 1;
        }
        last_corr = corr;
        grouped.push((idx, r.payload.clone()));
    }
    (elapsed, grouped, feeds_complete)
}

/// The records regrouped into the batches the coordinator appended them in.
fn batches(records: &[(usize, Vec<u8>)]) -> Vec<Vec<Vec<u8>>> {
    let mut batches: Vec<Vec<Vec<u8>>> = Vec::new();
    for (idx, r) in records {
        if batches.len() <= *idx {
            batches.push(Vec::new());
        }
        batches[*idx].push(r.clone());
    }
    batches
}

async fn run_raw(dir: &std::path::Path, records: &[(usize, Vec<u8>)]) -> Timed {
    let w = Arc::new(FileLogWriter::open(dir, FileLogOptions::default()).unwrap());
    let batches = batches(records);
    let queue = Arc::new(std::sync::Mutex::new(batches.into_iter()));
    let t = Timer::start();
    let tasks: Vec<_> = (0..concurrency())
        .map(|_| {
            let w = Arc::clone(&w);
            let queue = Arc::clone(&queue);
            tokio::spawn(async move {
                loop {
                    let next = queue.lock().unwrap().next();
                    let Some(batch) = next else { break };
                    w.append(batch).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    t.stop()
}

/// The process's CPU time so far (every thread, user and system), from `/proc/self/stat`.
fn cpu_time() -> Duration {
    cpu_time_of("self").expect("Linux's /proc")
}

/// The CPU time so far of process `pid` (every thread, user and system), `None` when it
/// cannot be read.
fn cpu_time_of(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some(Duration::from_millis(ticks * 10))
}

/// The Kafka broker's pid, when it runs on this machine: `PRLX_BENCH_KAFKA_PID`, else the
/// pid file of `scripts/kafka.sh` (`KAFKA_STATE_DIR`, default `.cache/kafka`). With it the
/// Kafka rows also count the broker's CPU, which does the log's work there (the bench
/// process's own CPU leaves it out).
fn broker_pid() -> Option<String> {
    if let Ok(pid) = std::env::var("PRLX_BENCH_KAFKA_PID") {
        return Some(pid);
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let state = std::env::var("KAFKA_STATE_DIR")
        .map(|d| root.join(d))
        .unwrap_or_else(|_| root.join(".cache/kafka"));
    let pid = std::fs::read_to_string(state.join("kafka.pid")).ok()?;
    let pid = pid.trim().to_owned();
    cpu_time_of(&pid).map(|_| pid)
}

/// A timed part's wall-clock and CPU time, and the CPU's share of the wall clock by thread
/// name (1.0: one core busy all along), which tells a stage that saturates its thread.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Timed {
    wall: Duration,
    cpu: Duration,
    /// The broker's CPU over the same part, on Kafka with its pid known.
    broker_cpu: Option<Duration>,
    threads: Vec<(String, Duration)>,
}

struct Timer {
    wall: Instant,
    cpu: Duration,
    broker: Option<(String, Duration)>,
    /// ns by thread name ([`cpu_ns_by_name`]).
    threads: std::collections::BTreeMap<String, u64>,
}

impl Timer {
    fn start() -> Self {
        let broker = std::env::var_os("PRLX_BENCH_KAFKA")
            .and(broker_pid())
            .and_then(|pid| cpu_time_of(&pid).map(|cpu| (pid, cpu)));
        Self {
            cpu: cpu_time(),
            broker,
            threads: cpu_ns_by_name(std::process::id()),
            wall: Instant::now(),
        }
    }

    fn stop(&self) -> Timed {
        let wall = self.wall.elapsed();
        let threads = cpu_ns_by_name(std::process::id())
            .into_iter()
            .map(|(name, ns)| {
                let before = self.threads.get(&name).copied().unwrap_or_default();
                (name, Duration::from_nanos(ns.saturating_sub(before)))
            })
            .filter(|(_, cpu)| !cpu.is_zero())
            .collect();
        Timed {
            wall,
            cpu: cpu_time() - self.cpu,
            broker_cpu: self
                .broker
                .as_ref()
                .and_then(|(pid, before)| cpu_time_of(pid).map(|now| now.saturating_sub(*before))),
            threads,
        }
    }

    /// "name share, …" of `timed`'s threads, busiest first.
    fn shares(timed: &Timed) -> String {
        let mut threads = timed.threads.clone();
        threads.sort_by_key(|t| std::cmp::Reverse(t.1));
        threads
            .iter()
            .map(|(name, cpu)| {
                format!("{name} {:.2}", cpu.as_secs_f64() / timed.wall.as_secs_f64())
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Keys for the coordinator and the nodes, cached between runs (generating 65 RSA keys takes
/// longer than the benchmark itself).
fn bench_keys() -> Vec<rsa::RsaPrivateKey> {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-keys");
    prlx_tests::harness::keys::cached_keys(&dir, NODES + 1)
}

/// The raw side on Kafka: the same records produced to a fresh one-partition topic of the
/// same broker by as many tasks as there are clients, one batch at a time, each batch awaited
/// until every record is acknowledged: an idempotent producer with `acks=all`, as the log's
/// writer is, without its transactions, deciding, folding or sealing.
#[cfg(feature = "kafka")]
async fn run_raw_kafka(bootstrap: &str, topic: &str, records: &[(usize, Vec<u8>)]) -> Timed {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    admin
        .create_topics(
            [&NewTopic::new(topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "1")
        .create()
        .unwrap();
    let batches = batches(records);
    let queue = Arc::new(std::sync::Mutex::new(batches.into_iter()));
    let t = Timer::start();
    let tasks: Vec<_> = (0..concurrency())
        .map(|_| {
            let producer = producer.clone();
            let queue = Arc::clone(&queue);
            let topic = topic.to_owned();
            tokio::spawn(async move {
                loop {
                    let next = queue.lock().unwrap().next();
                    let Some(batch) = next else { break };
                    let sends: Vec<_> = batch
                        .iter()
                        .map(|r| {
                            producer.send(
                                FutureRecord::<(), [u8]>::to(&topic).payload(r.as_slice()),
                                Duration::from_secs(30),
                            )
                        })
                        .collect();
                    for s in sends {
                        s.await.unwrap();
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    t.stop()
}

/// Every round's pair, as requests-per-second ratios, for the spread.
fn coord_vs_fed(coord: &[Timed], fed: &[Timed]) -> String {
    coord
        .iter()
        .zip(fed)
        .map(|(c, f)| format!("{:.2}", c.wall.as_secs_f64() / f.wall.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The nodes' feed projector of a bench run (Kafka only).
mod feeds {
    use std::time::{Duration, Instant};

    use prlx_events::log::{LogReader, LogUrl, Offset};
    use prlx_events::{Envelope, Event};

    #[cfg(feature = "kafka")]
    pub type Projector = prlx_commands::feeds::NodeFeeds;
    #[cfg(not(feature = "kafka"))]
    pub type Projector = ();

    /// Starts the projector of `url`'s log into the feeds `template` names.
    pub fn start(url: &LogUrl, template: &str) -> Projector {
        #[cfg(feature = "kafka")]
        if let LogUrl::Kafka {
            bootstrap,
            topic,
            options,
        } = url
        {
            let topics = prlx_events::log::feed::FeedTopics::parse(template).unwrap();
            return prlx_commands::feeds::NodeFeeds::start(
                bootstrap,
                topic,
                options.clone(),
                topics,
            )
            .unwrap();
        }
        panic!("feeds need a Kafka log and the kafka feature ({template})")
    }

    /// Waits until the projector has copied every dispatch on the log (its committed
    /// position passed the last one), stops it, and returns the time since `t`.
    pub async fn caught_up(url: &LogUrl, projector: Projector, t: Instant) -> Duration {
        let reader = url.open_reader().unwrap();
        let mut last_dispatch = 0;
        let mut from = 0;
        loop {
            let got = reader.read(from, 4096).await.unwrap();
            let Some(last) = got.last() else { break };
            from = last.offset + 1;
            for r in &got {
                if let Event::TaskDispatched(_) = Envelope::decode(&r.payload).unwrap().event {
                    last_dispatch = r.offset;
                }
            }
        }
        let done = wait_for_position_past(url, last_dispatch, t).await;
        drop(projector);
        done
    }

    /// Waits until the projector's position reaches the log's end (whose last record must
    /// have copies).
    pub async fn wait_for_position(url: &LogUrl, t: Instant) -> Duration {
        let end = url.open_reader().unwrap().end().await.unwrap();
        wait_for_position_past(url, end.saturating_sub(1), t).await
    }

    async fn wait_for_position_past(url: &LogUrl, offset: Offset, t: Instant) -> Duration {
        loop {
            if position(url) > offset {
                return t.elapsed();
            }
            assert!(
                t.elapsed() < Duration::from_secs(300),
                "the feeds never caught up"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The projector's committed position: the offset of its group on the log's topic.
    #[cfg(feature = "kafka")]
    fn position(url: &LogUrl) -> Offset {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let LogUrl::Kafka {
            bootstrap, topic, ..
        } = url
        else {
            unreachable!("checked at start")
        };
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", format!("prlx-feeds.{topic}"))
            .set("isolation.level", "read_committed")
            .create()
            .unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition(topic, 0);
        let committed = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .unwrap();
        match committed.find_partition(topic, 0).map(|p| p.offset()) {
            Some(rdkafka::Offset::Offset(o)) if o >= 0 => o as Offset,
            _ => 0,
        }
    }

    #[cfg(not(feature = "kafka"))]
    fn position(_: &LogUrl) -> Offset {
        unreachable!("start refused")
    }
}

fn main() {
    let quick = std::env::var_os("PRLX_BENCH_QUICK").is_some();
    // PRLX_BENCH_KAFKA=HOST:PORT runs both sides on that Kafka broker instead of file logs.
    let kafka = std::env::var("PRLX_BENCH_KAFKA")
        .ok()
        .filter(|b| !b.is_empty());
    let requests = if quick { 2_000 } else { 20_000 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let keys = bench_keys();
    let base = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("coordinator_bench");
    let _ = std::fs::remove_dir_all(&base);
    let rounds = if quick { 1 } else { 3 };
    let feeds = kafka.is_some() && std::env::var_os("PRLX_BENCH_FEEDS").is_some();
    let (mut coord, mut raw, mut fed) = (Vec::new(), Vec::new(), Vec::new());
    let mut fed_complete = Vec::new();
    let mut events = 0;
    for round in 0..rounds {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let url = match &kafka {
            Some(b) => format!("kafka://{b}/prlx-bench-coord-{stamp}"),
            None => format!("file://{}", base.join(format!("coord-{round}")).display()),
        };
        let (elapsed, records, _) = rt.block_on(run_coordinator(&url, requests, &keys, None));
        if feeds {
            let b = kafka.as_deref().unwrap_or_default();
            let url = format!("kafka://{b}/prlx-bench-fed-{stamp}");
            let template = format!("prlx-bench-feed-{stamp}.{{node}}");
            let (elapsed, _, complete) =
                rt.block_on(run_coordinator(&url, requests, &keys, Some(&template)));
            fed.push(elapsed);
            fed_complete.push(complete.expect("the projector ran"));
        }
        events = records.len();
        let raw_elapsed = match &kafka {
            #[cfg(feature = "kafka")]
            Some(b) => rt.block_on(run_raw_kafka(
                b,
                &format!("prlx-bench-raw-{stamp}"),
                &records,
            )),
            #[cfg(not(feature = "kafka"))]
            Some(_) => panic!("PRLX_BENCH_KAFKA needs the kafka feature"),
            None => rt.block_on(run_raw(&base.join(format!("raw-{round}")), &records)),
        };
        coord.push(elapsed);
        raw.push(raw_elapsed);
    }
    // Paired by round before sorting: the two ran one after the other on the same broker.
    let pairs = coord_vs_fed(&coord, &fed);
    coord.sort();
    raw.sort();
    fed.sort();
    let (c, r) = (coord[rounds / 2].clone(), raw[rounds / 2].clone());
    // CPU per request: the median of the rounds on its own (it need not be the wall median's).
    let cpu_per_request = |side: &[Timed]| {
        let mut cpu: Vec<Duration> = side.iter().map(|t| t.cpu).collect();
        cpu.sort();
        cpu[cpu.len() / 2].as_secs_f64() * 1e6 / requests as f64
    };
    println!(
        "{requests} requests, {events} events ({:.1} per request), {} concurrent clients, \
         {NODES} nodes; median of {rounds}",
        events as f64 / requests as f64,
        concurrency()
    );
    println!(
        "| path | requests/s (admitted -> dispatched, durable) | events/s | CPU per request (µs) |"
    );
    println!("|---|---:|---:|---:|");
    let row = |what: &str, took: Duration, cpu: f64| {
        println!(
            "| {what} | {:.0} | {:.0} | {cpu:.1} |",
            requests as f64 / took.as_secs_f64(),
            events as f64 / took.as_secs_f64()
        )
    };
    row(
        "coordinator (decide + fold + seal + append)",
        c.wall,
        cpu_per_request(&coord),
    );
    let (log, raw_what) = match &kafka {
        Some(_) => ("Kafka log", "raw rdkafka produce of the same records"),
        None => ("file log", "raw file-log append of the same records"),
    };
    println!("log: {log}");
    row(raw_what, r.wall, cpu_per_request(&raw));
    // The broker's CPU per request over each side's rounds (median), when it was measured.
    let broker_per_request = |side: &[Timed]| {
        let mut cpu: Vec<Duration> = side.iter().filter_map(|t| t.broker_cpu).collect();
        cpu.sort();
        cpu.get(cpu.len() / 2)
            .map(|c| c.as_secs_f64() * 1e6 / requests as f64)
    };
    if let (Some(bc), Some(br)) = (broker_per_request(&coord), broker_per_request(&raw)) {
        println!(
            "the broker's CPU per request (µs): coordinator's rounds {bc:.1}, raw's {br:.1}; \
             with the bench process's: {:.1} and {:.1}",
            bc + cpu_per_request(&coord),
            br + cpu_per_request(&raw)
        );
    }
    println!(
        "coordinator / raw: {:.2}",
        r.wall.as_secs_f64() / c.wall.as_secs_f64()
    );
    println!(
        "CPU by thread, share of the wall clock (median round): coordinator: {}; raw: {}",
        Timer::shares(&c),
        Timer::shares(&r)
    );
    if let Some(f) = fed.get(rounds / 2) {
        row(
            "coordinator with per-node feeds (a copy of each dispatch to its node's topic)",
            f.wall,
            cpu_per_request(&fed),
        );
        println!(
            "with feeds / without: {:.2} (each round: {})",
            c.wall.as_secs_f64() / f.wall.as_secs_f64(),
            pairs
        );
        let complete: Vec<String> = fed_complete
            .iter()
            .zip(&fed)
            .map(|(done, took)| {
                format!(
                    "{:.2} s ({:.0} requests/s; coordinator done at {:.2} s)",
                    done.as_secs_f64(),
                    requests as f64 / done.as_secs_f64(),
                    took.wall.as_secs_f64()
                )
            })
            .collect();
        println!("feeds complete after: {}", complete.join("; "));
    }
    let _ = std::fs::remove_dir_all(&base);
}
