//! The scheduling decision: the best node for a request, and the next assignment to make.

use prlx_events::event::CandidateScore;
use prlx_events::{NodeId, RequestId};

use crate::coordinator::state::CoordinatorState;
use crate::scheduler::index::{Choice, RANKED_REASONS};
use crate::scheduler::queue::QueueEntry;

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
