//! A simulation of the sharded coordinator of docs/adr/10-sharding.md: the router, nodes
//! placed in shards, and credits reserved across shards by leases, at internet scale (a
//! million nodes, a hundred thousand requests a second). Only what the design's figures need
//! is built: no events, no crypto, no models, one step per millisecond of simulated time.
//!
//! - **Shards** are (model, region) pairs, each one writer ([`Shard`]). The router sends a
//!   request to its (model, region) shard; model popularity is Zipf, regions weighted.
//! - **Nodes** belong to one shard, placed in proportion to the shard's expected demand; a
//!   node runs one request at a time for the model's service time.
//! - **Credits** live on each account's *home* shard (by a hash of the account). Another shard
//!   spends an account's credit only from a *lease* the home granted it: a grant debits the
//!   home at once and reaches the shard one hop later, so the sum of what the home holds, what
//!   is in flight, what every shard holds in leases and what was spent is always the deposit
//!   (checked at every step: no double spending by construction, and the check proves the
//!   bookkeeping). A shard that holds less than a request's price asks the home for a lease
//!   (the request waits two hops); when the home holds too little it recalls the account's
//!   other leases first (two more hops). A lease left unused for a while is returned.
//!
//! Everything random comes from the seeded [`crate::rng::Rng`], so a run is reproducible.

mod run;

pub use run::{simulate, Figures, Params};

pub use crate::rng::Rng;

/// A uniform draw in `[0, 1)` from `rng`.
pub fn unit(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Cumulative weights of a Zipf law over `n` ranks with exponent `s`, for [`pick`].
pub fn zipf(n: usize, s: f64) -> Vec<f64> {
    let mut acc = 0.0;
    let mut cdf: Vec<f64> = (1..=n)
        .map(|k| {
            acc += 1.0 / (k as f64).powf(s);
            acc
        })
        .collect();
    for c in &mut cdf {
        *c /= acc;
    }
    cdf
}

/// The rank a uniform draw `u` falls in under cumulative weights `cdf`.
pub fn pick(cdf: &[f64], u: f64) -> usize {
    cdf.partition_point(|&c| c <= u).min(cdf.len() - 1)
}
