//! A request's lifecycle: its phases, and the one table of the events that move it on.
//!
//! Every event about a request's work moves it from one [`RequestPhase`] to the next through
//! [`transition`], whose single match lists every legal (phase, event) pair; any other pair is
//! a [`TransitionError`] naming both, which the fold refuses at the record. The table does not
//! read the request's record: what only the record can say (attempts left, a verified result
//! in hand, two results that differ, the queue entry, the time) the fold derives and hands in
//! with the [`Transition`].
//!
//! | phase | event | next phase |
//! |---|---|---|
//! | (none) | `RequestAccepted` | `Queued` (set by the fold) |
//! | `Queued`, `AwaitingReplica` | `RequestScheduled` | `Running`, not dispatched yet |
//! | `Running` that attempt, not dispatched | `TaskDispatched` | `Running`, deadline set |
//! | `Running` that attempt, dispatched | `ResultSubmitted` | `Submitted` |
//! | `Running` that attempt, dispatched | `DeadlineExpired` | the [`Retry`] |
//! | `Running` that attempt, dispatched | `DispatchRefused` | the [`Retry`] |
//! | `Submitted` that attempt | `CommitmentVerified` | `Verified`; `AwaitingReplica` on a tie |
//! | `Submitted` that attempt | `CommitmentRejected` | the [`Retry`] |
//! | `Verified` | `RedundancySampled` | `AwaitingReplica` |
//! | `Verified`, `AwaitingReplica` | `ValidationResolved` | `Validated` |
//! | `Validated`, any outcome but no majority | `ResultReturned` | `Completed` |
//! | `Validated`, no majority | `RequestFailed` | `Failed` |
//! | `Queued`, `Exhausted` | `RequestFailed` | `Failed` |
//!
//! The general path adds two phases. A task (`RequestAccepted` of a general class) is `Split`
//! from its acceptance: its sub-tasks run, it never does. A sub-task with deps starts `Blocked`.
//!
//! | phase | event | next phase |
//! |---|---|---|
//! | (none) | `SubtasksPlanned`, a sub-task without deps | `Queued` (set by the fold) |
//! | (none) | `SubtasksPlanned`, a sub-task with deps | `Blocked` (set by the fold) |
//! | `Blocked` | `SubtaskReleased` | `Queued` |
//! | `Split` | `AggregateReturned` | `Completed` |
//! | `Split`, `Blocked` | `RequestFailed` | `Failed` |
//!
//! A leaf: it uses only the event types and the queue entry.

use std::fmt;

use chrono::{DateTime, Utc};
use prlx_events::event::{Sealed, Verdict};
use prlx_events::{Hash32, NodeId};
use serde::{Deserialize, Serialize};

use crate::scheduler::queue::QueueEntry;

/// Where a request's work stands. The data that is not a phase (counts, tried nodes, verified
/// results, the sampled class) stays on the request's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestPhase {
    /// Waits in its queue for a node, with no verified result yet.
    Queued(QueueEntry),
    /// A node has it: scheduled, then dispatched once its deadline is set.
    Running(Assignment),
    /// The node's result is in; its commitment is not judged yet.
    Submitted(Submission),
    /// Its latest result's commitment verified, out of the queue: the sampling draw or the
    /// verdict comes next.
    Verified,
    /// A verified result in hand, it waits in its queue for a replica (the catalog's
    /// `unconfirmed_hold_seconds` runs from `since`).
    AwaitingReplica(Wait),
    /// No verified result and no attempt left: its failure comes next.
    Exhausted,
    /// The verdict is in: the release (or, without a majority, the failure) comes next.
    Validated(ValidationOutcome),
    /// Its result was returned: settled.
    Completed(ValidationOutcome),
    /// It will not be served: settled (with the outcome of its validation, if it had one).
    Failed(Option<ValidationOutcome>),
    /// A general-path task: its sub-tasks run; its aggregate (or its failure) comes next.
    Split,
    /// A sub-task waiting for its deps' validated results before it is queued.
    Blocked,
}

/// What an event does to a request's phase, with what the fold derived from its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// `RequestScheduled`: a node takes it.
    Scheduled { node: NodeId, attempt: u32 },
    /// `TaskDispatched`: the dispatch is recorded, and with it its deadline.
    Dispatched {
        node: NodeId,
        attempt: u32,
        deadline_at: DateTime<Utc>,
    },
    /// `ResultSubmitted`: the node's result is in.
    ResultSubmitted(Submission),
    /// `DeadlineExpired`: the dispatch failed; `retry` says what follows.
    DeadlineExpired {
        node: NodeId,
        attempt: u32,
        retry: Retry,
    },
    /// `DispatchRefused`: the node declined it, a failed dispatch; `retry` says what follows
    /// (no attempt left also when a node of the same model file declined it before).
    DispatchRefused {
        node: NodeId,
        attempt: u32,
        retry: Retry,
    },
    /// `CommitmentVerified`: the result counts; with `tie` (it differs from the one result
    /// before it) the request waits for a third.
    CommitmentVerified {
        node: NodeId,
        attempt: u32,
        tie: Option<Wait>,
    },
    /// `CommitmentRejected`: the dispatch failed; `retry` says what follows.
    CommitmentRejected {
        node: NodeId,
        attempt: u32,
        retry: Retry,
    },
    /// `RedundancySampled`: drawn for a replica, it waits in the queue for one.
    RedundancySampled(Wait),
    /// `ValidationResolved`, with what its verdict means for the client.
    ValidationResolved(ValidationOutcome),
    /// `ResultReturned`.
    ResultReturned,
    /// `RequestFailed`.
    RequestFailed,
    /// `SubtaskReleased`: its input is built; it joins its queue.
    Released(QueueEntry),
    /// `AggregateReturned`, with the weakest of its sub-tasks' validation outcomes.
    Aggregated(ValidationOutcome),
}

/// What follows a failed dispatch, as the request's record gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retry {
    /// No verified result yet and attempts left: back in its queue.
    Queue(QueueEntry),
    /// A verified result in hand: its replica is sought again.
    Replica(Wait),
    /// No verified result and no attempt left.
    GiveUp,
}

/// A request's place in its queue while it waits for a replica, and since when (log time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wait {
    pub entry: QueueEntry,
    pub since: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub node: NodeId,
    pub attempt: u32,
    /// Set when the dispatch is recorded.
    pub deadline_at: Option<DateTime<Utc>>,
}

impl Assignment {
    fn is(&self, node: NodeId, attempt: u32) -> bool {
        (self.node, self.attempt) == (node, attempt)
    }

    fn dispatched(&self) -> bool {
        self.deadline_at.is_some()
    }
}

/// A submitted result awaiting its commitment check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    pub node: NodeId,
    pub attempt: u32,
    pub poe: Hash32,
    /// The result sealed to the coordinator's storage key (from `ResultSubmitted`).
    pub sealed_result: Sealed,
    /// Its rate, dispatch to result ([`super::calibration::rate_milli_tps`]); `None`: not
    /// measured.
    #[serde(default)]
    pub measured_milli_tps: Option<u64>,
}

/// A request's status as the API reports it: settled or not, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    Accepted,
    Completed,
    Failed,
}

/// What a request's validation concluded, as the client reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValidationOutcome {
    /// Not drawn for redundant execution: released on its verified commitment (`Accepted`).
    NotSampled,
    /// A replica agreed, or a majority of three did (`Agreed`, `Majority`).
    Confirmed,
    /// Drawn, but no replica of its class came in time: released unchecked (`Unconfirmed`).
    Unconfirmed,
    /// The replicas disagreed without a majority: failed, refunded (`NoMajority`).
    NoMajority,
}

impl ValidationOutcome {
    pub fn of(verdict: &Verdict) -> Self {
        match verdict {
            Verdict::Accepted => Self::NotSampled,
            Verdict::Agreed { .. } | Verdict::Majority { .. } => Self::Confirmed,
            Verdict::Unconfirmed { .. } => Self::Unconfirmed,
            Verdict::NoMajority { .. } => Self::NoMajority,
        }
    }

    /// The name the API and the JSON use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotSampled => "not_sampled",
            Self::Confirmed => "confirmed",
            Self::Unconfirmed => "unconfirmed",
            Self::NoMajority => "no_majority",
        }
    }
}

/// An event that the request's phase does not take: the log and the lifecycle disagree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a request {phase} does not take {event}")]
pub struct TransitionError {
    /// The phase the request is in, described.
    pub phase: String,
    /// The event it was offered, described.
    pub event: String,
}

/// The phase `t` moves a request in `phase` to, if the table lists the pair (see the module
/// documentation); pure.
pub fn transition(phase: &RequestPhase, t: &Transition) -> Result<RequestPhase, TransitionError> {
    use RequestPhase as P;
    use Transition as T;
    use ValidationOutcome::NoMajority;
    let next = match (phase, t) {
        (P::Queued(_) | P::AwaitingReplica(_), T::Scheduled { node, attempt }) => {
            P::Running(Assignment {
                node: *node,
                attempt: *attempt,
                deadline_at: None,
            })
        }
        (
            P::Running(a),
            T::Dispatched {
                node,
                attempt,
                deadline_at,
            },
        ) if a.is(*node, *attempt) && !a.dispatched() => P::Running(Assignment {
            deadline_at: Some(*deadline_at),
            ..a.clone()
        }),
        (P::Running(a), T::ResultSubmitted(s)) if a.is(s.node, s.attempt) && a.dispatched() => {
            P::Submitted(s.clone())
        }
        (
            P::Running(a),
            T::DeadlineExpired {
                node,
                attempt,
                retry,
            },
        ) if a.is(*node, *attempt) && a.dispatched() => retry.phase(),
        (
            P::Running(a),
            T::DispatchRefused {
                node,
                attempt,
                retry,
            },
        ) if a.is(*node, *attempt) && a.dispatched() => retry.phase(),
        (P::Submitted(s), T::CommitmentVerified { node, attempt, tie })
            if (s.node, s.attempt) == (*node, *attempt) =>
        {
            tie.clone().map_or(P::Verified, P::AwaitingReplica)
        }
        (
            P::Submitted(s),
            T::CommitmentRejected {
                node,
                attempt,
                retry,
            },
        ) if (s.node, s.attempt) == (*node, *attempt) => retry.phase(),
        (P::Verified, T::RedundancySampled(wait)) => P::AwaitingReplica(wait.clone()),
        (P::Verified | P::AwaitingReplica(_), T::ValidationResolved(outcome)) => {
            P::Validated(*outcome)
        }
        (P::Validated(outcome), T::ResultReturned) if *outcome != NoMajority => {
            P::Completed(*outcome)
        }
        (P::Validated(NoMajority), T::RequestFailed) => P::Failed(Some(NoMajority)),
        (P::Queued(_) | P::Exhausted, T::RequestFailed) => P::Failed(None),
        (P::Blocked, T::Released(entry)) => P::Queued(entry.clone()),
        (P::Split, T::Aggregated(outcome)) if *outcome != NoMajority => P::Completed(*outcome),
        (P::Split | P::Blocked, T::RequestFailed) => P::Failed(None),
        _ => {
            return Err(TransitionError {
                phase: phase.to_string(),
                event: t.to_string(),
            })
        }
    };
    Ok(next)
}

impl Retry {
    fn phase(&self) -> RequestPhase {
        match self {
            Retry::Queue(entry) => RequestPhase::Queued(entry.clone()),
            Retry::Replica(wait) => RequestPhase::AwaitingReplica(wait.clone()),
            Retry::GiveUp => RequestPhase::Exhausted,
        }
    }
}

impl RequestPhase {
    /// Settled or not, and how.
    pub fn status(&self) -> RequestStatus {
        match self {
            Self::Completed(_) => RequestStatus::Completed,
            Self::Failed(_) => RequestStatus::Failed,
            _ => RequestStatus::Accepted,
        }
    }

    /// Its place in its queue, while it waits in one.
    pub fn queue_entry(&self) -> Option<&QueueEntry> {
        match self {
            Self::Queued(entry) | Self::AwaitingReplica(Wait { entry, .. }) => Some(entry),
            _ => None,
        }
    }

    /// The dispatch a node holds, while one does.
    pub fn assignment(&self) -> Option<&Assignment> {
        match self {
            Self::Running(a) => Some(a),
            _ => None,
        }
    }

    /// Since when it waits in the queue for a replica, while it does.
    pub fn replica_since(&self) -> Option<DateTime<Utc>> {
        match self {
            Self::AwaitingReplica(wait) => Some(wait.since),
            _ => None,
        }
    }

    /// What its validation concluded, once the verdict is in.
    pub fn outcome(&self) -> Option<ValidationOutcome> {
        match self {
            Self::Validated(o) | Self::Completed(o) => Some(*o),
            Self::Failed(o) => *o,
            _ => None,
        }
    }

    /// Before its verdict and not settled: its results, if any, still await validation.
    pub fn before_verdict(&self) -> bool {
        !matches!(
            self,
            Self::Validated(_) | Self::Completed(_) | Self::Failed(_)
        )
    }
}

impl fmt::Display for RequestPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Queued(_) => write!(f, "queued"),
            Self::Running(a) => match a.deadline_at {
                None => write!(f, "scheduled as attempt {} on {}", a.attempt, a.node),
                Some(at) => write!(f, "running attempt {} on {} (due {at})", a.attempt, a.node),
            },
            Self::Submitted(s) => write!(
                f,
                "holding attempt {} on {}'s result, unjudged",
                s.attempt, s.node
            ),
            Self::Verified => write!(f, "with a verified result, out of the queue"),
            Self::AwaitingReplica(w) => write!(f, "waiting for a replica since {}", w.since),
            Self::Exhausted => write!(f, "with no attempt left"),
            Self::Validated(o) => write!(f, "validated ({})", o.as_str()),
            Self::Completed(o) => write!(f, "completed ({})", o.as_str()),
            Self::Failed(_) => write!(f, "failed"),
            Self::Split => write!(f, "split into sub-tasks"),
            Self::Blocked => write!(f, "waiting for its deps"),
        }
    }
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let of = |f: &mut fmt::Formatter<'_>, event: &str, node: &NodeId, attempt: &u32| {
            write!(f, "{event} of attempt {attempt} on {node}")
        };
        match self {
            Self::Scheduled { node, attempt } => of(f, "RequestScheduled", node, attempt),
            Self::Dispatched { node, attempt, .. } => of(f, "TaskDispatched", node, attempt),
            Self::ResultSubmitted(s) => of(f, "ResultSubmitted", &s.node, &s.attempt),
            Self::DeadlineExpired { node, attempt, .. } => of(f, "DeadlineExpired", node, attempt),
            Self::DispatchRefused { node, attempt, .. } => of(f, "DispatchRefused", node, attempt),
            Self::CommitmentVerified { node, attempt, .. } => {
                of(f, "CommitmentVerified", node, attempt)
            }
            Self::CommitmentRejected { node, attempt, .. } => {
                of(f, "CommitmentRejected", node, attempt)
            }
            Self::RedundancySampled(_) => write!(f, "RedundancySampled"),
            Self::ValidationResolved(o) => write!(f, "ValidationResolved ({})", o.as_str()),
            Self::ResultReturned => write!(f, "ResultReturned"),
            Self::RequestFailed => write!(f, "RequestFailed"),
            Self::Released(_) => write!(f, "SubtaskReleased"),
            Self::Aggregated(o) => write!(f, "AggregateReturned ({})", o.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use prlx_events::event::Priority;
    use prlx_events::RequestId;

    use RequestPhase as P;
    use Transition as T;
    use ValidationOutcome as O;

    fn node(n: u8) -> NodeId {
        NodeId(Hash32([n; 32]))
    }

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(s, 0).unwrap()
    }

    fn entry() -> QueueEntry {
        QueueEntry::new(Priority::Standard, at(100), RequestId(7))
    }

    fn wait() -> Wait {
        Wait {
            entry: entry(),
            since: at(5),
        }
    }

    fn running(n: u8, attempt: u32, due: Option<i64>) -> RequestPhase {
        P::Running(Assignment {
            node: node(n),
            attempt,
            deadline_at: due.map(at),
        })
    }

    fn submission(n: u8, attempt: u32) -> Submission {
        Submission {
            node: node(n),
            attempt,
            poe: Hash32([9; 32]),
            sealed_result: Sealed(vec![1, 2, 3]),
            measured_milli_tps: None,
        }
    }

    fn expired(n: u8, attempt: u32, retry: Retry) -> Transition {
        T::DeadlineExpired {
            node: node(n),
            attempt,
            retry,
        }
    }

    fn rejected(n: u8, attempt: u32, retry: Retry) -> Transition {
        T::CommitmentRejected {
            node: node(n),
            attempt,
            retry,
        }
    }

    fn refused(n: u8, attempt: u32, retry: Retry) -> Transition {
        T::DispatchRefused {
            node: node(n),
            attempt,
            retry,
        }
    }

    fn verified(n: u8, attempt: u32, tie: Option<Wait>) -> Transition {
        T::CommitmentVerified {
            node: node(n),
            attempt,
            tie,
        }
    }

    /// Every pair the table lists, with the phase it gives.
    fn listed() -> Vec<(RequestPhase, Transition, RequestPhase)> {
        let scheduled = T::Scheduled {
            node: node(1),
            attempt: 0,
        };
        let dispatched = T::Dispatched {
            node: node(1),
            attempt: 0,
            deadline_at: at(60),
        };
        vec![
            (P::Queued(entry()), scheduled.clone(), running(1, 0, None)),
            (P::AwaitingReplica(wait()), scheduled, running(1, 0, None)),
            (running(1, 0, None), dispatched, running(1, 0, Some(60))),
            (
                running(1, 0, Some(60)),
                T::ResultSubmitted(submission(1, 0)),
                P::Submitted(submission(1, 0)),
            ),
            (
                running(1, 0, Some(60)),
                expired(1, 0, Retry::Queue(entry())),
                P::Queued(entry()),
            ),
            (
                running(1, 0, Some(60)),
                expired(1, 0, Retry::Replica(wait())),
                P::AwaitingReplica(wait()),
            ),
            (
                running(1, 0, Some(60)),
                expired(1, 0, Retry::GiveUp),
                P::Exhausted,
            ),
            (
                running(1, 0, Some(60)),
                refused(1, 0, Retry::Queue(entry())),
                P::Queued(entry()),
            ),
            (
                running(1, 0, Some(60)),
                refused(1, 0, Retry::Replica(wait())),
                P::AwaitingReplica(wait()),
            ),
            (
                running(1, 0, Some(60)),
                refused(1, 0, Retry::GiveUp),
                P::Exhausted,
            ),
            (
                P::Submitted(submission(1, 0)),
                verified(1, 0, None),
                P::Verified,
            ),
            (
                P::Submitted(submission(1, 0)),
                verified(1, 0, Some(wait())),
                P::AwaitingReplica(wait()),
            ),
            (
                P::Submitted(submission(1, 0)),
                rejected(1, 0, Retry::Queue(entry())),
                P::Queued(entry()),
            ),
            (
                P::Submitted(submission(1, 0)),
                rejected(1, 0, Retry::Replica(wait())),
                P::AwaitingReplica(wait()),
            ),
            (
                P::Submitted(submission(1, 0)),
                rejected(1, 0, Retry::GiveUp),
                P::Exhausted,
            ),
            (
                P::Verified,
                T::RedundancySampled(wait()),
                P::AwaitingReplica(wait()),
            ),
            (
                P::Verified,
                T::ValidationResolved(O::NotSampled),
                P::Validated(O::NotSampled),
            ),
            (
                P::AwaitingReplica(wait()),
                T::ValidationResolved(O::Unconfirmed),
                P::Validated(O::Unconfirmed),
            ),
            (
                P::Validated(O::Confirmed),
                T::ResultReturned,
                P::Completed(O::Confirmed),
            ),
            (
                P::Validated(O::NoMajority),
                T::RequestFailed,
                P::Failed(Some(O::NoMajority)),
            ),
            (P::Queued(entry()), T::RequestFailed, P::Failed(None)),
            (P::Exhausted, T::RequestFailed, P::Failed(None)),
            (P::Blocked, T::Released(entry()), P::Queued(entry())),
            (
                P::Split,
                T::Aggregated(O::Confirmed),
                P::Completed(O::Confirmed),
            ),
            (P::Split, T::RequestFailed, P::Failed(None)),
            (P::Blocked, T::RequestFailed, P::Failed(None)),
        ]
    }

    #[test]
    fn every_listed_pair_moves_the_request_on() {
        for (phase, t, next) in listed() {
            assert_eq!(transition(&phase, &t), Ok(next), "{phase} + {t}");
        }
    }

    #[test]
    fn an_unlisted_pair_is_an_error_naming_the_phase_and_the_event() {
        let cases = [
            // Another attempt than the one running, or the one running before its dispatch.
            (running(1, 0, Some(60)), expired(1, 1, Retry::GiveUp)),
            (running(1, 0, Some(60)), expired(2, 0, Retry::GiveUp)),
            // A refusal of another node's attempt, of another attempt, or before dispatch.
            (running(1, 0, Some(60)), refused(2, 0, Retry::GiveUp)),
            (running(1, 0, Some(60)), refused(1, 1, Retry::GiveUp)),
            (running(1, 0, None), refused(1, 0, Retry::GiveUp)),
            (P::Queued(entry()), refused(1, 0, Retry::GiveUp)),
            (P::Submitted(submission(1, 0)), refused(1, 0, Retry::GiveUp)),
            (running(1, 0, None), T::ResultSubmitted(submission(1, 0))),
            (
                running(1, 0, Some(60)),
                T::Dispatched {
                    node: node(1),
                    attempt: 0,
                    deadline_at: at(61),
                },
            ),
            // Scheduled twice; judged with nothing submitted.
            (
                running(1, 0, None),
                T::Scheduled {
                    node: node(2),
                    attempt: 1,
                },
            ),
            (P::Verified, verified(1, 0, None)),
            (P::Submitted(submission(1, 0)), verified(1, 1, None)),
            // A verdict with no verified result, or with a result still unjudged.
            (P::Queued(entry()), T::ValidationResolved(O::NotSampled)),
            (P::Exhausted, T::ValidationResolved(O::NotSampled)),
            (
                P::Submitted(submission(1, 0)),
                T::ValidationResolved(O::Unconfirmed),
            ),
            // Released before its verdict, or after none was reached; failed while running.
            (P::Verified, T::ResultReturned),
            (P::Validated(O::NoMajority), T::ResultReturned),
            (P::Validated(O::Confirmed), T::RequestFailed),
            (running(1, 0, Some(60)), T::RequestFailed),
            // Settled is settled.
            (P::Completed(O::NotSampled), T::ResultReturned),
            (P::Failed(None), T::RequestFailed),
            (P::Failed(None), T::RedundancySampled(wait())),
            // A task never runs itself; a blocked sub-task is not scheduled; each is
            // released or aggregated once.
            (
                P::Split,
                T::Scheduled {
                    node: node(1),
                    attempt: 0,
                },
            ),
            (
                P::Blocked,
                T::Scheduled {
                    node: node(1),
                    attempt: 0,
                },
            ),
            (P::Queued(entry()), T::Released(entry())),
            (P::Split, T::ResultReturned),
            (P::Validated(O::Confirmed), T::Aggregated(O::Confirmed)),
            (P::Split, T::Aggregated(O::NoMajority)),
            (P::Completed(O::NotSampled), T::Aggregated(O::NotSampled)),
        ];
        for (phase, t) in cases {
            let err = transition(&phase, &t).expect_err(&format!("{phase} + {t}"));
            assert_eq!(
                (err.phase.as_str(), err.event.as_str()),
                (phase.to_string().as_str(), t.to_string().as_str())
            );
            let message = err.to_string();
            assert!(
                message.contains(&phase.to_string()) && message.contains(&t.to_string()),
                "{message}"
            );
        }
        let err = transition(&running(1, 0, Some(60)), &expired(1, 1, Retry::GiveUp)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "a request running attempt 0 on {} (due {}) does not take DeadlineExpired of attempt 1 on {}",
                node(1),
                at(60),
                node(1)
            )
        );
    }

    #[test]
    fn the_phase_says_the_status_the_queue_place_the_dispatch_and_the_outcome() {
        assert_eq!(P::Queued(entry()).status(), RequestStatus::Accepted);
        assert_eq!(
            P::Completed(O::Confirmed).status(),
            RequestStatus::Completed
        );
        assert_eq!(P::Failed(None).status(), RequestStatus::Failed);
        assert_eq!(P::AwaitingReplica(wait()).queue_entry(), Some(&entry()));
        assert_eq!(P::AwaitingReplica(wait()).replica_since(), Some(at(5)));
        assert_eq!(P::Queued(entry()).replica_since(), None);
        assert!(running(1, 0, None).assignment().is_some());
        assert_eq!(
            P::Failed(Some(O::NoMajority)).outcome(),
            Some(O::NoMajority)
        );
        assert_eq!(P::Verified.outcome(), None);
        assert!(P::Verified.before_verdict() && !P::Validated(O::Confirmed).before_verdict());
    }
}
