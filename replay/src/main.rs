//! `prlx-replay`: the auditor's command line. The replay itself is in the library
//! ([`prlx_replay::verify`]); this file parses arguments, draws the progress line and maps the
//! outcome to the exit code.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use prlx_replay::{verify, Progress, VerifyOptions};

const EXIT_STATUS: &str = "Exit status: 0 when every record matches, 1 when the log diverges \
    (the report names the offset, the event type and, when known, the field; damaged bytes \
    count as a divergence), 2 when the log or a snapshot could not be read at all, or the chain \
    (--chain) could not be asked.";

#[derive(Parser, Debug)]
#[command(
    name = "prlx-replay",
    version,
    about = "Audit a ParalleliX event log: replay it with the coordinator's own code and report \
             the first record that does not match",
    after_help = EXIT_STATUS
)]
struct Cli {
    /// How log lines on stderr are written: `text` for people, `json` (one object a line) for
    /// collectors. `RUST_LOG` filters them (default `info`).
    #[arg(long, global = true, env = "PRLX_LOG_FORMAT", default_value = "text")]
    log_format: prlx_events::cli::LogFormat,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Replay the whole log and check every record against the state rebuilt before it.
    ///
    /// Every record's checksum, every event's encoding, every balance movement and every
    /// scheduling decision (re-derived from the state at that offset) is checked with the
    /// same code the coordinator runs. The first record that does not match is reported
    /// with its offset, its event type and, when known, the field that differs.
    #[command(verbatim_doc_comment, after_help = EXIT_STATUS)]
    Verify {
        /// The log to audit: file://DIR (the coordinator's log directory) or
        /// kafka://HOST:PORT/TOPIC.
        #[arg(long, env = "PRLX_LOG", value_name = "URL")]
        log: String,
        /// Print the report as JSON on stdout (for scripts); no progress line.
        #[arg(long)]
        json: bool,
        /// After a clean replay, save a snapshot of the rebuilt state to FILE, and check that
        /// restoring a snapshot and replaying the rest gives exactly the full replay's state.
        #[arg(long, value_name = "FILE")]
        snapshot: Option<PathBuf>,
        /// Start from the state saved in FILE (by --snapshot) and verify only the records
        /// after it. Faster; trusts whoever made the snapshot for everything before it.
        #[arg(long, value_name = "FILE")]
        from_snapshot: Option<PathBuf>,
        /// Also check every credit on the log against the chain at URL (JSON-RPC): each
        /// deposit's transaction, block, log index, account and amount, and that its block is
        /// still canonical. A credit with no chain deposit behind it is a divergence too.
        #[arg(long, value_name = "URL", requires = "deployment")]
        chain: Option<String>,
        /// With --chain: the deployment file naming the chain and its contracts; a record
        /// naming another chain or contract is a divergence.
        #[arg(long, value_name = "FILE")]
        deployment: Option<PathBuf>,
    },
}

/// Logs shorter than this replay too fast for a progress line to help.
const PROGRESS_MIN_RECORDS: u64 = 50_000;

/// A one-line progress display on stderr, redrawn at most ten times a second.
struct ProgressLine {
    started: Instant,
    last_draw: Option<Instant>,
    drawn: bool,
}

impl ProgressLine {
    fn update(&mut self, p: Progress) {
        let total = p.end.saturating_sub(p.start);
        if total < PROGRESS_MIN_RECORDS {
            return;
        }
        let now = Instant::now();
        let done = p.at.saturating_sub(p.start).min(total);
        if done < total
            && self
                .last_draw
                .is_some_and(|t| now - t < Duration::from_millis(100))
        {
            return;
        }
        self.last_draw = Some(now);
        const WIDTH: u64 = 30;
        let filled = (done * WIDTH / total) as usize;
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r[{}{}] {done}/{total} records ({:.0}/s)",
            "#".repeat(filled),
            " ".repeat(WIDTH as usize - filled),
            done as f64 / secs
        );
        let _ = err.flush();
        self.drawn = true;
    }

    fn finish(&self) {
        if self.drawn {
            eprintln!();
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    prlx_events::cli::init_tracing(cli.log_format);
    let Cmd::Verify {
        log,
        json,
        snapshot,
        from_snapshot,
        chain,
        deployment,
    } = cli.command;
    let options = VerifyOptions {
        log,
        snapshot,
        from_snapshot,
    };
    let show_progress = !json && std::io::stderr().is_terminal();
    let mut bar = ProgressLine {
        started: Instant::now(),
        last_draw: None,
        drawn: false,
    };
    let result = verify(&options, |p| {
        if show_progress {
            bar.update(p);
        }
    })
    .await;
    bar.finish();
    let deployment = match deployment.as_deref().map(prlx_chain::Deployment::read) {
        None => None,
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => {
            eprintln!("prlx-replay: --deployment: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match (result, chain.zip(deployment)) {
        (Ok(mut report), Some((rpc_url, deployment))) => {
            match prlx_replay::chain::audit(&options.log, &rpc_url, &deployment).await {
                Ok(Ok(audit)) => {
                    report.ok &= audit.divergences.is_empty();
                    report.chain = Some(audit);
                    Ok(report)
                }
                Ok(Err(unreachable)) => {
                    eprintln!("prlx-replay: {unreachable}");
                    return ExitCode::from(2);
                }
                Err(e) => Err(e),
            }
        }
        (result, _) => result,
    };
    match result {
        Ok(report) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).expect("report serializes")
                );
            } else {
                print!("{}", report.to_text());
            }
            ExitCode::from(report.exit_code())
        }
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "ok": false, "log": options.log, "error": e.to_string() })
                );
            }
            eprintln!("prlx-replay: {e}");
            ExitCode::from(2)
        }
    }
}
