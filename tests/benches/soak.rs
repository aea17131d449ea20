//! The soak: a real `prlx-coordinator serve` (file log, TLS with its development certificate,
//! credits from a private chain) and tiny-model `prlx-node run`s on loopback under sustained
//! load, the resident memory of each process sampled every few seconds (tests/src/soak.rs).
//!
//! ```sh
//! scripts/setup-models.sh
//! cargo build --release -p prlx-commands -p prlx-node --bins
//! cargo bench -p prlx-tests --bench soak -- [--minutes 10] [--nodes 3] [--clients 6]
//!     [--rate R] [--sample-secs 5] [--warmup-percent 20] [--max-tokens 16] [--csv PATH]
//! ```
//!
//! The load is a closed loop of `--clients` submissions in flight (default two per node): a new
//! one as soon as one ends, so the queue stays bounded. `--rate R` offers R submissions a second
//! instead, whatever the nodes keep up with. The coordinator runs with its default settings
//! but `--rate-limit 0`: the client and every node call from 127.0.0.1.
//!
//! Printed on stdout: the figures and latencies as markdown tables ready for BENCHMARKS.md,
//! then the samples (at most 25 rows; `--csv PATH` writes them all). What the processes print
//! goes to stderr, prefixed with their names.

use std::time::Duration;

use prlx_tests::soak::{self, Load, SoakConfig};

fn main() -> anyhow::Result<()> {
    let mut config = SoakConfig::default();
    let mut clients = None;
    let mut rate = None;
    let mut csv = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        // `cargo bench` passes `--bench` to every bench binary.
        if flag == "--bench" {
            continue;
        }
        let value = args
            .next()
            .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
        match flag.as_str() {
            "--minutes" => config.duration = Duration::from_secs_f64(value.parse::<f64>()? * 60.0),
            "--nodes" => config.nodes = value.parse()?,
            "--clients" => clients = Some(value.parse()?),
            "--rate" => rate = Some(value.parse()?),
            "--sample-secs" => config.sample_every = Duration::from_secs_f64(value.parse()?),
            "--warmup-percent" => config.warmup_percent = value.parse()?,
            "--max-tokens" => config.max_tokens = value.parse()?,
            "--csv" => csv = Some(value),
            _ => anyhow::bail!("unknown flag {flag} (see the bench's doc comment)"),
        }
    }
    anyhow::ensure!(config.nodes > 0, "--nodes must be at least 1");
    anyhow::ensure!(
        config.warmup_percent < 100,
        "--warmup-percent must be below 100"
    );
    config.load = match rate {
        Some(per_second) => Load::Open { per_second },
        None => Load::Closed {
            clients: clients.unwrap_or(2 * config.nodes),
        },
    };

    let report = soak::run(&config);
    println!("{}", report.markdown());
    println!("{}", report.samples_table(25));
    if let Some(path) = csv {
        std::fs::write(&path, report.csv())?;
        println!("samples written to {path}");
    }
    Ok(())
}
