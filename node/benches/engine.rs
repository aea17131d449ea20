//! Tokens/s of `Engine::generate` against the floor: a minimal greedy loop written directly
//! against `ort`, on the same model, prompt ids and number of model runs, in the same process.
//!
//! ```sh
//! scripts/setup-models.sh
//! cargo bench -p prlx-node --bench engine
//! ```
//!
//! The floor skips everything the engine does besides running the graph: templating,
//! tokenizing, EOS checks, decoding ids to text, the contract's bookkeeping. Rounds alternate
//! engine and floor so that load from other processes hits both alike; medians are reported.
//! Each round's floor ids are checked against the engine's, so both measure the same work.

use std::path::{Path, PathBuf};
use std::time::Instant;

#[path = "common/floor.rs"]
mod floor;

use floor::Floor;
use prlx_node::engine::{ort_environment, resolve_ort_library, Engine, EngineOptions};
use prlx_node::registry::{ModelEntry, Registry};

#[path = "common/median.rs"]
mod median;
use median::median;

const PROMPT: &str = "Tell me a story about a robot";
const MAX_TOKENS: u32 = 64;

struct Row {
    model: String,
    prompt_tokens: u32,
    runs: usize,
    engine: f64,
    floor: f64,
}

fn main() -> anyhow::Result<()> {
    let root: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("node/ has a parent")
        .to_owned();
    let registry = Registry::load(&root.join("node/models/registry.toml"), &root)?;
    let options = EngineOptions::default();
    let mut rows = Vec::new();
    for (reference, rounds) in [("tiny-test-v1", 101), ("oss-chat-v1", 7)] {
        rows.push(bench_model(registry.get(reference)?, &options, rounds)?);
    }

    println!();
    println!(
        "prompt {PROMPT:?}, max_tokens {MAX_TOKENS}, greedy, CPU, {} intra-op thread(s); \
         tokens/s = model runs (one token each) / wall time of the whole call, median of rounds",
        options.intra_op_threads
    );
    println!();
    println!("| model | prompt tokens | tokens | engine tok/s | bare ORT tok/s | engine / bare |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.1} | {:.1} | {:.3} |",
            r.model,
            r.prompt_tokens,
            r.runs,
            r.engine,
            r.floor,
            r.engine / r.floor
        );
    }
    Ok(())
}

fn bench_model(entry: &ModelEntry, options: &EngineOptions, rounds: usize) -> anyhow::Result<Row> {
    let mut engine = Engine::load(entry, options)?;
    let library = resolve_ort_library(options.ort_library.as_deref(), &entry.root)?;
    let mut bare = Floor::new(entry, &ort_environment(&library)?, options.intra_op_threads)?;
    let prompt_ids: Vec<i64> = engine
        .encode_prompt(PROMPT)?
        .into_iter()
        .map(i64::from)
        .collect();

    let mut engine_rates = Vec::with_capacity(rounds);
    let mut floor_rates = Vec::with_capacity(rounds);
    let mut runs = 0;
    // Round 0 warms both up (allocator arenas, caches) and is not counted.
    for round in 0..=rounds {
        let generation = engine.generate(PROMPT, MAX_TOKENS)?;
        runs = generation.token_ids.len() + usize::from(generation.stopped_at_eos);

        let started = Instant::now();
        let floor_ids = bare.generate(&prompt_ids, runs)?;
        let floor_elapsed = started.elapsed();

        assert_eq!(
            floor_ids[..generation.token_ids.len()],
            generation.token_ids[..],
            "the floor must compute what the engine computes"
        );
        if round > 0 {
            engine_rates.push(generation.tokens_per_second());
            floor_rates.push(runs as f64 / floor_elapsed.as_secs_f64());
            if std::env::var_os("PRLX_BENCH_VERBOSE").is_some() {
                eprintln!(
                    "  round {round}: engine {:.1} tok/s (prefill {:?}, decode {:.1} tok/s), floor {:.1} tok/s",
                    generation.tokens_per_second(),
                    generation.timing.prefill,
                    generation.timing.decode_tokens_per_second(),
                    runs as f64 / floor_elapsed.as_secs_f64()
                );
            }
        }
    }
    eprintln!(
        "{}: {} prompt tokens, {runs} tokens x {rounds} rounds",
        entry.reference,
        prompt_ids.len()
    );
    Ok(Row {
        model: entry.reference.clone(),
        prompt_tokens: prompt_ids.len() as u32,
        runs,
        engine: median(engine_rates),
        floor: median(floor_rates),
    })
}
