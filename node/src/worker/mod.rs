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

use tokio::sync::mpsc::UnboundedSender;

use crate::engine::Engine;
use crate::fault::FaultDrill;

mod batched;
mod report;

use report::{deliver, run_job, worth_starting, Shared};
pub use report::{EngineAdapter, Finished, Report};

// Where they were before `commit` had a module of its own; callers outside the crate use these
// paths.
pub use crate::commit::{
    commit_output, commit_refusal, commit_result, result_body, BadModelHash, Identity, Job,
};

/// The engines' threads and their queues.
#[derive(Debug)]
pub struct WorkerPool {
    queues: BTreeMap<String, mpsc::Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    draining: Arc<AtomicBool>,
    busy: Arc<AtomicUsize>,
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
        WorkerPool::spawn(engines, None, identity, done, drill)
    }

    /// As [`WorkerPool::start`], but each engine decodes up to `capacity` jobs at once
    /// (continuous batching, [`batched`]): give one engine per model.
    pub fn start_batched(
        engines: Vec<Engine>,
        capacity: usize,
        identity: Arc<Identity>,
        done: UnboundedSender<Finished>,
        drill: Option<Arc<FaultDrill>>,
    ) -> std::io::Result<WorkerPool> {
        WorkerPool::spawn(engines, Some(capacity), identity, done, drill)
    }

    fn spawn(
        engines: Vec<Engine>,
        capacity: Option<usize>,
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
            let shared = || Shared {
                identity: Arc::clone(&identity),
                done: done.clone(),
                draining: Arc::clone(&draining),
                busy: Arc::clone(&busy),
                drill: drill.clone(),
            };
            let worker = std::thread::Builder::new().name(format!("worker-{i}-{model}"));
            let worker = match capacity {
                None => {
                    let shared = shared();
                    worker.spawn(move || work(engine, &rx, &shared))?
                }
                Some(capacity) => {
                    // A batch's finished jobs are committed (PoE, signature, seal: ~5 ms
                    // each) on a thread of their own, so the batch keeps decoding meanwhile.
                    let (finished, outcomes) = std::sync::mpsc::channel();
                    let committer = shared();
                    workers.push(
                        std::thread::Builder::new()
                            .name(format!("commit-{i}-{model}"))
                            .spawn(move || batched::commit_all(outcomes, &committer))?,
                    );
                    let shared = shared();
                    worker.spawn(move || {
                        batched::work_batched(engine, capacity, &rx, &shared, finished)
                    })?
                }
            };
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
        if !worth_starting(shared, &job) {
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
        deliver(shared, task, attempt, outcome);
    }
}
