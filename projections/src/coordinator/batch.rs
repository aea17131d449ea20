//! A decision's events complete within their batch.
//!
//! The coordinator appends each decision as one batch, every record of it carrying the
//! decision's `correlation_id`. Some events owe a companion in the same batch; the fold records
//! what is owed and refuses the first record of the next batch while anything is still owed,
//! so a log that drops or defers one of a decision's records does not fold:
//!
//! | event | owes, in its batch |
//! |---|---|
//! | `RequestAccepted` | `CreditsReserved` of exactly its price, from its account |
//! | `RequestAccepted` of a general-path task | `SubtasksPlanned` of it |
//! | `ResultReturned` (not of a sub-task) | `CreditsCharged` of its price (what is reserved, if less) |
//! | `AggregateReturned` | `CreditsCharged` of its price (what is reserved, if less) |
//! | `CreditsCharged` leaving credit reserved | `CreditsRefunded` of the rest |
//! | `RequestFailed` with credit reserved | `CreditsRefunded` of all of it |
//! | a failed dispatch that leaves no attempt (`Exhausted`) | `RequestFailed` |
//! | `DispatchRefused` after a refusal by a node of the same model file (`Exhausted`) | `RequestFailed` |
//! | `CommitmentRejected` | `NodeFlagged` of the node whose result it rejects |
//! | `ValidationResolved`, a majority | `NodeFlagged` of each dissenter |
//! | `ValidationResolved`, no majority | `NodeFlagged` of each party |
//! | `StandingChanged` under the removal floor, node in the pool | `NodeRemovedFromPool` |
//! | `CommitmentVerified` completing a run of slow results (`calibration`) | `NodeTierLowered` |
//!
//! And nothing else: a reservation, charge, refund, flag or removal that nothing owes is
//! refused where it stands. Together with the arms' own checks this gives, at every batch end:
//! an accepted request in progress holds exactly its price; a completed one was charged its
//! price and holds nothing; a failed one was charged nothing and holds nothing; every flag and
//! removal follows from the validation history, and every one it calls for is recorded.
//!
//! A record without a correlation id is a batch of its own. The auditor asks
//! `CoordinatorState::unfinished_batch` at the end of the log.

use std::collections::BTreeSet;

use prlx_events::{Envelope, NodeId, RequestId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::fold::FoldError;

/// What a batch still owes: an event for a request or a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Owed {
    Reservation(RequestId),
    /// A general-path task's plan, recorded with its acceptance.
    Plan(RequestId),
    Charge(RequestId),
    Refund(RequestId),
    /// A request with no attempt left fails in the decision that used up its last one.
    Failure(RequestId),
    Flag(NodeId),
    Removal(NodeId),
    TierLowered(NodeId),
}

impl std::fmt::Display for Owed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owed::Reservation(id) => write!(f, "CreditsReserved of request {id}"),
            Owed::Plan(id) => write!(f, "SubtasksPlanned of request {id}"),
            Owed::Charge(id) => write!(f, "CreditsCharged of request {id}"),
            Owed::Refund(id) => write!(f, "CreditsRefunded of request {id}"),
            Owed::Failure(id) => write!(f, "RequestFailed of request {id}"),
            Owed::Flag(n) => write!(f, "NodeFlagged of node {n}"),
            Owed::Removal(n) => write!(f, "NodeRemovedFromPool of node {n}"),
            Owed::TierLowered(n) => write!(f, "NodeTierLowered of node {n}"),
        }
    }
}

/// The batch being folded: its correlation id and what it still owes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenBatch {
    pub correlation: Option<Uuid>,
    pub owed: BTreeSet<Owed>,
}

impl OpenBatch {
    fn describe(&self) -> String {
        self.owed
            .iter()
            .map(Owed::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Checks, before `env` is applied, that it may start a new batch: the one before it owes
    /// nothing. Changes nothing.
    pub fn check_boundary(&self, env: &Envelope) -> Result<(), FoldError> {
        if self.owed.is_empty() || self.continues(env) {
            return Ok(());
        }
        Err(FoldError::new(
            env,
            format!(
                "the decision before this record is incomplete: it never recorded {}",
                self.describe()
            ),
        ))
    }

    /// After `env` was applied: it is the batch now open.
    pub fn enter(&mut self, env: &Envelope) {
        if !self.continues(env) {
            self.correlation = env.header.correlation_id;
        }
    }

    fn continues(&self, env: &Envelope) -> bool {
        env.header.correlation_id.is_some() && env.header.correlation_id == self.correlation
    }

    pub fn owe(&mut self, what: Owed) {
        self.owed.insert(what);
    }

    /// Refuses an event that nothing in its batch owes. Changes nothing.
    pub fn check_owed(&self, env: &Envelope, what: Owed) -> Result<(), FoldError> {
        if self.owed.contains(&what) && self.continues(env) {
            return Ok(());
        }
        Err(FoldError::new(
            env,
            format!("{what}: nothing in this decision owes it"),
        ))
    }

    pub fn discharge(&mut self, what: Owed) {
        self.owed.remove(&what);
    }

    /// What the batch still owes, if anything: at the end of a log, the decision the log
    /// ends in was cut short.
    pub fn unfinished(&self) -> Option<String> {
        (!self.owed.is_empty()).then(|| {
            format!(
                "the log ends inside a decision that never recorded {}",
                self.describe()
            )
        })
    }
}
