//! The bootstrap bucket's Sablier stream, as the settlement reads it: what the stream has
//! unlocked at a time, computed exactly as Sablier's Lockup does for a linear stream
//! (`LockupMath.calculateStreamedAmountLL` in `@sablier/lockup`), from the terms the
//! coordinator read off the chain (`RewardStreamObserved`).
//!
//! A bootstrap epoch `[s, e)` earns what the stream unlocks in it, in credit units:
//! `floor(streamed(e) / 10^9) - floor(streamed(s) / 10^9)`. The floors telescope, so the
//! epochs together never pay more than the stream has unlocked by their end, and the wei
//! below one unit stay with the distributor.

use prlx_events::event::{RewardStreamObserved, CREDIT_UNIT_WEI};
use serde::{Deserialize, Serialize};

/// A linear stream's terms, as integers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamTerms {
    pub deposited_wei: u128,
    pub start_time: u64,
    /// 0: no cliff.
    pub cliff_time: u64,
    pub end_time: u64,
    /// Seconds per step of the unlock (1: continuous).
    pub granularity: u64,
    pub start_unlock_wei: u128,
    pub cliff_unlock_wei: u128,
}

fn decimal(field: &'static str, text: &str) -> Result<u128, (&'static str, String)> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err((field, format!("{text:?} is not a decimal amount")));
    }
    text.parse()
        .map_err(|_| (field, format!("{text} passes u128")))
}

impl StreamTerms {
    /// The terms of an observation, or why they are not a linear stream this can follow:
    /// `(field, reason)`.
    pub fn of(o: &RewardStreamObserved) -> Result<StreamTerms, (&'static str, String)> {
        let terms = StreamTerms {
            deposited_wei: decimal("deposited_wei", &o.deposited_wei)?,
            start_time: o.start_time,
            cliff_time: o.cliff_time,
            end_time: o.end_time,
            granularity: o.granularity,
            start_unlock_wei: decimal("start_unlock_wei", &o.start_unlock_wei)?,
            cliff_unlock_wei: decimal("cliff_unlock_wei", &o.cliff_unlock_wei)?,
        };
        if terms.end_time <= terms.start_time {
            return Err(("end_time", "must be after start_time".into()));
        }
        if terms.cliff_time != 0
            && !(terms.start_time < terms.cliff_time && terms.cliff_time < terms.end_time)
        {
            return Err(("cliff_time", "must be 0 or between start and end".into()));
        }
        if terms.granularity == 0 {
            return Err(("granularity", "must be positive".into()));
        }
        match terms.start_unlock_wei.checked_add(terms.cliff_unlock_wei) {
            Some(sum) if sum <= terms.deposited_wei => {}
            _ => {
                return Err((
                    "start_unlock_wei",
                    "the unlock amounts pass the deposit".into(),
                ))
            }
        }
        if o.cancelable {
            // A cancelled stream stops unlocking at a time the terms do not say.
            return Err((
                "cancelable",
                "the bootstrap stream must not be cancelable".into(),
            ));
        }
        Ok(terms)
    }

    /// What the stream has unlocked at Unix time `t` (seconds), minor units of PRLX.
    pub fn streamed_at(&self, t: i64) -> u128 {
        let Ok(t) = u64::try_from(t) else {
            return 0;
        };
        if self.start_time > t {
            return 0;
        }
        if self.cliff_time > t {
            return self.start_unlock_wei;
        }
        if self.end_time <= t {
            return self.deposited_wei;
        }
        let unlocks = self.start_unlock_wei + self.cliff_unlock_wei;
        if unlocks >= self.deposited_wei {
            return self.deposited_wei;
        }
        let from = if self.cliff_time == 0 {
            self.start_time
        } else {
            self.cliff_time
        };
        // floor(elapsed / g) * g < duration < 2^64: the product stays exact in u128 by u128.
        let stepped = (t - from) / self.granularity * self.granularity;
        let portion = mul_div(
            u128::from(stepped),
            self.deposited_wei - unlocks,
            u128::from(self.end_time - from),
        );
        unlocks + portion
    }

    /// The credit units the stream unlocks from `from` to `to` (Unix seconds), each end
    /// rounded down to whole units.
    pub fn units_between(&self, from: i64, to: i64) -> u64 {
        let units = |t| self.streamed_at(t) / CREDIT_UNIT_WEI;
        let (a, b) = (units(from), units(to));
        // At most the deposit / 10^9, which fits a u64 for any supply of PRLX.
        u64::try_from(b.saturating_sub(a)).unwrap_or(u64::MAX)
    }
}

/// `a * b` in 256 bits, as (high, low) halves.
fn wide_mul(a: u128, b: u128) -> (u128, u128) {
    const LOW: u128 = u64::MAX as u128;
    let (a1, a0) = (a >> 64, a & LOW);
    let (b1, b0) = (b >> 64, b & LOW);
    // (a1·2^64 + a0)(b1·2^64 + b0) = a1b1·2^128 + (a1b0 + a0b1)·2^64 + a0b0
    let (mid, mid_carry) = (a1 * b0).overflowing_add(a0 * b1);
    let (lo, lo_carry) = (a0 * b0).overflowing_add(mid << 64);
    let hi = a1 * b1 + (mid >> 64) + (u128::from(mid_carry) << 64) + u128::from(lo_carry);
    (hi, lo)
}

/// `floor(a * b / c)` with the product in 256 bits; the quotient must fit u128 (it does here:
/// it is less than `b`).
pub fn mul_div(a: u128, b: u128, c: u128) -> u128 {
    let (hi, lo) = wide_mul(a, b);
    // Long division of (hi, lo) by c, one bit at a time.
    let (mut rem, mut q) = (0u128, 0u128);
    for i in (0..256).rev() {
        let bit = if i >= 128 {
            (hi >> (i - 128)) & 1
        } else {
            (lo >> i) & 1
        };
        let carry = rem >> 127;
        rem = (rem << 1) | bit;
        if carry == 1 || rem >= c {
            rem = rem.wrapping_sub(c);
            if i < 128 {
                q |= 1 << i;
            }
        }
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn linear(deposited: u128, start: u64, end: u64) -> StreamTerms {
        StreamTerms {
            deposited_wei: deposited,
            start_time: start,
            cliff_time: 0,
            end_time: end,
            granularity: 1,
            start_unlock_wei: 0,
            cliff_unlock_wei: 0,
        }
    }

    #[test]
    fn nothing_before_the_start_everything_from_the_end_linear_between() {
        let s = linear(1_000, 100, 200);
        assert_eq!(s.streamed_at(-5), 0);
        assert_eq!(s.streamed_at(99), 0);
        assert_eq!(s.streamed_at(100), 0);
        assert_eq!(s.streamed_at(150), 500);
        assert_eq!(s.streamed_at(133), 330);
        assert_eq!(s.streamed_at(200), 1_000);
        assert_eq!(s.streamed_at(1_000_000), 1_000);
    }

    #[test]
    fn a_cliff_and_steps_hold_the_unlock_back() {
        let s = StreamTerms {
            cliff_time: 150,
            granularity: 10,
            start_unlock_wei: 100,
            cliff_unlock_wei: 200,
            ..linear(1_000, 100, 200)
        };
        assert_eq!(
            s.streamed_at(120),
            100,
            "before the cliff: the start unlock"
        );
        assert_eq!(s.streamed_at(150), 300, "at the cliff: both unlocks");
        assert_eq!(s.streamed_at(159), 300, "within the first step");
        assert_eq!(s.streamed_at(160), 300 + 700 * 10 / 50);
        assert_eq!(s.streamed_at(200), 1_000);
    }

    #[test]
    fn units_telescope_to_what_unlocked() {
        let deposited = 250_000_000_000_000_000_000_000_000u128; // 2.5 x 10^26: a real bucket
        let s = linear(deposited, 1_000, 1_000 + 730 * 86_400);
        let total: u64 = (0..731)
            .map(|k| s.units_between(1_000 + k * 86_400, 1_000 + (k + 1) * 86_400))
            .sum();
        assert_eq!(u128::from(total), deposited / CREDIT_UNIT_WEI);
    }

    proptest! {
        #[test]
        fn mul_div_matches_u128_when_the_product_fits(a in any::<u64>(), b in any::<u64>(), c in 1u128..) {
            let exact = u128::from(a) * u128::from(b) / c;
            prop_assert_eq!(mul_div(u128::from(a), u128::from(b), c), exact);
        }

        #[test]
        fn mul_div_is_the_floor_past_128_bits(a in any::<u64>(), b in any::<u128>(), c in 1u128..) {
            // Quotients that fit: a < c keeps a·b/c below b.
            prop_assume!(u128::from(a) < c);
            let q = mul_div(u128::from(a), b, c);
            let product = wide_mul(u128::from(a), b);
            let below = wide_mul(q, c);
            let (lo, carry) = below.1.overflowing_add(c);
            let above = (below.0 + u128::from(carry), lo);
            prop_assert!(below <= product && product < above, "q·c <= a·b < (q+1)·c");
        }

        #[test]
        fn mul_div_by_a_factor_gives_the_other(a in 1u128.., b in any::<u128>()) {
            prop_assert_eq!(mul_div(a, b, a), b);
        }
    }
}
