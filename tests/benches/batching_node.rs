//! Tokens/s through a batching node against the same batch run bare, in the same run.
//!
//! ```sh
//! scripts/setup-models.sh
//! cargo build --release --bins && cargo bench -p prlx-tests --bench batching_node
//! ```
//!
//! Through the node: a real `prlx-coordinator serve` (TLS, credits from a private chain) and
//! one `prlx-node run --batching --slots N` on a file log; each round the client submits N
//! requests (distinct prompts, `max_tokens` 32) one after another and the clock runs from the
//! first submission to the last result in hand (following the log until every one is
//! `ResultReturned`, then one `GET` each; polling N requests trips the per-address read
//! limit). Bare:
//! `prlx_node::batch::run_all` over the same prompts in this process while the node is idle,
//! its ids checked equal to the node's results. Rounds alternate node, bare; the first warms
//! up and is not counted. `N` is 16, or
//! `PRLX_BENCH_CONCURRENT`.

#[path = "../../node/benches/common/batched.rs"]
mod batched;

use std::time::{Duration, Instant};

use prlx_events::crypto::public_key_pem;
use prlx_events::log::{LogReader, LogUrl};
use prlx_events::protocol::ResultBody;
use prlx_events::{Envelope, Event, Hash32, RequestId};
use prlx_node::engine::{Engine, EngineOptions};
use prlx_node::registry::Registry;
use prlx_tests::harness::bins::workspace_root;
use prlx_tests::harness::chain::{TestChain, CLIENT_ACCOUNT};
use prlx_tests::harness::client::{open_result, read_records};
use prlx_tests::harness::keys::new_key;
use prlx_tests::harness::launch::{node_command, LaunchTls, ServeLaunch};
use prlx_tests::harness::models::chat_catalog_for_one_node;
use prlx_tests::harness::process::Proc;
use serde_json::json;

#[path = "../../node/benches/common/median.rs"]
mod median;
use median::median;

const MAX_TOKENS: u32 = 32;
const ROUNDS: usize = 5;
const NODE_STARTUP: Duration = Duration::from_secs(180);
const RESULT_TIMEOUT: Duration = Duration::from_secs(300);

fn main() -> anyhow::Result<()> {
    let concurrent: usize = match std::env::var("PRLX_BENCH_CONCURRENT") {
        Ok(n) => n.parse()?,
        Err(_) => 16,
    };
    let root = workspace_root();
    let registry = Registry::load(&root.join("node/models/registry.toml"), &root)?;
    let entry = registry.get("oss-chat-v1")?;

    let dir = tempfile::tempdir()?;
    let catalog = dir.path().join("catalog.json");
    std::fs::write(
        &catalog,
        chat_catalog_for_one_node(&entry.sha256).to_string(),
    )?;
    let chain = TestChain::start_blocking(dir.path());
    let serve = ServeLaunch {
        chain: chain.serve_args(),
        tls: LaunchTls::Development,
        ..ServeLaunch::in_dir(dir.path(), &catalog, "coordinator/1")
    };
    let log = serve.log.clone();
    let (_coordinator, addr) = serve.spawn("coordinator");
    let mut node = node_command();
    node.arg("run").args(["--log", &log]);
    node.args(["--coordinator", &format!("https://{addr}")]);
    node.arg("--coordinator-cert").arg(serve.cert());
    node.arg("--key").arg(dir.path().join("node.pem"));
    node.args(["--models", "oss-chat-v1", "--tier", "1", "--batching"]);
    node.args(["--slots", &concurrent.to_string()]);
    node.arg("--root").arg(&root);
    // Quiet: a line per admitted and finished job is not what is measured.
    node.env("RUST_LOG", "warn");
    let mut node_process = Proc::spawn("node", node);
    node_process.wait_line("node_id ", NODE_STARTUP);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = new_key();
    let pem = public_key_pem(&client.to_public_key());
    rt.block_on(chain.fund(&addr, 1_000_000_000, 1_000_000_000));
    let mut engine = Engine::load(entry, &EngineOptions::default())?;
    let prompts: Vec<String> = (0..concurrent)
        .map(|i| format!("Tell me a story about the number {i}"))
        .collect();

    let reader = LogUrl::parse(&log)?.open_reader()?;
    let mut next = 0;
    let (mut node_rates, mut bare_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    // Round 0 warms up (the node's first requests, its session) and is not counted.
    for round in 0..=ROUNDS {
        let token = chain.read_token();
        let bodies: Vec<_> = prompts
            .iter()
            .enumerate()
            .map(|(i, prompt)| {
                let body = json!({"workload_class": "ai.inference", "model": "oss-chat-v1",
                    "hardware_tier": 1, "priority": "standard", "deadline_seconds": 600,
                    "credit_account": CLIENT_ACCOUNT, "client_pubkey": pem, "prompt": prompt,
                    "max_tokens": MAX_TOKENS, "payload_hash": Hash32::of(prompt.as_bytes()).to_hex()});
                chain.signed(body, &format!("round-{round}-{i}"))
            })
            .collect();
        let started = Instant::now();
        let mut ids = Vec::with_capacity(concurrent);
        for body in &bodies {
            let (status, accepted) = rt.block_on(prlx_tests::harness::client::http(
                &addr,
                "POST",
                "/v1/requests",
                Some(body),
                None,
            ));
            anyhow::ensure!(status == 202, "{accepted}");
            ids.push(RequestId(accepted["request_id"].as_u64().unwrap()));
        }
        // Follow the log (the file reader looks at its COMMIT file every 5 ms) until every
        // request's result is returned, then fetch each once.
        let mut returned = std::collections::BTreeSet::new();
        rt.block_on(async {
            while returned.len() < concurrent {
                anyhow::ensure!(started.elapsed() < RESULT_TIMEOUT, "results took too long");
                reader.wait_for(next, Duration::from_secs(1)).await?;
                for record in read_records(&reader, next).await {
                    next = record.offset + 1;
                    if let Ok(envelope) = Envelope::decode(&record.payload) {
                        if let Event::ResultReturned(r) = envelope.event {
                            if ids.contains(&r.request_id) {
                                returned.insert(r.request_id);
                            }
                        }
                    }
                }
            }
            anyhow::Ok(())
        })?;
        let mut results = Vec::with_capacity(concurrent);
        for id in &ids {
            let path = format!("/v1/requests/{}", id.0);
            let (_, status) = rt.block_on(prlx_tests::harness::client::read(&addr, &path, &token));
            anyhow::ensure!(status["result"].is_object(), "{id}: no result: {status}");
            results.push(Some(status));
        }
        let node_elapsed = started.elapsed().as_secs_f64();
        let bodies: Vec<ResultBody> = ids
            .iter()
            .zip(&results)
            .map(|(id, status)| {
                let (bytes, _, _) = open_result(&client, *id, status.as_ref().unwrap());
                serde_json::from_slice(&bytes).expect("a result body")
            })
            .collect();
        let runs: usize = bodies
            .iter()
            .map(|b| b.token_ids.len() + usize::from(b.stopped_at_eos))
            .sum();

        let (back, bare_elapsed) = batched::run_checked(
            engine,
            concurrent,
            &prompts,
            MAX_TOKENS,
            |tag| &bodies[tag].token_ids,
            "the node's",
        )?;
        engine = back;
        let (node_rate, bare_rate) = (runs as f64 / node_elapsed, runs as f64 / bare_elapsed);
        eprintln!(
            "round {round}: {runs} tokens; node {node_rate:.1} tok/s, bare batch {bare_rate:.1} \
             tok/s, {:.3}",
            node_rate / bare_rate
        );
        if round == 0 {
            continue;
        }
        node_rates.push(node_rate);
        bare_rates.push(bare_rate);
        ratios.push(node_rate / bare_rate);
    }
    println!(
        "oss-chat-v1, {concurrent} concurrent requests, max_tokens {MAX_TOKENS}, 1 intra-op \
         thread, median of {ROUNDS} rounds (node and bare alternating; ids checked equal)"
    );
    println!("| through a batching node (tok/s) | bare batch (tok/s) | node / bare | median of rounds' ratios |");
    println!("|---:|---:|---:|---:|");
    let (node, bare) = (median(node_rates), median(bare_rates));
    println!(
        "| {node:.1} | {bare:.1} | {:.3} | {:.3} |",
        node / bare,
        median(ratios)
    );
    Ok(())
}
