//! The short soak (tests/src/soak.rs; the process kit: `cargo build --workspace --bins` and
//! scripts/setup-models.sh first): a coordinator and two tiny-model nodes under a closed loop
//! of submissions for 130 s, measured once its window of settled requests is full. The coordinator's resident memory after warm-up must grow by no
//! more than [`MAX_BYTES_PER_REQUEST`] per completed request: its hot state holds what
//! decisions need, and a finished request's outcome lives on the log.

use std::time::Duration;

use prlx_projections::coordinator::FINISHED_WINDOW;
use prlx_tests::soak::{self, Load, SoakConfig};

/// The bound on the coordinator's RSS growth per completed request after warm-up, bytes.
///
/// Flat state would give 0; what is left is noise. RSS moves in pages, and allocator arenas
/// and the HTTP and log buffers grow in steps: over the few thousand requests of this run a
/// step of a few hundred KiB is a few hundred bytes a request. A coordinator that keeps every
/// request it finished grows by kilobytes a request (about 3.4 KB before the hot state), well
/// above this.
const MAX_BYTES_PER_REQUEST: i64 = 512;

/// Requests completed after warm-up below which the figure says nothing: a page of noise
/// would be more than the bound.
const MIN_COMPLETED: u64 = 500;

#[test]
fn coordinator_memory_per_completed_request_stays_small() {
    let config = SoakConfig {
        nodes: 2,
        load: Load::Closed { clients: 4 },
        duration: Duration::from_secs(130),
        sample_every: Duration::from_secs(2),
        // Past the coordinator's window of settled requests filling up: its memory grows
        // until then, by design.
        warmup_percent: 30,
        warmup_requests: FINISHED_WINDOW as u64 + 1_000,
        // No snapshot during the run, by time or by records (200,000 by default: a fast
        // machine writes that many in this run, ~10 a request): each leaves the allocator a
        // step higher for a while (12 MiB at 200,000 records; the ten-minute soak in
        // BENCHMARKS.md shows them), and this checks what a request costs.
        serve_args: [
            "--snapshot-every-secs",
            "3600",
            "--snapshot-every-records",
            "100000000",
        ]
        .map(String::from)
        .to_vec(),
        ..SoakConfig::default()
    };
    let report = soak::run(&config);
    let figures = format!("{}\n{}", report.markdown(), report.samples_table(40));
    eprintln!("{figures}");
    let completed = report.completed_after_warmup();
    assert!(
        completed >= MIN_COMPLETED,
        "only {completed} requests completed after warm-up (need {MIN_COMPLETED} to judge \
         memory per request):\n{figures}"
    );
    assert_eq!(report.unfinished, 0, "requests left unfinished:\n{figures}");
    let per_request = report
        .bytes_per_completed_request()
        .expect("requests completed");
    assert!(
        per_request <= MAX_BYTES_PER_REQUEST,
        "the coordinator's resident memory grew {per_request} bytes per completed request \
         after warm-up ({completed} requests), above the bound of {MAX_BYTES_PER_REQUEST}:\n\
         {figures}"
    );
}
