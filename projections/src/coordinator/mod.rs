//! What the coordinator decides against: the catalog, credit accounts, requests and nodes.
//!
//! The fold enforces the money invariants itself (a reservation never exceeds what is
//! available, a charge or refund never exceeds what is reserved, a deposit is credited once,
//! request ids are dense), so a log that breaks them fails to fold: the auditor reports it
//! instead of summing it.
//!
//! # Layout
//! - `views`: the records (accounts, requests, nodes, sampling epochs, what delegations
//!   spent) and the defaults.
//! - [`lifecycle`]: a request's phases and the one transition table that moves them
//!   ([`transition`]); a leaf.
//! - `state`: [`CoordinatorState`] and the catalog's settings.
//! - `apply`: its fold, the [`Projection`](crate::Projection) impl.
//! - `apply_validation`: the fold's arms of sampling epochs, draws and verdicts.
//! - `apply_credits`: the fold's arms of reservations, charges and refunds.
//! - `apply_refusal`: the fold's arm of a node declining a dispatch.
//! - [`apply_subtasks`]: the fold's arms of the general path: plans, releases, aggregates.
//! - `apply_lifecycle`: the fold's side of the lifecycle: a request moved to the phase the
//!   table gives, with the scheduler's indexes in step.
//! - [`finished`]: settled requests leave the state after a window; their summaries.
//! - `batch`: what a decision's batch owes until it ends ([`OpenBatch`]).
//! - [`delegation`]: who may charge an account (its key, or a delegate within its limit and
//!   life), for `decide` and the fold, and what each delegation has spent.
//! - `heartbeat`: when a heartbeat's signed time may be recorded, for `decide` and the fold.
//! - `registration`: when a signed registration may be recorded, and whose bond counts as the
//!   node's stake.

mod apply;
mod apply_chain;
mod apply_credits;
mod apply_lifecycle;
mod apply_refusal;
pub mod apply_subtasks;
mod apply_validation;
pub mod batch;
pub mod calibration;
pub mod delegation;
pub mod finished;
pub mod heartbeat;
pub mod lifecycle;
pub mod registration;
pub mod revocation;
pub(crate) mod state;
pub(crate) mod views;

pub use self::apply_chain::{
    chain_stake_problem, hex_problem, leaves_total, place_problem, root_leaves,
    stream_spelling_problem, usage_problem,
};
pub use self::batch::OpenBatch;
pub use self::delegation::ConsentProblem;
pub use self::finished::{RequestSummary, FINISHED_WINDOW};
pub use self::lifecycle::{
    transition, Assignment, RequestPhase, RequestStatus, Retry, Submission, Transition,
    TransitionError, ValidationOutcome, Wait,
};
pub use self::state::{
    ChainStake, CoordinatorState, PreparedRoot, CHAIN_WINDOW_BLOCKS, ROOT_WINDOW_EPOCHS,
};
pub use self::views::*;
