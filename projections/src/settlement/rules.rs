//! The arithmetic of settlement, pure and on its own: whose bond counts, what a policy must
//! satisfy, tier weights, the bootstrap unlock, the steady-state split and the largest-
//! remainder split of a pool. Re-exported by [`super`].

use std::cmp::Ordering;

use prlx_events::event::RewardPolicyPublished;

/// Whether a bond for the node by `staker` counts as its stake (weight, payouts, payout-tree
/// leaves). For a signed registration only when the staker is the operator the node signed:
/// the contract makes whoever stakes first for an id its staker, so without this anyone could
/// front-run a node's first stake with 1 wei and be paid its rewards. A node that named no
/// operator has no stake that counts. Registrations recorded before nodes signed them keep
/// the rule they were recorded under: any staker's bond counts.
pub fn stake_counts(signed: bool, operator: Option<&str>, staker: &str) -> bool {
    !signed || operator == Some(staker)
}

/// What is wrong with a reward policy: the field and why.
pub fn policy_problem(p: &RewardPolicyPublished) -> Option<(&'static str, String)> {
    if p.epoch_seconds == 0 {
        return Some(("epoch_seconds", "must be positive".into()));
    }
    if p.uptime_slot_seconds == 0 || !p.epoch_seconds.is_multiple_of(p.uptime_slot_seconds) {
        return Some((
            "uptime_slot_seconds",
            format!(
                "must be positive and divide epoch_seconds ({})",
                p.epoch_seconds
            ),
        ));
    }
    if p.operator_bucket_pct > 100 {
        return Some(("operator_bucket_pct", "must be at most 100".into()));
    }
    if p.unlock_epochs == 0 {
        return Some(("unlock_epochs", "must be positive".into()));
    }
    let split = u32::from(p.operators_pct) + u32::from(p.treasury_pct) + u32::from(p.infra_pct);
    if split != 100 {
        return Some((
            "operators_pct",
            format!("operators_pct + treasury_pct + infra_pct must be 100, not {split}"),
        ));
    }
    let mut tiers: Vec<u8> = p.tier_weights.iter().map(|t| t.tier).collect();
    tiers.sort_unstable();
    if let Some(w) = tiers.windows(2).find(|w| w[0] == w[1]) {
        return Some(("tier_weights", format!("tier {} is listed twice", w[0])));
    }
    None
}

/// The weight of `tier` under `policy`; an unlisted tier weighs 0.
pub fn tier_weight(policy: &RewardPolicyPublished, tier: u8) -> u32 {
    policy
        .tier_weights
        .iter()
        .find(|t| t.tier == tier)
        .map_or(0, |t| t.weight)
}

/// What the bucket unlocks in the `k`-th bootstrap epoch (0-based): the `N` amounts
/// `floor(B(k+1)/N) - floor(Bk/N)` add up to the bucket `B` exactly; nothing after `N`.
pub fn bootstrap_unlock(policy: &RewardPolicyPublished, k: u64) -> u64 {
    let n = u128::from(policy.unlock_epochs);
    let k = u128::from(k);
    if k >= n {
        return 0;
    }
    let bucket = u128::from(policy.total_supply) * u128::from(policy.operator_bucket_pct) / 100;
    let unlocked = |i: u128| bucket * i / n;
    u64::try_from(unlocked(k + 1) - unlocked(k)).expect("at most the bucket, which fits")
}

/// The steady-state split of `income`: `(operators, treasury, infra)`. Treasury and infra get
/// the floor of their percent; operators get the rest, so the three add up to `income`.
pub fn steady_split(policy: &RewardPolicyPublished, income: u64) -> (u64, u64, u64) {
    let pct =
        |p: u8| u64::try_from(u128::from(income) * u128::from(p) / 100).expect("at most income");
    let treasury = pct(policy.treasury_pct);
    let infra = pct(policy.infra_pct);
    (income - treasury - infra, treasury, infra)
}

/// `floor(a * b / c)` and `(a * b) mod c`, exactly, for `b <= c` (so the quotient is at most
/// `a`): the product can need 192 bits, so it is divided bit by bit.
pub fn mul_div_rem(a: u64, b: u128, c: u128) -> (u64, u128) {
    assert!(c > 0 && b <= c, "mul_div_rem needs 0 < c and b <= c");
    let (b_hi, b_lo) = (b >> 64, b & u128::from(u64::MAX));
    let p_lo = u128::from(a) * b_lo;
    let p_mid = u128::from(a) * b_hi;
    let (lo, carry) = p_lo.overflowing_add(p_mid << 64);
    let hi = (p_mid >> 64) + u128::from(carry);
    if hi == 0 {
        return (u64::try_from(lo / c).expect("b <= c"), lo % c);
    }
    let (mut q, mut r) = (0u128, 0u128);
    for i in (0..256).rev() {
        let bit = if i >= 128 {
            (hi >> (i - 128)) & 1
        } else {
            (lo >> i) & 1
        };
        let overflow = r >> 127;
        r = (r << 1) | bit;
        q <<= 1;
        if overflow == 1 || r >= c {
            r = r.wrapping_sub(c);
            q |= 1;
        }
    }
    (u64::try_from(q).expect("b <= c"), r)
}

/// Splits `pool` by `weights`: `floor(pool * w / W)` each, then the leftover minor units one
/// each to the largest remainders, ties to the earlier entry. Returns the amounts and what
/// is left unpaid (all of `pool` when `W = 0`; otherwise 0).
pub fn split_pool(pool: u64, weights: &[u128]) -> (Vec<u64>, u64) {
    let total = weights.iter().fold(0u128, |s, w| s.saturating_add(*w));
    if total == 0 {
        return (vec![0; weights.len()], pool);
    }
    let shares: Vec<(u64, u128)> = weights
        .iter()
        .map(|w| mul_div_rem(pool, *w, total))
        .collect();
    let mut amounts: Vec<u64> = shares.iter().map(|s| s.0).collect();
    let mut leftover = pool - amounts.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| match shares[b].1.cmp(&shares[a].1) {
        Ordering::Equal => a.cmp(&b),
        other => other,
    });
    // Fewer units are left than there are positive remainders, unless the total weight
    // saturated (it cannot in practice); then the rest carries over.
    for i in order {
        if leftover == 0 || shares[i].1 == 0 {
            break;
        }
        amounts[i] += 1;
        leftover -= 1;
    }
    (amounts, leftover)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn only_the_signed_operators_bond_counts() {
        let op = "0x00000000000000000000000000000000000000aa";
        let thief = "0x00000000000000000000000000000000000000bb";
        assert!(stake_counts(true, Some(op), op));
        assert!(!stake_counts(true, Some(op), thief));
        assert!(!stake_counts(true, None, thief));
        assert!(
            stake_counts(false, None, thief),
            "unsigned: as recorded before"
        );
    }

    #[test]
    fn mul_div_rem_is_exact_past_128_bits() {
        // (2^64 - 1) * (2^100) / (2^100 + 1): the product needs 164 bits.
        let (a, b, c) = (u64::MAX, 1u128 << 100, (1u128 << 100) + 1);
        let (q, r) = mul_div_rem(a, b, c);
        // a*b = q*c + r  <=>  a*2^100 = q*2^100 + q + r, with q = a - 1: r = 2^100 - a + 1.
        assert_eq!(q, u64::MAX - 1);
        assert_eq!(r, (1u128 << 100) - u128::from(u64::MAX) + 1);
        assert_eq!(mul_div_rem(7, 3, 4), (5, 1));
        assert_eq!(mul_div_rem(u64::MAX, u128::MAX, u128::MAX), (u64::MAX, 0));
    }

    #[test]
    fn the_bootstrap_unlock_adds_up_to_the_bucket() {
        let p = RewardPolicyPublished {
            total_supply: 1_000_000_007,
            unlock_epochs: 730,
            ..Default::default()
        };
        let total: u64 = (0..800).map(|k| bootstrap_unlock(&p, k)).sum();
        assert_eq!(total, 1_000_000_007 * 25 / 100);
        assert_eq!(bootstrap_unlock(&p, 730), 0);
    }

    /// `a * b + add` as (high, low) 128-bit halves, by schoolbook multiplication.
    fn wide(a: u64, b: u128, add: u128) -> (u128, u128) {
        let lo = u128::from(a) * (b & u128::from(u64::MAX));
        let mid = u128::from(a) * (b >> 64);
        let (lo, c1) = lo.overflowing_add(mid << 64);
        let (lo, c2) = lo.overflowing_add(add);
        ((mid >> 64) + u128::from(c1) + u128::from(c2), lo)
    }

    proptest! {
        #[test]
        fn mul_div_rem_inverts_the_wide_product(
            a in any::<u64>(),
            b in any::<u128>(),
            extra in any::<u128>(),
        ) {
            let c = b.saturating_add(extra).max(1);
            let (q, r) = mul_div_rem(a, b, c);
            prop_assert!(r < c);
            // q * c + r == a * b, in 256 bits.
            let (qc_hi, qc_lo) = {
                let (hi, lo) = wide(q, c & u128::from(u64::MAX), r);
                let (mid_hi, mid_lo) = wide(q, c >> 64, 0);
                let (lo, carry) = lo.overflowing_add(mid_lo << 64);
                (hi + (mid_lo >> 64) + (mid_hi << 64) + u128::from(carry), lo)
            };
            prop_assert_eq!((qc_hi, qc_lo), wide(a, b, 0));
        }

        #[test]
        fn payouts_add_up_to_the_pool(
            pool in any::<u64>(),
            weights in proptest::collection::vec(
                prop_oneof![Just(0u128), any::<u128>().prop_map(|w| w >> 4), 0u128..1000],
                0..20,
            ),
        ) {
            let (amounts, left) = split_pool(pool, &weights);
            let paid: u128 = amounts.iter().map(|a| u128::from(*a)).sum();
            prop_assert_eq!(paid + u128::from(left), u128::from(pool));
            let total: u128 = weights.iter().fold(0u128, |s, w| s.saturating_add(*w));
            if total > 0 && total < u128::MAX {
                prop_assert_eq!(left, 0);
            }
            for (a, w) in amounts.iter().zip(&weights) {
                if *w == 0 {
                    prop_assert_eq!(*a, 0);
                }
            }
        }

        #[test]
        fn mul_div_rem_matches_u128_when_it_fits(
            a in any::<u32>(),
            b in any::<u64>(),
            extra in any::<u64>(),
        ) {
            let c = u128::from(b) + u128::from(extra) + 1;
            let (q, r) = mul_div_rem(u64::from(a), u128::from(b), c);
            let p = u128::from(a) * u128::from(b);
            prop_assert_eq!((u128::from(q), r), (p / c, p % c));
        }
    }
}
