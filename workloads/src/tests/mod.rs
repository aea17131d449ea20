//! Cross-module tests: every class end to end through the graph, checked against the
//! one-process reference and against an independent computation written differently; the
//! refusals of hostile parameters; hostile sub-task inputs.

mod end_to_end;
mod hostile;
mod independent;
mod refusals;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::batch::TestEngine;
use crate::{aggregate, execute_with_engine, input_for, parse, plan, TaskSpec};

pub(crate) fn spec(class: &str, params: Value) -> TaskSpec {
    parse(class, &params).unwrap_or_else(|e| panic!("{class}: {e}"))
}

/// What the coordinator and the nodes will do, in one process: dispatch every ready sub-task
/// (a wave, as on many nodes at once), build dependent inputs from validated outputs only,
/// validate the wave, repeat; then aggregate. Asserts the graph's promises on the way and
/// returns the output with the number of waves.
pub(crate) fn run_distributed(spec: &TaskSpec, reverse_waves: bool) -> (Vec<u8>, u32) {
    let plan = plan(spec);
    plan.check().unwrap();
    let mut engine = TestEngine::default();
    let mut validated = BTreeSet::new();
    let mut outputs: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    let mut waves = 0;
    loop {
        let mut ready = plan.ready(&validated);
        if ready.is_empty() {
            break;
        }
        waves += 1;
        if reverse_waves {
            ready.reverse();
        }
        for &i in &ready {
            let sub = plan.get(i).unwrap();
            assert!(!validated.contains(&i), "{i} is already done");
            assert!(
                sub.deps.iter().all(|d| validated.contains(d)),
                "{i} ran early"
            );
            // Only validated outputs are visible to input_for.
            let visible: BTreeMap<u32, Vec<u8>> = outputs
                .iter()
                .filter(|(k, _)| validated.contains(*k))
                .map(|(k, v)| (*k, v.clone()))
                .collect();
            let input = input_for(&plan, i, &visible).unwrap();
            if sub.deps.is_empty() {
                assert_eq!(input, sub.input);
            }
            let out = execute_with_engine(sub.kind, &input, &mut engine).unwrap();
            outputs.insert(i, out);
        }
        validated.extend(ready);
    }
    assert_eq!(validated.len(), plan.subtasks.len(), "every sub-task ran");
    assert_eq!(waves, plan.depth());
    (aggregate(spec, &outputs).unwrap(), waves)
}
