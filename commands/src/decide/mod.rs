//! `decide(&state, command) -> Result<events, Rejection>`: the coordinator's pure core.
//!
//! Everything from outside (the payload's computed hash, the sealed payload, the time) is
//! looked up by the shell and put into the command, so it lands in the events and replay needs
//! no clock. A rejection is the request being wrong (a 4xx), never a failure of ours.
//!
//! `decide` only routes a command to the part that knows it.
//!
//! # Layout
//! - `command`: [`Command`] and the bodies it carries ([`Submission`], [`Dispatch`],
//!   [`Completion`], [`Refusal`]).
//! - `rejection`: [`Rejection`].
//! - `pricing`: [`task_price`] and [`quote`].
//! - `intake`: the catalog, deposits, submissions.
//! - [`limits`]: length caps on every string from outside that reaches an event.
//! - `class`: a registering node's execution class in normal form, its model hashes checked.
//! - `nodes`: registration, heartbeats, lapses, the coordinator's key, session grants.
//! - `work`: dispatch, deadlines, the queue's admission bound, the hold on a result waiting
//!   for a replica, failure and re-dispatch, release, standing and flags.
//! - `complete`: a node's result, judged and validated.
//! - `failure`: a request's failure and full refund, the pair every failing decision records.
//! - `general`: the general path: a task's plan at intake, a dependent sub-task's release,
//!   the task's aggregate, and a sub-task's failure failing its task.
//! - `refuse`: a node declining a dispatch it cannot run.
//! - `revocation`: an account revoking one of its delegations.
//! - `sampling`: sampling epochs' seeds.
//! - Staking and reward epochs are in [`crate::settle`].

mod class;
pub(crate) mod command;
mod complete;
mod failure;
mod general;
mod intake;
pub mod limits;
mod nodes;
mod pricing;
mod refuse;
pub(crate) mod rejection;
mod revocation;
mod roots;
mod sampling;
mod work;

use prlx_events::Event;
use prlx_projections::CoordinatorState;

pub use self::command::{
    Command, Completion, Dispatch, ParamProblem, PlannedInput, PlannedTask, Refusal, RootPost,
    SignedHeartbeat, StakeObservation, Submission, INFERENCE,
};
pub use self::general::{plan_params, plan_price};
pub use self::pricing::{quote, task_price};
pub use self::rejection::Rejection;
use crate::settle::decide_settlement;

pub fn decide(state: &CoordinatorState, command: Command) -> Result<Vec<Event>, Rejection> {
    match command {
        Command::PublishCatalog(c) => intake::publish_catalog(c),
        Command::DepositCredits {
            account,
            tx_ref,
            amount,
        } => intake::deposit(state, account, tx_ref, amount, None),
        Command::ObserveDeposit { account, chain } => {
            intake::observe_deposit(state, account, chain)
        }
        Command::ObserveStake(o) => intake::observe_stake(state, *o),
        Command::PrepareRoot { epoch } => roots::prepare(state, epoch),
        Command::ObservePost(p) => roots::posted(state, *p),
        Command::ObserveUsage(u) => roots::usage_settled(state, *u),
        Command::ObserveStream(o) => roots::stream_observed(state, *o),
        Command::SubmitRequest(s) => intake::submit(state, *s),
        Command::RevokeDelegation { revocation, now } => {
            revocation::revoke(state, *revocation, now)
        }
        Command::RegisterNode(n) => nodes::register(state, *n),
        Command::Heartbeat {
            node_id,
            signed,
            now,
        } => nodes::heartbeat(state, node_id, signed, now),
        Command::LapseNode { node_id, now } => nodes::lapse(state, node_id, now),
        Command::DrainNode { node_id } => nodes::drain(state, node_id),
        Command::PublishCoordinatorKey { public_key_pem } => {
            nodes::publish_coordinator_key(state, public_key_pem)
        }
        Command::IssueSession(k) => nodes::issue_session(state, *k),
        Command::Dispatch(d) => work::dispatch(state, *d),
        Command::ExpireDeadline {
            request,
            node,
            attempt,
            now,
            release,
        } => work::expire(state, request, node, attempt, now, release),
        Command::ExpireQueued { request, now } => work::expire_queued(state, request, now),
        Command::ReleaseUnconfirmed {
            request,
            now,
            release,
        } => work::release_held(state, request, now, release),
        Command::CompleteTask(c) => complete::complete(state, *c),
        Command::ReleaseSubtask(r) => general::release(state, *r),
        Command::ReturnAggregate(a) => general::aggregate(state, *a),
        Command::FailTask { task, reason } => general::fail(state, task, reason),
        Command::RefuseDispatch(r) => refuse::refuse(state, *r),
        Command::CommitSamplingSeed {
            epoch,
            seed_hash,
            sealed_seed,
        } => sampling::commit_seed(state, epoch, seed_hash, sealed_seed),
        Command::RevealSamplingSeed { epoch, seed } => sampling::reveal_seed(state, epoch, seed),
        Command::Settlement(c) => decide_settlement(state, c),
    }
}
