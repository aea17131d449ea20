//! The scheduling decision: the best node for a request, and the next assignment to make.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use prlx_events::{Hash32, RequestId};

use crate::coordinator::state::CoordinatorState;
use crate::coordinator::views::{ReplicaClass, RequestView};
use crate::scheduler::index::{Choice, RANKED_REASONS};
use crate::scheduler::queue::QueueEntry;
use crate::scheduler::replica::drawn_replica;

/// The node for `request` now, or `None` when no capable node has a free slot.
///
/// A plain request (or a retry) goes to the best-ranked node. A replica (a sampled request)
/// is drawn under the open sampling epoch's secret `seed` among its eligible peers
/// ([`replica_peers`](crate::scheduler::replica_peers),
/// [`replica_index`](crate::scheduler::replica_index)); without the seed no replica can be placed. The
/// fold, which does not know the seed until its reveal, checks the rest of the receipt when
/// it applies `RequestScheduled` and the draw itself at the reveal.
pub fn choose_node(
    state: &CoordinatorState,
    request: RequestId,
    seed: Option<&Hash32>,
) -> Option<Choice> {
    let req = state.requests.get(&request)?;
    if req.replica_class.is_some() {
        return drawn_replica(state, request, req, seed?);
    }
    let tiers = state.sched.free.get(&req.model)?;
    let mut considered: u32 = 0;
    let mut ranked = Vec::with_capacity(RANKED_REASONS);
    // Best fit: walk tiers upward from the request's; within a tier the set is in rank order.
    for (&tier, set) in tiers.range(req.hardware_tier..) {
        considered = considered.saturating_add(set.len() as u32);
        let usable = set.iter().filter(|k| !req.tried.contains(&k.node));
        for key in usable.take(RANKED_REASONS - ranked.len()) {
            ranked.push(key.score(tier));
        }
    }
    let chosen = ranked.first()?.node_id;
    // Nodes this request already tried are indexed but not candidates; counting them by
    // lookup keeps this O(tried), not O(nodes).
    let excluded = req
        .tried
        .iter()
        .filter_map(|id| state.nodes.get(id))
        .filter(|n| {
            n.schedulable() && n.hardware_tier >= req.hardware_tier && n.models.contains(&req.model)
        })
        .count() as u32;
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
///
/// `seed` is the open sampling epoch's (the shell's secret): it draws replicas. Without it
/// replicas are passed over. Which request comes next does not depend on it, only which
/// peer a replica goes to.
pub fn next_assignment(state: &CoordinatorState, seed: Option<&Hash32>) -> Option<Choice> {
    let mut best: Option<(&QueueEntry, Choice)> = None;
    for tiers in state.sched.queues.values() {
        for queue in tiers.values() {
            let Some(head) = queue.first() else { continue };
            if best.as_ref().is_some_and(|(b, _)| *b <= head) {
                continue;
            }
            if let Some(choice) = choose_node(state, head.request, seed) {
                best = Some((head, choice));
                continue;
            }
            let bound = best.as_ref().map(|(b, _)| *b);
            if let Some(found) = behind_head(state, seed, queue, bound) {
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
    seed: Option<&Hash32>,
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
        if let Some(choice) = choose_node(state, entry.request, seed) {
            return Some((entry, choice));
        }
        if plain(entry) {
            return None;
        }
    }
    None
}

/// Whether any registered node serves `model` at `tier` or above and is in the pool and not
/// draining, lapsed or not (a lapsed node may come back). A request no such node serves fails
/// once a node has had the catalog's `node_timeout_seconds` to register, instead of waiting out
/// the queue bound (docs/protocol.md, step 3). O(nodes); asked by the timer and the fold.
pub fn any_node_serves(state: &CoordinatorState, model: &str, tier: u8) -> bool {
    state.nodes.values().any(|n| {
        n.in_pool && !n.draining && n.hardware_tier >= tier && n.models.iter().any(|m| m == model)
    })
}

/// Whether a request that no registered node serves may fail at `now`: it has tried no node,
/// holds no result, and was accepted at least the catalog's `node_timeout_seconds` before.
pub fn unservable_at(state: &CoordinatorState, req: &RequestView, now: DateTime<Utc>) -> bool {
    past_registration_grace(state, req, now)
        && !any_node_serves(state, &req.model, req.hardware_tier)
}

/// The cheap half of [`unservable_at`], without the walk over the nodes: the request has tried
/// no node, holds no result, and nodes have had `node_timeout_seconds` to register.
pub fn past_registration_grace(
    state: &CoordinatorState,
    req: &RequestView,
    now: DateTime<Utc>,
) -> bool {
    req.tried.is_empty() && req.results.is_empty() && now >= req.accepted_at + state.node_timeout()
}

/// Whether some node could still take `req`, now or once it frees a slot: in the pool, not
/// draining, not lapsed, serving the model at a tier at least the request's, not tried by
/// it, and of `class` when one is given (a replica: execution class and model file). Busy nodes count. O(nodes); asked only
/// after a failed dispatch or a sampling draw, by `decide` and by the fold alike.
pub fn untried_capable(
    state: &CoordinatorState,
    req: &RequestView,
    class: Option<&ReplicaClass>,
) -> bool {
    state.nodes.iter().any(|(id, n)| {
        n.available()
            && n.hardware_tier >= req.hardware_tier
            && n.models.contains(&req.model)
            && class.is_none_or(|c| c.admits(n, &req.model))
            && !req.tried.contains(id)
    })
}
