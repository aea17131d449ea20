//! The replica draw: a sampled request's replica is drawn under the open sampling epoch's
//! secret seed among every eligible peer, not given to the best-ranked one (the lowest node
//! id on ties, which a node could grind its key for). See `docs/validation.md`.

use prlx_events::{Hash32, RequestId};

use crate::coordinator::state::CoordinatorState;
use crate::coordinator::views::RequestView;
use crate::scheduler::index::{Choice, SlotKey};

/// An eligible peer as the free-capacity index holds it, with its tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaPeer {
    pub key: SlotKey,
    pub tier: u8,
}

/// Which of `peers` eligible peers (sorted by node id) takes replica round `round` of
/// `request` under an epoch's `seed`:
/// `u64_be(SHA-256("prlx/replica/v1" || seed || request_id || round)[0..8]) mod peers`;
/// `None` when there is no peer.
///
/// The round is the dispatch's attempt number, so a replica sought again after a failed one,
/// or a tie-breaker, is a fresh draw. The modulo bias of a 64-bit draw is below 1e-14 for
/// any pool size that fits in memory.
pub fn replica_index(seed: &Hash32, request: RequestId, round: u32, peers: usize) -> Option<usize> {
    if peers == 0 {
        return None;
    }
    let mut input = Vec::with_capacity(15 + 32 + 8 + 4);
    input.extend_from_slice(b"prlx/replica/v1");
    input.extend_from_slice(&seed.0);
    input.extend_from_slice(&request.0.to_be_bytes());
    input.extend_from_slice(&round.to_be_bytes());
    let h = Hash32::of(&input);
    let draw = u64::from_be_bytes(h.0[..8].try_into().expect("8 bytes"));
    Some((draw % peers as u64) as usize)
}

/// The peers a replica of `req` may be drawn from now, sorted by node id: nodes with a free
/// slot (so in the pool, not draining, not lapsed) that serve the model at a tier at least
/// the request's, of the primary's execution class and model file, and that the request has
/// not tried (so none holds a result for it). Empty for a request that needs no replica. O(free nodes of
/// the model); asked only for replicas.
pub fn replica_peers(state: &CoordinatorState, req: &RequestView) -> Vec<ReplicaPeer> {
    let (Some(class), Some(tiers)) = (&req.replica_class, state.sched.free.get(&req.model)) else {
        return Vec::new();
    };
    let mut peers: Vec<ReplicaPeer> = tiers
        .range(req.hardware_tier..)
        .flat_map(|(&tier, set)| set.iter().map(move |key| ReplicaPeer { key: *key, tier }))
        .filter(|p| {
            !req.tried.contains(&p.key.node)
                && state
                    .nodes
                    .get(&p.key.node)
                    .is_some_and(|n| class.admits(n, &req.model))
        })
        .collect();
    peers.sort_unstable_by_key(|p| p.key.node);
    peers
}

/// The replica of `request` (whose view is `req`) that `seed` draws now, if it has a peer.
pub(crate) fn drawn_replica(
    state: &CoordinatorState,
    request: RequestId,
    req: &RequestView,
    seed: &Hash32,
) -> Option<Choice> {
    let peers = replica_peers(state, req);
    let i = replica_index(seed, request, req.attempts, peers.len())?;
    replica_receipt(request, req, &peers, i)
}

/// The receipt of a replica that went to peer `i` of `peers`: that node, every peer counted
/// as a candidate, and the drawn one as the only reason (the draw chose it, not a rank).
pub fn replica_receipt(
    request: RequestId,
    req: &RequestView,
    peers: &[ReplicaPeer],
    i: usize,
) -> Option<Choice> {
    let drawn = peers.get(i)?;
    Some(Choice {
        request,
        node: drawn.key.node,
        attempt: req.attempts,
        candidates_considered: peers.len() as u32,
        ranked: vec![drawn.key.score(drawn.tier)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_draw_spreads_over_every_peer_and_follows_the_seed() {
        let seed = Hash32::of(b"epoch seed");
        assert_eq!(replica_index(&seed, RequestId(0), 1, 0), None);
        for peers in [1usize, 2, 7, 100] {
            let mut hits = vec![0u32; peers];
            let n = 20_000u64;
            for r in 0..n {
                hits[replica_index(&seed, RequestId(r), 1, peers).unwrap()] += 1;
            }
            let expected = n / peers as u64;
            // Binomial sd at most 100 here; allow 5 sd.
            for (i, h) in hits.iter().enumerate() {
                assert!(
                    u64::from(*h).abs_diff(expected) <= 500,
                    "{peers} peers: peer {i} drawn {h} times, expected {expected}"
                );
            }
        }
        // Another seed, or another round of the same request, is another draw.
        let other = Hash32::of(b"other seed");
        let differ = |f: &dyn Fn(u64) -> (Option<usize>, Option<usize>)| {
            (0..1_000).filter(|&r| f(r).0 != f(r).1).count()
        };
        let by_seed = differ(&|r| {
            (
                replica_index(&seed, RequestId(r), 1, 10),
                replica_index(&other, RequestId(r), 1, 10),
            )
        });
        let by_round = differ(&|r| {
            (
                replica_index(&seed, RequestId(r), 1, 10),
                replica_index(&seed, RequestId(r), 2, 10),
            )
        });
        assert!(by_seed > 800 && by_round > 800, "{by_seed} {by_round}");
    }
}
