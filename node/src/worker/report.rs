//! What a worker makes of a job: the report of its generation or sub-task output, committed,
//! signed and sealed ([`crate::commit`]), or a signed refusal; shared by the per-slot workers
//! and the batched one.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use prlx_events::event::RefusalReason;
use prlx_events::protocol::{RefusalReport, ResultReport, SubtaskWork};
use prlx_events::TaskId;
use rsa::rand_core::OsRng;
use tokio::sync::mpsc::UnboundedSender;
use tracing::{info, warn};

use crate::commit::{commit_output, commit_refusal, commit_result, result_body, Identity, Job};
use crate::engine::{Engine, EngineError, Generation};
use crate::fault::FaultDrill;
use crate::trace::JobTrace;

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

/// What a worker shares with its siblings.
pub(super) struct Shared {
    pub(super) identity: Arc<Identity>,
    pub(super) done: UnboundedSender<Finished>,
    pub(super) draining: Arc<AtomicBool>,
    pub(super) busy: Arc<AtomicUsize>,
    /// A fault drill to apply to every job; `None` on an honest node.
    pub(super) drill: Option<Arc<FaultDrill>>,
}

/// False (and says why) for a job not to start: the node is draining, its deadline passed
/// while it waited, or a `silent` drill drops every job.
pub(super) fn worth_starting(shared: &Shared, job: &Job) -> bool {
    let (task, attempt) = (job.task, job.attempt);
    if shared.draining.load(Ordering::SeqCst) {
        info!(
            "not starting {task} attempt {attempt}: shutting down; the \
             coordinator re-dispatches it after its deadline"
        );
        return false;
    }
    if job.deadline_at <= Utc::now() {
        info!(
            "not starting {task} attempt {attempt}: its deadline passed while \
             it waited; the coordinator re-dispatches it"
        );
        return false;
    }
    if shared.drill.as_ref().is_some_and(|d| !d.reports()) {
        warn!(
            "FAULT DRILL silent: dropping {task} attempt {attempt} unrun and \
             unreported"
        );
        return false;
    }
    true
}

/// Logs a job's outcome and hands its report to the reporter.
pub(super) fn deliver(
    shared: &Shared,
    task: TaskId,
    attempt: u32,
    outcome: Result<Finished, String>,
) {
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

pub(super) fn run_job(
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
                Report::Refusal(commit_refusal(identity, job, reason)),
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
    match engine.generate(&job.body.prompt, job.body.max_tokens) {
        Ok(generation) => report_generation(job, &generation, started, trace, identity, drill),
        Err(e) => report_engine_error(job, &e, started, trace, identity),
    }
}

/// The signed report of a finished generation (a drill's defective one when drilling).
pub(super) fn report_generation(
    job: &Job,
    generation: &Generation,
    started: Instant,
    mut trace: Option<JobTrace>,
    identity: &Identity,
    drill: Option<&FaultDrill>,
) -> Result<Finished, String> {
    if let Some(trace) = &mut trace {
        let t = &generation.timing;
        trace.mark_after("tokenized", t.tokenize);
        trace.mark_after("prefilled", t.prefill);
        trace.mark_after("decoded", t.decode);
        trace.mark("generated");
    }
    let result = result_body(generation).map_err(|e| e.to_string())?;
    let tokens = generation.generated_tokens;
    let report = Report::Result(match drill {
        None => commit_result(identity, job, &result, tokens, &mut OsRng),
        Some(drill) => {
            warn_drill(drill, job);
            drill.commit(identity, job, &result, tokens, &mut OsRng)
        }
    });
    let trace = trace.map(|mut trace| {
        trace.mark("committed");
        trace
    });
    Ok(finish(job, report, started, trace))
}

/// A signed refusal when the engine's error calls for one (a prompt too long for the
/// context); otherwise the reason nothing is reported.
pub(super) fn report_engine_error(
    job: &Job,
    e: &EngineError,
    started: Instant,
    trace: Option<JobTrace>,
    identity: &Identity,
) -> Result<Finished, String> {
    let Some(reason) = refusal_reason(e) else {
        let kind = if e.is_rejection() {
            "the engine rejected the request"
        } else {
            "the engine failed"
        };
        return Err(format!("{kind}: {e}"));
    };
    let report = Report::Refusal(commit_refusal(identity, job, reason));
    Ok(finish(job, report, started, trace))
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
