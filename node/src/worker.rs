//! Workers: one OS thread per engine, each engine owned by its thread.
//!
//! `Session::run` takes `&mut self`, so an engine is never shared: a node with `slots = 2`
//! serving two models holds four engines on four threads, and the threads of one model take
//! jobs from that model's queue. A worker turns a job into a [`Finished`] report — generation,
//! canonical result bytes, proof-of-execution, signature, sealing — and hands it to the
//! reporter; it never talks to the network itself.
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
use prlx_events::crypto::{
    proof_of_execution, result_statement, seal_message, sign, Direction, SessionKey,
};
use prlx_events::protocol::{DispatchBody, ResultBody, ResultReport};
use prlx_events::seal::NONCE_LEN;
use prlx_events::{Hash32, NodeId, TaskId};
use rsa::rand_core::{CryptoRngCore, OsRng};
use rsa::RsaPrivateKey;
use tokio::sync::mpsc::UnboundedSender;

use crate::engine::{Engine, Generation};
use crate::fault::FaultDrill;
use crate::trace::JobTrace;

/// The node's identity: what its workers sign with.
pub struct Identity {
    pub node: NodeId,
    pub key: RsaPrivateKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Identity")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// An opened dispatch, ready to run.
#[derive(Debug, Clone)]
pub struct Job {
    pub task: TaskId,
    pub attempt: u32,
    pub epoch: u64,
    pub session: SessionKey,
    pub body: DispatchBody,
    pub deadline_at: DateTime<Utc>,
    /// The phase trace, with `PRLX_NODE_TRACE` set ([`crate::trace`]); `None` otherwise.
    pub trace: Option<JobTrace>,
}

/// A result ready to report.
#[derive(Debug, Clone)]
pub struct Finished {
    pub task: TaskId,
    pub attempt: u32,
    pub deadline_at: DateTime<Utc>,
    pub report: ResultReport,
    pub elapsed: Duration,
    /// The job's trace, carried on to the reporter.
    pub trace: Option<JobTrace>,
}

/// Why a result body could not be built from a generation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the engine reported a model SHA-256 that is not 64 hex characters: {0:?}")]
pub struct BadModelHash(String);

/// The canonical result of a generation: what the PoE commits to and replicas compare.
pub fn result_body(generation: &Generation) -> Result<ResultBody, BadModelHash> {
    let model_sha256: Hash32 = generation
        .model_sha256
        .parse()
        .map_err(|_| BadModelHash(generation.model_sha256.clone()))?;
    Ok(ResultBody {
        text: generation.text.clone(),
        token_ids: generation.token_ids.clone(),
        model_sha256,
        decoding: generation.decoding.to_owned(),
        stopped_at_eos: generation.stopped_at_eos,
    })
}

/// Commits to `result` for `job` and builds the report: PoE over the canonical bytes, the
/// node's signature over the result statement, and the bytes sealed under the session key in
/// the `Result` direction.
pub fn commit_result(
    identity: &Identity,
    job: &Job,
    result: &ResultBody,
    token_count: u32,
    rng: &mut impl CryptoRngCore,
) -> ResultReport {
    commit_with_poe_of(identity, job, result, token_count, identity.node, rng)
}

/// [`commit_result`] with the PoE computed over `poe_node`: the node's own id for an honest
/// report; the `bad-poe` fault drill passes another.
pub(crate) fn commit_with_poe_of(
    identity: &Identity,
    job: &Job,
    result: &ResultBody,
    token_count: u32,
    poe_node: NodeId,
    rng: &mut impl CryptoRngCore,
) -> ResultReport {
    let bytes = result.canonical_bytes();
    let poe = proof_of_execution(job.task, &bytes, poe_node);
    let statement = result_statement(job.task.request, job.task, identity.node, job.attempt, poe);
    let signature = sign(&identity.key, &statement, rng);
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let sealed_result = seal_message(
        &job.session,
        Direction::Result,
        job.task,
        identity.node,
        job.attempt,
        job.epoch,
        nonce,
        &bytes,
    );
    ResultReport {
        request_id: job.task.request,
        attempt: job.attempt,
        epoch: job.epoch,
        sealed_result,
        poe,
        signature,
        token_count,
    }
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
            eprintln!(
                "prlx-node: not starting {task} attempt {attempt}: shutting down; the \
                 coordinator re-dispatches it after its deadline"
            );
            continue;
        }
        if job.deadline_at <= Utc::now() {
            eprintln!(
                "prlx-node: not starting {task} attempt {attempt}: its deadline passed while \
                 it waited; the coordinator re-dispatches it"
            );
            continue;
        }
        if shared.drill.as_ref().is_some_and(|d| !d.reports()) {
            eprintln!(
                "prlx-node: FAULT DRILL silent: dropping {task} attempt {attempt} unrun and \
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
                eprintln!(
                    "prlx-node: finished {task} attempt {attempt}: {} tokens in {} ms",
                    finished.report.token_count,
                    finished.elapsed.as_millis()
                );
                // The reporter is gone only when the daemon is exiting anyway.
                let _ = shared.done.send(finished);
            }
            Err(why) => eprintln!(
                "prlx-node: warning: not reporting {task} attempt {attempt}: {why}; the \
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
    eprintln!(
        "prlx-node: running {} attempt {} on {} (max_tokens {})",
        job.task,
        job.attempt,
        engine.reference(),
        job.body.max_tokens
    );
    let generation = engine
        .generate(&job.body.prompt, job.body.max_tokens)
        .map_err(|e| {
            let kind = if e.is_rejection() {
                "the engine rejected the request"
            } else {
                "the engine failed"
            };
            format!("{kind}: {e}")
        })?;
    if let Some(trace) = &mut trace {
        let t = &generation.timing;
        trace.mark_after("tokenized", t.tokenize);
        trace.mark_after("prefilled", t.prefill);
        trace.mark_after("decoded", t.decode);
        trace.mark("generated");
    }
    let result = result_body(&generation).map_err(|e| e.to_string())?;
    let tokens = generation.generated_tokens;
    let report = match drill {
        None => commit_result(identity, job, &result, tokens, &mut OsRng),
        Some(drill) => {
            eprintln!(
                "prlx-node: FAULT DRILL {}: the report of {} attempt {} is defective on purpose",
                drill.fault(),
                job.task,
                job.attempt
            );
            drill.commit(identity, job, &result, tokens, &mut OsRng)
        }
    };
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

#[cfg(test)]
mod tests {
    use super::*;
    use prlx_events::crypto::{node_id_of, open_message, verify};
    use prlx_events::RequestId;

    #[test]
    fn a_committed_result_checks_out_the_way_the_coordinator_checks_it() {
        let key = RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
        let node = node_id_of(&key.to_public_key());
        let public = key.to_public_key();
        let identity = Identity { node, key };
        let session = SessionKey::generate(&mut OsRng);
        let task = TaskId::whole(RequestId(42));
        let job = Job {
            task,
            attempt: 1,
            epoch: 3,
            session: session.clone(),
            body: DispatchBody {
                request_id: RequestId(42),
                model: "tiny-test-v1".into(),
                prompt: "p".into(),
                max_tokens: 4,
            },
            deadline_at: Utc::now(),
            trace: None,
        };
        let result = ResultBody {
            text: "abc".into(),
            token_ids: vec![97, 98, 99],
            model_sha256: Hash32([5; 32]),
            decoding: "greedy".into(),
            stopped_at_eos: false,
        };
        let report = commit_result(&identity, &job, &result, 3, &mut OsRng);
        assert_eq!(
            (report.request_id, report.attempt, report.epoch),
            (RequestId(42), 1, 3)
        );
        let opened = open_message(
            &session,
            Direction::Result,
            task,
            node,
            1,
            3,
            &report.sealed_result,
        )
        .unwrap();
        assert_eq!(opened, result.canonical_bytes());
        assert_eq!(report.poe, proof_of_execution(task, &opened, node));
        let statement = result_statement(RequestId(42), task, node, 1, report.poe);
        assert!(verify(&public, &statement, &report.signature));
        // Sealed as a result, so it cannot pass as a dispatch.
        assert!(open_message(
            &session,
            Direction::Dispatch,
            task,
            node,
            1,
            3,
            &report.sealed_result
        )
        .is_err());
        // The identity's Debug never shows the key.
        assert!(!format!("{identity:?}").contains("RsaPrivateKey"));
    }

    #[test]
    fn a_malformed_model_hash_is_an_error_not_a_zero_hash() {
        let generation = Generation {
            token_ids: vec![],
            text: String::new(),
            prompt_tokens: 1,
            generated_tokens: 0,
            stopped_at_eos: true,
            eos_token_id: Some(2),
            model_sha256: "zz".into(),
            decoding: "greedy",
            timing: Default::default(),
        };
        assert!(result_body(&generation).is_err());
    }
}
