//! `prlx-replay`: the auditor. Reads the log from the start with the coordinator's own folds
//! and reports the first record that does not decode or does not fold, with its offset.
//!
//! What it verifies today: every record's checksum and batch framing (the log backend), every
//! envelope and payload (decoding, upcasting), duplicate deliveries (dropped by producer
//! sequence), and every invariant the coordinator projection enforces (deposits credited once,
//! dense request ids, reservations within available credit, charges and refunds within what
//! is reserved, known nodes and requests). Settlement recomputation and re-deriving scheduling
//! and sampling decisions come with their issues.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use prlx_events::log::{LogReader, LogUrl, Offset};
use prlx_events::Envelope;
use prlx_projections::snapshot::{restore, Snapshot};
use prlx_projections::{CoordinatorState, Fold};
use serde::Serialize;

#[derive(Parser, Debug)]
#[command(
    name = "prlx-replay",
    version,
    about = "Replay a ParalleliX event log and verify it"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Fold the whole log and report the first divergence. Exit 0 only if everything checks.
    Verify {
        /// The log: file://DIR or kafka://HOST:PORT/TOPIC.
        #[arg(long, env = "PRLX_LOG")]
        log: String,
        /// Write the report as JSON on stdout instead of text.
        #[arg(long)]
        json: bool,
        /// Also save a snapshot of the verified fold here, and check that restoring from it
        /// (snapshot + tail) gives the same state as the full replay.
        #[arg(long)]
        snapshot: Option<PathBuf>,
    },
}

#[derive(Debug, Serialize)]
struct Report {
    ok: bool,
    records: u64,
    end_offset: Offset,
    duplicates_dropped: u64,
    events_by_type: BTreeMap<&'static str, u64>,
    accounts: BTreeMap<String, (u64, u64)>,
    requests: usize,
    nodes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    divergence: Option<Divergence>,
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshot_matches_full_replay: Option<bool>,
}

#[derive(Debug, Serialize)]
struct Divergence {
    offset: Offset,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_type: Option<String>,
    message: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let Cmd::Verify {
        log,
        json,
        snapshot,
    } = Cli::parse().command;
    match verify(&log, snapshot).await {
        Ok(report) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&report).unwrap());
            } else {
                print_text(&report);
            }
            if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("prlx-replay: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn verify(log: &str, snapshot: Option<PathBuf>) -> anyhow::Result<Report> {
    let reader = LogUrl::parse(log)?.open_reader()?;
    let mut fold = Fold::<CoordinatorState>::default();
    let mut by_type = BTreeMap::new();
    let mut records = 0;
    let mut divergence = None;
    'outer: loop {
        let batch = match reader.read(fold.next_offset(), 4096).await {
            Ok(b) => b,
            Err(e) => {
                let offset = match &e {
                    prlx_events::log::LogError::Corrupt { offset, .. } => *offset,
                    _ => fold.next_offset(),
                };
                divergence = Some(Divergence {
                    offset,
                    event_type: None,
                    message: e.to_string(),
                });
                break;
            }
        };
        if batch.is_empty() {
            break;
        }
        for r in batch {
            let env = match Envelope::decode(&r.payload) {
                Ok(env) => env,
                Err(e) => {
                    divergence = Some(Divergence {
                        offset: r.offset,
                        event_type: None,
                        message: e.to_string(),
                    });
                    break 'outer;
                }
            };
            if let Err(e) = fold.feed(r.offset, &env) {
                divergence = Some(Divergence {
                    offset: r.offset,
                    event_type: Some(env.event.type_name().to_owned()),
                    message: e.error.to_string(),
                });
                break 'outer;
            }
            records += 1;
            *by_type.entry(env.event.type_name()).or_default() += 1;
        }
    }
    let mut snapshot_matches = None;
    if let (Some(path), None) = (&snapshot, &divergence) {
        Snapshot::of(&fold).save(path)?;
        let restored: Fold<CoordinatorState> = restore(path, &reader).await?;
        snapshot_matches = Some(restored == fold);
    }
    let st = &fold.state;
    Ok(Report {
        ok: divergence.is_none() && snapshot_matches != Some(false),
        records,
        end_offset: reader.end().await?,
        duplicates_dropped: fold.duplicates_dropped,
        events_by_type: by_type,
        accounts: st
            .accounts
            .iter()
            .map(|(k, a)| (k.0.clone(), (a.balance, a.reserved)))
            .collect(),
        requests: st.requests.len(),
        nodes: st.nodes.len(),
        divergence,
        snapshot_matches_full_replay: snapshot_matches,
    })
}

fn print_text(r: &Report) {
    println!(
        "replayed {} records (log end {}), {} duplicate deliveries dropped",
        r.records, r.end_offset, r.duplicates_dropped
    );
    for (t, n) in &r.events_by_type {
        println!("  {t:<22} {n}");
    }
    println!("requests {}, nodes {}", r.requests, r.nodes);
    for (a, (balance, reserved)) in &r.accounts {
        println!("  account {a}: balance {balance}, reserved {reserved}");
    }
    if let Some(m) = r.snapshot_matches_full_replay {
        println!("snapshot + tail equals full replay: {m}");
    }
    match &r.divergence {
        None => println!("OK: every record decodes and folds"),
        Some(d) => println!(
            "DIVERGENCE at offset {}{}: {}",
            d.offset,
            d.event_type
                .as_deref()
                .map(|t| format!(" ({t})"))
                .unwrap_or_default(),
            d.message
        ),
    }
}
