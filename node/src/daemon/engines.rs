//! Loading the engines at start: one per slot per model, and the execution class the node
//! declares (the device and runtime that decide whether two nodes' bytes can match).

use std::collections::BTreeMap;
use std::path::Path;

use prlx_events::event::ExecutionClass;
use prlx_events::Hash32;
use tracing::info;

use super::config::{DaemonConfig, DaemonError};
use crate::engine::{resolve_ort_library_for, Engine, EngineOptions, ModelFiles, Provider};
use crate::registry::Registry;

/// The device part of the execution class: what must match, besides the runtime, for two
/// nodes to produce the same bytes (ONNX Runtime picks CPU kernels by instruction set).
pub fn device_name(provider: Provider) -> String {
    match provider {
        Provider::Cpu => format!("cpu-{}{}", std::env::consts::ARCH, simd_level()),
        Provider::Cuda => "cuda".to_owned(),
    }
}

fn simd_level() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "-avx512f";
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return "-avx2";
        }
    }
    ""
}

/// `onnxruntime-<version>` from the runtime library's file name (`libonnxruntime.so.1.32.0`,
/// `libonnxruntime.1.32.0.dylib`), following a symlink when the name has no version.
pub fn runtime_name(library: &Path) -> String {
    let version_of = |path: &Path| -> Option<String> {
        let name = path.file_name()?.to_str()?;
        let parts: Vec<&str> = name
            .split('.')
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .collect();
        (!parts.is_empty()).then(|| parts.join("."))
    };
    let version = version_of(library).or_else(|| {
        std::fs::canonicalize(library)
            .ok()
            .and_then(|p| version_of(&p))
    });
    format!(
        "onnxruntime-{}",
        version.unwrap_or_else(|| "unknown".into())
    )
}

/// The engines (one per slot per model, or one per model when batching), the served models' SHA-256 and the execution class.
pub(super) struct Loaded {
    pub(super) engines: Vec<Engine>,
    pub(super) served: BTreeMap<String, Hash32>,
    pub(super) class: ExecutionClass,
}

pub(super) fn load_engines(config: &DaemonConfig) -> Result<Loaded, DaemonError> {
    if config.models.is_empty() {
        return Err(DaemonError::NoModels);
    }
    let registry = Registry::load(&config.registry, &config.root)?;
    let library =
        resolve_ort_library_for(config.ort_library.as_deref(), &config.root, config.provider)
            .map_err(|error| DaemonError::Engine {
                model: config.models.join(","),
                error,
            })?;
    let options = EngineOptions {
        intra_op_threads: config.threads,
        provider: config.provider,
        ort_library: Some(library.clone()),
    };
    let class = match config.provider {
        Provider::Cpu => ExecutionClass {
            device: device_name(config.provider),
            driver: "none".into(),
            runtime: runtime_name(&library),
        },
        Provider::Cuda => {
            let gpu = crate::gpu::query_gpu().map_err(DaemonError::Gpu)?;
            let versions = crate::gpu::installed_versions(&config.root);
            ExecutionClass {
                device: gpu.device,
                driver: gpu.driver,
                runtime: crate::gpu::cuda_runtime_name(&runtime_name(&library), &versions),
            }
        }
    };
    info!(
        "execution provider {} ({} intra-op thread(s) per engine), runtime {} from {}, device {}",
        config.provider,
        config.threads.max(1),
        class.runtime,
        library.display(),
        class.device
    );
    let mut engines = Vec::new();
    let mut served = BTreeMap::new();
    for model in &config.models {
        let entry = registry.get(model)?;
        let engine_err = |error| DaemonError::Engine {
            model: model.clone(),
            error,
        };
        let files = ModelFiles::load(entry).map_err(engine_err)?;
        let count = if config.batching { 1 } else { config.slots };
        for _ in 0..count {
            engines.push(Engine::with_files(entry, &files, &options).map_err(engine_err)?);
        }
        let sha: Hash32 = files
            .model
            .sha256
            .parse()
            .expect("the registry checked the file against a 64-hex-character SHA-256");
        info!("loaded {model} (sha256 {sha}): {count} engine(s)");
        served.insert(model.clone(), sha);
    }
    Ok(Loaded {
        engines,
        served,
        class,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_is_named_by_the_library_version() {
        assert_eq!(
            runtime_name(Path::new("/x/libonnxruntime.so.1.32.0")),
            "onnxruntime-1.32.0"
        );
        assert_eq!(
            runtime_name(Path::new("/x/libonnxruntime.1.22.1.dylib")),
            "onnxruntime-1.22.1"
        );
        assert_eq!(
            runtime_name(Path::new("/nonexistent/onnxruntime.dll")),
            "onnxruntime-unknown"
        );
    }

    #[test]
    fn runtime_follows_a_symlink_without_a_version() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("libonnxruntime.so.1.20.0");
        std::fs::write(&real, b"").unwrap();
        let link = dir.path().join("libonnxruntime.so");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(runtime_name(&link), "onnxruntime-1.20.0");
    }

    #[test]
    fn cpu_devices_name_the_architecture() {
        let device = device_name(Provider::Cpu);
        assert!(
            device.starts_with(&format!("cpu-{}", std::env::consts::ARCH)),
            "{device}"
        );
        assert_eq!(device_name(Provider::Cuda), "cuda");
    }
}
