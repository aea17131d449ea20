//! What a CUDA node runs on, for its execution class: the GPU (its name and compute
//! capability), the driver, and the CUDA and cuDNN libraries ONNX Runtime runs with. Replicas
//! are compared byte for byte only within one class (docs/validation.md), and two GPUs, two
//! drivers or two cuDNN builds may pick different kernels, so each is part of the class.
//!
//! `scripts/setup-models.sh --gpu` installs `onnxruntime-gpu` and NVIDIA's CUDA and cuDNN
//! wheels from PyPI under `.cache/venv-gpu` and writes, under [`GPU_CACHE`]: `ORT_DYLIB_PATH`
//! (the GPU build of ONNX Runtime), `CUDA_LIBRARY_PATH` (the wheels' library folders, which
//! the dynamic loader must search when ONNX Runtime opens its CUDA provider) and `VERSIONS`
//! (`cuda=…`, `cudnn=…`). The GPU itself is asked of `nvidia-smi`; without one answering, a
//! CUDA node does not start (never a silent fall back to the CPU).

use std::path::Path;
use std::process::Command;

/// Where `scripts/setup-models.sh --gpu` writes what a CUDA node needs, under the root.
pub const GPU_CACHE: &str = ".cache/ort-gpu";
/// The GPU build's ONNX Runtime library path, relative to the root.
pub const GPU_ORT_POINTER: &str = ".cache/ort-gpu/ORT_DYLIB_PATH";

/// Why the GPU could not be told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuError {
    #[error(
        "no NVIDIA GPU answers (nvidia-smi: {0}); --provider cuda needs one and its driver, \
         and never falls back to the CPU: run with --provider cpu instead"
    )]
    NoGpu(String),
    #[error("nvidia-smi answered {0:?}, not `name, driver_version, compute_cap`")]
    Unreadable(String),
}

/// The GPU as the execution class names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuIdentity {
    /// `cuda-sm<major><minor>-<name>`, e.g. `cuda-sm90-nvidia-h100-80gb-hbm3`.
    pub device: String,
    /// The driver version, e.g. `550.54.15`.
    pub driver: String,
}

/// The first GPU of `nvidia-smi --query-gpu=name,driver_version,compute_cap
/// --format=csv,noheader` (a node uses device 0).
pub fn parse_nvidia_smi(answer: &str) -> Result<GpuIdentity, GpuError> {
    let line = answer.lines().map(str::trim).find(|l| !l.is_empty());
    let unreadable = || GpuError::Unreadable(answer.trim().chars().take(200).collect());
    let fields: Vec<&str> = line
        .ok_or_else(unreadable)?
        .split(',')
        .map(str::trim)
        .collect();
    let [name, driver, capability] = fields.as_slice() else {
        return Err(unreadable());
    };
    let sm: String = capability.chars().filter(char::is_ascii_digit).collect();
    if name.is_empty() || driver.is_empty() || sm.is_empty() {
        return Err(unreadable());
    }
    Ok(GpuIdentity {
        device: class_word(&format!("cuda-sm{sm}-{name}")),
        driver: class_word(driver),
    })
}

/// Asks `nvidia-smi` for the GPU.
pub fn query_gpu() -> Result<GpuIdentity, GpuError> {
    let output = Command::new("nvidia-smi")
        .args([
            "--query-gpu=name,driver_version,compute_cap",
            "--format=csv,noheader",
        ])
        .output()
        .map_err(|e| GpuError::NoGpu(e.to_string()))?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stderr);
        let said = said.trim();
        return Err(GpuError::NoGpu(if said.is_empty() {
            format!("exit status {}", output.status)
        } else {
            said.chars().take(200).collect()
        }));
    }
    parse_nvidia_smi(&String::from_utf8_lossy(&output.stdout))
}

/// The runtime part of a CUDA node's class: ONNX Runtime's (`onnxruntime-1.31.1`) with the
/// CUDA and cuDNN versions of `versions` (the `VERSIONS` file: `cuda=12.9.79`, `cudnn=9.10.2.21`
/// lines), e.g. `onnxruntime-1.31.1+cuda12.9.79+cudnn9.10.2.21`; a version not given is
/// `unknown`, so such nodes are peers only of each other.
pub fn cuda_runtime_name(ort_runtime: &str, versions: &str) -> String {
    let version = |key: &str| {
        versions
            .lines()
            .filter_map(|l| l.trim().split_once('='))
            .find(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "unknown".into())
    };
    class_word(&format!(
        "{ort_runtime}+cuda{}+cudnn{}",
        version("cuda"),
        version("cudnn")
    ))
}

/// The `VERSIONS` file under `root`, empty when there is none.
pub fn installed_versions(root: &Path) -> String {
    std::fs::read_to_string(root.join(GPU_CACHE).join("VERSIONS")).unwrap_or_default()
}

/// The library folders of the CUDA wheels under `root` (`CUDA_LIBRARY_PATH`, one
/// colon-separated line), if `setup-models.sh --gpu` wrote them.
pub fn library_path(root: &Path) -> Option<String> {
    let text = std::fs::read_to_string(root.join(GPU_CACHE).join("CUDA_LIBRARY_PATH")).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// `raw` as an execution class part: lowercase `[a-z0-9._+-]`, anything else a `-`, runs of
/// `-` as one, at most 64 bytes.
fn class_word(raw: &str) -> String {
    let mut word = String::with_capacity(raw.len());
    for c in raw.trim().to_ascii_lowercase().chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+') {
            c
        } else {
            '-'
        };
        if !(c == '-' && word.ends_with('-')) {
            word.push(c);
        }
    }
    word.trim_matches('-').chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prlx_events::event::ExecutionClass;

    #[test]
    fn an_h100_is_its_own_class_in_normal_form() {
        let gpu = parse_nvidia_smi("NVIDIA H100 80GB HBM3, 550.54.15, 9.0\n").unwrap();
        assert_eq!(gpu.device, "cuda-sm90-nvidia-h100-80gb-hbm3");
        assert_eq!(gpu.driver, "550.54.15");
        let runtime = cuda_runtime_name("onnxruntime-1.31.1", "cuda=12.9.79\ncudnn=9.10.2.21\n");
        assert_eq!(runtime, "onnxruntime-1.31.1+cuda12.9.79+cudnn9.10.2.21");
        let class = ExecutionClass {
            device: gpu.device,
            driver: gpu.driver,
            runtime,
        };
        assert!(class.is_normal(), "{class:?}: {:?}", class.normalised());
    }

    #[test]
    fn two_gpus_or_two_drivers_are_two_classes() {
        let a = parse_nvidia_smi("NVIDIA H200, 570.86.10, 9.0").unwrap();
        let b = parse_nvidia_smi("NVIDIA H100 80GB HBM3, 570.86.10, 9.0").unwrap();
        let c = parse_nvidia_smi("NVIDIA H200, 550.54.15, 9.0").unwrap();
        assert_ne!(a.device, b.device);
        assert_ne!(a.driver, c.driver);
        // Only the first GPU counts.
        let two = parse_nvidia_smi("NVIDIA H200, 570.86.10, 9.0\nNVIDIA L4, 570.86.10, 8.9\n");
        assert_eq!(two.unwrap(), a);
    }

    #[test]
    fn what_nvidia_smi_may_say_instead_is_an_error() {
        for answer in [
            "",
            "\n",
            "No devices were found",
            "NVIDIA H200, 570.86.10",
            ", , ",
        ] {
            assert!(
                matches!(parse_nvidia_smi(answer), Err(GpuError::Unreadable(_))),
                "{answer:?}"
            );
        }
        let unknown = cuda_runtime_name("onnxruntime-1.31.1", "");
        assert_eq!(unknown, "onnxruntime-1.31.1+cudaunknown+cudnnunknown");
    }
}
