//! The general path's built-in workload classes (issue 18), as a pure library: no I/O, no
//! clock, no randomness, no floats, and nothing of the rest of the workspace.
//!
//! A submitted task names a [`Class`] and JSON parameters. [`parse`] checks them (every
//! caller is hostile: each field is bounded, unknown ones are refused). [`plan`] splits the
//! task into a [`Plan`]: sub-tasks in topological order, each with its deps, canonical input
//! bytes and cost. The coordinator dispatches [`Plan::ready`] sub-tasks, builds dependent
//! inputs with [`input_for`] from validated outputs, and finally calls [`aggregate`]. A node
//! runs a sub-task with [`execute`] (or [`execute_with_engine`] for inference shards, whose
//! engine it plugs in through [`InferenceEngine`]). [`run_in_one_process`] is the reference
//! the distributed result must equal; [`quote`] prices the whole task up front.
//!
//! Everything a node computes is integer arithmetic over canonical bytes, so two honest nodes
//! produce identical outputs and redundancy can compare them byte for byte.
//!
//! # Layout
//! - [`class`]: the class and sub-task kind vocabularies, with their stable names.
//! - [`graph`]: [`SubtaskSpec`], [`Plan`] (ready set, depth, check, digest, total cost).
//! - `dispatch`: the entry points above, routing to each class (the one file that knows them
//!   all); [`TaskSpec`], [`Quote`].
//! - [`batch`]: `batch.inference`: shards of prompts, the [`InferenceEngine`] seam.
//! - [`wordcount`]: `mapreduce.wordcount`: word-boundary sharding, map, tree reduce.
//! - [`render`]: `render.tiles`: tiling and assembly; [`fractal`]: the fixed-point renderer.
//! - [`sweep`]: `sweep.epidemic`: an integer SIR model over a grid of rates.
//! - [`png`]: a minimal, reproducible PNG writer.
//! - `params`: bounded reading of the submitter's JSON; `codec`: sub-task bytes, read strictly.
//! - [`error`]: one error enum per stage.

pub mod batch;
pub mod class;
mod codec;
mod dispatch;
pub mod error;
pub mod fractal;
pub mod graph;
mod params;
pub mod png;
pub mod render;
pub mod sweep;
pub mod wordcount;

#[cfg(test)]
mod tests;

pub use batch::InferenceEngine;
pub use class::{Class, SubtaskKind, KNOWN_CLASSES};
pub use codec::{MAX_INPUT_BYTES, MAX_OUTPUT_BYTES, MAX_TASK_OUTPUT_BYTES};
pub use dispatch::{
    aggregate, execute, execute_with_engine, input_for, parse, plan, quote, run_in_one_process,
    Quote, TaskSpec, MAX_SUBTASKS,
};
pub use error::{AggError, ExecError, InputError, ParamError};
pub use graph::{GraphError, Plan, SubtaskSpec};
