//! Execution classes in normal form: what must match for two honest nodes to produce the same
//! bytes, as a small vocabulary rather than free strings (see `docs/validation.md`,
//! "Execution classes").
//!
//! The node derives its class from what it runs on (the execution provider, the CPU's
//! architecture and SIMD level, the ONNX Runtime library's version) and the coordinator
//! normalises what it reports before recording it, so two nodes that differ only in case or
//! padding are one class, and a class that names no known device or runtime is refused. The
//! fold refuses a registration whose class is not in normal form, so the log holds only
//! normal classes. Which model file a node runs (its SHA-256) is compared beside the class.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// What must match for two honest nodes to produce the same bytes. Recorded in normal form
/// ([`ExecutionClass::normalised`]): lowercase words of a small vocabulary, not free strings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct ExecutionClass {
    /// A device kind, then details: e.g. `cpu-x86_64-avx2`, `cuda-sm90`.
    pub device: String,
    /// `none` for a device without one (a CPU).
    pub driver: String,
    /// A runtime and its version: e.g. `onnxruntime-1.32.0`.
    pub runtime: String,
}

/// The longest part of a class, in bytes.
pub const MAX_CLASS_PART_BYTES: usize = 64;

/// Device kinds: the first `-`-separated word of `device` (`cpu-x86_64-avx2`, `cuda-sm90`).
pub const DEVICE_KINDS: &[&str] = &["cpu", "cuda", "rocm", "metal", "coreml", "directml"];

/// Runtimes: the first word of `runtime`, followed by its version (`onnxruntime-1.22.0`).
pub const RUNTIMES: &[&str] = &["onnxruntime"];

/// The driver of a device that has none (a CPU).
pub const NO_DRIVER: &str = "none";

/// Why a reported class has no normal form: the part at fault and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{part}: {reason}")]
pub struct ClassError {
    /// `device`, `driver` or `runtime`.
    pub part: &'static str,
    pub reason: String,
}

impl ExecutionClass {
    /// The class in normal form: each part trimmed and lowercased; 1 to 64 bytes of
    /// `[a-z0-9._+-]` that start with a letter or a digit; the device's first word one of
    /// [`DEVICE_KINDS`]; the runtime one of [`RUNTIMES`] followed by `-` and a version; an
    /// empty driver (or `-`) is [`NO_DRIVER`].
    pub fn normalised(&self) -> Result<ExecutionClass, ClassError> {
        let device = word("device", &self.device)?;
        let kind = device.split('-').next().unwrap_or_default();
        if !DEVICE_KINDS.contains(&kind) {
            return Err(ClassError {
                part: "device",
                reason: format!(
                    "{kind:?} is not a device kind; one of {DEVICE_KINDS:?}, then -details"
                ),
            });
        }
        let driver = match self.driver.trim() {
            "" | "-" => NO_DRIVER.to_owned(),
            other => word("driver", other)?,
        };
        let runtime = word("runtime", &self.runtime)?;
        let known = runtime
            .split_once('-')
            .is_some_and(|(engine, version)| RUNTIMES.contains(&engine) && !version.is_empty());
        if !known {
            return Err(ClassError {
                part: "runtime",
                reason: format!("{runtime:?} is not a runtime and its version; one of {RUNTIMES:?}, then -version"),
            });
        }
        Ok(ExecutionClass {
            device,
            driver,
            runtime,
        })
    }

    /// Whether the class is already in normal form (what the log may hold).
    pub fn is_normal(&self) -> bool {
        self.normalised().is_ok_and(|n| &n == self)
    }
}

/// One part trimmed, lowercased and checked against the charset and length.
fn word(part: &'static str, raw: &str) -> Result<String, ClassError> {
    let w = raw.trim().to_ascii_lowercase();
    let err = |reason: String| Err(ClassError { part, reason });
    if w.is_empty() || w.len() > MAX_CLASS_PART_BYTES {
        return err(format!("must be 1 to {MAX_CLASS_PART_BYTES} bytes"));
    }
    if !w.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return err(format!("{w:?} must start with a letter or a digit"));
    }
    if let Some(c) = w
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-')))
    {
        return err(format!("{c:?} is not one of a-z 0-9 . _ + -"));
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(device: &str, driver: &str, runtime: &str) -> ExecutionClass {
        ExecutionClass {
            device: device.into(),
            driver: driver.into(),
            runtime: runtime.into(),
        }
    }

    #[test]
    fn a_reported_class_is_trimmed_lowercased_and_given_its_driver() {
        let n = class(" CPU-x86_64-AVX2 ", "", "OnnxRuntime-1.22.0\n")
            .normalised()
            .unwrap();
        assert_eq!(n, class("cpu-x86_64-avx2", "none", "onnxruntime-1.22.0"));
        assert!(n.is_normal());
        assert_eq!(
            class("cuda", "-", "onnxruntime-1.22.0")
                .normalised()
                .unwrap()
                .driver,
            "none"
        );
        assert!(
            !class("CPU", "none", "onnxruntime-1.22.0").is_normal(),
            "not yet normal"
        );
        // What the node daemon reports is normal as it is.
        for (device, driver) in [("cpu-x86_64-avx2", "none"), ("cuda", "unknown")] {
            assert!(class(device, driver, "onnxruntime-unknown").is_normal());
        }
    }

    #[test]
    fn a_class_outside_the_vocabulary_or_the_charset_is_refused_naming_the_part() {
        let part = |c: ExecutionClass| c.normalised().unwrap_err().part;
        assert_eq!(part(class("toaster", "none", "onnxruntime-1")), "device");
        assert_eq!(part(class("", "none", "onnxruntime-1")), "device");
        assert_eq!(part(class("cpu x86", "none", "onnxruntime-1")), "device");
        assert_eq!(part(class("cpu", "nvidia 550", "onnxruntime-1")), "driver");
        assert_eq!(part(class("cpu", "none", "ort-1.32")), "runtime");
        assert_eq!(part(class("cpu", "none", "onnxruntime")), "runtime");
        assert_eq!(part(class("cpu", "none", "onnxruntime-")), "runtime");
        assert_eq!(part(class("cpu", "none", "-onnxruntime-1")), "runtime");
        let long = format!("cpu-{}", "x".repeat(MAX_CLASS_PART_BYTES));
        assert_eq!(part(class(&long, "none", "onnxruntime-1")), "device");
        assert_eq!(part(class("cpu-é", "none", "onnxruntime-1")), "device");
    }
}
