//! Cross-crate suites of the ParalleliX coordinator.
//!
//! # Layout
//! - [`conformance`]: the log contract, as plain async functions run against every backend.
//! - [`harness`]: the process-test kit: the workspace's binaries (refused when stale), child
//!   processes, keys, the tiny model, and launchers of `prlx-coordinator serve` and
//!   `prlx-node run` on the file log and on Kafka.
//! - `intake` (feature `kafka`): a coordinator ready for submissions, submission bodies and
//!   fresh intake topics, for the Kafka intake's test and benchmark.
//! - [`kafka`]: the broker the Kafka suites use, fresh topic names.
//! - [`rng`]: the seeded generator the simulation and the fuzz tests draw from.
//! - [`sabotage`]: the sabotage simulation: simulated nodes, some of them saboteurs,
//!   driving the real coordinator core.
//! - [`shard`]: the sharding simulation (router, nodes per shard, credit leases across
//!   shards) of docs/adr/10-sharding.md.
//! - [`sim`]: the deterministic simulation of the core: seeded submissions, deposits,
//!   heartbeats, honest, wrong, late, silent and replayed reports, node joins, restarts from
//!   snapshot and the timers, with the money, liveness (every request ends once, within a
//!   bound derived from the catalog) and payout (no slot paid without proof) invariants
//!   checked as it goes.
//! - [`soak`]: a coordinator and tiny-model nodes under sustained load, their memory sampled:
//!   the soak bench and the short soak test.
//! - [`tamper`]: consistent rewrites of a file log (records removed, inserted, swapped and
//!   everything renumbered to match), for the auditor's negative tests and golden logs.
//! - [`torture`]: the payload format shared by the crash-test writer process and its checker.
//! - `src/bin/`: `prlx-log-torture`, the crash test's writer process; `prlx-make-fixtures`,
//!   which writes the auditor's golden logs (`tests/fixtures/audit/`).

pub mod conformance;
pub mod harness;
#[cfg(feature = "kafka")]
pub mod intake;
pub mod kafka;
pub mod rng;
pub mod sabotage;
pub mod shard;
pub mod sim;
pub mod soak;
pub mod tamper;
pub mod torture;
