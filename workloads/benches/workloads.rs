//! Per-sub-task execution time of each class, what a node spends on one dispatch (not counting
//! the network, sealing or proof), plus the coordinator's planning and aggregation.
//!
//! `cargo bench -p prlx-workloads` (harness = false: plain `Instant`, the median of a few runs;
//! criterion is not in the workspace). `WORKLOADS_BENCH_RUNS=N` changes the run count.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use prlx_workloads::{
    aggregate, execute_with_engine, input_for, parse, plan, InferenceEngine, TaskSpec,
};
use serde_json::json;

#[path = "../../node/benches/common/median.rs"]
mod median;
use median::median;

/// Stands in for ONNX: measures only the crate's framing around the engine.
struct EchoEngine;

impl InferenceEngine for EchoEngine {
    fn infer(&mut self, _model: &str, prompt: &str, _max_tokens: u32) -> Result<String, String> {
        Ok(prompt.to_string())
    }
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    let samples = (0..runs)
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed()
        })
        .collect();
    median(samples)
}

/// Runs every sub-task of `spec` once per run in topological order; reports the median time
/// of one sub-task of each kind, then plan and aggregate.
fn bench(label: &str, spec: &TaskSpec, runs: usize) {
    let plan_time = time(runs, || plan(spec));
    let p = plan(spec);
    let mut outputs = BTreeMap::new();
    let mut per_kind: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    for sub in &p.subtasks {
        let input = input_for(&p, sub.index, &outputs).expect("input");
        let mut out = Vec::new();
        let d = time(runs, || {
            out = execute_with_engine(sub.kind, &input, &mut EchoEngine).expect("execute");
        });
        per_kind.entry(sub.kind.name()).or_default().push(d);
        outputs.insert(sub.index, out);
    }
    let agg_time = time(runs, || aggregate(spec, &outputs).expect("aggregate"));
    let out_len = aggregate(spec, &outputs).expect("aggregate").len();
    println!(
        "{label}: {} sub-tasks, depth {}, cost {} units; plan {:?}, aggregate {:?} \
         ({out_len} bytes out)",
        p.subtasks.len(),
        p.depth(),
        p.total_cost(),
        plan_time,
        agg_time
    );
    for (kind, times) in per_kind {
        let n = times.len();
        let total: Duration = times.iter().sum();
        println!(
            "  {kind:<17} x{n:<4} median {:?}  max {:?}  sum {:?}",
            median(times.clone()),
            times.iter().max().expect("one"),
            total
        );
    }
}

fn main() {
    let runs = std::env::var("WORKLOADS_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    // About 2.4 MB: common words and a long tail (20k distinct), so reduces merge real tables.
    let common = ["the", "quick", "brown", "fox", "Straße", "café", "42"];
    let text: String = (0..300_000u32)
        .map(|i| match i % 3 {
            0 => format!("tail{}", i.wrapping_mul(2_654_435_761) % 20_000),
            _ => common[(i as usize * 7 + i as usize / 3) % common.len()].to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ");
    let cases = [
        (
            "render.tiles 1024x768 tile 128 max_iter 256",
            "render.tiles",
            json!({"width": 1024, "height": 768, "tile": 128,
                   "scene": {"fractal": "mandelbrot", "max_iter": 256}}),
        ),
        (
            "mapreduce.wordcount 2 MB, 20k distinct words, 16 maps, fan-in 4",
            "mapreduce.wordcount",
            json!({"text": text, "map_shards": 16, "fan_in": 4}),
        ),
        (
            "sweep.epidemic 64x64 points, 365 days, chunks of 64",
            "sweep.epidemic",
            json!({"population": 10_000_000, "initial_infected": 100, "days": 365,
                   "beta_min": 50, "beta_max": 1500, "beta_steps": 64,
                   "gamma_min": 20, "gamma_max": 500, "gamma_steps": 64, "chunk_size": 64}),
        ),
        (
            "batch.inference framing, 1024 prompts, shards of 32 (echo engine)",
            "batch.inference",
            json!({"model": "oss-chat-v1", "max_tokens": 64, "shard_size": 32,
                   "inputs": (0..1024).map(|i| format!("prompt number {i}")).collect::<Vec<_>>()}),
        ),
    ];
    for (label, class, params) in cases {
        let spec = parse(class, &params).expect("bench params parse");
        bench(label, &spec, runs);
    }
}
