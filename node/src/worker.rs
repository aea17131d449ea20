//! Workers: one OS thread per engine, each engine owned by its thread.
//!
//! `Session::run` takes `&mut self`, so an engine is never shared: a node with `slots = 2`
//! serving two models holds four engines on four threads, and the threads of one model take
//! jobs from that model's queue. A worker turns a job into a [`Finished`] report — generation,
//! then canonical result bytes, proof-of-execution, signature and sealing ([`crate::commit`])
//! — and hands it to the reporter; it never talks to the network itself.
//!
//! Work the engine cannot run (a prompt whose tokens plus `max_tokens` exceed the model's
//! context) becomes a signed refusal instead, so the coordinator moves the request on at
//! once rather than after the deadline, and without holding it against this node. Any other
//! engine error is reported as nothing: the deadline moves the work on.
//!
//! A fault drill ([`crate::fault`]), when one is set, replaces `commit_result` for every job
//! (or, for `silent`, drops every job); without one the workers never consult it.
//!
//! Draining: once [`WorkerPool::drain`] is called, a worker finishes the job it is running and
//! skips every queued one (the coordinator re-dispatches those after their deadline).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use prlx_events::event::RefusalReason;
use prlx_events::protocol::{RefusalReport, ResultReport, SubtaskWork};
use prlx_events::TaskId;
use rsa::rand_core::OsRng;
use tokio::sync::mpsc::UnboundedSender;
use tracing::{info, warn};

use crate::engine::{Engine, EngineError};
use crate::fault::FaultDrill;
use crate::trace::JobTrace;

// Where they were before `commit` had a module of its own; callers outside the crate use these
// paths.
pub use crate::commit::{
    commit_output, commit_refusal, commit_result, result_body, BadModelHash, Identity, Job,
};

/// What a node reports for a job: its result, or its refusal of work it cannot run.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(untagged)]
pub enum Report {
    Result(ResultReport),
    Refusal(RefusalReport),
}

impl Report {
    /// The coordinator's endpoint under `/v1/nodes/{id}/` that takes it.
    pub fn endpoint(&self) -> &'static str {
        match self {
            Report::Result(_) => "results",
            Report::Refusal(_) => "refusals",
        }
    }
}

/// A report ready to post.
#[derive(Debug, Clone)]
pub struct Finished {
    pub task: TaskId,
    pub attempt: u32,
    pub deadline_at: DateTime<Utc>,
    pub report: Report,
    pub elapsed: Duration,
    /// The job's trace, carried on to the reporter.
    pub trace: Option<JobTrace>,
}

/// The engines' threads and their queues.
#[derive(Debug)]
pub struct WorkerPool {
    queues: BTreeMap<String, mpsc::Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    draining: Arc<AtomicBool>,
    busy: Arc<AtomicUsize>,
}

/// What a worker shares with its siblings.
struct Shared {
    identity: Arc<Identity>,
    done: UnboundedSender<Finished>,
    draining: Arc<AtomicBool>,
    busy: Arc<AtomicUsize>,
    /// A fault drill to apply to every job; `None` on an honest node.
    drill: Option<Arc<FaultDrill>>,
}

impl WorkerPool {
    /// Starts one thread per engine. Finished reports go to `done`. `drill` makes every
    /// report defective on purpose (see [`crate::fault`]); `None` for an honest node.
    pub fn start(
        engines: Vec<Engine>,
        identity: Arc<Identity>,
        done: UnboundedSender<Finished>,
        drill: Option<Arc<FaultDrill>>,
    ) -> std::io::Result<WorkerPool> {
        let draining = Arc::new(AtomicBool::new(false));
        let busy = Arc::new(AtomicUsize::new(0));
        let mut queues = BTreeMap::new();
        let mut receivers: BTreeMap<String, Arc<Mutex<mpsc::Receiver<Job>>>> = BTreeMap::new();
        let mut workers = Vec::with_capacity(engines.len());
        for (i, engine) in engines.into_iter().enumerate() {
            let model = engine.reference().to_owned();
            let rx = receivers.entry(model.clone()).or_insert_with(|| {
                let (tx, rx) = mpsc::channel();
                queues.insert(model.clone(), tx);
                Arc::new(Mutex::new(rx))
            });
            let rx = Arc::clone(rx);
            let shared = Shared {
                identity: Arc::clone(&identity),
                done: done.clone(),
                draining: Arc::clone(&draining),
                busy: Arc::clone(&busy),
                drill: drill.clone(),
            };
            let worker = std::thread::Builder::new()
                .name(format!("worker-{i}-{model}"))
                .spawn(move || work(engine, &rx, &shared))?;
            workers.push(worker);
        }
        Ok(WorkerPool {
            queues,
            workers,
            draining,
            busy,
        })
    }

    pub fn serves(&self, model: &str) -> bool {
        self.queues.contains_key(model)
    }

    /// Queues `job` for a worker of its model; gives it back if no worker serves that model.
    pub fn submit(&self, job: Job) -> Result<(), Box<Job>> {
        match self.queues.get(&job.body.model) {
            Some(queue) => queue.send(job).map_err(|e| Box::new(e.0)),
            None => Err(Box::new(job)),
        }
    }

    /// Jobs running now.
    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::SeqCst)
    }

    /// Stops taking work: running jobs finish, queued ones are skipped, and each thread ends
    /// after its current job. Returns the threads (joining them is optional: they also end
    /// with the process).
    pub fn drain(self) -> Vec<JoinHandle<()>> {
        self.draining.store(true, Ordering::SeqCst);
        drop(self.queues);
        self.workers
    }
}

fn work(mut engine: Engine, queue: &Mutex<mpsc::Receiver<Job>>, shared: &Shared) {
    loop {
        // The lock guards the queue only, for as long as it takes to take one job.
        let mut job = match queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .recv()
        {
            Ok(job) => job,
            Err(_) => return, // the pool is draining and the queue is empty
        };
        let (task, attempt) = (job.task, job.attempt);
        if shared.draining.load(Ordering::SeqCst) {
            info!(
                "not starting {task} attempt {attempt}: shutting down; the \
                 coordinator re-dispatches it after its deadline"
            );
            continue;
        }
        if job.deadline_at <= Utc::now() {
            info!(
                "not starting {task} attempt {attempt}: its deadline passed while \
                 it waited; the coordinator re-dispatches it"
            );
            continue;
        }
        if shared.drill.as_ref().is_some_and(|d| !d.reports()) {
            warn!(
                "FAULT DRILL silent: dropping {task} attempt {attempt} unrun and \
                 unreported"
            );
            continue;
        }
        shared.busy.fetch_add(1, Ordering::SeqCst);
        let trace = job.trace.take();
        let outcome = run_job(
            &mut engine,
            &job,
            trace,
            &shared.identity,
            shared.drill.as_deref(),
        );
        shared.busy.fetch_sub(1, Ordering::SeqCst);
        match outcome {
            Ok(finished) => {
                match &finished.report {
                    Report::Result(r) => info!(
                        "finished {task} attempt {attempt}: {} tokens in {} ms",
                        r.token_count,
                        finished.elapsed.as_millis()
                    ),
                    Report::Refusal(r) => warn!(
                        "declining {task} attempt {attempt}: {}; the coordinator moves \
                         it to another node",
                        r.reason
                    ),
                }
                // The reporter is gone only when the daemon is exiting anyway.
                let _ = shared.done.send(finished);
            }
            Err(why) => warn!(
                "warning: not reporting {task} attempt {attempt}: {why}; the \
                 coordinator re-dispatches it after its deadline"
            ),
        }
    }
}

fn run_job(
    engine: &mut Engine,
    job: &Job,
    mut trace: Option<JobTrace>,
    identity: &Identity,
    drill: Option<&FaultDrill>,
) -> Result<Finished, String> {
    let started = Instant::now();
    if let Some(trace) = &mut trace {
        trace.mark("started");
    }
    info!(
        "running {} attempt {} on {} (max_tokens {})",
        job.task,
        job.attempt,
        engine.reference(),
        job.body.max_tokens
    );
    if let Some(work) = &job.body.subtask {
        let output = run_subtask(engine, work)?;
        if let Some(trace) = &mut trace {
            trace.mark("generated");
        }
        if output.len() > prlx_workloads::MAX_OUTPUT_BYTES {
            // Too large to report (and to lie on the log): declined, signed. The data makes
            // it so, and any node would find the same, so it costs this node no standing.
            let reason = RefusalReason::OutputTooLarge {
                bytes: output.len() as u64,
                limit: prlx_workloads::MAX_OUTPUT_BYTES as u64,
            };
            return Ok(finish(
                job,
                Report::Refusal(commit_refusal(identity, job, reason, &mut OsRng)),
                started,
                trace,
            ));
        }
        let report = match drill {
            None => commit_output(identity, job, &output, &mut OsRng),
            Some(drill) => {
                warn_drill(drill, job);
                drill.commit_output(identity, job, &output, &mut OsRng)
            }
        };
        return Ok(finish(job, Report::Result(report), started, trace));
    }
    let generation = match engine.generate(&job.body.prompt, job.body.max_tokens) {
        Ok(generation) => generation,
        Err(e) => {
            let Some(reason) = refusal_reason(&e) else {
                let kind = if e.is_rejection() {
                    "the engine rejected the request"
                } else {
                    "the engine failed"
                };
                return Err(format!("{kind}: {e}"));
            };
            return Ok(finish(
                job,
                Report::Refusal(commit_refusal(identity, job, reason, &mut OsRng)),
                started,
                trace,
            ));
        }
    };
    if let Some(trace) = &mut trace {
        let t = &generation.timing;
        trace.mark_after("tokenized", t.tokenize);
        trace.mark_after("prefilled", t.prefill);
        trace.mark_after("decoded", t.decode);
        trace.mark("generated");
    }
    let result = result_body(&generation).map_err(|e| e.to_string())?;
    let tokens = generation.generated_tokens;
    let report = Report::Result(match drill {
        None => commit_result(identity, job, &result, tokens, &mut OsRng),
        Some(drill) => {
            warn_drill(drill, job);
            drill.commit(identity, job, &result, tokens, &mut OsRng)
        }
    });
    Ok(Finished {
        task: job.task,
        attempt: job.attempt,
        deadline_at: job.deadline_at,
        report,
        elapsed: started.elapsed(),
        trace: trace.map(|mut trace| {
            trace.mark("committed");
            trace
        }),
    })
}

/// The job's report, with the time it took and its trace.
fn finish(job: &Job, report: Report, started: Instant, trace: Option<JobTrace>) -> Finished {
    Finished {
        task: job.task,
        attempt: job.attempt,
        deadline_at: job.deadline_at,
        report,
        elapsed: started.elapsed(),
        trace,
    }
}

fn warn_drill(drill: &FaultDrill, job: &Job) {
    warn!(
        "FAULT DRILL {}: the report of {} attempt {} is defective on purpose",
        drill.fault(),
        job.task,
        job.attempt
    );
}

/// Runs a general-path sub-task with the built-in workload library: a batch shard through
/// this worker's engine, any other kind in pure integer code. A malformed or hostile input is
/// an error (not reported: the coordinator re-dispatches after the deadline), never a panic.
fn run_subtask(engine: &mut Engine, work: &SubtaskWork) -> Result<Vec<u8>, String> {
    let kind = prlx_workloads::SubtaskKind::from_name(&work.kind)
        .ok_or_else(|| format!("unknown sub-task kind {:?}", work.kind))?;
    info!(
        "running sub-task kind {kind} on {} input bytes",
        work.input.len()
    );
    let mut adapter = EngineAdapter(engine);
    prlx_workloads::execute_with_engine(kind, &work.input, &mut adapter)
        .map_err(|e| format!("sub-task {kind}: {e}"))
}

/// An engine as the workload library's inference seam: a shard's prompts run on the model the
/// worker serves (the coordinator only sends a shard of the request's model). Public so a
/// one-process reference runs prompts exactly as a node does.
pub struct EngineAdapter<'a>(pub &'a mut Engine);

impl std::fmt::Debug for EngineAdapter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("EngineAdapter")
            .field(&self.0.reference())
            .finish()
    }
}

impl prlx_workloads::InferenceEngine for EngineAdapter<'_> {
    fn infer(&mut self, model: &str, prompt: &str, max_tokens: u32) -> Result<String, String> {
        if model != self.0.reference() {
            return Err(format!(
                "a shard of {model:?} sent to a worker of {:?}",
                self.0.reference()
            ));
        }
        match self.0.generate(prompt, max_tokens) {
            Ok(generation) => Ok(generation.text),
            // The prompt is at fault (empty, or too long for the context), not the node: every
            // node of this model file finds the same, so that prompt's place in the shard's
            // output says so, the rest of the shard still runs, and replicas still compare.
            // Failing the shard instead would leave it unreported, and an honest node would
            // miss its deadline over a submitter's prompt.
            Err(e) if e.is_rejection() => Ok(format!("[not run: {e}]")),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The refusal an engine error calls for, if it is one: only a prompt too long for the
/// model's context, which no node of this model file could run either. The numbers are the
/// engine's, as the coordinator checks them (a count past `u32` saturates and still exceeds).
fn refusal_reason(e: &EngineError) -> Option<RefusalReason> {
    let wide = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    match e {
        EngineError::ContextOverflow {
            prompt_tokens,
            max_tokens,
            context_length,
        } => Some(RefusalReason::ContextExceeded {
            prompt_tokens: wide(*prompt_tokens),
            max_tokens: *max_tokens,
            context: wide(*context_length),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_context_overflow_is_declined() {
        let overflow = EngineError::ContextOverflow {
            prompt_tokens: 12,
            max_tokens: 4095,
            context_length: 4096,
        };
        assert_eq!(
            refusal_reason(&overflow),
            Some(RefusalReason::ContextExceeded {
                prompt_tokens: 12,
                max_tokens: 4095,
                context: 4096,
            })
        );
        assert_eq!(refusal_reason(&EngineError::EmptyPrompt), None);
        assert_eq!(refusal_reason(&EngineError::CudaNotCompiled), None);
    }
}
