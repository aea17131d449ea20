//! The request index: settled requests that have left the hot state, on disk.
//!
//! The coordinator's state keeps a request while its work is open and for
//! [`FINISHED_WINDOW`](prlx_projections::coordinator::FINISHED_WINDOW) settlements after; then
//! the fold retires it. Before that, the shell has written its
//! [`RequestSummary`] here (an embedded B-tree store, redb), keyed by request id and by
//! (account, Idempotency-Key), so `GET /v1/requests/{id}` and a late retry are answered
//! exactly at any age.
//!
//! The index is derived from the log and nothing else: a missing, damaged or foreign one is
//! deleted and rebuilt by the fold that starts the coordinator (every settlement it meets
//! with a sequence beyond the index's is written). Writes are committed without an fsync as
//! they come and with one every [`SYNC_EVERY`] and before the coordinator saves a snapshot;
//! after a crash the store comes back at its last synced commit, and the start-up fold writes
//! the rest again. A summary may be written before the log holds its settlement durably: if
//! that tail is lost in a crash, the request is open again in the state, which readers look at
//! first, and its summary is written anew when it settles.
//!
//! - [`store`]: the store itself ([`RequestIndex`]).
//! - [`writer`]: the thread that writes it beside the actor ([`IndexWriter`]).

pub mod store;
pub mod writer;

pub use store::{IndexError, IndexMeta, RequestIndex};
pub use writer::{IndexWriter, SYNC_EVERY};
