//! Tokens/s through the node, dispatch to result, against bare ONNX Runtime decoding of the same
//! model and prompt in the same run (target ≥ 0.95: crypto and events are per request, not per
//! token).
//!
//! ```sh
//! scripts/setup-models.sh
//! cargo build --release --bins && cargo bench -p prlx-tests --bench through_node
//! ```
//!
//! Through the node: a real `prlx-coordinator serve` and a real `prlx-node run` (one slot) on a
//! file log; the clock runs from the moment the client's submission is answered to the moment
//! the client holds the result from `GET /v1/requests/{id}`, and the tokens are those of the
//! decrypted result. Bare: the `ort` loop of `node/benches/common/floor.rs` generating the
//! same number of tokens, in this process while the node is idle. Rounds alternate node, bare,
//! node, bare.
//!
//! The client waits for its result in one of two ways, alternating round by round (or only one
//! with `PRLX_BENCH_WAIT=log` or `=poll`):
//! - following the coordinator's log (as the node itself does: the file reader looks at the
//!   `COMMIT` file every 5 ms) until `ResultReturned` is durable, then one `GET`;
//! - `GET` every 10 ms, as before. That costs ~90 HTTP requests per generation and ~70 ms of
//!   coordinator + client CPU on a 2-core host while the node decodes, and the clock stops
//!   only at the next poll (5 ms late on average): client-side costs that the ratio charged
//!   to the node. Both are printed; the first is the figure to compare with the target.
//!
//! Every round also prints where its time went: the node runs with its phase trace on
//! (`PRLX_NODE_TRACE=1`, see `prlx_node::trace`: a few clock reads and one stderr line per
//! job), the coordinator's `recorded_at` of the round's events is read back from the log, and
//! this process's clock marks submission and result; all are wall clock on one host. CPU time
//! of the three processes comes from `/proc/PID/task/*/schedstat`. `PRLX_BENCH_VERBOSE=1`
//! prints each round's trace line and events; `PRLX_BENCH_NODE_LOG_QUERY=poll_ms=N` sets the
//! node's log poll interval.
//!
//! The coordinator serves TLS with its development certificate, which the node pins;
//! `PRLX_BENCH_PLAIN_HTTP=1` runs it with `--plain-http` instead, to compare.
//!
//! Both processes are started with the process kit (`prlx_tests::harness`): the binaries are
//! refused when missing or older than their sources, and everything they print is echoed to
//! this process's stderr, prefixed with their names; the tables go to stdout.

// The floor `node/benches/engine.rs` measures the engine against: one loop, two benches.
#[path = "../../node/benches/common/floor.rs"]
mod floor;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use floor::Floor;
use prlx_events::crypto::public_key_pem;
use prlx_events::log::{AnyReader, LogReader, LogUrl, Offset};
use prlx_events::protocol::ResultBody;
use prlx_events::{Envelope, Hash32, RequestId};
use prlx_node::engine::{ort_environment, resolve_ort_library, Engine, EngineOptions};
use prlx_node::registry::Registry;
use prlx_tests::harness::bins::workspace_root;
use prlx_tests::harness::chain::{TestChain, CLIENT_ACCOUNT};
use prlx_tests::harness::client::{open_result, read_records};
use prlx_tests::harness::keys::new_key;
use prlx_tests::harness::launch::{node_command, LaunchTls, ServeLaunch};
use prlx_tests::harness::models::chat_catalog_for_one_node;
use prlx_tests::harness::process::{cpu_ms, cpu_ns, Proc};
use serde_json::{json, Value};

#[path = "../../node/benches/common/median.rs"]
mod median;
use median::median;

const PROMPT: &str = "Tell me a story about a robot";
const MAX_TOKENS: u32 = 64;
const ROUNDS: usize = 7;

/// What starts a node's phase trace on its stderr: a text log line's time, level, target and
/// message (see `prlx_node::trace`).
const TRACE: &str = "prlx_node::trace: trace ";

/// How long the node may take to load its model and register.
const NODE_STARTUP: Duration = Duration::from_secs(180);

fn main() -> anyhow::Result<()> {
    let root = workspace_root();
    let registry = Registry::load(&root.join("node/models/registry.toml"), &root)?;
    let entry = registry.get("oss-chat-v1")?;

    let dir = tempfile::tempdir()?;
    let catalog = dir.path().join("catalog.json");
    std::fs::write(
        &catalog,
        chat_catalog_for_one_node(&entry.sha256).to_string(),
    )?;
    // The kit's binaries (built and not stale: `cargo build --release --bins` first) on a
    // file log at `dir/log`.
    // Credits come from a private chain, as in production.
    let chain = TestChain::start_blocking(dir.path());
    // TLS with the coordinator's development certificate, which the node pins;
    // PRLX_BENCH_PLAIN_HTTP=1: plain HTTP (`--plain-http`), to compare.
    let plain = std::env::var_os("PRLX_BENCH_PLAIN_HTTP").is_some_and(|v| v == "1");
    let serve = ServeLaunch {
        chain: chain.serve_args(),
        tls: if plain {
            LaunchTls::Plain
        } else {
            LaunchTls::Development
        },
        ..ServeLaunch::in_dir(dir.path(), &catalog, "coordinator/1")
    };
    let log = serve.log.clone();
    let (coordinator, addr) = serve.spawn("coordinator");
    let mut node = node_command();
    // PRLX_BENCH_NODE_LOG_QUERY=poll_ms=N: the node's log poll interval (default 5 ms).
    let node_log = match std::env::var("PRLX_BENCH_NODE_LOG_QUERY") {
        Ok(query) if !query.is_empty() => format!("{log}?{query}"),
        _ => log.clone(),
    };
    node.arg("run").args(["--log", &node_log]);
    if plain {
        node.args(["--coordinator", &format!("http://{addr}")]);
    } else {
        node.args(["--coordinator", &format!("https://{addr}")]);
        node.arg("--coordinator-cert").arg(serve.cert());
    }
    node.arg("--key").arg(dir.path().join("node.pem"));
    node.args(["--models", "oss-chat-v1", "--tier", "1", "--slots", "1"]);
    node.arg("--root").arg(&root);
    // The node's phase trace (prlx_node::trace): a few clock reads and one stderr line per
    // job, so it is on in every round.
    node.env(prlx_node::trace::TRACE_ENV, "1");
    let mut node_process = Proc::spawn("node", node);
    node_process.wait_line("node_id ", NODE_STARTUP);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = new_key();
    let pem = public_key_pem(&client.to_public_key());
    let http = |method: &str, path: &str, body: Option<Value>| {
        rt.block_on(prlx_tests::harness::client::http(
            &addr,
            method,
            path,
            body.as_ref(),
            None,
        ))
    };
    rt.block_on(chain.fund(&addr, 1_000_000_000, 1_000_000_000));

    let options = EngineOptions::default();
    let library = resolve_ort_library(options.ort_library.as_deref(), &entry.root)?;
    let mut bare = Floor::new(entry, &ort_environment(&library)?, options.intra_op_threads)?;
    let prompt_ids: Vec<i64> = Engine::load(entry, &options)?
        .encode_prompt(PROMPT)?
        .into_iter()
        .map(i64::from)
        .collect();

    let log_reader = LogUrl::parse(&log)?.open_reader()?;
    let mut log_next = 0;
    let pids = [
        ("coordinator", coordinator.pid()),
        ("node", node_process.pid()),
        ("bench", std::process::id()),
    ];
    let modes: Vec<Wait> = match std::env::var("PRLX_BENCH_WAIT").as_deref() {
        Ok("poll") => vec![Wait::Poll],
        Ok("log") => vec![Wait::Log],
        _ => vec![Wait::Log, Wait::Poll],
    };
    let mut stats: Vec<ModeStats> = modes.iter().map(|_| ModeStats::default()).collect();
    for round in 0..=ROUNDS * modes.len() {
        let m = round % modes.len();
        let wait = modes[m];
        let body = json!({"workload_class": "ai.inference", "model": "oss-chat-v1", "hardware_tier": 1,
            "priority": "standard", "deadline_seconds": 600, "credit_account": CLIENT_ACCOUNT, "client_pubkey": pem,
            "prompt": PROMPT, "max_tokens": MAX_TOKENS, "payload_hash": Hash32::of(PROMPT.as_bytes()).to_hex()});
        let body = chain.signed(body, &format!("round-{round}"));
        // The status reads carry the client's read-access token, signed before the clock
        // starts (a coordinator recovers its signer once a read).
        let token = chain.read_token();
        let status_of = |id: u64| {
            rt.block_on(prlx_tests::harness::client::read(
                &addr,
                &format!("/v1/requests/{id}"),
                &token,
            ))
            .1
        };
        let cpu_before = pids.map(|(_, pid)| cpu_ns(pid));
        let sent = Utc::now();
        let (status, accepted) = http("POST", "/v1/requests", Some(body));
        assert_eq!(status, 202, "{accepted}");
        let started = Instant::now();
        let answered = Utc::now();
        let id = accepted["request_id"].as_u64().unwrap();
        let mut polls = 0;
        let mut events = Vec::new();
        let answer = match wait {
            Wait::Poll => loop {
                let st = status_of(id);
                polls += 1;
                if st["result"].is_object() {
                    break st;
                }
                std::thread::sleep(Duration::from_millis(10));
            },
            Wait::Log => {
                // Follow the log (the file reader looks at the COMMIT file every 5 ms, as the
                // node does) until the result is returned to the client, then fetch it once.
                rt.block_on(async {
                    while !events.iter().any(|(t, _)| *t == "ResultReturned") {
                        log_reader
                            .wait_for(log_next, Duration::from_secs(1))
                            .await?;
                        read_events(&log_reader, &mut log_next, &mut events).await;
                    }
                    anyhow::Ok(())
                })?;
                let st = status_of(id);
                polls += 1;
                anyhow::ensure!(
                    st["result"].is_object(),
                    "no result after ResultReturned: {st}"
                );
                st
            }
        };
        let elapsed = started.elapsed();
        let seen = Utc::now();
        let cpu_after = pids.map(|(_, pid)| cpu_ns(pid));
        let (opened, _, _) = open_result(&client, RequestId(id), &answer);
        let body: ResultBody = serde_json::from_slice(&opened)?;
        let runs = body.token_ids.len() + usize::from(body.stopped_at_eos);

        let idle_before = pids.map(|(_, pid)| cpu_ns(pid));
        let t = Instant::now();
        let ids = bare.generate(&prompt_ids, runs)?;
        let bare_elapsed = t.elapsed();
        let idle_after = pids.map(|(_, pid)| cpu_ns(pid));
        assert_eq!(
            ids[..body.token_ids.len()],
            body.token_ids[..],
            "the node and the floor computed the same tokens"
        );

        // Where the time went: the coordinator's own timestamps on the log, the node's trace
        // and this client's clock, all wall clock on this one host.
        rt.block_on(read_events(&log_reader, &mut log_next, &mut events));
        // The node prints a trace line per job, and runs one job per round.
        let trace_line = node_process.wait_nth_line(TRACE, round, Duration::from_secs(5));
        let trace_line = trace_line
            .split_once(TRACE)
            .expect("a trace line")
            .1
            .to_owned();
        let node = parse_trace(&trace_line);
        anyhow::ensure!(
            node.task.starts_with(&format!("{}/", RequestId(id))),
            "trace of {} for request {id}",
            node.task
        );
        let at = |name: &str| -> f64 {
            if let Some(&(_, ms)) = node.marks.iter().find(|(n, _)| n == name) {
                return ms;
            }
            let event = events
                .iter()
                .find(|(t, _)| *t == name)
                .unwrap_or_else(|| panic!("no {name} on the log for request {id}"));
            ms_between(node.recorded_at, event.1)
        };
        let ms = |t: DateTime<Utc>| ms_between(node.recorded_at, t);
        let clock = elapsed.as_secs_f64() * 1e3;
        let bare_ms = bare_elapsed.as_secs_f64() * 1e3;
        let bare_prefill = bare.prefill.as_secs_f64() * 1e3;
        let node_decode = at("decoded") - at("prefilled");
        let row = vec![
            ("submission sent -> dispatch recorded", -ms(sent)),
            (
                "dispatch recorded -> submission answered (clock starts)",
                ms(answered),
            ),
            ("dispatch recorded -> read by the node", at("read")),
            ("decrypt dispatch", at("opened") - at("read")),
            ("worker queue", at("started") - at("opened")),
            ("template + tokenize", at("tokenized") - at("started")),
            ("prefill (run 1)", at("prefilled") - at("tokenized")),
            ("decode (runs 2..)", node_decode),
            ("detokenize", at("generated") - at("decoded")),
            (
                "PoE + RSA-PSS-3072 sign + seal",
                at("committed") - at("generated"),
            ),
            ("to the reporter task", at("posting") - at("committed")),
            (
                "HTTP post -> ResultSubmitted recorded",
                at("ResultSubmitted") - at("posting"),
            ),
            (
                "ResultSubmitted recorded -> post answered",
                at("reported") - at("ResultSubmitted"),
            ),
            (
                "post answered -> client has the result (clock stops)",
                ms(seen) - at("reported"),
            ),
            ("clock: submission answered -> result", clock),
            (
                "clock minus the node's runs 1..",
                clock - (at("decoded") - at("tokenized")),
            ),
            ("bare: prefill (run 1)", bare_prefill),
            ("bare: decode (runs 2..)", bare_ms - bare_prefill),
            ("bare: all runs", bare_ms),
            (
                "node decode / bare decode (time)",
                node_decode / (bare_ms - bare_prefill),
            ),
            ("client HTTP requests while waiting", f64::from(polls)),
            (
                "CPU ms while waiting: coordinator",
                cpu_ms(&cpu_before[0], &cpu_after[0]),
            ),
            (
                "CPU ms while waiting: node",
                cpu_ms(&cpu_before[1], &cpu_after[1]),
            ),
            (
                "CPU ms while waiting: bench client",
                cpu_ms(&cpu_before[2], &cpu_after[2]),
            ),
            (
                "CPU ms during the bare run: coordinator",
                cpu_ms(&idle_before[0], &idle_after[0]),
            ),
            (
                "CPU ms during the bare run: node (idle)",
                cpu_ms(&idle_before[1], &idle_after[1]),
            ),
        ];
        if std::env::var_os("PRLX_BENCH_VERBOSE").is_some() {
            eprintln!("round {round} ({}): {trace_line}", wait.name());
            for (name, t) in &events {
                eprintln!("  log {name} {:+.2}", ms(*t));
            }
        }
        if round > 0 {
            let s = &mut stats[m];
            s.through.push(runs as f64 / elapsed.as_secs_f64());
            s.bare.push(runs as f64 / bare_elapsed.as_secs_f64());
            s.phases.push(row);
        }
    }
    println!(
        "oss-chat-v1, prompt {PROMPT:?}, max_tokens {MAX_TOKENS}, 1 intra-op thread, median of \
         {ROUNDS} per client wait; rounds alternate"
    );
    println!(
        "| client waits by | through the node (tokens/s) | bare ONNX Runtime (tokens/s) | \
         node / bare | median of each round's node / bare |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (wait, s) in modes.iter().zip(&stats) {
        let (t, f) = (median(s.through.clone()), median(s.bare.clone()));
        // Each round's node run and bare run are seconds apart: their ratio is less exposed
        // to the load of other processes drifting over the run than the ratio of medians.
        let paired = median(s.through.iter().zip(&s.bare).map(|(t, f)| t / f).collect());
        println!(
            "| {} | {t:.1} | {f:.1} | {:.3} | {paired:.3} |",
            wait.name(),
            t / f
        );
    }
    // The ratio moves with how fast each process happens to decode under the host's load;
    // the time outside the node's model runs does not, and bounds what the node adds.
    for (wait, s) in modes.iter().zip(&stats) {
        let share = median(
            s.phases
                .iter()
                .map(|row| {
                    let get = |name: &str| row.iter().find(|(n, _)| *n == name).unwrap().1;
                    1.0 - get("clock minus the node's runs 1..")
                        / get("clock: submission answered -> result")
                })
                .collect(),
        );
        println!(
            "{}: the node's model runs are {share:.3} of the clock (the ratio if they ran as \
             fast as the bare loop's)",
            wait.name()
        );
    }
    for (wait, s) in modes.iter().zip(&stats) {
        println!();
        println!("Where a request's time goes, client waiting by {} (ms unless said; median, then each round):", wait.name());
        println!("| phase | median | rounds |");
        println!("|---|---:|---|");
        for (i, (name, _)) in s.phases[0].iter().enumerate() {
            let values: Vec<f64> = s.phases.iter().map(|row| row[i].1).collect();
            let all: Vec<String> = values
                .iter()
                .map(|v| {
                    if v.abs() < 10.0 {
                        format!("{v:.2}")
                    } else {
                        format!("{v:.1}")
                    }
                })
                .collect();
            println!("| {name} | {:.2} | {} |", median(values), all.join(" "));
        }
    }
    Ok(())
}

/// How the client waits for its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// `GET /v1/requests/{id}` every 10 ms.
    Poll,
    /// Follow the coordinator's log until `ResultReturned`, then one `GET`.
    Log,
}

impl Wait {
    fn name(self) -> &'static str {
        match self {
            Wait::Poll => "HTTP poll every 10 ms",
            Wait::Log => "following the log, then one GET",
        }
    }
}

#[derive(Default)]
struct ModeStats {
    through: Vec<f64>,
    bare: Vec<f64>,
    phases: Vec<Vec<(&'static str, f64)>>,
}

/// Appends the (type, recorded_at) of every record from `next` on to `out`.
async fn read_events(
    reader: &AnyReader,
    next: &mut Offset,
    out: &mut Vec<(&'static str, DateTime<Utc>)>,
) {
    for record in read_records(reader, *next).await {
        *next = record.offset + 1;
        if let Ok(envelope) = Envelope::decode(&record.payload) {
            out.push((envelope.event.type_name(), envelope.header.recorded_at));
        }
    }
}

/// A node's trace line (see `prlx_node::trace`).
struct NodeTrace {
    task: String,
    recorded_at: DateTime<Utc>,
    marks: Vec<(String, f64)>,
}

fn parse_trace(line: &str) -> NodeTrace {
    // "<task> attempt <n> recorded_at <us> <name> <+ms> ..."
    let words: Vec<&str> = line.split_whitespace().collect();
    let micros: i64 = words[4].parse().expect("recorded_at in microseconds");
    NodeTrace {
        task: words[0].to_owned(),
        recorded_at: DateTime::from_timestamp_micros(micros).expect("a time"),
        marks: words[5..]
            .chunks(2)
            .map(|pair| (pair[0].to_owned(), pair[1].parse().expect("ms")))
            .collect(),
    }
}

fn ms_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().unwrap_or(0) as f64 / 1e3
}
