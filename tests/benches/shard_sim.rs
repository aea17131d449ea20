//! The sharding simulation at the design's scale (docs/adr/10-sharding.md): a million nodes,
//! 100k requests/s over 16 models in 4 regions, credits reserved across shards by leases; run
//! twice, for 100k accounts (a public market's long tail) and for 100 (gateways such as
//! ParalleliX AI's, each spending for many users).
//!
//! ```sh
//! cargo bench -p prlx-tests --bench shard_sim            # 60 simulated seconds
//! PRLX_SHARD_SIM_SECONDS=10 cargo bench -p prlx-tests --bench shard_sim
//! ```

use std::time::Instant;

use prlx_tests::shard::{simulate, Params};

fn main() {
    let seconds: u64 = std::env::var("PRLX_SHARD_SIM_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    for accounts in [100_000, 100] {
        run(Params {
            accounts,
            ..Params::internet_scale(seconds * 1000)
        });
    }
}

fn run(p: Params) {
    let seconds = p.duration_ms / 1000;
    let started = Instant::now();
    let f = simulate(&p);
    let wall = started.elapsed();
    println!(
        "{} nodes, {} accounts, {} requests/s for {seconds} s over {} shards ({} models x {} regions), \
         hop {} ms, idle lease {} s; simulated in {:.1} s",
        p.nodes,
        p.accounts,
        p.per_ms * 1000,
        f.shards,
        p.models,
        p.regions,
        p.hop_ms,
        p.idle_ms / 1000,
        wall.as_secs_f64()
    );
    println!();
    println!("| figure | value |");
    println!("|---|---:|");
    let pct = |n: u64| 100.0 * n as f64 / f.requests.max(1) as f64;
    println!("| requests | {} |", f.requests);
    println!("| accepted | {} ({:.2} %) |", f.accepted, pct(f.accepted));
    println!(
        "| refused: deposit spent | {} ({:.2} %) |",
        f.refused_no_credit,
        pct(f.refused_no_credit)
    );
    println!(
        "| reserved with no cross-shard message | {:.2} % |",
        pct(f.local)
    );
    println!("| waited for a lease | {:.2} % |", pct(f.waited));
    println!("| still waiting at the end | {} |", f.still_waiting);
    println!(
        "| lease wait p50 / p99 | {} / {} ms |",
        f.wait_p50_ms, f.wait_p99_ms
    );
    println!(
        "| cross-shard messages per request | {:.4} |",
        f.messages_per_request()
    );
    println!(
        "| lease requests / grants / recalls / returns | {} / {} / {} / {} |",
        f.lease_requests, f.grants, f.recalls, f.returns
    );
    println!(
        "| busiest shard / mean shard | {:.0} / {:.0} requests/s |",
        f.max_shard_rps, f.mean_shard_rps
    );
    println!(
        "| busiest shard's nodes, peak busy | {} nodes, {:.1} % |",
        f.max_shard_nodes,
        100.0 * f.peak_busy_fraction
    );
    println!(
        "| conservation checks (every account, every simulated second) | {} passed |",
        f.conservation_checks
    );
}
