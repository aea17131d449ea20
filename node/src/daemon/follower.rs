//! Following the log: reading it from the start, folding it into [`Assignments`] (pure, in
//! [`crate::follow`]), accepting this node's session grants, opening the dispatches the fold
//! hands out and queueing them for the workers; waiting out the log's backend when it is away.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use prlx_events::crypto::{accept_session, parse_public_key_pem};
use prlx_events::log::feed::FeedTopics;
use prlx_events::log::{AnyReader, LogError, LogReader, LogUrl, Offset};
use prlx_events::{Envelope, Hash32, NodeId};
use rsa::RsaPublicKey;
use tracing::{info, warn};

use super::config::{retry_backoff, DaemonError};
use super::stop::StopFlag;
use crate::commit::{Identity, Job};
use crate::follow::{Applied, Assigned, Assignments, DispatchKey, GrantToAccept};
use crate::trace::{self, JobTrace};
use crate::worker::WorkerPool;

/// Records read from the log per batch.
const READ_BATCH: usize = 256;
/// How long the follower waits for the log to grow before looking again.
const FOLLOW_WAIT: Duration = Duration::from_secs(1);

/// Reads the coordinator signing key pinned with `--coordinator-key` (PEM, SPKI).
pub(super) fn read_pinned_key(path: &Path) -> Result<RsaPublicKey, DaemonError> {
    let err = |reason: String| DaemonError::PinnedKey {
        path: path.to_owned(),
        reason,
    };
    let pem = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    parse_public_key_pem(&pem).map_err(|e| err(format!("not an RSA public key in PEM: {e}")))
}

/// What the node follows: the `--log` URL, or, when it holds `{node}`, this node's feed (the
/// template filled in with its id; its URL is returned too).
pub fn follow_url(log: &str, node: NodeId) -> Result<(LogUrl, Option<String>), DaemonError> {
    if !FeedTopics::is_template(log) {
        return Ok((LogUrl::parse(log)?, None));
    }
    let bad = |reason: String| DaemonError::LogUrl {
        url: log.to_owned(),
        reason,
    };
    let Some(rest) = log.strip_prefix("kafka://") else {
        return Err(bad(
            "{node} names a per-node feed, which only a kafka:// log has".into(),
        ));
    };
    let (bootstrap, topic) = rest
        .split_once('/')
        .ok_or_else(|| bad("no topic after the broker address".into()))?;
    let (template, query) = match topic.split_once('?') {
        Some((t, q)) => (t, Some(q)),
        None => (topic, None),
    };
    let topics = FeedTopics::parse(template).map_err(|e| bad(e.reason))?;
    let url = match query {
        Some(q) => format!("kafka://{bootstrap}/{}?{q}", topics.topic(node)),
        None => format!("kafka://{bootstrap}/{}", topics.topic(node)),
    };
    Ok((LogUrl::parse(&url)?, Some(url)))
}

/// Opens a reader on the log (or this node's feed), waiting a while for one not there yet.
pub(super) async fn open_log(url: &LogUrl, feed: bool) -> Result<AnyReader, DaemonError> {
    // The coordinator creates the log before it answers, so this rarely waits; a log on a
    // slow shared mount may still appear a moment late. A node's feed is made by the
    // coordinator's feed projector when it copies the registration, a moment after the
    // registration is answered.
    let mut backoff = retry_backoff();
    let mut tries = 0;
    loop {
        match url.open_reader() {
            Ok(reader) => return Ok(reader),
            Err(e @ LogError::Io { .. }) if tries < 20 => {
                if tries == 0 {
                    info!("waiting for the log: {e}");
                }
            }
            Err(e @ LogError::NoSuchTopic { .. }) if feed && tries < 20 => {
                if tries == 0 {
                    info!("waiting for this node's feed: {e}");
                }
            }
            Err(e) => return Err(e.into()),
        }
        tries += 1;
        backoff.pause().await;
    }
}

/// Follows the log until asked to stop.
pub(super) async fn follow(
    follower: &mut Follower,
    pool: &WorkerPool,
    stop: &mut StopFlag,
) -> Result<(), DaemonError> {
    let mut backoff = retry_backoff();
    let mut log_trouble: Option<std::time::Instant> = None;
    loop {
        if stop.is_set() {
            return Ok(());
        }
        let step = match follower.step().await {
            Ok(step) => {
                if let Some(since) = log_trouble.take() {
                    info!(
                        "reading the coordinator's log again (after {} s)",
                        since.elapsed().as_secs()
                    );
                }
                backoff.reset();
                step
            }
            // The log's backend away for a while (a broker restarting, a partition changing
            // leader): nothing was folded from the failed read, so the same read is tried
            // again. A node that exited here would stop heartbeating and lapse. Which errors
            // are worth waiting out is the log's own rule, the one the coordinator follows too.
            Err(DaemonError::Log(e)) if e.is_retryable() => {
                if log_trouble.is_none() {
                    warn!("warning: reading the coordinator's log failed ({e}); retrying");
                    log_trouble = Some(std::time::Instant::now());
                }
                tokio::select! {
                    () = stop.wait() => return Ok(()),
                    () = backoff.pause() => {}
                }
                // A Kafka consumer that lost every broker can take minutes to find them again
                // (seen in the broker-restart test); a fresh reader reconnects at once, and
                // `next` says where to resume. If opening fails too, the next round retries.
                if let Ok(reader) = follower.url.open_reader() {
                    follower.reader = reader;
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        for (assigned, job) in step.ready {
            match job {
                Ok(job) => {
                    if let Err(job) = pool.submit(job) {
                        warn!(
                            "warning: not running {} attempt {}: this node does not serve \
                             model {:?}; nothing is reported, the coordinator re-dispatches it \
                             after its deadline",
                            job.task, job.attempt, job.body.model
                        );
                    }
                }
                Err(why) => warn!(
                    "warning: not running {} attempt {}: {why}; the coordinator re-dispatches \
                     it after its deadline",
                    assigned.task, assigned.attempt
                ),
            }
        }
        if step.read == 0 {
            tokio::select! {
                () = stop.wait() => return Ok(()),
                // A failed wait is noticed by the next read, which retries.
                _ = follower.reader.wait_for(follower.next, FOLLOW_WAIT) => {}
            }
        }
    }
}

/// The log reader and the fold over it.
pub(super) struct Follower {
    reader: AnyReader,
    /// Where `reader` reads, to open a fresh one when the backend was away.
    url: LogUrl,
    next: Offset,
    state: Assignments,
    /// Session keys accepted from grants, by epoch.
    sessions: BTreeMap<u64, prlx_events::crypto::SessionKey>,
    identity: Arc<Identity>,
    served: BTreeMap<String, Hash32>,
    caught_up: bool,
    /// With `PRLX_NODE_TRACE` set: the traces of the dispatches read and not yet opened.
    traces: BTreeMap<DispatchKey, JobTrace>,
}

struct Step {
    read: usize,
    ready: Vec<(Assigned, Result<Job, String>)>,
}

impl Follower {
    /// A follower reading `reader` (opened at `url`) from the start of the log.
    pub(super) fn new(
        reader: AnyReader,
        url: LogUrl,
        state: Assignments,
        identity: Arc<Identity>,
        served: BTreeMap<String, Hash32>,
    ) -> Follower {
        Follower {
            reader,
            url,
            next: 0,
            state,
            sessions: BTreeMap::new(),
            identity,
            served,
            caught_up: false,
            traces: BTreeMap::new(),
        }
    }

    /// Reads one batch and folds it; at the end of the log, hands out what is open.
    async fn step(&mut self) -> Result<Step, DaemonError> {
        // The end is read first: once everything below it is folded, a dispatch still open
        // was open at that moment (its closing event, if any, came later). A short batch alone
        // would not say so: a backend may return fewer records than asked mid-log.
        let end = self.reader.end().await?;
        let records = self.reader.read(self.next, READ_BATCH).await?;
        for record in &records {
            self.next = record.offset + 1;
            match Envelope::decode(&record.payload) {
                Ok(envelope) => {
                    let applied = self.state.apply(&envelope.event)?;
                    if trace::enabled() {
                        self.trace(&applied, envelope.header.recorded_at);
                    }
                    self.on_applied(applied);
                }
                // A record this build cannot read (a newer coordinator's event type, say)
                // is no business of a node's: the auditor is the one who checks the log.
                Err(e) => warn!("warning: skipping log record {}: {e}", record.offset),
            }
        }
        let mut ready = Vec::new();
        if records.is_empty() || self.next >= end {
            let runnable = self.state.take_runnable(Utc::now());
            if !self.caught_up {
                self.caught_up = true;
                info!(
                    "caught up with the log at offset {}: {} dispatch(es) open for this node, \
                     {} to run",
                    self.next,
                    self.state.open_count(),
                    runnable.run.len()
                );
            }
            for assigned in runnable.past_deadline {
                info!(
                    "not running {} attempt {}: its deadline passed before this node read it",
                    assigned.task, assigned.attempt
                );
            }
            for assigned in runnable.run {
                let job = self.open(&assigned);
                ready.push((assigned, job));
            }
        }
        Ok(Step {
            read: records.len(),
            ready,
        })
    }

    fn open(&mut self, assigned: &Assigned) -> Result<Job, String> {
        let mut trace = self.traces.remove(&assigned.key());
        let body = crate::follow::open_dispatch(&self.sessions, self.identity.node, assigned)
            .map_err(|e| e.to_string())?;
        let epoch = assigned.epoch.expect("open_dispatch needs an epoch");
        if let Some(trace) = &mut trace {
            trace.mark("opened");
        }
        Ok(Job {
            task: assigned.task,
            attempt: assigned.attempt,
            epoch,
            session: self.sessions[&epoch].clone(),
            body,
            deadline_at: assigned.deadline_at,
            trace,
        })
    }

    /// Starts the trace of a dispatch just read; forgets that of one the log closed.
    fn trace(&mut self, applied: &Applied, recorded_at: chrono::DateTime<Utc>) {
        match applied {
            Applied::Dispatched(key) => {
                if let Some(mut trace) = JobTrace::start(recorded_at) {
                    trace.mark("read");
                    self.traces.insert(*key, trace);
                }
            }
            Applied::Closed(key) => {
                self.traces.remove(key);
            }
            _ => {}
        }
    }

    fn on_applied(&mut self, applied: Applied) {
        match applied {
            Applied::Grant(grant) => self.accept(grant),
            Applied::Catalog(catalog) => {
                for (model, sha) in &self.served {
                    match catalog.get(model) {
                        None => warn!(
                            "warning: the coordinator's catalog has no model {model}; no \
                             request will name it"
                        ),
                        Some(want) if want != sha => warn!(
                            "warning: the catalog says {model} is sha256 {want}, this node \
                             serves {sha}: its results will not match other nodes'"
                        ),
                        Some(_) => {}
                    }
                }
            }
            Applied::CoordinatorKey
            | Applied::Ignored
            | Applied::Dispatched(_)
            | Applied::Closed(_) => {}
        }
    }

    /// Verifies a grant's signature, then (only then) unwraps it with the node's key.
    fn accept(&mut self, g: GrantToAccept) {
        let epoch = g.grant.epoch;
        if self.sessions.contains_key(&epoch) {
            return;
        }
        let Some(coordinator) = g.coordinator_key else {
            warn!(
                "warning: a session grant for epoch {epoch} arrived before any coordinator key; \
                 it cannot be checked and is not used"
            );
            return;
        };
        match accept_session(&coordinator, &self.identity.key, &g.grant) {
            Ok(session) => {
                info!("accepted the session grant for epoch {epoch}");
                self.sessions.insert(epoch, session);
            }
            Err(e) => warn!("warning: refused the session grant for epoch {epoch}: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_url_with_node_names_this_node_s_feed() {
        let node = NodeId(Hash32([0xcd; 32]));
        let hex = "cd".repeat(32);
        let (url, feed) = follow_url(
            "kafka://127.0.0.1:9092/prlx-node.{node}?fetch_wait_ms=20",
            node,
        )
        .unwrap();
        let want = format!("kafka://127.0.0.1:9092/prlx-node.{hex}?fetch_wait_ms=20");
        assert_eq!(feed.as_deref(), Some(want.as_str()));
        assert_eq!(url, LogUrl::parse(&want).unwrap());
        // A plain log URL is the log itself.
        let (url, feed) = follow_url("kafka://127.0.0.1:9092/prlx-events", node).unwrap();
        assert_eq!(feed, None);
        assert_eq!(
            url,
            LogUrl::parse("kafka://127.0.0.1:9092/prlx-events").unwrap()
        );
        for (bad, why) in [
            ("file:///tmp/{node}", "only a kafka:// log"),
            ("kafka://h:1/a/{node}", "[a-zA-Z0-9._-]"),
            ("kafka://h:1/{node}{node}", "exactly once"),
        ] {
            let err = follow_url(bad, node).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
