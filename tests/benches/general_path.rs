//! The general path's scaling: wall time of one task on 1, 2 and 4 node processes, against
//! the same computation in one process, and the overhead each sub-task costs.
//!
//! ```sh
//! scripts/setup-models.sh
//! cargo build --release --bins && cargo bench -p prlx-tests --bench general_path
//! ```
//!
//! For each node count a fresh `prlx-coordinator serve` on a file log and that many
//! `prlx-node run` processes (one slot each) run two tasks, each `PRLX_BENCH_ROUNDS` times
//! (default 3, the best kept):
//! - `batch.inference`: 64 prompts in 8 shards of 8 on the tiny model, up to 64 tokens each;
//! - `render.tiles`: a 512x512 Mandelbrot view in 16 tiles of 128x128, 2000 iterations.
//!
//! Wall time is the coordinator's own: from the task's `RequestAccepted` to its
//! `AggregateReturned`, both `recorded_at` on the log (no client polling in it). The
//! reference is the workload library's `run_in_one_process` in this process (for the batch,
//! on the tiny model's engine loaded here), timed the same number of times. The overhead per
//! sub-task is (wall on one node - reference) / sub-tasks: dispatch, sealing, the result's
//! report, validation and aggregation, per unit of work.
//!
//! Every process shares the machine's cores: with 2 cores the best case is a 2x speed-up, and
//! 4 nodes only add contention. `PRLX_BENCH_NODES=1,2` picks the node counts.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use prlx_events::{Envelope, Event, RequestId};
use prlx_tests::harness::client::read_log;
use prlx_tests::harness::cluster::FileCluster;
use prlx_tests::harness::models::{tiny_catalog, TinyEngine, TINY};
use serde_json::{json, Value};

struct Workload {
    name: &'static str,
    class: &'static str,
    params: Value,
}

fn workloads() -> Vec<Workload> {
    let prompts: Vec<String> = (0..64)
        .map(|i| format!("Write a line about the number {i}."))
        .collect();
    vec![
        Workload {
            name: "batch 64 prompts / 8 shards",
            class: "batch.inference",
            params: json!({"model": TINY, "inputs": prompts, "shard_size": 8, "max_tokens": 64}),
        },
        Workload {
            name: "render 512x512 / 16 tiles",
            class: "render.tiles",
            params: json!({"width": 512, "height": 512, "tile": 128,
                           "scene": {"fractal": "mandelbrot", "center_re": "-0.7436",
                                     "center_im": "0.1318", "span": "0.02", "max_iter": 2000}}),
        },
    ]
}

/// The best of `rounds` one-process runs, and the output.
fn reference(w: &Workload, engine: &mut TinyEngine, rounds: usize) -> (Duration, Vec<u8>) {
    let spec = prlx_workloads::parse(w.class, &w.params).expect("the parameters parse");
    let mut best = Duration::MAX;
    let mut output = Vec::new();
    for _ in 0..rounds {
        let started = Instant::now();
        output = prlx_workloads::run_in_one_process(&spec, Some(engine)).expect("it runs");
        best = best.min(started.elapsed());
    }
    (best, output)
}

/// The task's accepted-to-aggregated time on the coordinator's clock, and its sub-tasks.
fn task_time(c: &FileCluster, task: RequestId) -> (Duration, usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut accepted: Option<DateTime<Utc>> = None;
    let mut done: Option<DateTime<Utc>> = None;
    let mut subtasks = 0;
    for (_, payload) in rt.block_on(read_log(&c.log_url())) {
        let env = Envelope::decode(&payload).expect("a record");
        match env.event {
            Event::RequestAccepted(r) if r.request_id == task => {
                accepted = Some(env.header.recorded_at)
            }
            Event::SubtasksPlanned(p) if p.request_id == task => subtasks = p.subtasks.len(),
            Event::AggregateReturned(a) if a.request_id == task => {
                done = Some(env.header.recorded_at)
            }
            _ => {}
        }
    }
    let span = done.expect("aggregated") - accepted.expect("accepted");
    (span.to_std().unwrap_or_default(), subtasks)
}

fn main() {
    let rounds: usize = std::env::var("PRLX_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let counts: Vec<usize> = std::env::var("PRLX_BENCH_NODES")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2, 4]);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workloads = workloads();
    let mut engine = TinyEngine::load();
    let references: Vec<(Duration, Vec<u8>)> = workloads
        .iter()
        .map(|w| reference(w, &mut engine, rounds))
        .collect();
    drop(engine);

    // walls[w][i]: workload w on counts[i] nodes.
    let mut walls = vec![Vec::new(); workloads.len()];
    let mut subtasks = vec![0usize; workloads.len()];
    for &n in &counts {
        let mut catalog = tiny_catalog(&[TINY], 5);
        catalog["validation"]["sampling_bp"] = json!(0);
        let c = FileCluster::start_with(&catalog, "bench/general", &["--rate-limit", "0"]);
        c.deposit(100_000_000);
        let nodes: Vec<_> = (0..n)
            .map(|i| c.spawn_node(&format!("node-{i}"), &[]))
            .collect();
        for (wi, w) in workloads.iter().enumerate() {
            let mut best = Duration::MAX;
            for _ in 0..rounds {
                let (task, _) = c.submit_task(w.class, &w.params, 600);
                let status = c.wait_result(task, Duration::from_secs(600));
                let (output, _, _) = c.open_result(task, &status);
                assert!(
                    output == references[wi].1,
                    "{}: the aggregate differs from the one-process result",
                    w.name
                );
                let (wall, k) = task_time(&c, task);
                subtasks[wi] = k;
                best = best.min(wall);
            }
            walls[wi].push(best);
        }
        drop(nodes);
    }

    println!("\ngeneral path: one task, best of {rounds}, on {cores} cores (wall = coordinator's RequestAccepted -> AggregateReturned)");
    for (wi, w) in workloads.iter().enumerate() {
        let (one, _) = references[wi];
        println!(
            "\n{} ({} sub-tasks), one process: {:.0} ms",
            w.name,
            subtasks[wi],
            one.as_secs_f64() * 1e3
        );
        println!("  nodes   wall ms   vs 1 node   vs one process");
        for (i, &n) in counts.iter().enumerate() {
            let wall = walls[wi][i].as_secs_f64();
            println!(
                "  {n:>5}   {:>7.0}   {:>8.2}x   {:>13.2}x",
                wall * 1e3,
                walls[wi][0].as_secs_f64() / wall,
                one.as_secs_f64() / wall
            );
        }
        if counts.first() == Some(&1) && subtasks[wi] > 0 {
            let overhead = (walls[wi][0].as_secs_f64() - one.as_secs_f64()) / subtasks[wi] as f64;
            println!(
                "  overhead per sub-task (1 node - one process) / sub-tasks: {:.1} ms",
                overhead * 1e3
            );
        }
    }
}
