//! `batch.inference`: one catalog model over many prompts, in shards.
//!
//! The model runs in the node's inference engine (ONNX Runtime), which this crate does not
//! link: a node plugs it in through [`InferenceEngine`]. This module owns the shard format and
//! the aggregation. Graph: flat, one sub-task per shard of `shard_size` prompts, in order.
//!
//! Whether the model is in the catalog, and whether `max_tokens` fits it, is the
//! coordinator's check at intake (the catalog lives on its log); here the name is only
//! bounded in shape.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::class::SubtaskKind;
use crate::codec::{bounded, decode, decode_output, encode};
use crate::error::{AggError, ExecError, ParamError};
use crate::graph::{independent, SubtaskSpec};
use crate::params::Fields;

pub const MAX_MODEL_NAME: usize = 128;
pub const MAX_INPUTS: usize = 4096;
pub const MAX_PROMPT_BYTES: usize = 16 << 10;
pub const MAX_PROMPTS_BYTES: usize = 1 << 20;
pub const MAX_SHARD_SIZE: u64 = 256;
pub const MAX_SHARDS: u64 = 256;
pub const MAX_TOKENS: u64 = 8192;

/// The node's engine, as this crate sees it: one prompt in, one completion out.
/// Implementations must be deterministic for a given (model, prompt, max_tokens) where the
/// result is to be compared across nodes (greedy decoding), as for `ai.inference`.
pub trait InferenceEngine {
    fn infer(&mut self, model: &str, prompt: &str, max_tokens: u32) -> Result<String, String>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSpec {
    model: String,
    inputs: Vec<String>,
    shard_size: u32,
    max_tokens: u32,
}

impl BatchSpec {
    /// The catalog model the coordinator must check at intake.
    pub fn model(&self) -> &str {
        &self.model
    }
    pub fn max_tokens(&self) -> u32 {
        self.max_tokens
    }
    pub fn inputs(&self) -> &[String] {
        &self.inputs
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShardInput {
    model: String,
    max_tokens: u32,
    prompts: Vec<String>,
}

/// `model` (1..=128 bytes of `[A-Za-z0-9._:/-]`), `inputs` (1..=4096 prompts, each at most
/// 16 KiB, 1 MiB in all), `shard_size` (1..=256, default 16, at most 256 shards),
/// `max_tokens` (1..=8192).
pub(crate) fn parse(f: &mut Fields) -> Result<BatchSpec, ParamError> {
    let model = f.string("model", MAX_MODEL_NAME, None)?;
    if !valid_model_name(model) {
        return Err(f.err(
            "model",
            "expected 1..=128 characters of A-Z a-z 0-9 . _ : / -",
        ));
    }
    let inputs = f.strings(
        "inputs",
        1..=MAX_INPUTS,
        MAX_PROMPT_BYTES,
        MAX_PROMPTS_BYTES,
    )?;
    let shard_size = f.int("shard_size", 1, MAX_SHARD_SIZE, Some(16))?;
    let shards = (inputs.len() as u64).div_ceil(shard_size);
    if shards > MAX_SHARDS {
        return Err(f.err(
            "shard_size",
            format!(
                "{} inputs in shards of {shard_size} make {shards} sub-tasks, more than \
                 {MAX_SHARDS}",
                inputs.len()
            ),
        ));
    }
    let max_tokens = f.int("max_tokens", 1, MAX_TOKENS, None)? as u32;
    Ok(BatchSpec {
        model: model.to_string(),
        inputs,
        shard_size: shard_size as u32,
        max_tokens,
    })
}

fn valid_model_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_MODEL_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:/-".contains(&b))
}

pub(crate) fn plan(spec: &BatchSpec) -> Vec<SubtaskSpec> {
    let shards = spec.inputs.chunks(spec.shard_size as usize).map(|prompts| {
        let input = encode(&ShardInput {
            model: spec.model.clone(),
            max_tokens: spec.max_tokens,
            prompts: prompts.to_vec(),
        });
        (input, prompts.len() as u64 * u64::from(spec.max_tokens))
    });
    independent(SubtaskKind::BatchShard, shards)
}

/// Runs a shard through `engine`; the output is the completions as a JSON list of strings, in
/// prompt order.
pub(crate) fn execute_shard(
    input: &[u8],
    engine: &mut dyn InferenceEngine,
) -> Result<Vec<u8>, ExecError> {
    let shard: ShardInput = decode(input)?;
    if !valid_model_name(&shard.model) {
        return Err(ExecError::OutOfBounds {
            field: "model",
            reason: "not a model name".to_string(),
        });
    }
    bounded("max_tokens", u64::from(shard.max_tokens), 1..=MAX_TOKENS)?;
    bounded("prompts", shard.prompts.len() as u64, 1..=MAX_SHARD_SIZE)?;
    let mut outputs = Vec::with_capacity(shard.prompts.len());
    for prompt in &shard.prompts {
        bounded(
            "prompts[]",
            prompt.len() as u64,
            0..=MAX_PROMPT_BYTES as u64,
        )?;
        let out = engine
            .infer(&shard.model, prompt, shard.max_tokens)
            .map_err(ExecError::Engine)?;
        outputs.push(out);
    }
    Ok(encode(&outputs))
}

/// The shards' completions concatenated in shard order; each shard must answer every prompt.
pub(crate) fn aggregate(
    spec: &BatchSpec,
    outputs: &BTreeMap<u32, Vec<u8>>,
) -> Result<Vec<u8>, AggError> {
    let mut all: Vec<String> = Vec::with_capacity(spec.inputs.len());
    for (i, prompts) in spec.inputs.chunks(spec.shard_size as usize).enumerate() {
        let index = i as u32;
        let completions: Vec<String> = decode_output(outputs, index)?;
        if completions.len() != prompts.len() {
            return Err(AggError::Malformed {
                index,
                reason: format!(
                    "{} completions for {} prompts",
                    completions.len(),
                    prompts.len()
                ),
            });
        }
        all.extend(completions);
    }
    Ok(encode(&all))
}

/// Every prompt through `engine` in one go, without shards.
pub(crate) fn run_in_one_process(
    spec: &BatchSpec,
    engine: &mut dyn InferenceEngine,
) -> Result<Vec<u8>, ExecError> {
    let outputs = spec
        .inputs
        .iter()
        .map(|p| engine.infer(&spec.model, p, spec.max_tokens))
        .collect::<Result<Vec<String>, String>>()
        .map_err(ExecError::Engine)?;
    Ok(encode(&outputs))
}

/// A deterministic stand-in for the node's engine, for this crate's tests: the completion is
/// a function of (model, prompt, max_tokens) only.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct TestEngine {
    pub calls: usize,
}

#[cfg(test)]
impl InferenceEngine for TestEngine {
    fn infer(&mut self, model: &str, prompt: &str, max_tokens: u32) -> Result<String, String> {
        self.calls += 1;
        if prompt == "fail" {
            return Err("the engine refused".to_string());
        }
        let reversed: String = prompt.chars().rev().take(max_tokens as usize).collect();
        Ok(format!("{model}:{reversed}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_answers_every_prompt_in_order() {
        let input = encode(&ShardInput {
            model: "m".to_string(),
            max_tokens: 2,
            prompts: vec!["abc".to_string(), "xy".to_string()],
        });
        let mut engine = TestEngine::default();
        let out = execute_shard(&input, &mut engine).unwrap();
        let completions: Vec<String> = serde_json::from_slice(&out).unwrap();
        assert_eq!(completions, ["m:cb", "m:yx"]);
        assert_eq!(engine.calls, 2);
    }
}
