//! Finding and loading ONNX Runtime, and the session options every engine uses.
//!
//! ONNX Runtime is a shared library opened at run time (`ort`'s `load-dynamic`): see
//! [`resolve_ort_library`] for where its path comes from. ONNX Runtime allows one environment
//! per process, so the first engine creates it and every later one shares it
//! ([`ort_environment`]).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::environment::Environment;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;

use super::error::{ort_err, EngineError};
pub use super::paths::{ORT_DYLIB_ENV, ORT_DYLIB_POINTER};

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

pub(super) fn session_builder(
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

pub(super) fn with_provider(
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
