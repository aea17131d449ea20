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

use std::panic::AssertUnwindSafe;

use chrono::Utc;
use prlx_events::protocol::ResultReport;
use prlx_events::NodeId;
use prlx_projections::{CoordinatorState, Fold};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::decide::{Command, Submission};
use crate::shell::{Coordinator, Outcome, ShellError};

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

type ExecuteReply = Box<dyn FnOnce(&Result<Outcome, ShellError>, &Fold<CoordinatorState>) + Send>;
type ReadReply = Box<dyn FnOnce(&Fold<CoordinatorState>) + Send>;

enum Message {
    Execute { intake: Intake, reply: ExecuteReply },
    Read { reply: ReadReply },
}

/// A cloneable way to reach the actor. Every HTTP handler holds one; none holds the coordinator.
#[derive(Debug, Clone)]
pub struct CoordinatorHandle {
    tx: mpsc::Sender<Message>,
}

/// Starts the actor on the current Tokio runtime. The task ends when every handle is dropped
/// and the queue is drained (`Ok`), or after a shell failure (`Err`).
pub fn spawn(coordinator: Coordinator) -> (CoordinatorHandle, JoinHandle<Result<(), ShellError>>) {
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    let task = tokio::spawn(run(coordinator, rx));
    (CoordinatorHandle { tx }, task)
}

/// The longest the actor sleeps without looking at the clock, so deadlines are noticed
/// promptly even when no message arrives.
const TIMER_TICK: std::time::Duration = std::time::Duration::from_millis(250);

async fn run(
    mut coordinator: Coordinator,
    mut rx: mpsc::Receiver<Message>,
) -> Result<(), ShellError> {
    // Whatever the log owes from before a restart (grants, expiries, dispatches).
    coordinator.housekeeping(Utc::now()).await?;
    loop {
        // The timer service: wake at the next deadline (or the tick), expire what is due.
        let wait = coordinator
            .next_deadline()
            .and_then(|at| (at - Utc::now()).to_std().ok())
            .unwrap_or(TIMER_TICK)
            .min(TIMER_TICK);
        let message = tokio::select! {
            m = rx.recv() => match m {
                Some(m) => m,
                None => break,
            },
            () = tokio::time::sleep(wait) => {
                coordinator.housekeeping(Utc::now()).await?;
                continue;
            }
        };
        match message {
            Message::Read { reply } => answer(|| reply(coordinator.state_fold())),
            Message::Execute { intake, reply } => {
                let command = match intake {
                    Intake::Command(command) => Ok(command),
                    Intake::Submission {
                        submission,
                        payload,
                    } => Ok(coordinator.submission(*submission, &payload)),
                    Intake::Report { node, report } => coordinator.completion(node, &report),
                };
                let command = match command {
                    Ok(c) => c,
                    Err(refused) => {
                        let result = Ok(Outcome::Refused(refused.to_string()));
                        answer(|| reply(&result, coordinator.state_fold()));
                        continue;
                    }
                };
                if matches!(command, Command::RegisterNode(_)) {
                    coordinator.note_registration();
                }
                let result = coordinator.execute(command).await;
                answer(|| reply(&result, coordinator.state_fold()));
                result?;
                coordinator.housekeeping(Utc::now()).await?;
            }
        }
    }
    Ok(())
}

/// Runs a reply function. A panic in one is the caller's bug; it only reads the state, so the
/// actor carries on and that caller sees [`ActorError::NoAnswer`].
fn answer(f: impl FnOnce()) {
    let _ = std::panic::catch_unwind(AssertUnwindSafe(f));
}

impl CoordinatorHandle {
    /// Decides `intake`; `then` turns the outcome and the state right after it into the answer.
    pub async fn execute<T: Send + 'static>(
        &self,
        intake: Intake,
        then: impl FnOnce(&Outcome, &CoordinatorState) -> T + Send + 'static,
    ) -> Result<(Outcome, T), ActorError> {
        let (tx, rx) = oneshot::channel();
        let reply: ExecuteReply = Box::new(move |result, fold| {
            let answer = match result {
                Ok(outcome) => Ok((outcome.clone(), then(outcome, &fold.state))),
                Err(e) => Err(ActorError::Failed(e.to_string())),
            };
            let _ = tx.send(answer);
        });
        self.tx
            .send(Message::Execute { intake, reply })
            .await
            .map_err(|_| ActorError::Stopped)?;
        rx.await.map_err(|_| self.no_reply())?
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
            let _ = tx.send(f(fold));
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

    /// Resolves once the actor has stopped (for any reason).
    pub async fn stopped(&self) {
        self.tx.closed().await
    }
}
