//! The I/O shell of `prlx-node run`: key, engines, registration, heartbeats, following the
//! log, handing dispatches to workers and reporting results.
//!
//! Tasks and threads:
//! - the main task follows the log: it reads records, folds them into [`Assignments`] (pure),
//!   unwraps this node's session grants, opens the dispatches that fold hands out and queues
//!   them for the workers;
//! - one OS thread per engine ([`WorkerPool`]) generates, commits and signs;
//! - a reporter task posts each finished result, retrying while the coordinator is
//!   unreachable or answers 5xx;
//! - a heartbeat task posts a heartbeat every `heartbeat` interval, and registers again if
//!   the coordinator no longer knows the node.
//!
//! On shutdown the main task stops following (no new dispatches), the pool drains (running
//! jobs finish, queued ones are left to the coordinator's deadline re-dispatch) and the
//! reporter gets up to `drain` to deliver what finished.
//!
//! # Layout
//!
//! [`run`] (this file) starts the parts in order, and stops and drains them; the files below
//! depend only on `config` and `stop`, and `heartbeat` on `registration`, never on this one.
//!
//! - `config`: [`DaemonConfig`], [`DaemonError`] and the pauses between retries.
//! - `stop`: the shutdown request as every loop checks it.
//! - `engines`: loading one engine per slot per model; the execution class ([`device_name`],
//!   [`runtime_name`]).
//! - `registration`: [`Registration`] and registering until the coordinator answers.
//! - `heartbeat`: signed heartbeats; registering again when the coordinator forgot the node.
//! - `follower`: following the log or this node's feed ([`follow_url`]), accepting session
//!   grants, opening dispatches and queueing them for the workers.
//! - `reporter`: posting each finished result until the coordinator takes or refuses it.

mod config;
mod engines;
mod follower;
mod heartbeat;
mod registration;
mod reporter;
mod stop;

pub use config::{DaemonConfig, DaemonError};
pub use engines::{device_name, runtime_name};
pub use follower::follow_url;
pub use registration::Registration;

use std::future::Future;
use std::sync::Arc;

use prlx_events::crypto::{node_id_of, public_key_pem};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::client::CoordinatorClient;
use crate::commit::Identity;
use crate::fault::{Fault, FaultDrill};
use crate::follow::Assignments;
use crate::keys::{self, KeySource, NODE_KEY_BITS};
use crate::worker::WorkerPool;

use engines::load_engines;
use follower::{follow, open_log, read_pinned_key, Follower};
use heartbeat::heartbeats;
use registration::register;
use reporter::report_results;
use stop::StopFlag;

/// How the daemon stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Asked to stop before it served anything.
    BeforeServing,
    /// Every job running at shutdown finished and its report was delivered or given up.
    Drained,
    /// The drain timeout passed with work still in flight.
    DrainTimedOut,
}

/// Runs the daemon until `shutdown` resolves (or a fatal error). See the module docs.
pub async fn run(
    config: DaemonConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Stopped, DaemonError> {
    let mut stop = StopFlag::new(shutdown);
    if let Some(fault) = config.fault {
        warn_fault_drill(fault);
    }

    let (node_key, source) = keys::load_or_create(&config.key, NODE_KEY_BITS)?;
    let node = node_id_of(&node_key.to_public_key());
    info!(
        "{} node key {}; node id {}",
        match source {
            KeySource::Loaded => "loaded",
            KeySource::Created => "created a new",
        },
        config.key.display(),
        node.0
    );
    let pinned = config
        .coordinator_key
        .as_deref()
        .map(read_pinned_key)
        .transpose()?;
    let client = CoordinatorClient::new(&config.coordinator, config.coordinator_cert.as_deref())?;
    let (log_url, feed) = follow_url(&config.log, node)?;
    if let Some(feed) = &feed {
        info!("reading this node's feed {feed}");
    }

    let loading = config.clone();
    let loaded = tokio::task::spawn_blocking(move || load_engines(&loading))
        .await
        .expect("loading engines does not panic")?;
    if stop.is_set() {
        return Ok(Stopped::BeforeServing);
    }

    let registration = Registration {
        public_key_pem: public_key_pem(&node_key.to_public_key()),
        hardware_tier: config.hardware_tier,
        models: config.models.clone(),
        slots: config.slots,
        execution_class: loaded.class.clone(),
        model_hashes: loaded.served.clone(),
        operator: config.operator.clone(),
    };
    let status = tokio::select! {
        () = stop.wait() => return Ok(Stopped::BeforeServing),
        r = register(&client, &registration, &node_key) => r?,
    };
    info!(
        "registered with {} ({})",
        client.authority(),
        if status == 201 {
            "new"
        } else {
            "already registered"
        }
    );
    // On stdout, not the log: scripts and tests read the node's id from this line.
    println!("node_id {}", node.0);

    let reader = tokio::select! {
        () = stop.wait() => return Ok(Stopped::BeforeServing),
        r = open_log(&log_url, feed.is_some()) => match r {
            Err(DaemonError::Log(error)) if feed.is_some() => {
                return Err(DaemonError::Feed { url: feed.unwrap_or_default(), error })
            }
            r => r?,
        },
    };

    let identity = Arc::new(Identity::new(node_key));
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let drill = config.fault.map(|fault| Arc::new(FaultDrill::new(fault)));
    let pool = if config.batching {
        let capacity = usize::try_from(config.slots).unwrap_or(usize::MAX);
        WorkerPool::start_batched(
            loaded.engines,
            capacity,
            Arc::clone(&identity),
            done_tx,
            drill,
        )
    } else {
        WorkerPool::start(loaded.engines, Arc::clone(&identity), done_tx, drill)
    }
    .map_err(DaemonError::Threads)?;
    let reporter = tokio::spawn(report_results(client.clone(), node, done_rx));
    let heartbeat = tokio::spawn(heartbeats(
        client.clone(),
        Arc::clone(&identity),
        registration,
        config.heartbeat,
    ));

    let mut follower = Follower::new(
        reader,
        log_url.clone(),
        Assignments::new(node, pinned),
        identity,
        loaded.served,
    );
    let followed = follow(&mut follower, &pool, &mut stop).await;
    heartbeat.abort();
    if let Err(e) = followed {
        let _ = pool.drain();
        return Err(e);
    }

    info!(
        "shutting down: taking no new dispatches; {} running job(s) finish and report \
         (up to {} s); dispatches not started are left to the coordinator's deadline re-dispatch",
        pool.busy(),
        config.drain.as_secs()
    );
    let _workers = pool.drain();
    match tokio::time::timeout(config.drain, reporter).await {
        Ok(_) => {
            info!("stopped");
            Ok(Stopped::Drained)
        }
        Err(_) => {
            warn!(
                "warning: work still in flight after {} s; stopping anyway (the coordinator \
                 re-dispatches it after its deadline)",
                config.drain.as_secs()
            );
            Ok(Stopped::DrainTimedOut)
        }
    }
}

/// Loud on purpose: a node with a fault drill must never be mistaken for an honest one.
fn warn_fault_drill(fault: Fault) {
    let bar = "!".repeat(78);
    warn!("{bar}");
    warn!(
        "WARNING: FAULT DRILL {fault}: this node {}.",
        fault.describe()
    );
    warn!("It exists to test the coordinator's validation: never run it on a real network.");
    warn!("{bar}");
}
