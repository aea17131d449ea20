//! Tokens/s of continuous batching against one single-stream engine, side by side in one
//! process: N concurrent requests (distinct prompts, the same budget) run one after another
//! on an `Engine`, then all at once through a `BatchEngine` of capacity N over the same
//! engine. The generated ids are checked equal, so both do the same work.
//!
//! ```sh
//! scripts/setup-models.sh
//! cargo bench -p prlx-node --bench batching            # PRLX_BENCH_QUICK=1: one round each
//! ```
//!
//! `PRLX_BENCH_PROVIDER=cuda` runs both on the GPU (a build with `--features prlx-node/cuda`,
//! the runtime of `scripts/setup-models.sh --gpu`, its CUDA libraries on `LD_LIBRARY_PATH`:
//! scripts/gpu-check.sh does all three).
//!
//! tokens/s = model runs that yield a token (EOS included) / wall time, prompts included;
//! the median of the rounds, which alternate single and batched.

#[path = "common/batched.rs"]
mod batched;

use std::path::{Path, PathBuf};
use std::time::Instant;

use prlx_node::engine::{Engine, EngineOptions, Generation, Provider};
use prlx_node::registry::Registry;

#[path = "common/median.rs"]
mod median;
use median::median;

const MAX_TOKENS: u32 = 32;
const CONCURRENCY: [usize; 4] = [1, 4, 16, 64];

const TOPICS: [&str; 16] = [
    "a robot",
    "the sea",
    "a mountain",
    "an old library",
    "a train",
    "the moon",
    "a garden",
    "a lighthouse",
    "a storm",
    "a cat",
    "a market",
    "a bridge",
    "winter",
    "a violin",
    "a desert",
    "a river",
];

fn prompts(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                // No closing full stop: the tiny model answers one with a newline and EOS.
                "Tell me a story about {}, number {i}",
                TOPICS[i % TOPICS.len()]
            )
        })
        .collect()
}

fn runs(g: &Generation) -> u64 {
    u64::from(g.generated_tokens) + u64::from(g.stopped_at_eos)
}

fn main() -> anyhow::Result<()> {
    let root: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("node/ has a parent")
        .to_owned();
    let registry = Registry::load(&root.join("node/models/registry.toml"), &root)?;
    let quick = std::env::var_os("PRLX_BENCH_QUICK").is_some();
    let provider: Provider = match std::env::var("PRLX_BENCH_PROVIDER") {
        Ok(name) => name.parse().map_err(anyhow::Error::msg)?,
        Err(_) => Provider::Cpu,
    };
    let options = EngineOptions {
        provider,
        ..EngineOptions::default()
    };
    let mut table = Vec::new();
    for reference in ["oss-chat-v1", "tiny-test-v1"] {
        let mut engine = Engine::load(registry.get(reference)?, &options)?;
        for n in CONCURRENCY {
            let rounds = if quick || n == 64 { 1 } else { 3 };
            let prompts = prompts(n);
            let (mut single_rates, mut batch_rates) = (Vec::new(), Vec::new());
            let mut tokens = 0;
            for _ in 0..rounds {
                let started = Instant::now();
                let mut expected = Vec::with_capacity(n);
                for prompt in &prompts {
                    expected.push(engine.generate(prompt, MAX_TOKENS)?);
                }
                let single = started.elapsed().as_secs_f64();
                tokens = expected.iter().map(runs).sum::<u64>();
                single_rates.push(tokens as f64 / single);

                let (back, batched) = batched::run_checked(
                    engine,
                    n,
                    &prompts,
                    MAX_TOKENS,
                    |tag| &expected[tag].token_ids,
                    "the single-stream ids",
                )?;
                engine = back;
                batch_rates.push(tokens as f64 / batched);
            }
            let (single, batched) = (median(single_rates), median(batch_rates));
            eprintln!("{reference} x{n}: single {single:.1} tok/s, batched {batched:.1} tok/s");
            table.push((reference, n, tokens, single, batched));
        }
    }
    println!();
    println!(
        "max_tokens {MAX_TOKENS}, greedy, {}, {} intra-op thread(s), identical ids checked; \
         median of rounds",
        options.provider, options.intra_op_threads
    );
    println!();
    println!(
        "| model | concurrent | tokens | single-stream tok/s | batched tok/s | batched / single |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (model, n, tokens, single, batched) in table {
        println!(
            "| {model} | {n} | {tokens} | {single:.1} | {batched:.1} | {:.2} |",
            batched / single
        );
    }
    Ok(())
}
