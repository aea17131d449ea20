//! The inference engine: one ONNX Runtime session of one registry model, greedy decoding with
//! a KV cache, following the graph contract of node/models/README.md
//! (`parallelix-llama-kv-v2`).
//!
//! `ort::Session::run` takes `&mut self` (ONNX Runtime's `Run` is not safe to call concurrently on
//! one session), so an [`Engine`] is one worker: the node holds one engine per slot and never puts
//! one behind a mutex. Several engines of one model can share the verified file bytes and the
//! parsed tokenizer through [`ModelFiles`].
//!
//! ONNX Runtime itself is a shared library opened at run time (`ort`'s `load-dynamic`): see
//! [`resolve_ort_library`] for where its path comes from. ONNX Runtime allows one environment per
//! process, so the first engine creates it and every later one shares it ([`ort_environment`]).
//!
//! The per-token loop is the hot path: the prompt is tokenized once, the attention mask is a
//! slice of a buffer of ones allocated with the engine, the `present.*` outputs are moved (not
//! copied) into the next step's `past_key_values.*` inputs, and the logits are read in place.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ort::environment::Environment;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Tensor, TensorRef};
use tokenizers::Tokenizer;

use crate::registry::{ChatTemplate, ModelEntry, RegistryError, VerifiedModel, IO_CONTRACT};

/// The environment variable naming the ONNX Runtime shared library.
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";
/// Where scripts/setup-models.sh writes that path, relative to the repository root.
pub const ORT_DYLIB_POINTER: &str = ".cache/ort/ORT_DYLIB_PATH";
/// The only decoding this engine does; recorded with each [`Generation`].
pub const DECODING: &str = "greedy";

/// Why an engine could not be built or could not generate.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "the ONNX Runtime library {} (from {origin}) does not exist; run scripts/setup-models.sh, \
         which installs it and writes its path to {ORT_DYLIB_POINTER}",
        path.display()
    )]
    OrtLibraryMissing { path: PathBuf, origin: String },
    #[error(
        "no ONNX Runtime library configured: {ORT_DYLIB_ENV} is not set and {} does not exist; \
         run {setup}",
        pointer.display()
    )]
    OrtLibraryNotConfigured {
        pointer: PathBuf,
        /// The command that writes it.
        setup: &'static str,
    },
    #[error("cannot load the ONNX Runtime library {}: {message}", path.display())]
    OrtLibraryLoad { path: PathBuf, message: String },
    #[error(
        "ONNX Runtime is already loaded from {} in this process and cannot also be loaded from {}",
        loaded.display(),
        requested.display()
    )]
    OrtLibraryConflict { loaded: PathBuf, requested: PathBuf },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("cannot parse the tokenizer {}: {error}", path.display())]
    TokenizerLoad {
        path: PathBuf,
        error: tokenizers::Error,
    },
    #[error("tokenizer failed: {0}")]
    Tokenizer(tokenizers::Error),
    #[error("model {reference:?} does not follow {IO_CONTRACT}: {problem}")]
    Contract { reference: String, problem: String },
    #[error(
        "the CUDA execution provider was requested, but this prlx-node was built without the \
         `cuda` feature"
    )]
    CudaNotCompiled,
    #[error("{context}: {error}")]
    Ort {
        context: &'static str,
        error: ort::Error,
    },
    #[error("the prompt is empty after templating and tokenization")]
    EmptyPrompt,
    #[error(
        "a prompt of {prompt_tokens} tokens plus max_tokens {max_tokens} exceeds the model's \
         context of {context_length} tokens"
    )]
    ContextOverflow {
        prompt_tokens: usize,
        max_tokens: u32,
        context_length: usize,
    },
}

impl EngineError {
    /// True when the request itself is at fault (answer it with a rejection), false when the
    /// node could not do the work (a failure: retry or reschedule).
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            EngineError::EmptyPrompt | EngineError::ContextOverflow { .. }
        )
    }
}

fn ort_err(context: &'static str) -> impl FnOnce(ort::Error) -> EngineError {
    move |error| EngineError::Ort { context, error }
}

/// The execution provider a session runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Provider {
    #[default]
    Cpu,
    /// Needs the `cuda` cargo feature and a CUDA build of ONNX Runtime. A CUDA provider that
    /// fails to register is an error, never a silent fall back to the CPU.
    Cuda,
}

impl Provider {
    /// ONNX Runtime's name for it.
    pub fn ort_name(self) -> &'static str {
        match self {
            Provider::Cpu => "CPUExecutionProvider",
            Provider::Cuda => "CUDAExecutionProvider",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.ort_name())
    }
}

impl std::str::FromStr for Provider {
    type Err = String;

    fn from_str(s: &str) -> Result<Provider, String> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" => Ok(Provider::Cpu),
            "cuda" => Ok(Provider::Cuda),
            other => Err(format!(
                "unknown execution provider {other:?} (cpu or cuda)"
            )),
        }
    }
}

/// How to build an engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineOptions {
    /// ONNX Runtime intra-op threads. 1 by default: on a 2-core host one thread per session
    /// measured faster, and the node runs one session per slot anyway.
    pub intra_op_threads: usize,
    pub provider: Provider,
    /// The ONNX Runtime library; `None` looks it up as [`resolve_ort_library`] says.
    pub ort_library: Option<PathBuf>,
}

impl Default for EngineOptions {
    fn default() -> EngineOptions {
        EngineOptions {
            intra_op_threads: 1,
            provider: Provider::Cpu,
            ort_library: None,
        }
    }
}

/// The ONNX Runtime library to load: `explicit` if given, else `$ORT_DYLIB_PATH` if set and
/// non-empty, else the path written in `<root>/.cache/ort/ORT_DYLIB_PATH` by
/// scripts/setup-models.sh. The file must exist; a missing one is an error that says to run
/// that script.
pub fn resolve_ort_library(explicit: Option<&Path>, root: &Path) -> Result<PathBuf, EngineError> {
    resolve_ort_library_for(explicit, root, Provider::Cpu)
}

/// As [`resolve_ort_library`], for `provider`: a CUDA engine's default is the GPU build that
/// `scripts/setup-models.sh --gpu` installs ([`crate::gpu::GPU_ORT_POINTER`]).
pub fn resolve_ort_library_for(
    explicit: Option<&Path>,
    root: &Path,
    provider: Provider,
) -> Result<PathBuf, EngineError> {
    let (pointer, setup) = match provider {
        Provider::Cpu => (ORT_DYLIB_POINTER, "scripts/setup-models.sh"),
        Provider::Cuda => (crate::gpu::GPU_ORT_POINTER, "scripts/setup-models.sh --gpu"),
    };
    let (path, origin) = if let Some(path) = explicit {
        (path.to_owned(), "the engine options".to_owned())
    } else if let Some(path) = std::env::var_os(ORT_DYLIB_ENV).filter(|v| !v.is_empty()) {
        (PathBuf::from(path), format!("${ORT_DYLIB_ENV}"))
    } else {
        let pointer = root.join(pointer);
        let text = std::fs::read_to_string(&pointer).map_err(|_| {
            EngineError::OrtLibraryNotConfigured {
                pointer: pointer.clone(),
                setup,
            }
        })?;
        let path = root.join(text.trim());
        (path, pointer.display().to_string())
    };
    if !path.is_file() {
        return Err(EngineError::OrtLibraryMissing { path, origin });
    }
    Ok(path)
}

struct LoadedRuntime {
    library: PathBuf,
    environment: Environment,
}

static RUNTIME: Mutex<Option<LoadedRuntime>> = Mutex::new(None);

/// The process's ONNX Runtime environment, loading `library` on first use.
///
/// ONNX Runtime can be loaded once per process and `ort` allows one environment per process
/// (ever: a dropped one cannot be replaced), so this keeps it for the life of the process.
/// Asking for a different library afterwards is an error rather than a silent use of the first.
pub fn ort_environment(library: &Path) -> Result<Environment, EngineError> {
    let library = std::fs::canonicalize(library).unwrap_or_else(|_| library.to_owned());
    let mut runtime = RUNTIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(loaded) = runtime.as_ref() {
        if loaded.library != library {
            return Err(EngineError::OrtLibraryConflict {
                loaded: loaded.library.clone(),
                requested: library,
            });
        }
        return Ok(loaded.environment.clone());
    }
    let builder = ort::init_from(&library).map_err(|e| EngineError::OrtLibraryLoad {
        path: library.clone(),
        message: e.to_string(),
    })?;
    let environment = builder
        .with_name("prlx-node")
        .with_telemetry(false)
        .build()
        .map_err(ort_err("creating the ONNX Runtime environment"))?;
    *runtime = Some(LoadedRuntime {
        library,
        environment: environment.clone(),
    });
    Ok(environment)
}

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

/// What the decode loop needs from the registry entry.
#[derive(Debug, Clone)]
struct ModelSpec {
    reference: String,
    prefix_ids: Vec<u32>,
    eos_token_ids: Vec<u32>,
    chat_template: ChatTemplate,
    num_layers: usize,
    vocab_size: usize,
    context_length: usize,
}

/// One ONNX Runtime session of one model: a single worker. See the module docs.
pub struct Engine {
    session: Session,
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
    /// The previous step's `present.*`, in input order, moved into the next step.
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

        let past_shape = [1, entry.num_kv_heads, 0, entry.head_dim];
        let empty_past = Tensor::from_array((past_shape, Vec::<f32>::new()))
            .map_err(ort_err("creating the empty past tensor"))?;
        Ok(Engine {
            session,
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

    /// Greedy generation: at most `max_tokens` model runs, each yielding one token, stopping
    /// early at an EOS id. Argmax ties go to the lowest id.
    pub fn generate(&mut self, prompt: &str, max_tokens: u32) -> Result<Generation, EngineError> {
        let started = Instant::now();
        let prompt_ids = self.encode_prompt(prompt)?;
        let tokenized = started.elapsed();
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

        let mut timing = GenerationTiming {
            tokenize: tokenized,
            ..GenerationTiming::default()
        };
        let mut token_ids = Vec::with_capacity(budget);
        let mut eos_token_id = None;

        self.step_ids.clear();
        self.step_ids
            .extend(prompt_ids.iter().map(|&id| i64::from(id)));
        self.past.clear();
        let mut past_len = 0;
        for step in 0..budget {
            let run_started = Instant::now();
            let next = self.run_step(past_len)?;
            let elapsed = run_started.elapsed();
            if step == 0 {
                timing.prefill = elapsed;
            } else {
                timing.decode += elapsed;
                timing.decode_steps += 1;
            }
            past_len += self.step_ids.len();
            if self.spec.eos_token_ids.contains(&next) {
                eos_token_id = Some(next);
                break;
            }
            token_ids.push(next);
            self.step_ids.clear();
            self.step_ids.push(i64::from(next));
        }
        // Free the cache now rather than holding it until the next request.
        self.past.clear();

        let text = self
            .tokenizer
            .decode(&token_ids, true)
            .map_err(EngineError::Tokenizer)?;
        timing.total = started.elapsed();
        Ok(Generation {
            prompt_tokens: count(prompt_ids.len()),
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

    /// One model run over `step_ids` at positions `past_len..`, with `past` (or the empty past
    /// at prefill) as the cache. Leaves the new cache in `past`; returns the greedy next id.
    fn run_step(&mut self, past_len: usize) -> Result<u32, EngineError> {
        let Engine {
            session,
            spec,
            empty_past,
            mask,
            step_ids,
            step_positions,
            past,
            ..
        } = self;
        let seq = step_ids.len();
        let total = past_len + seq;
        step_positions.clear();
        step_positions.extend((past_len..total).map(|p| p as i64));

        let mut inputs: Vec<SessionInputValue<'_>> = Vec::with_capacity(3 + 2 * spec.num_layers);
        inputs.push(
            TensorRef::from_array_view(([1, seq], step_ids.as_slice()))
                .map_err(ort_err("creating an input tensor"))?
                .into(),
        );
        inputs.push(
            TensorRef::from_array_view(([1, total], &mask[..total]))
                .map_err(ort_err("creating an input tensor"))?
                .into(),
        );
        inputs.push(
            TensorRef::from_array_view(([1, seq], step_positions.as_slice()))
                .map_err(ort_err("creating an input tensor"))?
                .into(),
        );
        if past.is_empty() {
            inputs.extend((0..2 * spec.num_layers).map(|_| SessionInputValue::from(&*empty_past)));
        } else {
            inputs.extend(past.drain(..).map(SessionInputValue::from));
        }

        let outputs = session
            .run(inputs.as_slice())
            .map_err(ort_err("running the model"))?;
        let mut outputs = outputs.into_iter();
        let (_, logits) = outputs.next().ok_or_else(|| EngineError::Contract {
            reference: spec.reference.clone(),
            problem: "the model returned no outputs".into(),
        })?;
        let (_, logits) = logits
            .try_extract_tensor::<f32>()
            .map_err(ort_err("reading the logits"))?;
        let vocab = spec.vocab_size;
        if logits.len() != seq * vocab {
            return Err(EngineError::Contract {
                reference: spec.reference.clone(),
                problem: format!(
                    "logits hold {} values, expected {seq} x {vocab}",
                    logits.len()
                ),
            });
        }
        let next = argmax(&logits[(seq - 1) * vocab..]);
        past.extend(outputs.map(|(_, present)| present));
        Ok(next)
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The index of the largest value; the lowest index among equal maxima, NaN never chosen.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    let mut best_value = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > best_value {
            best = i;
            best_value = v;
        }
    }
    count(best)
}

fn session_builder(
    environment: &Environment,
    intra_op_threads: usize,
) -> ort::Result<SessionBuilder> {
    // Sequential execution with one inter-op thread and the full default optimisation level
    // (ORT fuses the RMSNorm pattern itself), as the models README validated for determinism.
    Ok(Session::builder(environment)?
        .with_intra_threads(intra_op_threads.max(1))?
        .with_inter_threads(1)?
        .with_parallel_execution(false)?
        .with_optimization_level(GraphOptimizationLevel::All)?)
}

fn with_provider(
    builder: SessionBuilder,
    provider: Provider,
) -> Result<SessionBuilder, EngineError> {
    match provider {
        Provider::Cpu => Ok(builder),
        #[cfg(feature = "cuda")]
        Provider::Cuda => builder
            .with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
            .map_err(|e| EngineError::Ort {
                context: "registering the CUDA execution provider",
                error: e.into(),
            }),
        #[cfg(not(feature = "cuda"))]
        Provider::Cuda => Err(EngineError::CudaNotCompiled),
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
