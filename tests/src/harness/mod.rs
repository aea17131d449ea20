//! The process-test kit: what every test that runs the real binaries uses to find, start,
//! watch and stop them.
//!
//! The binaries must be built first (`cargo build --workspace --bins`; scripts/test.sh does)
//! and the models set up (scripts/setup-models.sh); a test fails, rather than skips, without
//! them. The nodes find their models and ONNX Runtime under the workspace root (`--root`:
//! `node/models/registry.toml`, `.cache/models/…`, `.cache/ort/ORT_DYLIB_PATH` unless
//! `ORT_DYLIB_PATH` is set).
//!
//! # Layout
//! - [`bins`]: the workspace root, and [`workspace_bin`](bins::workspace_bin): a built
//!   binary, refused when older than the sources cargo built it from.
//! - [`process`]: [`Proc`](process::Proc), a child whose output lines are collected and
//!   waited for, signalled, and killed when dropped.
//! - [`keys`]: node and coordinator keys written as the binaries read them; keys the
//!   benches keep between runs.
//! - [`models`]: the tiny model, and a catalog and submission bodies for it.
//! - [`inproc`]: the coordinator's shell opened in the test's own process, on a file log.
//! - [`chain`]: [`TestChain`](chain::TestChain), a private anvil with the contracts deployed,
//!   where tests buy credits as a client does.
//! - [`launch`]: `prlx-coordinator serve` (over TLS with its development certificate unless
//!   told otherwise) and `prlx-node run` (pinning it), on a file log or on Kafka.
//! - [`client`]: HTTP exchanges with a coordinator (https, pinned to the certificate of each
//!   one started), opening a result, reading a log.
//! - [`load`]: submissions by the thousand from concurrent clients, for the crash tests.
//! - [`cluster`]: [`FileCluster`](cluster::FileCluster), one coordinator on a fresh file log
//!   for tests that add nodes to it.

pub mod bins;
pub mod chain;
pub mod client;
pub mod cluster;
pub mod inproc;
pub mod keys;
pub mod launch;
pub mod load;
pub mod models;
pub mod process;
