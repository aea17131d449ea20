//! `prlx-node`: the ParalleliX operator node.
//!
//! An operator runs the `prlx-node` binary to serve registry models with ONNX Runtime. This
//! library is the part that runs a model: the registry of model files and their hashes, and the
//! greedy-decoding engine over the graph contract of `node/models/README.md`. Pulling
//! dispatches, decryption, commitments and reporting come with the node daemon.
//!
//! # Layout
//!
//! - [`registry`]: `node/models/registry.toml` parsed into [`ModelEntry`]s; paths resolved
//!   against a root; model and tokenizer files read once and checked against their SHA-256.
//! - [`engine`]: loading ONNX Runtime (`ORT_DYLIB_PATH`), one session per [`Engine`] (one per
//!   worker slot), prompt templating and tokenization, prefill + KV-cache greedy decoding into
//!   a [`Generation`].

pub mod engine;
pub mod registry;

pub use engine::{Engine, EngineError, EngineOptions, Generation, ModelFiles, Provider};
pub use registry::{ModelEntry, Registry, RegistryError};
