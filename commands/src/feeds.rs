//! Which node's dispatch feed each event is copied to: the routing of per-node feeds (Kafka).
//!
//! A node needs few events of the log: its session grants, its dispatches and what closes
//! them, the coordinator's signing key and the model catalog ([`prlx_node`'s follower folds
//! exactly these]). With feeds on, the coordinator copies those, byte for byte as the log has
//! them, to a topic of the node's own, in the same Kafka transaction as the log's batch. A
//! node then reads its feed instead of the log: it never sees another node's work, not even
//! sealed, and a busy log costs it nothing.
//!
//! This module only decides *where* an event goes, from the state before the event, purely;
//! the shell ([`crate::shell`]) encodes and hands the copies to the log writer.
//!
//! What a node's feed carries:
//! - `NodeRegistered` of this node, preceded by the latest `CoordinatorKeyPublished` and
//!   `CatalogPublished` already on the log (so a feed is complete from its first record);
//! - later `CoordinatorKeyPublished` and `CatalogPublished` (to every registered node);
//! - `SessionKeyIssued`, `TaskDispatched`, `ResultSubmitted`, `DeadlineExpired` and
//!   `LateResultDiscarded` naming this node;
//! - `RequestFailed` of a request this node was ever given an attempt of.

use prlx_events::{Envelope, Event, NodeId};
use prlx_projections::CoordinatorState;

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

/// Where `event` goes, given the state before it is applied.
pub fn audience(state: &CoordinatorState, event: &Event) -> Audience {
    let one = |node: NodeId| Audience::Nodes(vec![node]);
    match event {
        Event::NodeRegistered(r) => Audience::Registered(r.node_id),
        Event::CoordinatorKeyPublished(_) | Event::CatalogPublished(_) => {
            Audience::Nodes(state.nodes.keys().copied().collect())
        }
        Event::SessionKeyIssued(e) => one(e.node_id),
        Event::TaskDispatched(e) => one(e.node_id),
        Event::ResultSubmitted(e) => one(e.node_id),
        Event::DeadlineExpired(e) => one(e.node_id),
        Event::LateResultDiscarded(e) => one(e.node_id),
        Event::RequestFailed(e) => match state.requests.get(&e.request_id) {
            Some(request) if !request.tried.is_empty() => {
                Audience::Nodes(request.tried.iter().copied().collect())
            }
            _ => Audience::Nobody,
        },
        _ => Audience::Nobody,
    }
}

/// A copy for a feed: an envelope of the batch being appended, or one recorded earlier.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedCopy {
    /// The envelope at this index of the batch.
    Staged(usize),
    /// An envelope already on the log (the key or catalog a new node's feed starts with).
    Recorded(Box<Envelope>),
}

/// The latest coordinator key and catalog on the log, as recorded: a new node's feed starts
/// with them.
#[derive(Debug, Clone, Default)]
pub struct Published {
    key: Option<Envelope>,
    catalog: Option<Envelope>,
}

impl Published {
    /// Keeps `env` if it is a key or catalog publication (call it for every envelope, in log
    /// order).
    pub fn note(&mut self, env: &Envelope) {
        match env.event {
            Event::CoordinatorKeyPublished(_) => self.key = Some(env.clone()),
            Event::CatalogPublished(_) => self.catalog = Some(env.clone()),
            _ => {}
        }
    }

    /// The copies that start a newly registered node's feed.
    pub fn starting_copies(&self) -> impl Iterator<Item = FeedCopy> + '_ {
        [&self.key, &self.catalog]
            .into_iter()
            .flatten()
            .map(|env| FeedCopy::Recorded(Box::new(env.clone())))
    }
}
