//! Scheduling state and the scheduling decision, both pure.
//!
//! Four signals, in priority order:
//! 1. capability: the node serves the model, at a tier at least the request's;
//! 2. capacity: it has a free slot (a node only ever holds as many tasks as it has slots, so
//!    "queue position" is the request's place in the coordinator's queue: priority, then
//!    deadline, then arrival);
//! 3. best fit: the smallest tier that fits, so big machines stay free for big work;
//! 4. reputation: standing in basis points times the configured weight (1.0 today).
//!
//! Then more free slots, then the node id, so the choice is a total order. The decision is
//! a function of the state alone: the coordinator records it with its ranked candidates, and
//! the fold re-derives it when it applies `RequestScheduled` (an auditor replaying the log
//! gets the check for free).
//!
//! Cost is sublinear in the number of nodes: nodes with a free slot are indexed by model and
//! tier in ordered sets keyed by rank, so a decision walks at most `tiers` set heads (plus the
//! nodes a request already tried), never the node list.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use prlx_events::event::{CandidateScore, Priority};
use prlx_events::{NodeId, RequestId};
use serde::{Deserialize, Serialize};

use crate::coordinator::{CoordinatorState, NodeView, RequestView};

/// How many ranked candidates a decision records as its reasons.
pub const RANKED_REASONS: usize = 3;

/// A request waiting for a node; the set's order is the dispatch order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QueueEntry {
    /// 0 for high priority, 1 standard, 2 low.
    pub rank: u8,
    /// When the client stops waiting: earlier first.
    pub deadline_at: DateTime<Utc>,
    pub request: RequestId,
}

impl QueueEntry {
    pub fn new(priority: Priority, deadline_at: DateTime<Utc>, request: RequestId) -> Self {
        let rank = match priority {
            Priority::High => 0,
            Priority::Standard => 1,
            Priority::Low => 2,
        };
        Self {
            rank,
            deadline_at,
            request,
        }
    }
}

/// A node with a free slot, as the index orders it: smaller is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SlotKey {
    /// `u64::MAX - standing_bp * weight_pct`: higher reputation first.
    pub reputation_rank: u64,
    /// `u32::MAX - free slots`: more free slots first.
    pub spare_rank: u32,
    pub node: NodeId,
    // Carried for the decision's reasons, so ranking needs no lookups in the node table (at
    // 100k nodes those cache misses were most of a decision). Never compared: `node` is unique.
    pub busy: u32,
    pub standing_bp: u32,
}

/// Queues and the free-capacity index. Derived from events only; snapshots carry it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scheduler {
    /// model -> tier -> waiting requests.
    pub queues: BTreeMap<String, BTreeMap<u8, BTreeSet<QueueEntry>>>,
    /// model -> tier -> nodes of that tier with a free slot.
    pub free: BTreeMap<String, BTreeMap<u8, BTreeSet<SlotKey>>>,
    /// Running dispatches by deadline, for the timer service.
    pub deadlines: BTreeSet<(DateTime<Utc>, RequestId)>,
    /// Nodes not lapsed, by last heartbeat: the timer service lapses them from the front.
    #[serde(default)]
    pub heartbeats: BTreeSet<(DateTime<Utc>, NodeId)>,
}

/// A scheduling decision and its reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub request: RequestId,
    pub node: NodeId,
    pub attempt: u32,
    pub candidates_considered: u32,
    pub ranked: Vec<CandidateScore>,
}

pub(crate) fn slot_key(id: NodeId, node: &NodeView, weight_pct: u32) -> SlotKey {
    SlotKey {
        reputation_rank: u64::MAX - u64::from(node.standing_bp) * u64::from(weight_pct),
        spare_rank: u32::MAX - node.free_slots(),
        node: id,
        busy: node.busy,
        standing_bp: node.standing_bp,
    }
}

impl Scheduler {
    pub fn enqueue(&mut self, req: &RequestView, entry: QueueEntry) {
        self.queues
            .entry(req.model.clone())
            .or_default()
            .entry(req.hardware_tier)
            .or_default()
            .insert(entry);
    }

    pub fn dequeue(&mut self, model: &str, tier: u8, entry: &QueueEntry) -> bool {
        let Some(tiers) = self.queues.get_mut(model) else {
            return false;
        };
        let Some(q) = tiers.get_mut(&tier) else {
            return false;
        };
        let removed = q.remove(entry);
        if q.is_empty() {
            tiers.remove(&tier);
        }
        if tiers.is_empty() {
            self.queues.remove(model);
        }
        removed
    }

    pub fn queued(&self) -> usize {
        self.queues
            .values()
            .flat_map(|t| t.values())
            .map(BTreeSet::len)
            .sum()
    }

    /// Puts a node in the index if it can take work; `key` must be its current key.
    pub(crate) fn index(&mut self, node: &NodeView, key: SlotKey) {
        if !node.schedulable() {
            return;
        }
        for model in &node.models {
            self.free
                .entry(model.clone())
                .or_default()
                .entry(node.hardware_tier)
                .or_default()
                .insert(key);
        }
    }

    /// Takes a node out of the index; `key` must be the key it was indexed under.
    pub(crate) fn unindex(&mut self, node: &NodeView, key: SlotKey) {
        for model in &node.models {
            if let Some(tiers) = self.free.get_mut(model) {
                if let Some(set) = tiers.get_mut(&node.hardware_tier) {
                    set.remove(&key);
                    if set.is_empty() {
                        tiers.remove(&node.hardware_tier);
                    }
                }
                if tiers.is_empty() {
                    self.free.remove(model);
                }
            }
        }
    }
}

/// The best node for `request` now, or `None` when no capable node has a free slot.
pub fn choose_node(state: &CoordinatorState, request: RequestId) -> Option<Choice> {
    let req = state.requests.get(&request)?;
    let tiers = state.sched.free.get(&req.model)?;
    let mut considered: u32 = 0;
    let mut ranked = Vec::with_capacity(RANKED_REASONS);
    // A replica must come from the primary's execution class, so that honest nodes produce
    // the same bytes. Only sampled requests pay for the per-node class lookups.
    let class_ok = |node: &NodeId| match &req.replica_class {
        None => true,
        Some(class) => state
            .nodes
            .get(node)
            .is_some_and(|n| &n.execution_class == class),
    };
    // Best fit: walk tiers upward from the request's; within a tier the set is in rank order.
    for (&tier, set) in tiers.range(req.hardware_tier..) {
        if req.replica_class.is_some() {
            let n = set
                .iter()
                .filter(|k| !req.tried.contains(&k.node) && class_ok(&k.node))
                .count();
            considered = considered.saturating_add(n as u32);
        } else {
            considered = considered.saturating_add(set.len() as u32);
        }
        let usable = set
            .iter()
            .filter(|k| !req.tried.contains(&k.node) && class_ok(&k.node));
        for key in usable.take(RANKED_REASONS - ranked.len()) {
            ranked.push(CandidateScore {
                node_id: key.node,
                free_slots: u32::MAX - key.spare_rank,
                queue_depth: key.busy,
                hardware_tier: tier,
                reputation_bp: key.standing_bp,
            });
        }
    }
    let chosen = ranked.first()?.node_id;
    // Nodes this request already tried are indexed but not candidates; counting them by
    // lookup keeps this O(tried), not O(nodes). (Replicas counted them out above.)
    let excluded = if req.replica_class.is_some() {
        0
    } else {
        req.tried
            .iter()
            .filter_map(|id| state.nodes.get(id))
            .filter(|n| {
                n.schedulable()
                    && n.hardware_tier >= req.hardware_tier
                    && n.models.contains(&req.model)
            })
            .count() as u32
    };
    Some(Choice {
        request,
        node: chosen,
        attempt: req.attempts,
        candidates_considered: considered - excluded,
        ranked,
    })
}

/// The next assignment: among the heads of the queues (one per model and tier) that some
/// node can take, the one first in queue order.
pub fn next_assignment(state: &CoordinatorState) -> Option<Choice> {
    let mut best: Option<(&QueueEntry, Choice)> = None;
    for tiers in state.sched.queues.values() {
        for queue in tiers.values() {
            let Some(head) = queue.first() else { continue };
            if best.as_ref().is_some_and(|(b, _)| *b <= head) {
                continue;
            }
            if let Some(choice) = choose_node(state, head.request) {
                best = Some((head, choice));
            }
        }
    }
    best.map(|(_, c)| c)
}
