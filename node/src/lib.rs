//! `prlx-node`: the ParalleliX operator node.
//!
//! An operator runs `prlx-node run` to serve registry models with ONNX Runtime: it registers
//! with the coordinator, follows the coordinator's log for the dispatches addressed to it,
//! opens them with its session key, generates, commits to the result (proof-of-execution),
//! signs it and reports it. `prlx-node generate` runs one prompt, as a check of the models.
//!
//! The library reports what it does as `tracing` events; the binary decides where they go
//! (stderr, text or JSON lines, filtered by `RUST_LOG`).
//!
//! # Layout
//!
//! - [`registry`]: `node/models/registry.toml`; model and tokenizer files checked by SHA-256.
//! - [`engine`]: ONNX Runtime, one session per [`Engine`]; templating, greedy KV-cache decoding.
//! - [`follow`]: the daemon's pure core: the log folded from this node's point of view.
//! - [`commit`]: a job and its report: canonical result bytes, PoE, signature, sealing.
//! - [`fault`]: fault drills (`--fault`): defective reports on purpose, to test validation.
//! - [`worker`]: one thread per engine; a job becomes a committed, signed, sealed report.
//! - [`gpu`]: what a CUDA node runs on (GPU, driver, CUDA and cuDNN), for its execution class.
//! - [`keys`]: the node's RSA key file (PKCS#8 PEM, mode 0600, created on first start).
//! - [`client`]: a small HTTP/1.1 client for the coordinator's API, over https (pinnable) or
//!   http, keeping one connection between calls.
//! - [`daemon`]: the I/O shell of `prlx-node run`: registration, heartbeats, the log, reports.
//! - [`trace`]: the opt-in per-job phase trace (`PRLX_NODE_TRACE=1`).

pub mod batch;
pub mod client;
pub mod commit;
pub mod daemon;
pub mod engine;
pub mod fault;
pub mod follow;
pub mod gpu;
pub mod keys;
pub mod registry;
pub mod trace;
pub mod worker;

pub use engine::{Engine, EngineError, EngineOptions, Generation, ModelFiles, Provider};
pub use registry::{ModelEntry, Registry, RegistryError};
