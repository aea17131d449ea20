//! A node must survive any dispatch: malformed, mutated or oversized sub-task inputs are an
//! error, never a panic, and never unbounded work.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::json;

use super::end_to_end::{render_cases, sweep_cases, wordcount_cases};
use super::spec;
use crate::batch::TestEngine;
use crate::{
    aggregate, execute, execute_with_engine, input_for, plan, AggError, ExecError, InputError,
    SubtaskKind, TaskSpec, MAX_INPUT_BYTES,
};

/// A valid input of every kind, small enough that any mutation of it runs quickly.
fn valid_inputs() -> Vec<(SubtaskKind, Vec<u8>)> {
    let mut out = Vec::new();
    let wc = plan(&spec("mapreduce.wordcount", wordcount_cases()[2].clone()));
    let mut outputs = BTreeMap::new();
    for sub in &wc.subtasks {
        let input = input_for(&wc, sub.index, &outputs).unwrap();
        outputs.insert(sub.index, execute(sub.kind, &input).unwrap());
        out.push((sub.kind, input));
    }
    let r = plan(&spec("render.tiles", render_cases()[2].clone()));
    out.push((SubtaskKind::RenderTile, r.subtasks[0].input.clone()));
    let s = plan(&spec("sweep.epidemic", sweep_cases()[2].clone()));
    out.push((SubtaskKind::SweepChunk, s.subtasks[0].input.clone()));
    let b = plan(&spec(
        "batch.inference",
        json!({"model": "m", "inputs": ["a", "b"], "max_tokens": 3}),
    ));
    out.push((SubtaskKind::BatchShard, b.subtasks[0].input.clone()));
    out
}

fn run(kind: SubtaskKind, input: &[u8]) -> Result<Vec<u8>, ExecError> {
    execute_with_engine(kind, input, &mut TestEngine::default())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn mutated_inputs_never_panic(
        which in 0usize..64,
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        op in 0u8..3,
    ) {
        let inputs = valid_inputs();
        let (kind, mut input) = inputs[which % inputs.len()].clone();
        let i = at.index(input.len());
        match op {
            0 => input[i] = byte,
            1 => input.truncate(i),
            _ => input.insert(i, byte),
        }
        let _ = run(kind, &input);
    }

    #[test]
    fn random_bytes_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        for kind in SubtaskKind::ALL {
            prop_assert!(run(kind, &bytes).is_err());
        }
    }
}

fn tile(over: serde_json::Value) -> Vec<u8> {
    let mut t = json!({"width": 64, "height": 64, "x0": 0, "y0": 0, "w": 16, "h": 16,
        "scene": {"fractal": "mandelbrot", "center_re": 0, "center_im": 0, "span": 1i64 << 49,
                  "c_re": 0, "c_im": 0, "max_iter": 16, "palette": "grey"}});
    for (k, v) in over.as_object().unwrap() {
        if k == "max_iter" || k == "span" {
            t["scene"][k] = v.clone();
        } else {
            t[k] = v.clone();
        }
    }
    serde_json::to_vec(&t).unwrap()
}

#[test]
fn out_of_bounds_fields_are_refused_by_name() {
    let kind = SubtaskKind::RenderTile;
    assert!(run(kind, &tile(json!({}))).is_ok());
    let bad = [
        (json!({"w": 0}), "w"),
        (json!({"w": 65}), "w"),
        (json!({"x0": 60}), "x0"),
        (json!({"y0": 4_000_000_000u64}), "y0"),
        (json!({"width": 1_000_000, "w": 1024, "h": 64}), "width"),
        (json!({"max_iter": 5000}), "max_iter"),
        (json!({"span": 0}), "span"),
        (
            json!({"width": 4096, "height": 4096, "w": 1024, "h": 1024, "max_iter": 4096}),
            "max_iter",
        ),
    ];
    for (over, field) in bad {
        match run(kind, &tile(over.clone())) {
            Err(ExecError::OutOfBounds { field: f, .. }) => assert_eq!(f, field, "{over}"),
            other => panic!("{over}: {other:?}"),
        }
    }
    let extra = br#"{"text": "a", "more": 1}"#;
    assert!(matches!(
        run(SubtaskKind::WordMap, extra),
        Err(ExecError::Malformed(_))
    ));
    let huge = vec![b' '; MAX_INPUT_BYTES + 1];
    assert!(matches!(
        run(SubtaskKind::WordMap, &huge),
        Err(ExecError::InputTooLarge { .. })
    ));
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(run(SubtaskKind::WordReduce, deep.as_bytes()).is_err());
}

#[test]
fn reduce_inputs_that_no_honest_map_makes_are_refused() {
    let cases = [
        json!({"parts": []}),
        json!({"parts": vec![json!([]); 17]}),
        json!({"parts": [[["b", 1], ["a", 1]]]}),
        json!({"parts": [[["a", 1], ["a", 1]]]}),
        json!({"parts": [[["a", 0]]]}),
        json!({"parts": [[["", 1]]]}),
        json!({"parts": [[["a", u64::MAX]], [["a", 1]]]}),
        json!({"parts": [[["a", -1]]]}),
    ];
    for c in cases {
        let r = run(SubtaskKind::WordReduce, &serde_json::to_vec(&c).unwrap());
        assert!(r.is_err(), "{c}: {r:?}");
    }
}

#[test]
fn batch_shards_need_an_engine_and_report_its_failure() {
    let b = plan(&spec(
        "batch.inference",
        json!({"model": "m", "inputs": ["a", "fail"], "max_tokens": 3}),
    ));
    let input = &b.subtasks[0].input;
    assert_eq!(
        execute(SubtaskKind::BatchShard, input),
        Err(ExecError::NeedsEngine("batch.shard"))
    );
    assert!(matches!(
        run(SubtaskKind::BatchShard, input),
        Err(ExecError::Engine(_))
    ));
}

#[test]
fn bad_dep_outputs_and_missing_outputs_are_errors() {
    let s = spec("mapreduce.wordcount", wordcount_cases()[2].clone());
    let p = plan(&s);
    let reduce = p.subtasks.iter().find(|s| !s.deps.is_empty()).unwrap();
    let (a, b) = (reduce.deps[0], reduce.deps[1]);
    let mut outs = BTreeMap::from([(a, b"[[\"x\",1]]".to_vec())]);
    assert_eq!(
        input_for(&p, reduce.index, &outs),
        Err(InputError::MissingDep {
            index: reduce.index,
            dep: b
        })
    );
    outs.insert(b, b"not json".to_vec());
    assert!(matches!(
        input_for(&p, reduce.index, &outs),
        Err(InputError::MalformedDepOutput { dep, .. }) if dep == b
    ));
    assert_eq!(
        input_for(&p, 9999, &outs),
        Err(InputError::UnknownSubtask(9999))
    );

    let root = p.subtasks.len() as u32 - 1;
    assert_eq!(
        aggregate(&s, &BTreeMap::new()),
        Err(AggError::Missing(root))
    );
    let r = spec("render.tiles", render_cases()[1].clone());
    let mut tiles = run_flat(&r);
    assert!(aggregate(&r, &tiles).is_ok());
    tiles.get_mut(&3).unwrap().pop();
    assert!(matches!(
        aggregate(&r, &tiles),
        Err(AggError::Malformed { index: 3, .. })
    ));
    let sw = spec("sweep.epidemic", sweep_cases()[2].clone());
    let mut chunks = run_flat(&sw);
    // A chunk's output swapped for another chunk's: right shape, wrong points.
    let first = chunks[&0].clone();
    chunks.insert(1, first);
    assert!(matches!(
        aggregate(&sw, &chunks),
        Err(AggError::Malformed { index: 1, .. })
    ));
}

/// Every sub-task's output of a flat plan.
fn run_flat(spec: &TaskSpec) -> BTreeMap<u32, Vec<u8>> {
    plan(spec)
        .subtasks
        .iter()
        .map(|t| (t.index, execute(t.kind, &t.input).unwrap()))
        .collect()
}
