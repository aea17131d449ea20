//! Tier claims checked against the work a node returns: one rule for `decide` and the fold.
//!
//! A node declares its hardware tier; the tier weighs its rewards and decides what it may be
//! sent. Rather than a separate calibration prompt, every verified result is the calibration:
//! its rate is its token count over the time from its dispatch to its result, both on the
//! log's clock, so the fold measures exactly what `decide` measured. That time includes the
//! network and the node's queue, so a measurement can only understate a node's speed; a
//! single slow result therefore proves nothing, and a node moves down only after
//! [`TIER_WINDOW`] verified results in a row below its tier's floor for their model
//! (`CatalogModel::tier_floors_tps`). Results too short to time well are not measured.

use chrono::{DateTime, Utc};
use prlx_events::catalog::CatalogModel;
use prlx_events::event::TIER_WINDOW;

use super::views::RequestView;

/// Results with fewer tokens are not measured: their time is mostly the round trip.
pub const MIN_MEASURED_TOKENS: u32 = 16;

/// The rate of a result of `token_count` tokens dispatched at `dispatched_at` and recorded at
/// `recorded_at`, in thousandths of a token per second; `None` when it is not measured.
pub fn rate_milli_tps(
    token_count: u32,
    dispatched_at: DateTime<Utc>,
    recorded_at: DateTime<Utc>,
) -> Option<u64> {
    if token_count < MIN_MEASURED_TOKENS {
        return None;
    }
    let ms = u64::try_from((recorded_at - dispatched_at).num_milliseconds())
        .unwrap_or(0)
        .max(1);
    Some(u64::from(token_count) * 1_000_000 / ms)
}

/// The rate of `req`'s running attempt's result of `token_count` tokens recorded at `at`:
/// its dispatch is its deadline less the request's. `None` for a general-path sub-task.
pub fn measure(req: &RequestView, token_count: u32, at: DateTime<Utc>) -> Option<u64> {
    if req.subtask_of.is_some() {
        // A general-path sub-task's output is not tokens, whatever count its report carries.
        return None;
    }
    let deadline_at = req.running.as_ref()?.deadline_at?;
    let dispatched_at = deadline_at - chrono::Duration::seconds(i64::from(req.deadline_seconds));
    rate_milli_tps(token_count, dispatched_at, at)
}

/// What a verified result measured at `rate` does to a node of `tier` with `below` results
/// in a row under its floor: the new count, and the tier it moves to when the run is long
/// enough (the count then starts again).
pub fn judge(tier: u8, below: u32, model: &CatalogModel, rate: Option<u64>) -> (u32, Option<u8>) {
    let Some(rate) = rate else {
        return (below, None);
    };
    let Some(floor) = model.floor_milli_tps(tier) else {
        return (0, None);
    };
    if rate >= floor {
        return (0, None);
    }
    let below = below + 1;
    if below < TIER_WINDOW {
        return (below, None);
    }
    let to = (2..tier)
        .rev()
        .find(|&t| model.floor_milli_tps(t).is_none_or(|f| rate >= f))
        .unwrap_or(1);
    (0, Some(to))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prlx_events::Hash32;

    fn model(floors: Vec<u32>) -> CatalogModel {
        CatalogModel {
            model: "chat".into(),
            sha256: Hash32([1; 32]),
            min_tier: 1,
            base_price: 1,
            per_token_price: 1,
            max_tokens_limit: 100,
            context_length: 0,
            tier_floors_tps: floors,
        }
    }

    #[test]
    fn a_run_of_slow_results_moves_a_node_to_the_tier_its_rate_meets() {
        // Floors: tier 2: 10 tok/s, tier 3: 50, tier 4: 100.
        let m = model(vec![10, 50, 100]);
        let t0 = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        let one_s = t0 + chrono::Duration::seconds(1);
        // 20 tokens in 1 s: 20 tok/s, below tier 4's 100 and tier 3's 50, above tier 2's.
        let rate = rate_milli_tps(20, t0, one_s);
        assert_eq!(rate, Some(20_000));
        assert_eq!(judge(4, 0, &m, rate), (1, None));
        assert_eq!(judge(4, 1, &m, rate), (2, None));
        assert_eq!(judge(4, 2, &m, rate), (0, Some(2)));
        // One result at the floor ends the run.
        assert_eq!(judge(4, 2, &m, Some(100_000)), (0, None));
        // Unmeasured (too short) leaves it as it was; tier 1 has no floor.
        assert_eq!(rate_milli_tps(15, t0, one_s), None);
        assert_eq!(judge(4, 2, &m, None), (2, None));
        assert_eq!(judge(1, 2, &m, Some(1)), (0, None));
        // Below every floor: tier 1.
        assert_eq!(judge(3, 2, &m, Some(1)), (0, Some(1)));
        // A model without floors checks nothing.
        assert_eq!(judge(5, 2, &model(vec![]), Some(1)), (0, None));
        // A result recorded at its dispatch's instant counts as 1 ms.
        assert_eq!(rate_milli_tps(16, t0, t0), Some(16_000_000));
    }
}
