//! Queues and the free-capacity index: nodes with a free slot, by model and tier, in rank
//! order.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use prlx_events::event::CandidateScore;
use prlx_events::{NodeId, RequestId};
use serde::{Deserialize, Serialize};

use crate::coordinator::views::{NodeView, RequestView};
use crate::scheduler::queue::QueueEntry;

/// How many ranked candidates a decision records as its reasons.
pub const RANKED_REASONS: usize = 3;

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
    /// Queued requests with no verified result, by acceptance time: the timer service fails
    /// them from the front once the catalog's `queue_timeout_seconds` has passed.
    #[serde(default)]
    pub waiting: BTreeSet<(DateTime<Utc>, RequestId)>,
    /// Sampled requests waiting in the queue for a replica, by when they began to wait: the
    /// timer service releases them unconfirmed from the front once the catalog's
    /// `unconfirmed_hold_seconds` has passed.
    #[serde(default)]
    pub replicas: BTreeSet<(DateTime<Utc>, RequestId)>,
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

impl SlotKey {
    /// What a decision records of this node as one of its reasons.
    pub fn score(&self, tier: u8) -> CandidateScore {
        CandidateScore {
            node_id: self.node,
            free_slots: u32::MAX - self.spare_rank,
            queue_depth: self.busy,
            hardware_tier: tier,
            reputation_bp: self.standing_bp,
        }
    }
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
