//! How building an engine or generating fails.

use std::path::PathBuf;

use crate::registry::{RegistryError, IO_CONTRACT};

use super::paths::{ORT_DYLIB_ENV, ORT_DYLIB_POINTER};

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
    /// The batch's cache could not be read or rebuilt, or a batched run failed for another
    /// sequence of the batch.
    #[error("batched decoding: {0}")]
    Batch(String),
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

pub(crate) fn ort_err(context: &'static str) -> impl FnOnce(ort::Error) -> EngineError {
    move |error| EngineError::Ort { context, error }
}
