//! Per-caller rate limits: one generic cell rate algorithm (GCRA) cell per caller, the
//! token bucket written as a single instant, so a caller costs one map entry.
//!
//! Callers are keyed by IP address; an IPv6 caller by its /64, since one host usually holds a
//! whole /64 and could otherwise take a fresh bucket per address. The map is bounded: a
//! caller whose bucket has filled up again is indistinguishable from a new one and is dropped,
//! and when every slot is taken by a caller still spending, a new caller is refused until one
//! refills rather than given a slot someone else's burst paid for.
//!
//! Time is passed in, so tests drive it (the middleware reads `tokio::time::Instant`, which a
//! test with paused time advances).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The most callers tracked at once.
pub const MAX_TRACKED_CALLERS: usize = 65_536;

/// A sustained rate and a burst, per caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per second, sustained; at least 1.
    pub per_second: u32,
    /// Requests a caller idle long enough may send at once; at least 1.
    pub burst: u32,
}

/// Who a caller is, for the limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CallerKey {
    V4([u8; 4]),
    /// The /64 prefix.
    V6([u8; 8]),
    /// No peer address (a router driven in process): all such requests share one bucket.
    Unknown,
}

impl CallerKey {
    pub fn of(ip: Option<IpAddr>) -> CallerKey {
        match ip.map(|ip| ip.to_canonical()) {
            Some(IpAddr::V4(v4)) => CallerKey::V4(v4.octets()),
            Some(IpAddr::V6(v6)) => {
                let mut prefix = [0; 8];
                prefix.copy_from_slice(&v6.octets()[..8]);
                CallerKey::V6(prefix)
            }
            None => CallerKey::Unknown,
        }
    }
}

/// The rate limiter: callers' theoretical arrival times under a [`RateLimit`].
#[derive(Debug)]
pub struct RateLimiter {
    /// The time one request costs.
    interval: Duration,
    /// How far ahead of now a caller's arrival time may run: `burst` requests' worth.
    tolerance: Duration,
    capacity: usize,
    callers: Mutex<BTreeMap<CallerKey, Instant>>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> RateLimiter {
        RateLimiter::with_capacity(limit, MAX_TRACKED_CALLERS)
    }

    /// A limiter tracking at most `capacity` callers.
    pub fn with_capacity(limit: RateLimit, capacity: usize) -> RateLimiter {
        let interval = Duration::from_secs(1) / limit.per_second.max(1);
        RateLimiter {
            interval,
            tolerance: interval * limit.burst.max(1),
            capacity: capacity.max(1),
            callers: Mutex::new(BTreeMap::new()),
        }
    }

    /// Spends one request of `caller`'s at `now`: `Ok`, or `Err(wait)` with how long until
    /// one would be allowed.
    pub fn check(&self, caller: CallerKey, now: Instant) -> Result<(), Duration> {
        // A poisoned lock only means another request panicked mid-update of a few instants.
        let mut callers = self.callers.lock().unwrap_or_else(|e| e.into_inner());
        if !callers.contains_key(&caller) && callers.len() >= self.capacity {
            // Dropping a refilled caller loses nothing: it would start full again.
            callers.retain(|_, tat| *tat > now);
            if callers.len() >= self.capacity {
                return Err(self.interval);
            }
        }
        let tat = callers.get(&caller).copied().unwrap_or(now).max(now);
        let next = tat + self.interval;
        let ahead = next - now;
        if ahead > self.tolerance {
            return Err(ahead - self.tolerance);
        }
        callers.insert(caller, next);
        Ok(())
    }

    /// How many callers are tracked now.
    pub fn tracked(&self) -> usize {
        self.callers.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> CallerKey {
        CallerKey::of(Some(s.parse().unwrap()))
    }

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 10,
            burst: 3,
        });
        let t0 = Instant::now();
        let a = ip("10.0.0.1");
        for _ in 0..3 {
            limiter.check(a, t0).unwrap();
        }
        assert_eq!(limiter.check(a, t0), Err(Duration::from_millis(100)));
        // Another caller has a bucket of its own.
        limiter.check(ip("10.0.0.2"), t0).unwrap();
        // One interval later, one more; not two.
        let t1 = t0 + Duration::from_millis(100);
        limiter.check(a, t1).unwrap();
        assert!(limiter.check(a, t1).is_err());
        // Idle long enough, the whole burst again.
        let t2 = t1 + Duration::from_secs(1);
        for _ in 0..3 {
            limiter.check(a, t2).unwrap();
        }
        assert!(limiter.check(a, t2).is_err());
    }

    #[test]
    fn ipv6_callers_are_their_64_and_mapped_v4_is_v4() {
        assert_eq!(ip("2001:db8:1:2::1"), ip("2001:db8:1:2:ffff::9"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("::ffff:10.0.0.1"), ip("10.0.0.1"));
    }

    #[test]
    fn the_map_is_bounded_and_refilled_callers_make_room() {
        let limiter = RateLimiter::with_capacity(
            RateLimit {
                per_second: 1,
                burst: 2,
            },
            2,
        );
        let t0 = Instant::now();
        limiter.check(ip("10.0.0.1"), t0).unwrap();
        limiter.check(ip("10.0.0.2"), t0).unwrap();
        // Both still spending: a third caller waits rather than evicting one.
        assert!(limiter.check(ip("10.0.0.3"), t0).is_err());
        assert_eq!(limiter.tracked(), 2);
        // Once they have refilled, their slots are free.
        let later = t0 + Duration::from_secs(2);
        limiter.check(ip("10.0.0.3"), later).unwrap();
        assert_eq!(limiter.tracked(), 1);
    }
}
