//! Events of the ParalleliX coordinator, and the log they live on.
//!
//! Every transition of the protocol (`docs/protocol.md`) is an immutable [`Event`] wrapped in an
//! [`Envelope`] and appended to a log. This crate is the one all others depend on, so it holds
//! what they must agree on byte for byte: the event types and their JSON, the upcasters that
//! read old versions, and the log (trait + backends).
//!
//! # Layout
//! - [`ids`]: fixed-width identifiers (request, task, node, account) and digests.
//! - [`event`]: the payload enum, one variant per transition, generated tables.
//! - [`catalog`]: the catalog's types (models, prices, validation policy), re-exported by
//!   [`event`].
//! - [`onchain`]: what the chain watcher records (deposits, bonds, payout trees and their
//!   posts) and the credit unit; re-exported by [`event`].
//! - [`class`]: execution classes in normal form (a vocabulary, not free strings).
//! - [`envelope`]: the header and the wire codec.
//! - [`chain`]: the log's hash chain: each record links to the one before it.
//! - `decode_error`: why bytes did not decode ([`DecodeError`], re-exported here and by
//!   [`envelope`]); a leaf that the envelope, the payload tables and the upcasters share.
//! - [`upcast`]: the upcaster chain for older payload versions.
//! - [`log`]: the `LogWriter`/`LogReader` traits, URL parsing, the file backend and (feature
//!   `kafka`) the Kafka backend; its own docs list its modules.
//! - [`protocol`]: dispatch body, canonical result and the node's result report.
//! - [`schema`]: JSON Schema export for `schemas/`.
//! - [`crypto`]: node ids, session grants, dispatch/result sealing, proof-of-execution, signatures.
//! - [`pss`]: RSA-PSS-SHA256 verification made once per key, for checking many signatures
//!   (the auditor).
//! - [`seal`]: AES-256-GCM sealing of payloads at rest (the coordinator's storage key).
//! - `signer` (feature `signing`): an RSA key parsed once by AWS-LC, for the shells that sign
//!   on their hot paths (the coordinator's seals, a node's results).
//! - [`backoff`]: doubling pauses between retries, for every I/O shell that waits something out.
//! - `cli` (feature `cli`): what the binaries share: the `tracing` subscriber (`RUST_LOG`,
//!   `--log-format text|json`) and the shutdown signal.
//! - `endpoint` (feature `endpoint`): the coordinator's `https://` or `http://` address as its
//!   clients reach it, the certificates https trusts (pinned, or the system's), the connection.
//! - `b64`: the serde adapter that writes byte fields as base64 in JSON.
//! - `fast`: fast paths for the wire's hot scalar formats (timestamps, UUIDs, hex digests).

mod b64;
pub mod backoff;
pub mod catalog;
pub mod chain;
pub mod class;
#[cfg(feature = "cli")]
pub mod cli;
pub mod crypto;
mod decode_error;
#[cfg(feature = "endpoint")]
pub mod endpoint;
pub mod envelope;
pub mod event;
mod fast;
pub mod ids;
pub mod log;
pub mod onchain;
pub mod protocol;
pub mod pss;
pub mod rewards;
pub mod schema;
pub mod seal;
#[cfg(feature = "signing")]
pub mod signer;
pub mod statements;
pub mod upcast;

pub use envelope::{DecodeError, Envelope, Header};
pub use event::Event;
pub use ids::{AccountId, Hash32, NodeId, RequestId, TaskId};
