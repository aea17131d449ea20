//! The coordinator actor: one task owns the [`Coordinator`] and serves a channel of messages.
//!
//! Why an actor and not a `Mutex<Coordinator>`: the coordinator is the log's single writer, and
//! `decide` must see the state that every earlier decision left behind, so commands have to be
//! decided, appended and applied one at a time, in the order they land on the log. A task that
//! owns the coordinator and takes messages from one queue gives exactly that order, with no lock
//! held across an `.await` on the log and no handler able to touch the state directly. Reads go
//! through the same queue, so a read sent after a command's answer sees that command's events.
//!
//! Each message carries its own reply: a command's reply is computed from the [`Outcome`] and
//! the state right after that command, in the same turn of the actor, so "which request id did
//! this submission get" is never answered from a later state.
//!
//! A command once queued is decided even if its caller has gone (an HTTP client that hung up):
//! the Idempotency-Key is what makes the client's retry safe, not cancellation.
//!
//! A failure of the shell (the log refused an append, the coordinator's own events did not
//! fold) stops the actor: after a failed fsync the log must be reopened and recovered, and the
//! in-memory state may no longer match it. Callers then get [`ActorError::Stopped`]; the
//! process is meant to exit and be restarted, which re-folds the log (crash-only).

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;

use chrono::Utc;
use prlx_events::protocol::{RefusalReport, ResultReport};
use prlx_events::NodeId;
use prlx_projections::{CoordinatorState, Fold};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use prlx_events::log::Side;

use crate::decide::{Command, Submission};
use crate::shell::{AppendFuture, Coordinator, Outcome, ShellError, Staged};

/// How many messages may wait for the actor before senders wait too (backpressure).
pub const QUEUE_DEPTH: usize = 1024;

/// What the actor is asked to decide.
pub enum Intake {
    /// A command ready as it is.
    Command(Command),
    /// A submission and its payload bytes. The payload is hashed and sealed inside the actor
    /// (the storage key never leaves the coordinator) and goes no further in plaintext.
    Submission {
        submission: Box<Submission>,
        payload: Vec<u8>,
    },
    /// A node's result report. The shell opens and checks it (it holds the session keys).
    Report {
        node: NodeId,
        report: Box<ResultReport>,
    },
    /// A node's refusal of a dispatch. The shell checks its signature (it holds the state).
    Refusal {
        node: NodeId,
        report: Box<RefusalReport>,
    },
    /// Nothing to decide (`Outcome::Unchanged`): only a [`Rider`] to append, in order with
    /// everything else (the answer to a Kafka record that is not a submission at all).
    Pass,
}

/// What a command's append carries besides its events: records for other topics and consumer
/// offsets (Kafka's consume-transform-produce), computed in the actor's turn from the outcome
/// and the state right after the command, so they commit with the events or not at all. When
/// the command appends nothing, they are appended alone, in order.
pub struct Rider(pub SideOf);

/// Computes a command's side from its outcome and the state right after it.
pub type SideOf = Box<dyn FnOnce(&Outcome, &CoordinatorState) -> Side + Send>;

impl std::fmt::Debug for Rider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rider")
    }
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Intake::Command(c) => f.debug_tuple("Command").field(c).finish(),
            // Never the payload: it is the client's plaintext.
            Intake::Submission {
                submission,
                payload,
            } => f
                .debug_struct("Submission")
                .field("submission", submission)
                .field("payload", &format_args!("<{} bytes>", payload.len()))
                .finish(),
            Intake::Report { node, report } => f
                .debug_struct("Report")
                .field("node", node)
                .field("request", &report.request_id)
                .field("attempt", &report.attempt)
                .finish(),
            Intake::Refusal { node, report } => f
                .debug_struct("Refusal")
                .field("node", node)
                .field("request", &report.request_id)
                .field("attempt", &report.attempt)
                .finish(),
            Intake::Pass => f.write_str("Pass"),
        }
    }
}

/// Why the actor gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActorError {
    /// The actor has stopped: shut down, or stopped by an earlier failure.
    #[error("the coordinator has stopped; restart it to recover from the log")]
    Stopped,
    /// The shell failed this command; the actor stops after it.
    #[error("the coordinator failed: {0}")]
    Failed(String),
    /// The reply function panicked (a bug in the caller); the state was not changed by it.
    #[error("the coordinator could not compute an answer")]
    NoAnswer,
}

/// Sends an answer once everything it reflects is durable.
type Deliver = Box<dyn FnOnce(Result<Outcome, ActorError>) + Send>;
/// Computes a command's answer from its outcome and the state right after it.
type ExecuteReply = Box<dyn FnOnce(&Outcome, &Fold<CoordinatorState>) -> Deliver + Send>;
/// Computes a read's answer from the state as it stands.
type ReadReply = Box<dyn FnOnce(&Fold<CoordinatorState>) -> Deliver + Send>;

enum Message {
    Execute {
        intake: Intake,
        reply: ExecuteReply,
        rider: Option<Rider>,
    },
    Read {
        reply: ReadReply,
    },
}

/// An answer waiting for the appends before it: answers leave in the order their messages
/// came, each only once its own events and every earlier event are durable, so no client
/// ever sees state the log could still lose.
struct Waiting {
    durable: Option<AppendFuture>,
    /// The append holds no events of this command (a side alone): its offsets are not the
    /// outcome's.
    side_only: bool,
    outcome: Outcome,
    deliver: Option<Deliver>,
}

/// How many answers may wait on appends before the actor stops taking messages.
pub const MAX_IN_FLIGHT: usize = 8192;

/// A cloneable way to reach the actor. Every HTTP handler holds one; none holds the coordinator.
#[derive(Debug, Clone)]
pub struct CoordinatorHandle {
    tx: mpsc::Sender<Message>,
    /// What submissions are signed under (the coordinator's, copied at spawn).
    consent: crate::consent::ConsentDomain,
    /// The request index of settled requests that left the state (the coordinator's, copied
    /// at spawn), for reads.
    index: Option<crate::index::IndexWriter>,
}

/// Starts the actor on the current Tokio runtime. The task ends when every handle is dropped
/// and the queue is drained (`Ok`), or after a shell failure (`Err`).
pub fn spawn(coordinator: Coordinator) -> (CoordinatorHandle, JoinHandle<Result<(), ShellError>>) {
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    let consent = coordinator.consent_domain();
    let index = coordinator.index().cloned();
    let task = tokio::spawn(run(coordinator, rx));
    (CoordinatorHandle { tx, consent, index }, task)
}

/// The longest the actor sleeps without looking at the clock, so deadlines are noticed
/// promptly even when no message arrives.
const TIMER_TICK: std::time::Duration = std::time::Duration::from_millis(250);

/// Decisions are pipelined: a command is decided and applied as soon as it arrives and its
/// append is started (ordered at that moment); its answer waits in `waiting` until the append
/// is durable. Many commands thus share one group commit of the log instead of one `fdatasync`
/// each, while every decision still sees the state all earlier decisions left.
async fn run(
    mut coordinator: Coordinator,
    mut rx: mpsc::Receiver<Message>,
) -> Result<(), ShellError> {
    let mut waiting: VecDeque<Waiting> = VecDeque::new();
    // Whatever the log owes from before a restart (grants, expiries, dispatches).
    push_housekeeping(&mut coordinator, &mut waiting)?;
    let mut open = true;
    while open || !waiting.is_empty() {
        // The timer service: wake at the next deadline (or the tick), expire what is due.
        let wait = coordinator
            .next_deadline()
            .and_then(|at| (at - Utc::now()).to_std().ok())
            .unwrap_or(TIMER_TICK)
            .min(TIMER_TICK);
        let front_ready = waiting.front().is_some_and(|w| w.durable.is_none());
        tokio::select! {
            biased;
            // Answers whose appends are durable leave first, in order.
            range = async {
                match waiting.front_mut().and_then(|w| w.durable.as_mut()) {
                    Some(durable) => durable.await,
                    None => std::future::pending().await,
                }
            } => {
                let range = range?;
                coordinator.durable_through(&range);
                let w = waiting.pop_front().expect("front exists");
                if let Some(deliver) = w.deliver {
                    deliver(Ok(match w.side_only {
                        true => w.outcome,
                        false => w.outcome.at(range),
                    }));
                }
            }
            () = std::future::ready(()), if front_ready => {
                let w = waiting.pop_front().expect("front exists");
                if let Some(deliver) = w.deliver {
                    deliver(Ok(w.outcome));
                }
            }
            m = rx.recv(), if open && waiting.len() < MAX_IN_FLIGHT => match m {
                None => open = false,
                Some(message) => {
                    handle(&mut coordinator, &mut waiting, message)?;
                    push_housekeeping(&mut coordinator, &mut waiting)?;
                }
            },
            () = tokio::time::sleep(wait), if open => {
                push_housekeeping(&mut coordinator, &mut waiting)?;
            }
        }
    }
    // Every handle is gone and every answer delivered: a clean shutdown seals the tail.
    coordinator.seal_now().await
}

fn handle(
    coordinator: &mut Coordinator,
    waiting: &mut VecDeque<Waiting>,
    message: Message,
) -> Result<(), ShellError> {
    match message {
        Message::Read { reply } => {
            let deliver = answer(|| reply(coordinator.state_fold()));
            waiting.push_back(Waiting {
                durable: None,
                side_only: false,
                outcome: Outcome::Unchanged,
                deliver,
            });
        }
        Message::Execute {
            intake,
            reply,
            rider,
        } => {
            let command = match intake {
                Intake::Command(command) => Ok(Some(command)),
                Intake::Submission {
                    submission,
                    payload,
                } => Ok(Some(coordinator.submission(*submission, &payload))),
                Intake::Report { node, report } => coordinator.completion(node, &report).map(Some),
                Intake::Refusal { node, report } => coordinator.refusal(node, &report).map(Some),
                Intake::Pass => Ok(None),
            };
            let (staged, side_sender) = match command {
                Ok(Some(command)) => {
                    if matches!(command, Command::RegisterNode(_)) {
                        coordinator.note_registration();
                    }
                    match rider {
                        Some(_) => coordinator.stage_riding(command)?,
                        None => (coordinator.stage(command)?, None),
                    }
                }
                Ok(None) => (
                    Staged {
                        outcome: Outcome::Unchanged,
                        durable: None,
                    },
                    None,
                ),
                Err(refused) => (
                    Staged {
                        outcome: Outcome::Refused(refused.to_string()),
                        durable: None,
                    },
                    None,
                ),
            };
            let deliver = answer(|| reply(&staged.outcome, coordinator.state_fold()));
            let mut durable = staged.durable;
            let mut side_only = false;
            if let Some(Rider(side_of)) = rider {
                // Not guarded against a panic: an answer or offset left out would let a later
                // commit skip its record. A panic stops the actor (crash-only).
                let side = side_of(&staged.outcome, &coordinator.state_fold().state);
                match side_sender {
                    Some(sender) => {
                        let _ = sender.send(side);
                    }
                    None if durable.is_none() && !side.is_empty() => {
                        durable = Some(coordinator.append_side(side));
                        side_only = true;
                    }
                    None => {}
                }
            }
            waiting.push_back(Waiting {
                durable,
                side_only,
                outcome: staged.outcome,
                deliver,
            });
        }
    }
    Ok(())
}

fn push_housekeeping(
    coordinator: &mut Coordinator,
    waiting: &mut VecDeque<Waiting>,
) -> Result<(), ShellError> {
    for durable in coordinator.stage_housekeeping(Utc::now())? {
        waiting.push_back(Waiting {
            durable: Some(durable),
            side_only: false,
            outcome: Outcome::Unchanged,
            deliver: None,
        });
    }
    Ok(())
}

/// Runs a reply function. A panic in one is the caller's bug; it only reads the state, so the
/// actor carries on and that caller sees [`ActorError::NoAnswer`].
fn answer(f: impl FnOnce() -> Deliver) -> Option<Deliver> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).ok()
}

impl CoordinatorHandle {
    /// The EIP-712 domain submissions to this coordinator are signed under.
    pub fn consent_domain(&self) -> crate::consent::ConsentDomain {
        self.consent
    }

    /// Decides `intake`; `then` turns the outcome and the state right after it into the answer.
    pub async fn execute<T: Send + 'static>(
        &self,
        intake: Intake,
        then: impl FnOnce(&Outcome, &CoordinatorState) -> T + Send + 'static,
    ) -> Result<(Outcome, T), ActorError> {
        self.enqueue(intake, then).await?.await
    }

    /// As [`CoordinatorHandle::execute`], in two steps: this returns once `intake` is in the
    /// actor's queue (so whatever is enqueued after it is decided after it), and the future
    /// it returns gives the answer.
    pub async fn enqueue<T: Send + 'static>(
        &self,
        intake: Intake,
        then: impl FnOnce(&Outcome, &CoordinatorState) -> T + Send + 'static,
    ) -> Result<
        impl std::future::Future<Output = Result<(Outcome, T), ActorError>> + Send + 'static,
        ActorError,
    > {
        self.enqueue_riding(intake, then, None).await
    }

    /// As [`CoordinatorHandle::enqueue`], with a [`Rider`] for the command's append.
    pub async fn enqueue_riding<T: Send + 'static>(
        &self,
        intake: Intake,
        then: impl FnOnce(&Outcome, &CoordinatorState) -> T + Send + 'static,
        rider: Option<Rider>,
    ) -> Result<
        impl std::future::Future<Output = Result<(Outcome, T), ActorError>> + Send + 'static,
        ActorError,
    > {
        let (tx, rx) = oneshot::channel();
        let reply: ExecuteReply = Box::new(move |outcome, fold| {
            let answer = then(outcome, &fold.state);
            Box::new(move |durable: Result<Outcome, ActorError>| {
                let _ = tx.send(durable.map(|outcome| (outcome, answer)));
            })
        });
        self.tx
            .send(Message::Execute {
                intake,
                reply,
                rider,
            })
            .await
            .map_err(|_| ActorError::Stopped)?;
        let handle = self.clone();
        Ok(async move { rx.await.map_err(|_| handle.no_reply())? })
    }

    /// Decides a ready command and returns only its outcome.
    pub async fn execute_command(&self, command: Command) -> Result<Outcome, ActorError> {
        self.execute(Intake::Command(command), |_, _| ())
            .await
            .map(|(outcome, ())| outcome)
    }

    /// Answers `f` from the fold (state plus log position) after every earlier message.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Fold<CoordinatorState>) -> T + Send + 'static,
    ) -> Result<T, ActorError> {
        let (tx, rx) = oneshot::channel();
        let reply: ReadReply = Box::new(move |fold| {
            let answer = f(fold);
            Box::new(move |_: Result<Outcome, ActorError>| {
                let _ = tx.send(answer);
            })
        });
        self.tx
            .send(Message::Read { reply })
            .await
            .map_err(|_| ActorError::Stopped)?;
        rx.await.map_err(|_| self.no_reply())
    }

    /// A reply channel closed unanswered: the actor stopped first, or the reply panicked.
    fn no_reply(&self) -> ActorError {
        if self.tx.is_closed() {
            ActorError::Stopped
        } else {
            ActorError::NoAnswer
        }
    }

    /// Answers `f` from the state after every earlier message.
    pub async fn read_state<T: Send + 'static>(
        &self,
        f: impl FnOnce(&CoordinatorState) -> T + Send + 'static,
    ) -> Result<T, ActorError> {
        self.read(move |fold| f(&fold.state)).await
    }

    /// The request index, when the coordinator keeps one.
    pub fn index(&self) -> Option<&crate::index::IndexWriter> {
        self.index.as_ref()
    }

    /// Resolves once the actor has stopped (for any reason).
    pub async fn stopped(&self) {
        self.tx.closed().await
    }
}
