//! The deterministic simulation of the core (`prlx_tests::sim`): each seed drives `decide`
//! and the fold through a generated history of submissions, deposits, heartbeats, honest,
//! wrong, late, silent and replayed reports, nodes joining, restarts from snapshot and the
//! timers, checking after every step that credits are conserved, that every accepted request
//! ends exactly once within its bound and that no payout exceeds the uptime the log proves
//! (the list is in `prlx_tests::sim`); then the auditor replays the log the run wrote and must
//! agree.
//!
//! Short by default (2 seeds of 20,000 steps); `PRLX_SIM_SEEDS=FIRST..END` and
//! `PRLX_SIM_STEPS=N` run more (`PRLX_SIM_STEPS=100000 PRLX_SIM_SEEDS=1..21` for the long
//! run). A failing seed is printed; run it alone to replay it.

use prlx_events::log::{LogUrl, LogWriter};
use prlx_events::Envelope;
use prlx_replay::{verify, VerifyOptions};
use prlx_tests::sim::{run, SimParams};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_histories_keep_every_invariant_and_the_auditor_agrees() {
    let steps: u64 = env_or("PRLX_SIM_STEPS", "20000").parse().unwrap();
    let seeds = env_or("PRLX_SIM_SEEDS", "1..3");
    let (first, end) = seeds.split_once("..").expect("PRLX_SIM_SEEDS=FIRST..END");
    let (first, end): (u64, u64) = (first.parse().unwrap(), end.parse().unwrap());
    for seed in first..end {
        let params = SimParams {
            seed,
            steps,
            nodes: 12,
        };
        let (report, log) = tokio::task::spawn_blocking(move || run(params))
            .await
            .unwrap()
            .unwrap_or_else(|e| {
                panic!(
                    "{e}\nreplay: PRLX_SIM_SEEDS={seed}..{} PRLX_SIM_STEPS={steps}",
                    seed + 1
                )
            });
        println!("seed {seed}: {report:?}");
        // The run must have exercised what it claims to.
        assert!(
            report.completed > 0 && report.failed > 0,
            "seed {seed}: {report:?}"
        );
        assert!(
            report.late_reports > 0 && report.replayed_reports > 0,
            "seed {seed}: {report:?}"
        );
        assert!(
            report.payouts_checked > 0 && report.restarts > 0,
            "seed {seed}: {report:?}"
        );
        // Joins are drawn about once per 1,000 steps.
        if steps >= 20_000 {
            assert!(report.joins > 0, "seed {seed}: {report:?}");
        }

        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().join("log").display());
        let writer = LogUrl::parse(&url).unwrap().open_writer().unwrap();
        for chunk in log.chunks(4096) {
            writer
                .append(chunk.iter().map(Envelope::encode).collect())
                .await
                .unwrap();
        }
        drop(writer);
        let audit = verify(
            &VerifyOptions {
                log: url,
                ..VerifyOptions::default()
            },
            |_| (),
        )
        .await
        .unwrap();
        assert!(
            audit.ok,
            "seed {seed}: the auditor disagrees: {}",
            audit.to_text()
        );
        assert_eq!(audit.records, report.events, "seed {seed}");
    }
}
