//! What `prlx-node run` is told, how it fails, and how long it pauses between retries.

use std::path::PathBuf;
use std::time::Duration;

use prlx_events::backoff::Backoff;
use prlx_events::log::LogError;

use crate::client::ClientError;
use crate::engine::{EngineError, Provider};
use crate::fault::Fault;
use crate::follow::FollowError;
use crate::keys::KeyError;
use crate::registry::RegistryError;

/// Retry backoff bounds for calls to the coordinator and reads of its log.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The pauses between retries of a call to the coordinator or a read of its log.
pub(super) fn retry_backoff() -> Backoff {
    Backoff::new(BACKOFF_MIN, BACKOFF_MAX)
}

/// Everything `prlx-node run` is told.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// `https://HOST[:PORT]`, or `http://HOST:PORT` for a coordinator serving plain HTTP.
    pub coordinator: String,
    /// The coordinator's TLS certificate (PEM) to trust alone; `None`: the system's roots.
    pub coordinator_cert: Option<PathBuf>,
    /// The coordinator's log, e.g. `file:///var/lib/prlx/log`.
    pub log: String,
    /// The node's private key (PKCS#8 PEM); created on first start.
    pub key: PathBuf,
    /// Registry references of the served models.
    pub models: Vec<String>,
    pub hardware_tier: u8,
    pub slots: u32,
    /// One engine per model decoding up to `slots` requests at once, instead of one engine
    /// per slot.
    pub batching: bool,
    /// ONNX Runtime intra-op threads per engine.
    pub threads: usize,
    pub registry: PathBuf,
    /// The directory the registry's paths are relative to.
    pub root: PathBuf,
    pub provider: Provider,
    pub ort_library: Option<PathBuf>,
    pub heartbeat: Duration,
    pub drain: Duration,
    /// A pinned coordinator signing key (PEM, SPKI).
    pub coordinator_key: Option<PathBuf>,
    /// A fault drill: report defective results on purpose (tests of the coordinator's
    /// validation only). `None` for an honest node.
    pub fault: Option<Fault>,
    /// The chain address (0x-hex) that stakes for this node and is paid its rewards, signed
    /// into its registration. `None`: no bond counts for the node, so it is never paid.
    pub operator: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("pinned coordinator key {}: {reason}", path.display())]
    PinnedKey { path: PathBuf, reason: String },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("loading model {model}: {error}")]
    Engine { model: String, error: EngineError },
    #[error("no models to serve: --models names none")]
    NoModels,
    #[error(transparent)]
    Gpu(#[from] crate::gpu::GpuError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the coordinator refused the registration: {0}")]
    Registration(String),
    #[error("the coordinator's log: {0}")]
    Log(#[from] LogError),
    #[error("--log {url}: {reason}")]
    LogUrl { url: String, reason: String },
    #[error(
        "this node's feed {url} cannot be read ({error}): does the active coordinator serve \
         with --node-feed-topic and the same template?"
    )]
    Feed { url: String, error: LogError },
    #[error(transparent)]
    Follow(#[from] FollowError),
    #[error("starting worker threads: {0}")]
    Threads(std::io::Error),
}
