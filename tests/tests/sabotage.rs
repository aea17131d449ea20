//! The sabotage simulation over the grid of the validation issue: saboteur fraction f,
//! sabotage rate s, sampling fraction p, each run to the end with a fixed seed. Prints the
//! table that `docs/validation.md` reports (run with `--nocapture` to see it).
//!
//! `PRLX_SABOTAGE_REQUESTS` sets requests per run (default 10_000 over 200 nodes).

use prlx_tests::sabotage::{run, Outcome, Params};

const SEED: u64 = 0x5eed_2026;

/// The default standing policy's weight of a bad result, and one that removes a node on its
/// first proven bad result whatever its record (blacklisting).
const DEFAULT_WEIGHT: u32 = 4;
const BLACKLIST: u32 = 1_000_000_000;

fn params(f: u32, s: u32, p: u32, requests: u64) -> Params {
    Params {
        nodes: 200,
        requests,
        saboteurs_bp: f,
        sabotage_bp: s,
        sampling_bp: p,
        invalid_weight: DEFAULT_WEIGHT,
        seed: SEED,
    }
}

fn requests() -> u64 {
    std::env::var("PRLX_SABOTAGE_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

fn row(p: &Params, o: &Outcome) -> String {
    format!(
        "| {:.2} | {:.1} | {:.2} | {:.4} | {:.4} | {:.4} | {:.3} | {}/{}/{} | {}/{} | {:.3} | {} |",
        f64::from(p.saboteurs_bp) / 1e4,
        f64::from(p.sabotage_bp) / 1e4,
        f64::from(p.sampling_bp) / 1e4,
        o.error_rate(),
        p.expected_error_without_removal(),
        p.sarmenta_bound(),
        o.detection_rate(),
        o.saboteurs_removed,
        o.saboteurs_active,
        o.saboteurs,
        o.honest_flagged,
        o.honest_removed,
        o.overhead(),
        o.failed,
    )
}

#[test]
fn without_sampling_every_sabotaged_result_gets_through() {
    // The control: it shows the simulation measures what it claims.
    let p = params(1_000, 5_000, 0, 1_000);
    let o = run(p);
    assert_eq!(o.wrong_caught, 0);
    assert_eq!(o.wrong_released, o.wrong_submitted);
    assert_eq!(o.dispatches, o.requests, "no redundancy without sampling");
    assert!(o.wrong_submitted > 0);
    assert_eq!((o.saboteurs_removed, o.honest_flagged), (0, 0));
}

#[test]
fn sabotage_grid_default_standing_policy() {
    grid(DEFAULT_WEIGHT);
}

#[test]
fn sabotage_grid_blacklisting_on_first_catch() {
    grid(BLACKLIST);
}

fn grid(invalid_weight: u32) {
    let n = requests();
    println!(
        "\n{n} requests over 200 nodes per run, invalid weight {invalid_weight}, seed {SEED:#x}\n"
    );
    println!("| f | s | p | wrong accepted | no-removal expectation | Sarmenta bound | detection | saboteurs removed/active/all | honest flagged/removed | overhead | failed |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for f in [500, 1_000, 2_000] {
        for s in [1_000, 5_000, 10_000] {
            for p in [500, 1_000, 2_000] {
                let prm = Params {
                    invalid_weight,
                    ..params(f, s, p, n)
                };
                let o = run(prm);
                println!("{}", row(&prm, &o));
                // Every request ends, released or failed.
                assert_eq!(o.released + o.failed, o.requests);
                // A wrong result is drawn with probability p and then caught unless its
                // replica colludes; so at least about p * (1 - f) of them are caught, and the
                // wrong results released stay within the no-removal expectation (plus 4
                // binomial standard deviations at this sample size).
                let p_frac = f64::from(p) / 1e4;
                let f_frac = f64::from(f) / 1e4;
                assert!(
                    o.detection_rate() >= 0.5 * p_frac * (1.0 - f_frac),
                    "{prm:?}: detection {}",
                    o.detection_rate()
                );
                let e = prm.expected_error_without_removal();
                let sd = (e * (1.0 - e) / o.released as f64).sqrt();
                assert!(
                    o.error_rate() <= e + 4.0 * sd,
                    "{prm:?}: error {} over {e} + 4 sd",
                    o.error_rate()
                );
                // Redundancy costs about p extra dispatches per request, plus the tie-breaks.
                assert!(
                    o.overhead() >= p_frac * 0.5 && o.overhead() <= p_frac * 2.0 + 0.05,
                    "{prm:?}: overhead {}",
                    o.overhead()
                );
                // A saboteur caught with no confirmed work behind it leaves the pool.
                assert!(o.saboteurs_removed <= o.saboteurs_active);
            }
        }
    }
}
