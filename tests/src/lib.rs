//! Cross-crate suites of the ParalleliX coordinator.
//!
//! # Layout
//! - [`conformance`]: the log contract, as plain async functions run against every backend.
//! - [`torture`]: the payload format shared by the crash-test writer process and its checker.

pub mod conformance;
pub mod torture;
