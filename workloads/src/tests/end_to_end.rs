//! plan -> execute in topological order -> aggregate equals the one-process reference, for
//! every class, in shapes from one sub-task to many.

use serde_json::{json, Value};

use super::{run_distributed, spec};
use crate::batch::TestEngine;
use crate::{plan, quote, run_in_one_process, Class, TaskSpec, MAX_SUBTASKS};

const TEXT: &str = "The quick brown fox jumps over the lazy dog. THE DOG sleeps; the fox \
                    runs 3 times, ΣΊΣΥΦΟΣ reads Straße über alles, naïve café 42 42 x";

pub(crate) fn wordcount_cases() -> Vec<Value> {
    vec![
        json!({"text": TEXT, "map_shards": 1}),
        json!({"text": TEXT, "map_shards": 2, "fan_in": 2}),
        json!({"text": TEXT, "map_shards": 7, "fan_in": 2}),
        json!({"text": TEXT, "map_shards": 64, "fan_in": 3}),
        json!({"documents": [TEXT, "fox", "", "ÉPÉE épée"], "map_shards": 5, "fan_in": 16}),
        json!({"text": "", "map_shards": 8}),
        json!({"text": "onlyoneword", "map_shards": 8}),
    ]
}

pub(crate) fn render_cases() -> Vec<Value> {
    let mandel = json!({"fractal": "mandelbrot", "max_iter": 96});
    let julia = json!({"fractal": "julia", "center_re": "0", "span": "3.2", "max_iter": 64,
                       "palette": "ocean"});
    let zoom = json!({"fractal": "mandelbrot", "center_re": "-0.7436438", "center_im": "0.1318259",
                      "span": "0.01", "max_iter": 200, "palette": "grey"});
    vec![
        json!({"width": 16, "height": 16, "tile": 16, "scene": mandel}),
        json!({"width": 97, "height": 61, "tile": 16, "scene": mandel}),
        json!({"width": 64, "height": 40, "tile": 32, "scene": julia}),
        json!({"width": 33, "height": 70, "tile": 17, "scene": zoom}),
    ]
}

pub(crate) fn sweep_cases() -> Vec<Value> {
    let base = |steps: u64, chunk: u64| {
        json!({"population": 100_000, "initial_infected": 10, "days": 200,
               "beta_min": 100, "beta_max": 900, "beta_steps": steps,
               "gamma_min": 50, "gamma_max": 400, "gamma_steps": 5, "chunk_size": chunk})
    };
    vec![base(1, 64), base(4, 3), base(9, 7), base(16, 80)]
}

pub(crate) fn batch_cases() -> Vec<Value> {
    let prompts: Vec<String> = (0..23).map(|i| format!("prompt {i}: héllo")).collect();
    vec![
        json!({"model": "oss-chat-v1", "inputs": ["only one"], "max_tokens": 8}),
        json!({"model": "oss-chat-v1", "inputs": prompts, "shard_size": 5, "max_tokens": 6}),
        json!({"model": "oss-chat-v1", "inputs": prompts, "shard_size": 23, "max_tokens": 64}),
    ]
}

fn all_cases() -> Vec<(&'static str, Value)> {
    let mut out = Vec::new();
    out.extend(batch_cases().into_iter().map(|v| ("batch.inference", v)));
    out.extend(
        wordcount_cases()
            .into_iter()
            .map(|v| ("mapreduce.wordcount", v)),
    );
    out.extend(render_cases().into_iter().map(|v| ("render.tiles", v)));
    out.extend(sweep_cases().into_iter().map(|v| ("sweep.epidemic", v)));
    out
}

fn reference(spec: &TaskSpec) -> Vec<u8> {
    run_in_one_process(spec, Some(&mut TestEngine::default())).unwrap()
}

#[test]
fn every_class_aggregates_to_the_one_process_result() {
    for (class, params) in all_cases() {
        let spec = spec(class, params.clone());
        let expect = reference(&spec);
        let (forward, _) = run_distributed(&spec, false);
        assert!(
            forward == expect,
            "{class} {params}: distributed != reference"
        );
        let (backward, _) = run_distributed(&spec, true);
        assert!(
            backward == expect,
            "{class} {params}: order within a wave mattered"
        );
    }
}

#[test]
fn plans_are_deterministic_bounded_and_priced() {
    for (class, params) in all_cases() {
        let a = plan(&spec(class, params.clone()));
        let b = plan(&spec(class, params.clone()));
        assert_eq!(a, b);
        assert_eq!(a.digest(), b.digest());
        assert!(a.subtasks.len() <= MAX_SUBTASKS);
        let q = quote(&spec(class, params));
        assert_eq!(q.total, q.per_subtask.iter().sum::<u64>());
        assert!(
            q.per_subtask.iter().all(|&c| c > 0),
            "{class}: a free sub-task"
        );
        assert_eq!(q.unit, Class::from_name(class).unwrap().cost_unit());
    }
    let one = spec("render.tiles", render_cases()[0].clone());
    let two = spec("render.tiles", render_cases()[1].clone());
    assert_ne!(plan(&one).digest(), plan(&two).digest());
}

#[test]
fn what_cannot_be_split_is_one_sub_task() {
    let singles = [
        ("mapreduce.wordcount", wordcount_cases()[0].clone()),
        ("mapreduce.wordcount", wordcount_cases()[5].clone()),
        ("mapreduce.wordcount", wordcount_cases()[6].clone()),
        ("render.tiles", render_cases()[0].clone()),
        ("sweep.epidemic", sweep_cases()[0].clone()),
        ("batch.inference", batch_cases()[0].clone()),
        ("batch.inference", batch_cases()[2].clone()),
    ];
    for (class, params) in singles {
        let p = plan(&spec(class, params.clone()));
        assert_eq!(p.subtasks.len(), 1, "{class} {params}");
        assert!(p.subtasks[0].deps.is_empty());
    }
}

#[test]
fn word_counts_reduce_in_a_tree_deeper_than_one_level() {
    let s = spec("mapreduce.wordcount", wordcount_cases()[3].clone());
    let p = plan(&s);
    let maps = p.subtasks.iter().filter(|s| s.deps.is_empty()).count();
    assert!(maps > 9, "{maps} map shards");
    assert!(p.depth() >= 3, "depth {}", p.depth());
    let (_, waves) = run_distributed(&s, false);
    assert_eq!(waves, p.depth());
    // Every reduce merges at most fan_in (3) tables and at least two.
    for sub in p.subtasks.iter().filter(|s| !s.deps.is_empty()) {
        assert!((2..=3).contains(&sub.deps.len()));
        assert!(
            sub.input.is_empty(),
            "a dependent input is built at run time"
        );
        assert_eq!(sub.input_sha256(), None);
    }
}

proptest::proptest! {
    /// Whatever has been validated (even a set no real run reaches), `ready` offers only
    /// sub-tasks not yet done whose every dep is validated, and misses none of them.
    #[test]
    fn ready_offers_exactly_the_sub_tasks_whose_deps_are_validated(mask in proptest::prelude::any::<u64>()) {
        let p = plan(&spec("mapreduce.wordcount", wordcount_cases()[3].clone()));
        let validated: std::collections::BTreeSet<u32> = p
            .subtasks
            .iter()
            .map(|s| s.index)
            .filter(|&i| mask.rotate_left(i) & 1 == 1)
            .collect();
        let ready = p.ready(&validated);
        for s in &p.subtasks {
            let should = !validated.contains(&s.index)
                && s.deps.iter().all(|d| validated.contains(d));
            proptest::prop_assert_eq!(ready.contains(&s.index), should, "sub-task {}", s.index);
        }
    }
}
