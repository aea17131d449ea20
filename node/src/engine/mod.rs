//! The inference engine: one ONNX Runtime session of one registry model, greedy decoding with
//! a KV cache, following the graph contract of node/models/README.md
//! (`parallelix-llama-kv-v2`).
//!
//! `ort::Session::run` takes `&mut self` (ONNX Runtime's `Run` is not safe to call concurrently on
//! one session), so an [`Engine`] is one worker: the node holds one engine per slot and never puts
//! one behind a mutex. Several engines of one model can share the verified file bytes and the
//! parsed tokenizer through [`ModelFiles`].
//!
//! ONNX Runtime itself is a shared library opened at run time: see [`runtime`]. One model run
//! (the hot path, single-stream and batched alike) is [`forward`]'s.
//!
//! The per-token loop is the hot path: the prompt is tokenized once, the attention mask is a
//! slice of a buffer of ones allocated with the engine, the `present.*` outputs stay where the
//! session computed them (device memory on a GPU: ONNX Runtime's I/O binding) and are moved
//! (not copied) into the next step's `past_key_values.*` inputs, and the logits are read in
//! place.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ort::session::Session;
use ort::value::{DynValue, Tensor};
use tokenizers::Tokenizer;

use crate::registry::{ModelEntry, VerifiedModel};

mod error;
mod forward;
mod paths;
pub mod runtime;

use error::ort_err;
pub use error::EngineError;
pub use forward::argmax;
pub(crate) use forward::Rows;
use forward::{count, forward, Binding, ModelSpec};
pub use runtime::{
    ort_environment, resolve_ort_library, resolve_ort_library_for, EngineOptions, Provider,
    ORT_DYLIB_ENV, ORT_DYLIB_POINTER,
};
use runtime::{session_builder, with_provider};

/// The only decoding this engine does; recorded with each [`Generation`].
pub const DECODING: &str = "greedy";

/// A model's files, verified against the registry and parsed once, to build any number of
/// engines (one per worker slot) from.
pub struct ModelFiles {
    pub model: VerifiedModel,
    pub tokenizer: Arc<Tokenizer>,
}

impl fmt::Debug for ModelFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelFiles")
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl ModelFiles {
    /// Reads both files, checks their SHA-256 against the registry and parses the tokenizer.
    pub fn load(entry: &ModelEntry) -> Result<ModelFiles, EngineError> {
        let model = entry.read_model()?;
        let tokenizer_bytes = entry.read_tokenizer()?;
        let tokenizer = Tokenizer::from_bytes(&tokenizer_bytes).map_err(|error| {
            EngineError::TokenizerLoad {
                path: entry.tokenizer.clone(),
                error,
            }
        })?;
        Ok(ModelFiles {
            model,
            tokenizer: Arc::new(tokenizer),
        })
    }
}

/// The result of one request. Everything but `timing` is a deterministic function of the model
/// file, the prompt and `max_tokens` (on a given CPU instruction set, see the models README);
/// compare those fields, not whole values.
#[derive(Debug, Clone)]
pub struct Generation {
    /// The generated ids, without the EOS id that stopped generation (see `eos_token_id`).
    pub token_ids: Vec<u32>,
    /// `token_ids` decoded, special tokens skipped.
    pub text: String,
    /// Tokens fed to the model as the prompt (template and BOS included).
    pub prompt_tokens: u32,
    /// `token_ids.len()`.
    pub generated_tokens: u32,
    /// Generation ended at an EOS id rather than at `max_tokens`.
    pub stopped_at_eos: bool,
    /// The EOS id that ended generation, when one did.
    pub eos_token_id: Option<u32>,
    /// Lowercase hex SHA-256 of the model file the session was built from.
    pub model_sha256: String,
    /// Always [`DECODING`].
    pub decoding: &'static str,
    pub timing: GenerationTiming,
}

/// Where a generation's time went. Not deterministic; never commit to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GenerationTiming {
    /// Templating and tokenizing the prompt.
    pub tokenize: Duration,
    /// The first model run, over the whole prompt.
    pub prefill: Duration,
    /// Every later model run, one token each.
    pub decode: Duration,
    /// How many model runs `decode` covers.
    pub decode_steps: u32,
    /// Everything, including decoding the ids to text.
    pub total: Duration,
}

impl GenerationTiming {
    /// Single-token decode throughput (steps after the prefill), or 0 when there were none.
    pub fn decode_tokens_per_second(&self) -> f64 {
        per_second(self.decode_steps, self.decode)
    }
}

impl Generation {
    /// Model runs per second of wall time, prompt handling and text decoding included: each
    /// run yields one token, the EOS one included.
    pub fn tokens_per_second(&self) -> f64 {
        let runs = self.generated_tokens + u32::from(self.stopped_at_eos);
        per_second(runs, self.timing.total)
    }
}

fn per_second(count: u32, elapsed: Duration) -> f64 {
    if count == 0 || elapsed.is_zero() {
        0.0
    } else {
        f64::from(count) / elapsed.as_secs_f64()
    }
}

/// One ONNX Runtime session of one model: a single worker. See the module docs.
pub struct Engine {
    session: Session,
    /// Where runs put the cache and the logits (see [`forward`]).
    binding: Binding,
    tokenizer: Arc<Tokenizer>,
    spec: ModelSpec,
    model_sha256: String,
    provider: Provider,
    intra_op_threads: usize,
    /// `[1, kv_heads, 0, head_dim]`: the past of every layer at prefill.
    empty_past: Tensor<f32>,
    /// `context_length` ones; each step's attention mask is a prefix of it.
    mask: Vec<i64>,
    /// Scratch for the ids and positions of the current step.
    step_ids: Vec<i64>,
    step_positions: Vec<i64>,
    /// The previous step's `present.*`, in input order, moved into the next step (kept between
    /// generations for its allocation only).
    past: Vec<DynValue>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("model", &self.spec.reference)
            .field("model_sha256", &self.model_sha256)
            .field("provider", &self.provider)
            .field("intra_op_threads", &self.intra_op_threads)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Verifies and reads the model's files, then builds the session. To build several engines
    /// of one model, read the files once with [`ModelFiles::load`] and use [`Engine::with_files`].
    pub fn load(entry: &ModelEntry, options: &EngineOptions) -> Result<Engine, EngineError> {
        // A build that cannot run CUDA says so before anything is looked for.
        if options.provider == Provider::Cuda && !cfg!(feature = "cuda") {
            return Err(EngineError::CudaNotCompiled);
        }
        // Resolve the runtime first: a missing library is the cheaper and likelier failure.
        let library = resolve_ort_library_for(
            options.ort_library.as_deref(),
            &entry.root,
            options.provider,
        )?;
        let files = ModelFiles::load(entry)?;
        Engine::build(entry, &files, options, &library)
    }

    /// Builds a session from files already verified against `entry`.
    pub fn with_files(
        entry: &ModelEntry,
        files: &ModelFiles,
        options: &EngineOptions,
    ) -> Result<Engine, EngineError> {
        let library = resolve_ort_library_for(
            options.ort_library.as_deref(),
            &entry.root,
            options.provider,
        )?;
        Engine::build(entry, files, options, &library)
    }

    fn build(
        entry: &ModelEntry,
        files: &ModelFiles,
        options: &EngineOptions,
        library: &Path,
    ) -> Result<Engine, EngineError> {
        let environment = ort_environment(library)?;
        let builder = session_builder(&environment, options.intra_op_threads)
            .map_err(ort_err("configuring the session"))?;
        let mut builder = with_provider(builder, options.provider)?;
        let session = builder
            .commit_from_memory(&files.model.bytes)
            .map_err(ort_err("loading the model into ONNX Runtime"))?;
        check_contract(&session, entry)?;
        let binding = Binding::new(&session, options.provider)?;

        let past_shape = [1, entry.num_kv_heads, 0, entry.head_dim];
        let empty_past = Tensor::from_array((past_shape, Vec::<f32>::new()))
            .map_err(ort_err("creating the empty past tensor"))?;
        Ok(Engine {
            session,
            binding,
            tokenizer: Arc::clone(&files.tokenizer),
            spec: ModelSpec {
                reference: entry.reference.clone(),
                prefix_ids: entry.prefix_ids().to_vec(),
                eos_token_ids: entry.eos_token_ids.clone(),
                chat_template: entry.chat_template,
                num_layers: entry.num_layers,
                vocab_size: entry.vocab_size,
                context_length: entry.context_length,
            },
            model_sha256: files.model.sha256.clone(),
            provider: options.provider,
            intra_op_threads: options.intra_op_threads.max(1),
            empty_past,
            mask: vec![1; entry.context_length],
            step_ids: Vec::new(),
            step_positions: Vec::new(),
            past: Vec::with_capacity(2 * entry.num_layers),
        })
    }

    /// The registry reference of the model.
    pub fn reference(&self) -> &str {
        &self.spec.reference
    }

    /// Lowercase hex SHA-256 of the model file this session runs.
    pub fn model_sha256(&self) -> &str {
        &self.model_sha256
    }

    /// The execution provider the session was built with.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// ONNX Runtime intra-op threads of the session (0 in the options means 1, not "all").
    pub fn intra_op_threads(&self) -> usize {
        self.intra_op_threads
    }

    /// The ids the model sees for `prompt`: the chat template applied, tokenized without the
    /// tokenizer's own special-token handling, BOS prepended where the registry says so.
    pub fn encode_prompt(&self, prompt: &str) -> Result<Vec<u32>, EngineError> {
        let text = self.spec.chat_template.render(prompt);
        let encoding = self
            .tokenizer
            .encode(text.as_str(), false)
            .map_err(EngineError::Tokenizer)?;
        let mut ids = Vec::with_capacity(self.spec.prefix_ids.len() + encoding.len());
        ids.extend_from_slice(&self.spec.prefix_ids);
        ids.extend_from_slice(encoding.get_ids());
        Ok(ids)
    }

    /// The prompt's ids, checked: not empty, and room in the context for `max_tokens` more.
    pub(crate) fn prepare(&self, prompt: &str, max_tokens: u32) -> Result<Vec<u32>, EngineError> {
        let prompt_ids = self.encode_prompt(prompt)?;
        if prompt_ids.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        let budget = usize::try_from(max_tokens).unwrap_or(usize::MAX);
        // The last run sees prompt + max_tokens - 1 positions; one spare keeps the check simple.
        if prompt_ids.len().saturating_add(budget) > self.spec.context_length {
            return Err(EngineError::ContextOverflow {
                prompt_tokens: prompt_ids.len(),
                max_tokens,
                context_length: self.spec.context_length,
            });
        }
        Ok(prompt_ids)
    }

    /// True when `id` ends a generation.
    pub(crate) fn is_eos(&self, id: u32) -> bool {
        self.spec.eos_token_ids.contains(&id)
    }

    /// A finished generation: the ids decoded to text, the timing closed at `started`.
    pub(crate) fn finish(
        &self,
        prompt_tokens: usize,
        token_ids: Vec<u32>,
        eos_token_id: Option<u32>,
        mut timing: GenerationTiming,
        started: Instant,
    ) -> Result<Generation, EngineError> {
        let text = self
            .tokenizer
            .decode(&token_ids, true)
            .map_err(EngineError::Tokenizer)?;
        timing.total = started.elapsed();
        Ok(Generation {
            prompt_tokens: count(prompt_tokens),
            generated_tokens: count(token_ids.len()),
            token_ids,
            text,
            stopped_at_eos: eos_token_id.is_some(),
            eos_token_id,
            model_sha256: self.model_sha256.clone(),
            decoding: DECODING,
            timing,
        })
    }

    /// Greedy generation: at most `max_tokens` model runs, each yielding one token, stopping
    /// early at an EOS id. Argmax ties go to the lowest id.
    pub fn generate(&mut self, prompt: &str, max_tokens: u32) -> Result<Generation, EngineError> {
        let started = Instant::now();
        let prompt_ids = self.prepare(prompt, max_tokens)?;
        let budget = usize::try_from(max_tokens).unwrap_or(usize::MAX);
        let mut timing = GenerationTiming {
            tokenize: started.elapsed(),
            ..GenerationTiming::default()
        };
        let mut token_ids = Vec::with_capacity(budget.min(self.spec.context_length));
        let mut eos_token_id = None;

        self.step_ids.clear();
        self.step_ids
            .extend(prompt_ids.iter().map(|&id| i64::from(id)));
        let mut past = std::mem::take(&mut self.past);
        past.clear();
        let mut next = Vec::with_capacity(1);
        let mut past_len = 0;
        for step in 0..budget {
            let run_started = Instant::now();
            past_len = self.run_alone(past_len, &mut past, &mut next)?;
            let elapsed = run_started.elapsed();
            if step == 0 {
                timing.prefill = elapsed;
            } else {
                timing.decode += elapsed;
                timing.decode_steps += 1;
            }
            let next = next[0];
            if self.is_eos(next) {
                eos_token_id = Some(next);
                break;
            }
            token_ids.push(next);
            self.step_ids.clear();
            self.step_ids.push(i64::from(next));
        }
        // Free the cache now rather than holding it until the next request; keep the vector.
        past.clear();
        self.past = past;
        self.finish(prompt_ids.len(), token_ids, eos_token_id, timing, started)
    }

    /// Runs the whole prompt alone (batch 1, an empty past): the greedy first id and the
    /// prompt's cache (`present.*`, `[1, kv_heads, n, head_dim]` each, in input order).
    pub(crate) fn prefill(
        &mut self,
        prompt_ids: &[u32],
    ) -> Result<(u32, Vec<DynValue>), EngineError> {
        self.step_ids.clear();
        self.step_ids
            .extend(prompt_ids.iter().map(|&id| i64::from(id)));
        let mut past = Vec::with_capacity(2 * self.spec.num_layers);
        let mut next = Vec::with_capacity(1);
        self.run_alone(0, &mut past, &mut next)?;
        Ok((next[0], past))
    }

    /// One run of batch 1: `step_ids` at positions `past_len..`, over `past` (empty: a
    /// prefill). Returns the new past length.
    fn run_alone(
        &mut self,
        past_len: usize,
        past: &mut Vec<DynValue>,
        next: &mut Vec<u32>,
    ) -> Result<usize, EngineError> {
        let seq = self.step_ids.len();
        let total = past_len + seq;
        self.step_positions.clear();
        self.step_positions
            .extend((past_len..total).map(|p| p as i64));
        let Engine {
            session,
            binding,
            spec,
            empty_past,
            mask,
            step_ids,
            step_positions,
            ..
        } = self;
        let rows = Rows {
            batch: 1,
            seq,
            ids: step_ids,
            positions: step_positions,
            mask: &mask[..total],
            total,
        };
        forward(session, binding, spec, empty_past, rows, past, next)?;
        Ok(total)
    }

    /// One decode step of a batch (one new id per row): `past` is the batch's cache, replaced
    /// by the `present.*` outputs; `next` gets each row's greedy id.
    pub(crate) fn decode_rows(
        &mut self,
        rows: Rows<'_>,
        past: &mut Vec<DynValue>,
        next: &mut Vec<u32>,
    ) -> Result<(), EngineError> {
        let Engine {
            session,
            binding,
            spec,
            empty_past,
            ..
        } = self;
        forward(session, binding, spec, empty_past, rows, past, next)
    }

    /// `[kv_heads, head_dim]` of each cache tensor, and how many there are (2 per layer).
    pub(crate) fn cache_dims(&self) -> (usize, usize, usize) {
        let dims = self.empty_past.shape();
        (dims[1] as usize, dims[3] as usize, 2 * self.spec.num_layers)
    }
}

/// Checks the session's inputs and outputs against the contract and the registry's dimensions,
/// so that the decode loop can pass inputs and read outputs by position.
fn check_contract(session: &Session, entry: &ModelEntry) -> Result<(), EngineError> {
    let violation = |problem: String| EngineError::Contract {
        reference: entry.reference.clone(),
        problem,
    };
    let mut inputs = vec![
        "input_ids".to_owned(),
        "attention_mask".to_owned(),
        "position_ids".to_owned(),
    ];
    let mut outputs = vec!["logits".to_owned()];
    for layer in 0..entry.num_layers {
        for kind in ["key", "value"] {
            inputs.push(format!("past_key_values.{layer}.{kind}"));
            outputs.push(format!("present.{layer}.{kind}"));
        }
    }
    let actual_inputs: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
    if actual_inputs != inputs {
        return Err(violation(format!(
            "inputs are {actual_inputs:?}, expected {inputs:?} (num_layers = {} in the registry)",
            entry.num_layers
        )));
    }
    let actual_outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
    if actual_outputs != outputs {
        return Err(violation(format!(
            "outputs are {actual_outputs:?}, expected {outputs:?}"
        )));
    }
    let past = session.inputs()[3].dtype();
    let dims = past.tensor_shape().map(|s| s.to_vec()).unwrap_or_default();
    let expected = [entry.num_kv_heads as i64, entry.head_dim as i64];
    if dims.len() != 4 || [dims[1], dims[3]] != expected {
        return Err(violation(format!(
            "past_key_values.0.key has shape {dims:?}, expected [batch, {}, past, {}]",
            entry.num_kv_heads, entry.head_dim
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_breaks_ties_to_the_lowest_id_and_skips_nan() {
        assert_eq!(argmax(&[0.0, 2.0, 1.0, 2.0]), 1);
        assert_eq!(argmax(&[f32::NAN, -1.0, -1.0]), 1);
        assert_eq!(argmax(&[3.0, f32::NAN, 3.0]), 0);
        assert_eq!(argmax(&[-5.0]), 0);
    }

    #[test]
    fn explicit_missing_library_names_the_path_and_the_setup_script() {
        let err = resolve_ort_library(
            Some(Path::new("/nonexistent/libonnxruntime.so")),
            Path::new("/"),
        )
        .unwrap_err();
        assert!(matches!(err, EngineError::OrtLibraryMissing { .. }));
        let msg = err.to_string();
        assert!(msg.contains("/nonexistent/libonnxruntime.so"), "{msg}");
        assert!(msg.contains("scripts/setup-models.sh"), "{msg}");
    }

    #[test]
    fn provider_parses_and_reports_ort_names() {
        assert_eq!("CUDA".parse::<Provider>(), Ok(Provider::Cuda));
        assert_eq!(Provider::default().to_string(), "CPUExecutionProvider");
        assert!("tpu".parse::<Provider>().is_err());
    }

    #[test]
    fn rejections_are_told_apart_from_failures() {
        assert!(EngineError::EmptyPrompt.is_rejection());
        assert!(!EngineError::CudaNotCompiled.is_rejection());
    }

    #[test]
    fn engines_can_move_to_worker_threads() {
        fn assert_send<T: Send>() {}
        assert_send::<Engine>();
    }
}
