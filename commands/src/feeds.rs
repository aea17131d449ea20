//! Per-node dispatch feeds on Kafka: which node's feed each record of the log is copied to,
//! and the projector that writes the copies, exactly once.
//!
//! A node needs few events of the log: its session grants, its dispatches and what closes
//! them, the coordinator's signing key and the model catalog (the node's follower folds
//! exactly these). With feeds on, each node reads a topic of its own holding only those,
//! byte for byte as the log has them: it never sees another node's work, not even sealed, and
//! a busy log costs it nothing.
//!
//! The copies are written *beside* the coordinator, not in its transactions: a projector
//! (see `NodeFeeds`) follows the log like any reader, folds the little it needs to know where
//! each record goes ([`FeedState`]), and writes a stretch of copies and the log position after it in
//! one Kafka transaction (`KafkaDerivedWriter`). So a feed never holds what the log does not,
//! a restart neither repeats nor skips a copy, and the coordinator's own appends do not pay
//! for touching a partition per node in every transaction (measured: BENCHMARKS.md, "Node
//! feeds"). The price is a lag: a copy lands a transaction after its log record.
//!
//! What a node's feed carries ([`FeedRouter::route`]; docs/adr/05-node-feeds.md):
//! - `NodeRegistered` of this node, preceded by the latest `CoordinatorKeyPublished` and
//!   `CatalogPublished` on the log (so a feed is complete from its first record);
//! - later `CoordinatorKeyPublished` and `CatalogPublished` (to every registered node);
//! - `SessionKeyIssued`, `TaskDispatched`, `ResultSubmitted`, `DeadlineExpired`,
//!   `DispatchRefused` and `LateResultDiscarded` naming this node;
//! - `RequestFailed` of a request this node was ever given an attempt of.

use std::collections::{BTreeMap, BTreeSet};

use prlx_events::log::feed::FeedTopics;
use prlx_events::log::SideRecord;
use prlx_events::{Event, NodeId, RequestId};

/// The nodes an event is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// No node's feed.
    Nobody,
    /// These nodes' feeds (ascending, no repeats).
    Nodes(Vec<NodeId>),
    /// A registration: that node's feed, after the key and catalog already on the log.
    Registered(NodeId),
}

/// What routing needs of the log so far: far less than the coordinator's state, so the
/// projector's fold is cheap. A pure fold of the log's events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedState {
    /// Every node that registered.
    nodes: BTreeSet<NodeId>,
    /// The nodes each request not yet settled was dispatched to.
    tried: BTreeMap<RequestId, BTreeSet<NodeId>>,
}

impl FeedState {
    /// Folds one event, in log order.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::NodeRegistered(r) => {
                self.nodes.insert(r.node_id);
            }
            Event::TaskDispatched(d) => {
                self.tried
                    .entry(d.task_id.request)
                    .or_default()
                    .insert(d.node_id);
            }
            Event::RequestFailed(f) => {
                self.tried.remove(&f.request_id);
            }
            // Settled: no failure can follow, so nothing more is routed by who tried it. Kept,
            // it would grow with every request the log ever completed.
            Event::ResultReturned(r) => {
                self.tried.remove(&r.request_id);
            }
            _ => {}
        }
    }

    /// Requests it still tracks: dispatched and not settled.
    pub fn open_requests(&self) -> usize {
        self.tried.len()
    }
}

/// Where `event` goes, given the state before it is applied. Pure.
pub fn audience(state: &FeedState, event: &Event) -> Audience {
    let one = |node: NodeId| Audience::Nodes(vec![node]);
    match event {
        Event::NodeRegistered(r) => Audience::Registered(r.node_id),
        Event::CoordinatorKeyPublished(_) | Event::CatalogPublished(_) => {
            Audience::Nodes(state.nodes.iter().copied().collect())
        }
        Event::SessionKeyIssued(e) => one(e.node_id),
        Event::TaskDispatched(e) => one(e.node_id),
        Event::ResultSubmitted(e) => one(e.node_id),
        Event::DeadlineExpired(e) => one(e.node_id),
        Event::LateResultDiscarded(e) => one(e.node_id),
        Event::DispatchRefused(e) => one(e.node_id),
        Event::RequestFailed(e) => match state.tried.get(&e.request_id) {
            Some(nodes) => Audience::Nodes(nodes.iter().copied().collect()),
            None => Audience::Nobody,
        },
        _ => Audience::Nobody,
    }
}

/// Turns records of the log, in log order, into the copies each node's feed gets.
#[derive(Debug, Clone)]
pub struct FeedRouter {
    topics: FeedTopics,
    state: FeedState,
    /// The latest key and catalog records on the log, as recorded: a new feed starts with them.
    key: Option<Vec<u8>>,
    catalog: Option<Vec<u8>>,
}

impl FeedRouter {
    pub fn new(topics: FeedTopics) -> Self {
        Self {
            topics,
            state: FeedState::default(),
            key: None,
            catalog: None,
        }
    }

    /// Appends to `out` the copies of one log record (`event`, its bytes `payload`) for the
    /// feeds it goes to. Call it for every record of the log, in order, whether or not its
    /// copies are wanted: it folds what routing needs.
    pub fn route(&mut self, event: &Event, payload: &[u8], out: &mut Vec<SideRecord>) {
        let copy = |topic: String, payload: &[u8]| SideRecord {
            topic,
            key: None,
            payload: payload.to_vec(),
        };
        match audience(&self.state, event) {
            Audience::Nobody => {}
            Audience::Nodes(nodes) => out.extend(
                nodes
                    .into_iter()
                    .map(|n| copy(self.topics.topic(n), payload)),
            ),
            Audience::Registered(node) => {
                let topic = self.topics.topic(node);
                for earlier in [&self.key, &self.catalog].into_iter().flatten() {
                    out.push(copy(topic.clone(), earlier));
                }
                out.push(copy(topic, payload));
            }
        }
        match event {
            Event::CoordinatorKeyPublished(_) => self.key = Some(payload.to_vec()),
            Event::CatalogPublished(_) => self.catalog = Some(payload.to_vec()),
            _ => {}
        }
        self.state.apply(event);
    }
}

#[cfg(feature = "kafka")]
pub use projector::{FeedError, NodeFeeds};

#[cfg(feature = "kafka")]
mod projector {
    use std::thread;
    use std::time::Duration;

    use prlx_events::backoff::Backoff;
    use prlx_events::log::feed::FeedTopics;
    use prlx_events::log::kafka::{KafkaDerivedWriter, KafkaLogReader};
    use prlx_events::log::{KafkaLogOptions, LogError, LogReader, Offset};
    use prlx_events::{DecodeError, Envelope};
    use tokio::sync::watch;

    use super::FeedRouter;

    /// How many log records one read takes; a transaction covers what one read returned.
    const READ_BATCH: usize = 4096;
    /// The longest a quiet projector waits on the log before it looks at its stop flag.
    const QUIET_WAIT: Duration = Duration::from_millis(200);
    /// The longest it waits before starting over after a failure.
    const MAX_BACKOFF: Duration = Duration::from_secs(5);
    /// How often the position is committed even when nothing was copied: a group's offsets
    /// expire when it commits nothing for the broker's `offsets.retention.minutes` (7 days
    /// by default), and a projector that lost its position would copy the log again.
    const POSITION_REFRESH: Duration = Duration::from_secs(3600);

    /// Why the projector starts over.
    #[derive(Debug, thiserror::Error)]
    pub enum FeedError {
        #[error(transparent)]
        Log(#[from] LogError),
        #[error("log record {offset} does not decode: {source}")]
        Decode {
            offset: Offset,
            #[source]
            source: DecodeError,
        },
    }

    /// The projector writing the nodes' feeds of one Kafka log, on a thread of its own (its
    /// transaction calls block). It runs while this coordinator is the active one; the
    /// transactional id `prlx-feeds.<log topic>` makes a newly active instance's projector
    /// fence a deposed one's.
    #[derive(Debug)]
    pub struct NodeFeeds {
        stop: watch::Sender<bool>,
        thread: Option<thread::JoinHandle<()>>,
    }

    impl NodeFeeds {
        /// Starts projecting the log `log_topic` at `bootstrap` into the feeds `topics` names.
        pub fn start(
            bootstrap: &str,
            log_topic: &str,
            options: KafkaLogOptions,
            topics: FeedTopics,
        ) -> std::io::Result<Self> {
            let (stop, stopped) = watch::channel(false);
            let (bootstrap, log_topic) = (bootstrap.to_owned(), log_topic.to_owned());
            let thread = thread::Builder::new()
                .name("prlx-feeds".into())
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a current-thread runtime");
                    runtime.block_on(run(&bootstrap, &log_topic, &options, &topics, stopped));
                })?;
            Ok(Self {
                stop,
                thread: Some(thread),
            })
        }

        /// Stops the projector after its transaction in progress, and waits for it.
        pub fn stop(mut self) {
            self.halt();
        }

        fn halt(&mut self) {
            let _ = self.stop.send(true);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    impl Drop for NodeFeeds {
        fn drop(&mut self) {
            self.halt();
        }
    }

    /// Projects until stopped; after a failure it starts over from the committed position.
    async fn run(
        bootstrap: &str,
        log_topic: &str,
        options: &KafkaLogOptions,
        topics: &FeedTopics,
        mut stopped: watch::Receiver<bool>,
    ) {
        let mut backoff = Backoff::new(Duration::from_millis(100), MAX_BACKOFF);
        loop {
            match project(bootstrap, log_topic, options, topics, &mut stopped).await {
                Ok(()) => return,
                // A newer projector (a newly active coordinator's) took over: starting over
                // would fence it back.
                Err(FeedError::Log(e @ LogError::Fenced { .. })) => {
                    tracing::warn!("node feeds: {e}; stopped");
                    return;
                }
                Err(e) => {
                    let pause = backoff.next_pause();
                    tracing::warn!("node feeds: {e}; starting over in {pause:?}");
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        _ = stopped.wait_for(|s| *s) => return,
                    }
                }
            }
        }
    }

    /// One life of the projector: fence any older one, fold the log up to the committed
    /// position, then copy each stretch of new records and move the position, one
    /// transaction each. `Ok` once stopped.
    async fn project(
        bootstrap: &str,
        log_topic: &str,
        options: &KafkaLogOptions,
        topics: &FeedTopics,
        stopped: &mut watch::Receiver<bool>,
    ) -> Result<(), FeedError> {
        let name = format!("prlx-feeds.{log_topic}");
        let mut writer = KafkaDerivedWriter::open(bootstrap, log_topic, &name, options.clone())?;
        let position = writer.position()?;
        let reader = KafkaLogReader::open(bootstrap, log_topic, options.clone())?;
        let mut router = FeedRouter::new(topics.clone());
        let mut next: Offset = 0;
        // Shell clock: only paces the position's refresh; never recorded.
        let mut committed_at = tokio::time::Instant::now();
        tracing::info!(
            "node feeds: writing {} from log offset {position}",
            topics.template()
        );
        loop {
            if *stopped.borrow() {
                return Ok(());
            }
            let records = reader.read(next, READ_BATCH).await?;
            if next >= position && committed_at.elapsed() >= POSITION_REFRESH {
                writer.commit(Vec::new(), next).await?;
                committed_at = tokio::time::Instant::now();
            }
            if records.is_empty() {
                tokio::select! {
                    waited = reader.wait_for(next, QUIET_WAIT) => { waited?; }
                    _ = stopped.changed() => {}
                }
                continue;
            }
            let mut copies = Vec::new();
            for r in &records {
                let env = Envelope::decode(&r.payload).map_err(|source| FeedError::Decode {
                    offset: r.offset,
                    source,
                })?;
                // Records before the position were copied by an earlier life: routed only to
                // keep the router's fold, their copies dropped.
                let before = copies.len();
                router.route(&env.event, &r.payload, &mut copies);
                if r.offset < position {
                    copies.truncate(before);
                }
                next = r.offset + 1;
            }
            // A stretch with no copies moves no position: a restart re-reads it and copies
            // nothing from it either.
            if !copies.is_empty() {
                writer.commit(copies, next).await?;
                committed_at = tokio::time::Instant::now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prlx_events::event::{
        CoordinatorKeyPublished, ExecutionClass, NodeHeartbeat, NodeRegistered,
    };
    use prlx_events::Hash32;

    fn registered(n: u8) -> Event {
        NodeRegistered {
            node_id: NodeId(Hash32([n; 32])),
            public_key_pem: String::new(),
            hardware_tier: 1,
            models: vec![],
            slots: 1,
            stake: 0,
            execution_class: ExecutionClass {
                device: "cpu".into(),
                driver: "none".into(),
                runtime: "onnxruntime-1.22.0".into(),
            },
            model_hashes: Default::default(),
            operator: None,
            signed_at: None,
            signature: None,
        }
        .into()
    }

    /// The projector's fold keeps only requests in flight: a request is forgotten once it
    /// settles, completed or failed, so its state does not grow with history.
    #[test]
    fn settled_requests_leave_the_feed_state() {
        use prlx_events::event::{RequestFailed, ResultReturned, Sealed, TaskDispatched};
        use prlx_events::{RequestId, TaskId};
        let node = NodeId(Hash32([1; 32]));
        let dispatched = |r: u64| -> Event {
            TaskDispatched {
                task_id: TaskId::whole(RequestId(r)),
                attempt: 0,
                node_id: node,
                sealed_work: Sealed(vec![]),
                deadline_at: chrono::DateTime::UNIX_EPOCH,
            }
            .into()
        };
        let mut state = FeedState::default();
        for r in 0..3 {
            state.apply(&dispatched(r));
        }
        assert_eq!(state.open_requests(), 3);
        state.apply(
            &ResultReturned {
                request_id: RequestId(0),
                sealed_for_client: Sealed(vec![]),
                poe: Hash32([0; 32]),
                node_id: node,
            }
            .into(),
        );
        let failed: Event = RequestFailed {
            request_id: RequestId(1),
            reason: "no attempt left".into(),
            cause: None,
        }
        .into();
        assert_eq!(audience(&state, &failed), Audience::Nodes(vec![node]));
        state.apply(&failed);
        assert_eq!(state.open_requests(), 1, "only request 2 is in flight");
    }

    /// A new node's feed starts with the latest key on the log, byte for byte, then its
    /// registration; records for nobody are not copied.
    #[test]
    fn a_new_feed_starts_with_the_latest_key_and_copies_are_the_log_s_bytes() {
        let topics = FeedTopics::parse("feed.{node}").unwrap();
        let mut router = FeedRouter::new(topics.clone());
        let key = |pem: &str| -> Event {
            CoordinatorKeyPublished {
                public_key_pem: pem.into(),
            }
            .into()
        };
        let mut out = Vec::new();
        router.route(&key("old"), b"key-1", &mut out);
        router.route(&key("new"), b"key-2", &mut out);
        assert!(out.is_empty(), "no node registered yet: {out:?}");
        let heartbeat: Event = NodeHeartbeat {
            node_id: NodeId(Hash32([1; 32])),
            at: None,
            signature: None,
        }
        .into();
        router.route(&heartbeat, b"beat", &mut out);
        assert!(out.is_empty(), "a heartbeat is for nobody's feed");
        router.route(&registered(1), b"reg-1", &mut out);
        // The coordinator's seal over the log's chain is for auditors, not for a node's feed.
        let seal: Event = prlx_events::event::LogSealed {
            head: Hash32([2; 32]),
            signature: prlx_events::event::Sealed(vec![1]),
        }
        .into();
        router.route(&seal, b"seal", &mut out);
        let topic = topics.topic(NodeId(Hash32([1; 32])));
        let got: Vec<(&str, &[u8])> = out
            .iter()
            .map(|r| (r.topic.as_str(), r.payload.as_slice()))
            .collect();
        assert_eq!(got, [(topic.as_str(), &b"key-2"[..]), (&topic, b"reg-1")]);
    }
}
