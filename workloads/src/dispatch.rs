//! The crate's entry points: each takes a class's spec or a sub-task's kind and hands it to
//! the class's module. The only place that knows every class.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::batch::{self, BatchSpec, InferenceEngine};
use crate::class::{Class, SubtaskKind};
use crate::error::{AggError, ExecError, InputError, ParamError};
use crate::graph::Plan;
use crate::params::Fields;
use crate::render::{self, RenderSpec};
use crate::sweep::{self, SweepSpec};
use crate::wordcount::{self, WordCountSpec};

/// The largest plan any class makes; every class's own bounds keep below it.
pub const MAX_SUBTASKS: usize = 1024;

/// A task's class with its checked parameters. Built only by [`parse`], so every spec in the
/// coordinator's hands is within bounds. Replay re-derives it from the logged class name and
/// parameters JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskSpec {
    BatchInference(BatchSpec),
    WordCount(WordCountSpec),
    RenderTiles(RenderSpec),
    SweepEpidemic(SweepSpec),
}

impl TaskSpec {
    pub fn class(&self) -> Class {
        match self {
            TaskSpec::BatchInference(_) => Class::BatchInference,
            TaskSpec::WordCount(_) => Class::WordCount,
            TaskSpec::RenderTiles(_) => Class::RenderTiles,
            TaskSpec::SweepEpidemic(_) => Class::SweepEpidemic,
        }
    }
}

/// Checks a submission's class and parameters: the intake's whole validation of a general
/// task. Every field is bounded and unknown fields are refused, naming the field.
pub fn parse(class: &str, params: &Value) -> Result<TaskSpec, ParamError> {
    let class = Class::from_name(class).ok_or_else(|| ParamError::UnknownClass {
        class: class.chars().take(64).collect(),
    })?;
    let mut f = Fields::new(params, "")?;
    let spec = match class {
        Class::BatchInference => TaskSpec::BatchInference(batch::parse(&mut f)?),
        Class::WordCount => TaskSpec::WordCount(wordcount::parse(&mut f)?),
        Class::RenderTiles => TaskSpec::RenderTiles(render::parse(&mut f)?),
        Class::SweepEpidemic => TaskSpec::SweepEpidemic(sweep::parse(&mut f)?),
    };
    f.finish()?;
    Ok(spec)
}

/// The segmenter: the task's sub-task graph, in topological order. Deterministic: the same
/// spec always gives the same plan, byte for byte ([`Plan::digest`]).
pub fn plan(spec: &TaskSpec) -> Plan {
    let subtasks = match spec {
        TaskSpec::BatchInference(s) => batch::plan(s),
        TaskSpec::WordCount(s) => wordcount::plan(s),
        TaskSpec::RenderTiles(s) => render::plan(s),
        TaskSpec::SweepEpidemic(s) => sweep::plan(s),
    };
    Plan {
        class: spec.class(),
        subtasks,
    }
}

/// The input to dispatch for sub-task `index`: its static input, or, for a dependent one, the
/// input built from its deps' validated outputs (entries for other sub-tasks are ignored).
pub fn input_for(
    plan: &Plan,
    index: u32,
    dep_outputs: &BTreeMap<u32, Vec<u8>>,
) -> Result<Vec<u8>, InputError> {
    let sub = plan.get(index).ok_or(InputError::UnknownSubtask(index))?;
    match sub.kind {
        SubtaskKind::WordReduce => wordcount::reduce_input(index, &sub.deps, dep_outputs),
        _ => Ok(sub.input.clone()),
    }
}

/// Runs a pure sub-task (every kind but `batch.shard`) on a node. Never panics on malformed
/// input: a hostile dispatch is an [`ExecError`], and its work is bounded by the same limits
/// as [`parse`] (re-checked here, since the input did not necessarily come from `parse`).
pub fn execute(kind: SubtaskKind, input: &[u8]) -> Result<Vec<u8>, ExecError> {
    match kind {
        SubtaskKind::BatchShard => Err(ExecError::NeedsEngine(kind.name())),
        SubtaskKind::WordMap => wordcount::execute_map(input),
        SubtaskKind::WordReduce => wordcount::execute_reduce(input),
        SubtaskKind::RenderTile => render::execute_tile(input),
        SubtaskKind::SweepChunk => sweep::execute_chunk(input),
    }
}

/// [`execute`], with the node's inference engine for `batch.shard`.
pub fn execute_with_engine(
    kind: SubtaskKind,
    input: &[u8],
    engine: &mut dyn InferenceEngine,
) -> Result<Vec<u8>, ExecError> {
    match kind {
        SubtaskKind::BatchShard => batch::execute_shard(input, engine),
        _ => execute(kind, input),
    }
}

/// The task's output from its sub-tasks' validated outputs, honouring the graph: the root's
/// table for word counts, the tiles assembled into a PNG for renders, the shards' or chunks'
/// results concatenated in order otherwise.
pub fn aggregate(spec: &TaskSpec, outputs: &BTreeMap<u32, Vec<u8>>) -> Result<Vec<u8>, AggError> {
    match spec {
        TaskSpec::BatchInference(s) => batch::aggregate(s, outputs),
        TaskSpec::WordCount(s) => wordcount::aggregate(&wordcount::plan(s), outputs),
        TaskSpec::RenderTiles(s) => render::aggregate(s, outputs),
        TaskSpec::SweepEpidemic(s) => sweep::aggregate(s, outputs),
    }
}

/// The reference: the same computation in one process without splitting it, which the
/// distributed path's output must equal. `engine` is needed for `batch.inference` only.
pub fn run_in_one_process(
    spec: &TaskSpec,
    engine: Option<&mut dyn InferenceEngine>,
) -> Result<Vec<u8>, ExecError> {
    match spec {
        TaskSpec::BatchInference(s) => match engine {
            Some(engine) => batch::run_in_one_process(s, engine),
            None => Err(ExecError::NeedsEngine(SubtaskKind::BatchShard.name())),
        },
        TaskSpec::WordCount(s) => Ok(wordcount::run_in_one_process(s)),
        TaskSpec::RenderTiles(s) => render::run_in_one_process(s),
        TaskSpec::SweepEpidemic(s) => Ok(sweep::run_in_one_process(s)),
    }
}

/// The pricing basis of a whole task, before anything runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub class: Class,
    /// What a unit measures ([`Class::cost_unit`]).
    pub unit: &'static str,
    /// Each sub-task's units, by index: what is refunded if it is never run.
    pub per_subtask: Vec<u64>,
    pub total: u64,
}

pub fn quote(spec: &TaskSpec) -> Quote {
    let plan = plan(spec);
    Quote {
        class: plan.class,
        unit: plan.class.cost_unit(),
        per_subtask: plan.subtasks.iter().map(|s| s.cost).collect(),
        total: plan.total_cost(),
    }
}
