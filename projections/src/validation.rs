//! Validation (step 7), the pure parts shared by `decide` and the fold: the sampling draw and
//! its rate (probation), the bound on a result's wait for a replica, the verdict over replica
//! results, and standing.
//!
//! The coordinator decides with these functions and the fold re-derives with them, so an
//! auditor replaying the log checks every verdict, every standing change, and (once an
//! epoch's seed is revealed) every sampling decision of that epoch. See `docs/validation.md`.

use chrono::{DateTime, Duration, Utc};
use prlx_events::event::{ValidationPolicy, Verdict};
use prlx_events::{Hash32, NodeId, RequestId};

use crate::coordinator::state::CoordinatorState;
pub use crate::coordinator::views::{History, VerifiedResult};
use crate::coordinator::views::{ReplicaClass, RequestView, SamplingEpoch};

/// Basis points in one.
pub const BP: u32 = 10_000;

/// Whether `request` is sampled for redundant execution under an epoch's `seed`:
/// `SHA-256("prlx/sample/v1" || seed || request_id) mod 10_000 < sampling_bp`.
///
/// Nodes cannot predict it (the seed is secret until the epoch ends, and only its hash is on
/// the log); auditors recompute it once the seed is revealed. The modulo bias of a 64-bit
/// draw over 10_000 buckets is below 1e-15.
pub fn sampled(seed: &Hash32, request: RequestId, sampling_bp: u32) -> bool {
    let mut input = Vec::with_capacity(14 + 32 + 8);
    input.extend_from_slice(b"prlx/sample/v1");
    input.extend_from_slice(&seed.0);
    input.extend_from_slice(&request.0.to_be_bytes());
    let h = Hash32::of(&input);
    let draw = u64::from_be_bytes(h.0[..8].try_into().expect("8 bytes"));
    draw % u64::from(BP) < u64::from(sampling_bp)
}

/// The sampling rate, in basis points, of a result under the `epoch`'s settings:
/// probation's rate (or the catalog's, if higher) when its node is on probation
/// ([`on_probation`]), else the catalog's.
pub fn sampling_rate(epoch: &SamplingEpoch, probation: bool) -> u32 {
    if probation {
        epoch.probation_sampling_bp.max(epoch.sampling_bp)
    } else {
        epoch.sampling_bp
    }
}

/// Whether a result that is its node's `ordinal`-th verified one (1 for its first) is drawn
/// at the probation rate: the first `probation_results` of every node are.
///
/// A new node cannot build standing on unchecked work, or pass a colluder's results while
/// nobody looks: its first results are checked at a high rate. The ordinal is in the state
/// (`NodeView::verified`), so the fold re-derives the rate of every draw.
pub fn on_probation(epoch: &SamplingEpoch, ordinal: u64) -> bool {
    ordinal <= u64::from(epoch.probation_results)
}

/// Standing in basis points from a node's history:
/// `10_000 * (valid + 1) / (valid + 1 + invalid_weight * invalid + review_weight * disagreements
/// + missed_deadline_weight * missed)`.
///
/// A ratio, so a node's confirmed work earns it room for a rare honest-looking mishap, while a
/// node with no confirmed work falls out of the pool on its first proven bad result (with the
/// default weight 4: 1 / 5 = 2_000 bp, under the 5_000 bp floor). A missed deadline (default
/// weight 1) ranks a fresh node below every node that missed none: 1 / 2 = 5_000 bp.
pub fn standing_bp(policy: &ValidationPolicy, h: History) -> u32 {
    let num = u128::from(h.valid) + 1;
    let den = num
        + u128::from(policy.invalid_weight) * u128::from(h.invalid)
        + u128::from(policy.review_weight) * u128::from(h.disagreements)
        + u128::from(policy.missed_deadline_weight) * u128::from(h.missed);
    (u128::from(BP) * num / den) as u32
}

/// Whether a node with history `h` leaves the pool: its standing *without* its missed
/// deadlines is below the floor. A missed deadline proves nothing bad about a result (a
/// crash, a slow machine, or a prompt longer than any node's context all look the same), and
/// any client can cause one, so it moves the node down the scheduler's order but never out.
pub fn removed(policy: &ValidationPolicy, h: History) -> bool {
    standing_bp(policy, History { missed: 0, ..h }) < policy.removal_below_bp
}

/// Where a request's validation stands after its verified results so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Comparison {
    /// One result: the sampling draw decides.
    Single,
    /// Two results that agree, or a majority of three.
    Resolved(Verdict),
    /// Two results that differ: a third, tie-breaking replica is needed.
    Tiebreak,
}

/// The verdict the results give: two that agree, a majority of three, or none.
pub fn compare(results: &[VerifiedResult]) -> Comparison {
    let nodes = |pred: &dyn Fn(&VerifiedResult) -> bool| -> Vec<NodeId> {
        results.iter().filter(|r| pred(r)).map(|r| r.node).collect()
    };
    match results {
        [] | [_] => Comparison::Single,
        [a, b] if a.result_hash == b.result_hash => Comparison::Resolved(Verdict::Agreed {
            nodes: vec![a.node, b.node],
        }),
        [_, _] => Comparison::Tiebreak,
        _ => {
            let winner = results.iter().map(|r| r.result_hash).find(|h| {
                2 * results.iter().filter(|r| r.result_hash == *h).count() > results.len()
            });
            Comparison::Resolved(match winner {
                Some(w) => Verdict::Majority {
                    winners: nodes(&|r| r.result_hash == w),
                    dissenters: nodes(&|r| r.result_hash != w),
                },
                None => Verdict::NoMajority {
                    parties: nodes(&|_| true),
                },
            })
        }
    }
}

/// How long a sampled result may wait in the queue for a replica before it goes out
/// unconfirmed: the catalog's `unconfirmed_hold_seconds`. `None` for 0, no hold (as catalogs
/// before it are read): released at once when no peer of the class exists, else the wait
/// has no bound.
pub fn unconfirmed_hold(policy: &ValidationPolicy) -> Option<Duration> {
    (policy.unconfirmed_hold_seconds > 0)
        .then(|| Duration::seconds(i64::from(policy.unconfirmed_hold_seconds)))
}

/// When request `id`, waiting in the queue for a replica, goes out unconfirmed (or, with two
/// results that differ, fails without majority): the time it began to wait plus the hold.
/// `None` when it is not waiting for a replica, or the catalog sets no hold.
pub fn hold_deadline(state: &CoordinatorState, id: RequestId) -> Option<DateTime<Utc>> {
    let req = state.requests.get(&id)?;
    let hold = unconfirmed_hold(&state.validation_policy())?;
    Some(req.replica_since()? + hold)
}

/// Whether a replica for `req` can ever be found: some node in the pool, not draining, that
/// serves the model at the tier, of the execution class the replicas must share, that the
/// request has not tried. Busy nodes count: the replica waits for a slot. O(nodes), and only
/// asked for sampled requests.
pub fn peer_exists(state: &CoordinatorState, req: &RequestView, class: &ReplicaClass) -> bool {
    crate::scheduler::untried_capable(state, req, Some(class))
}

/// Why the model files a registering node reports may not be recorded, as (field, reason);
/// `None` when they may: each must be of a model the node serves and, for a model of the
/// catalog, the catalog's file. One rule for `decide` and the fold (docs/validation.md,
/// "Execution classes").
pub fn model_hash_problem(
    state: &CoordinatorState,
    n: &prlx_events::event::NodeRegistered,
) -> Option<(String, String)> {
    n.model_hashes.iter().find_map(|(model, hash)| {
        if !n.models.contains(model) {
            // Not named in the field: a key from outside, of any length.
            return Some((
                "model_hashes".into(),
                "names a model the node does not serve".into(),
            ));
        }
        let m = state.catalog_model(model).filter(|m| m.sha256 != *hash)?;
        Some((
            format!("model_hashes.{model}"),
            format!(
                "{hash} is not the catalog's model file {} for {model}",
                m.sha256
            ),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prlx_events::event::Sealed;

    fn r(node: u8, result: &[u8]) -> VerifiedResult {
        VerifiedResult {
            node: NodeId(Hash32([node; 32])),
            attempt: 0,
            result_hash: Hash32::of(result),
            poe: Hash32([0; 32]),
            sealed_result: Sealed(vec![]),
        }
    }

    #[test]
    fn sampling_rate_follows_the_fraction() {
        let seed = Hash32::of(b"epoch seed");
        for bp in [0, 500, 1_000, 2_000, 10_000] {
            let n = 100_000u64;
            let hits = (0..n).filter(|&i| sampled(&seed, RequestId(i), bp)).count() as u64;
            let expected = n * u64::from(bp) / 10_000;
            // Binomial sd at n = 100k is at most 158; allow 5 sd.
            assert!(
                hits.abs_diff(expected) <= 800,
                "bp {bp}: {hits} vs {expected}"
            );
        }
        // Another seed draws another sample.
        let other = Hash32::of(b"other seed");
        let differ = (0..1000)
            .filter(|&i| {
                sampled(&seed, RequestId(i), 5_000) != sampled(&other, RequestId(i), 5_000)
            })
            .count();
        assert!(differ > 300, "{differ}");
    }

    #[test]
    fn probation_samples_a_nodes_first_results_at_its_rate() {
        let epoch = SamplingEpoch {
            epoch: 1,
            seed_hash: Hash32([0; 32]),
            sealed_seed: None,
            sampling_bp: 1_000,
            probation_results: 10,
            probation_sampling_bp: 10_000,
            ends_at: chrono::DateTime::UNIX_EPOCH,
            decisions: Default::default(),
            probation: Default::default(),
            replicas: Vec::new(),
        };
        assert!(on_probation(&epoch, 1) && on_probation(&epoch, 10));
        assert!(!on_probation(&epoch, 11));
        assert_eq!(sampling_rate(&epoch, true), 10_000);
        assert_eq!(sampling_rate(&epoch, false), 1_000);
        // A probation rate under the catalog's never lowers it.
        let low = SamplingEpoch {
            probation_sampling_bp: 500,
            ..epoch.clone()
        };
        assert_eq!(sampling_rate(&low, true), 1_000);
        // No probation: even a first result is past it.
        let none = SamplingEpoch {
            probation_results: 0,
            ..epoch
        };
        assert!(!on_probation(&none, 1));
    }

    #[test]
    fn standing_falls_with_bad_results_and_holds_with_good() {
        let p = ValidationPolicy::default();
        let h = |valid, invalid, disagreements, missed| History {
            valid,
            invalid,
            disagreements,
            missed,
        };
        assert_eq!(standing_bp(&p, h(0, 0, 0, 0)), 10_000);
        assert_eq!(standing_bp(&p, h(0, 1, 0, 0)), 2_000);
        assert_eq!(standing_bp(&p, h(9, 1, 0, 0)), 7_142); // 10 / 14
        assert_eq!(standing_bp(&p, h(0, 0, 1, 0)), 5_000);
        assert!(!removed(&p, h(0, 0, 1, 0)));
        assert!(removed(&p, h(0, 1, 0, 0)));
    }

    #[test]
    fn missed_deadlines_lower_standing_but_never_remove() {
        let p = ValidationPolicy::default();
        let missed = |m| History {
            missed: m,
            ..History::default()
        };
        assert_eq!(standing_bp(&p, missed(1)), 5_000, "1 / (1 + 1)");
        assert_eq!(standing_bp(&p, missed(3)), 2_500);
        assert!(standing_bp(&p, missed(1)) < standing_bp(&p, missed(0)));
        assert!(!removed(&p, missed(1_000)), "misses alone never remove");
        // Confirmed work absorbs a miss: 10 / 11.
        assert_eq!(
            standing_bp(
                &p,
                History {
                    valid: 9,
                    missed: 1,
                    ..History::default()
                }
            ),
            9_090
        );
        // Weight 0 (catalogs from before misses counted): standing as before.
        let old = ValidationPolicy {
            missed_deadline_weight: 0,
            ..p
        };
        assert_eq!(standing_bp(&old, missed(5)), 10_000);
    }

    #[test]
    fn verdicts() {
        assert_eq!(compare(&[r(1, b"x")]), Comparison::Single);
        assert_eq!(compare(&[r(1, b"x"), r(2, b"y")]), Comparison::Tiebreak);
        let n = |i: u8| NodeId(Hash32([i; 32]));
        assert_eq!(
            compare(&[r(1, b"x"), r(2, b"x")]),
            Comparison::Resolved(Verdict::Agreed {
                nodes: vec![n(1), n(2)]
            })
        );
        assert_eq!(
            compare(&[r(1, b"x"), r(2, b"y"), r(3, b"y")]),
            Comparison::Resolved(Verdict::Majority {
                winners: vec![n(2), n(3)],
                dissenters: vec![n(1)]
            })
        );
        assert_eq!(
            compare(&[r(1, b"x"), r(2, b"y"), r(3, b"z")]),
            Comparison::Resolved(Verdict::NoMajority {
                parties: vec![n(1), n(2), n(3)]
            })
        );
    }
}
