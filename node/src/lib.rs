//! `prlx-node`: the ParalleliX operator node.
//!
//! An operator runs `prlx-node run` to serve registry models with ONNX Runtime: it registers
//! with the coordinator, follows the coordinator's log for the dispatches addressed to it,
//! opens them with its session key, generates, commits to the result (proof-of-execution),
//! signs it and reports it. `prlx-node generate` runs one prompt, as a check of the models.
//!
//! # Layout
//!
//! - [`registry`]: `node/models/registry.toml` parsed into [`ModelEntry`]s; paths resolved
//!   against a root; model and tokenizer files read once and checked against their SHA-256.
//! - [`engine`]: loading ONNX Runtime (`ORT_DYLIB_PATH`), one session per [`Engine`] (one per
//!   worker slot), prompt templating and tokenization, prefill + KV-cache greedy decoding into
//!   a [`Generation`].
//! - [`fault`]: fault drills (`--fault`): deliberately defective reports (a wrong result, a
//!   PoE over another node id, a replayed signature, silence) for testing the coordinator's
//!   validation with real node processes.
//! - [`follow`]: the pure core of the daemon: the log folded from this node's point of view
//!   (coordinator key, grants, the dispatches still open for it) and opening a dispatch.
//! - [`keys`]: the node's RSA key file (PKCS#8 PEM, mode 0600, created on first start).
//! - [`commit`]: a job and the report it becomes: canonical result bytes, PoE, signature,
//!   sealing; shared by the honest path and the fault drills.
//! - [`worker`]: one thread per engine; a job becomes a committed, signed, sealed report.
//! - [`client`]: a small HTTP/1.1 client for the coordinator's API.
//! - [`daemon`]: the I/O shell of `prlx-node run`: registration, heartbeats, following the
//!   log, reporting, draining on shutdown.
//! - [`trace`]: the opt-in per-job phase trace (`PRLX_NODE_TRACE=1`).

pub mod client;
pub mod commit;
pub mod daemon;
pub mod engine;
pub mod fault;
pub mod follow;
pub mod keys;
pub mod registry;
pub mod trace;
pub mod worker;

pub use engine::{Engine, EngineError, EngineOptions, Generation, ModelFiles, Provider};
pub use registry::{ModelEntry, Registry, RegistryError};
