//! The ParalleliX coordinator: intake, the pure `decide` core, and the I/O shell that appends
//! what it decides to the log.
//!
//! # Layout
//! - [`decide`]: commands, rejections, pricing, and `decide(&state, command)`.
//! - [`shell`]: the [`Coordinator`](shell::Coordinator): recovery, stamping, append, apply;
//!   the storage key.
//! - [`testkit`]: Given/When/Then for decisions.

pub mod decide;
pub mod shell;
pub mod testkit;
