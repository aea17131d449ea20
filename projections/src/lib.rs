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
//!   catalog, accounts, requests, nodes.
//! - [`scheduler`]: queues, the free-capacity index, and the pure scheduling decision.
//! - [`settlement`]: verified uptime, stake and reward epochs (part of the coordinator state).
//! - [`validation`]: the sampling draw, verdicts over replica results, standing.
//! - [`snapshot`]: `{format_version, fold_version, last_offset, state}` files; a stale fold
//!   version forces a rebuild from the log.

pub mod coordinator;
pub mod fold;
pub mod scheduler;
pub mod settlement;
pub mod snapshot;
pub mod validation;

pub use coordinator::CoordinatorState;
pub use fold::{Fold, FoldError, Projection};
