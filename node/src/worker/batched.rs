//! The batched worker: one thread and one engine per model, decoding up to `slots` requests
//! at once ([`crate::batch`]). Jobs are admitted between decode steps while the batch has
//! room; each leaves at its own end and is reported as a per-slot worker would report it
//! (the bytes are the same: see the batch module). A job whose deadline passes mid-way
//! leaves the batch unreported (the coordinator re-dispatches it), freeing its room at once.
//!
//! A general-path sub-task runs on the same engine alone, between two steps: its batch
//! shards are single-stream generations, and the batch waits for it.
//!
//! What leaves the batch is committed (PoE, RSA signature, sealing: ~5 ms a job) and reported
//! on a committer thread of its own ([`commit_all`]), so the batch keeps decoding meanwhile:
//! measured, committing on the batch's thread cost 16 jobs' worth of it per round.

use std::sync::atomic::Ordering;
use std::sync::{mpsc, Mutex};
use std::time::Instant;

use chrono::Utc;
use tracing::info;

use super::report::{
    deliver, report_engine_error, report_generation, run_job, worth_starting, Shared,
};
use crate::batch::{drive, BatchEngine, Next, Outcome, Request};
use crate::commit::Job;
use crate::engine::Engine;
use crate::trace::JobTrace;

/// A job in the batch.
pub(super) struct Running {
    job: Job,
    trace: Option<JobTrace>,
    started: Instant,
}

pub(super) fn work_batched(
    engine: Engine,
    capacity: usize,
    queue: &Mutex<mpsc::Receiver<Job>>,
    shared: &Shared,
    finished: mpsc::Sender<Outcome<Running>>,
) {
    let mut batch = BatchEngine::new(engine, capacity);
    info!(
        "serving {} with continuous batching: up to {} requests at once",
        batch.engine().reference(),
        batch.capacity()
    );
    decode(&mut batch, queue, shared, finished);
}

/// The batch's loop: admit from `queue` while there is room, step, hand what leaves to
/// `finished`.
fn decode(
    batch: &mut BatchEngine<Running>,
    queue: &Mutex<mpsc::Receiver<Job>>,
    shared: &Shared,
    finished: mpsc::Sender<Outcome<Running>>,
) {
    drive(
        batch,
        |batch, wait| {
            // The lock guards the queue only: this thread is its model's only reader.
            let queue = queue
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let next = if wait {
                queue.recv().map_err(|_| true)
            } else {
                queue
                    .try_recv()
                    .map_err(|e| e == mpsc::TryRecvError::Disconnected)
            };
            drop(queue);
            let mut job = match next {
                Ok(job) => job,
                Err(true) => return Next::Closed, // draining, and the queue is empty
                Err(false) => return Next::Idle,
            };
            if !worth_starting(shared, &job) {
                return Next::Idle;
            }
            shared.busy.fetch_add(1, Ordering::SeqCst);
            let mut trace = job.trace.take();
            if let Some(trace) = &mut trace {
                trace.mark("started");
            }
            if job.body.subtask.is_some() {
                let engine = batch.engine_mut();
                let outcome = run_job(
                    engine,
                    &job,
                    trace,
                    &shared.identity,
                    shared.drill.as_deref(),
                );
                shared.busy.fetch_sub(1, Ordering::SeqCst);
                deliver(shared, job.task, job.attempt, outcome);
                return Next::Idle;
            }
            info!(
                "admitting {} attempt {} to the batch of {} (max_tokens {}, {} running)",
                job.task,
                job.attempt,
                batch.engine().reference(),
                job.body.max_tokens,
                batch.running()
            );
            // The deadline on the node's monotonic clock: the wall clock may step.
            let left = (job.deadline_at - Utc::now()).to_std().unwrap_or_default();
            Next::Admit(Request {
                prompt: job.body.prompt.clone(),
                max_tokens: job.body.max_tokens,
                deadline: Some(Instant::now() + left),
                tag: Running {
                    job,
                    trace,
                    started: Instant::now(),
                },
            })
        },
        |outcome| {
            // Committing (PoE, RSA signature, sealing: ~5 ms each) happens on the committer
            // thread, so the batch keeps decoding meanwhile. It is gone only if it panicked.
            let _ = finished.send(outcome);
        },
    );
    // Closing the channel ends the committer once it has reported everything.
    drop(finished);
}

/// Commits and reports what left the batch, in the order it left.
pub(super) fn commit_all(outcomes: mpsc::Receiver<Outcome<Running>>, shared: &Shared) {
    for outcome in outcomes {
        let (task, attempt) = (outcome.tag().job.task, outcome.tag().job.attempt);
        let report = match outcome {
            Outcome::Done { tag, generation } => report_generation(
                &tag.job,
                &generation,
                tag.started,
                tag.trace,
                &shared.identity,
                shared.drill.as_deref(),
            ),
            Outcome::Failed { tag, error } => {
                report_engine_error(&tag.job, &error, tag.started, tag.trace, &shared.identity)
            }
            Outcome::Expired { generated, .. } => Err(format!(
                "its deadline passed after {generated} tokens, so it left the batch"
            )),
        };
        shared.busy.fetch_sub(1, Ordering::SeqCst);
        deliver(shared, task, attempt, report);
    }
}
