//! Signing one statement with the coordinator's key: the `rsa` crate (`crypto::sign`) against
//! AWS-LC with the key parsed once (`signer::Signer`, what the encoder thread signs the log's
//! seals with), side by side, alternating, at 2048 bits (the tests' keys) and 3072 (the
//! coordinator's, `SIGNING_KEY_BITS`).
//!
//! `cargo bench -p prlx-tests --bench signing` (`PRLX_BENCH_QUICK=1` for a short run).

use std::time::Instant;

use prlx_events::crypto::{seal_statement, sign, verify};
use prlx_events::signer::Signer;
use prlx_events::Hash32;
use rsa::rand_core::OsRng;
use rsa::RsaPrivateKey;

#[path = "../../node/benches/common/median.rs"]
mod median;
use median::median;

fn main() {
    let rounds = if std::env::var_os("PRLX_BENCH_QUICK").is_some() {
        10
    } else {
        100
    };
    println!("| key | rsa crate (µs) | AWS-LC, key kept (µs) | rsa / AWS-LC |");
    println!("|---|---:|---:|---:|");
    for bits in [2048, 3072] {
        let key = RsaPrivateKey::new(&mut OsRng, bits).unwrap();
        let public = key.to_public_key();
        let signer = Signer::new(&key);
        let (mut portable, mut lc) = (Vec::new(), Vec::new());
        for i in 0..rounds {
            let statement = seal_statement(Hash32([i as u8; 32]));
            let t = Instant::now();
            let a = sign(&key, &statement, &mut OsRng);
            portable.push(t.elapsed());
            let t = Instant::now();
            let b = signer.sign(&statement, &aws_lc_rs::rand::SystemRandom::new());
            lc.push(t.elapsed());
            // Both are signatures the auditor accepts.
            assert!(verify(&public, &statement, &a) && verify(&public, &statement, &b));
        }
        let (p, l) = (median(portable), median(lc));
        println!(
            "| {bits} bits | {:.0} | {:.0} | {:.1}× |",
            p.as_secs_f64() * 1e6,
            l.as_secs_f64() * 1e6,
            p.as_secs_f64() / l.as_secs_f64()
        );
    }
}
