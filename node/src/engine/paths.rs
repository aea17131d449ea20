//! Where ONNX Runtime is looked for (shared by the resolution and its errors).

/// The environment variable naming the ONNX Runtime shared library.
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";
/// Where scripts/setup-models.sh writes that path, relative to the repository root.
pub const ORT_DYLIB_POINTER: &str = ".cache/ort/ORT_DYLIB_PATH";
