//! The scheduling decision: the best node for a request, and the next assignment to make.

use std::collections::BTreeSet;

use prlx_events::event::{CandidateScore, ExecutionClass};
use prlx_events::{NodeId, RequestId};

use crate::coordinator::state::CoordinatorState;
use crate::coordinator::views::RequestView;
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

/// The next assignment: the request first in queue order (priority, deadline, arrival) that
/// some node can take now, and its node.
///
/// Each queue (one per model and tier) is walked in order, so a request that cannot be placed
/// never holds back one behind it that can: a retry whose untried nodes are busy, or a
/// replica whose class has no free slot, is passed over. The walk of a queue stops at its
/// first *plain* entry (tried no node, needs no replica class): if no node can take that one,
/// no node can take any entry behind it either (they all want the same model and tier, and
/// a plain entry accepts every node that serves it), so a deep queue costs what its head
/// does plus the retries and replicas before its first plain entry.
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
                continue;
            }
            if let Some(found) = behind_head(state, queue, best.as_ref().map(|(b, _)| *b)) {
                best = Some(found);
            }
        }
    }
    best.map(|(_, c)| c)
}

/// The first entry behind `queue`'s head (which cannot be placed) that can be, if it comes
/// before `bound` in queue order. None when the head is plain: nothing behind it can be
/// placed either. Kept out of line: the head settles most queues.
#[inline(never)]
fn behind_head<'a>(
    state: &CoordinatorState,
    queue: &'a BTreeSet<QueueEntry>,
    bound: Option<&QueueEntry>,
) -> Option<(&'a QueueEntry, Choice)> {
    let plain = |entry: &QueueEntry| {
        state
            .requests
            .get(&entry.request)
            .is_none_or(|r| r.tried.is_empty() && r.replica_class.is_none())
    };
    let mut entries = queue.iter();
    let head = entries.next()?;
    if plain(head) {
        return None;
    }
    for entry in entries {
        if bound.is_some_and(|b| b <= entry) {
            return None; // the rest of this queue comes after the best found
        }
        if let Some(choice) = choose_node(state, entry.request) {
            return Some((entry, choice));
        }
        if plain(entry) {
            return None;
        }
    }
    None
}

/// Whether some node could still take `req`, now or once it frees a slot: in the pool, not
/// draining, not lapsed, serving the model at a tier at least the request's, not tried by
/// it, and of `class` when one is given (a replica). Busy nodes count. O(nodes); asked only
/// after a failed dispatch or a sampling draw, by `decide` and by the fold alike.
pub fn untried_capable(
    state: &CoordinatorState,
    req: &RequestView,
    class: Option<&ExecutionClass>,
) -> bool {
    state.nodes.iter().any(|(id, n)| {
        n.available()
            && n.hardware_tier >= req.hardware_tier
            && n.models.contains(&req.model)
            && class.is_none_or(|c| &n.execution_class == c)
            && !req.tried.contains(id)
    })
}
