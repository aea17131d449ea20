//! Pure folds of the ParalleliX event log into read models, with snapshots.
//!
//! A projection is a state plus `apply(state, &envelope) -> Result<state, FoldError>`: no I/O,
//! no clock but the event's `recorded_at`, no randomness, ordered maps only, integers for money.
//! The coordinator decides against these states, and the auditor re-folds the same code over
//! the same log, so both reach the same bytes.
//!
//! # Layout
//! - [`fold`]: the [`Projection`] trait, the [`Fold`] driver (offset tracking, duplicate
//!   delivery dropped by producer sequence) and [`FoldError`].
//! - [`coordinator`]: [`CoordinatorState`], what intake and scheduling decide against:
//!   catalog, accounts, requests, nodes (`views`: its records; `state`: the state and the
//!   catalog's settings; `lifecycle`: a request's phases and their one transition table;
//!   `apply`: its fold).
//! - [`scheduler`]: queues, the free-capacity index (`queue`, `index`), and the pure
//!   scheduling decision (`choose`).
//! - [`settlement`]: verified uptime, stake and reward epochs (part of the coordinator state).
//! - [`stream`]: what the bootstrap bucket's Sablier stream has unlocked at a time.
//! - [`validation`]: the sampling draw, verdicts over replica results, standing.
//! - [`pricing`]: `task_price`, charged by `decide` and re-derived by the fold.
//! - [`refusal`]: when a node may decline a dispatch, and when declines fail the request.
//! - [`history`]: [`RewardHistory`], settled epochs and returned stake for the read side.
//! - [`snapshot`]: `{format_version, fold_version, last_offset, state}` files; a stale fold
//!   version forces a rebuild from the log.
//! - [`restart`]: a restart from a snapshot, the log's tail read while the snapshot is
//!   parsed.

pub mod coordinator;
pub mod fold;
pub mod history;
pub mod pricing;
pub mod refusal;
pub mod restart;
pub mod scheduler;
pub mod settlement;
pub mod snapshot;
pub mod stream;
pub mod validation;

pub use coordinator::CoordinatorState;
pub use fold::{Fold, FoldError, Projection};
pub use history::RewardHistory;
