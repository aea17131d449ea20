//! An opt-in phase trace of each job (`PRLX_NODE_TRACE=1`): where the time between the
//! coordinator recording a dispatch and the node's result being accepted goes.
//!
//! With the variable set, the node logs one line per reported job (an `info` event of target
//! `prlx_node::trace`, on stderr):
//!
//! ```text
//! trace 7/0 attempt 1 recorded_at 1764031234567890 read +3.10 opened +3.32 ...
//! ```
//!
//! `recorded_at` is the dispatch envelope's `recorded_at` (the coordinator's clock when it
//! decided the dispatch) in microseconds since the Unix epoch; each later mark is milliseconds
//! after it, by this node's wall clock (same host in the benches, so comparable):
//!
//! - `read`: the follower decoded the dispatch record (log append + fsync + the follower's
//!   poll + the read);
//! - `opened`: the dispatch was decrypted and queued for a worker;
//! - `started`: a worker took it (queue wait);
//! - `tokenized`, `prefilled`, `decoded`, `generated`: the engine's phases (template +
//!   tokenizer; the first model run over the prompt; every later run; ids back to text);
//! - `committed`: PoE, RSA-PSS signature, sealing;
//! - `posting`: the reporter began the HTTP post;
//! - `reported`: the coordinator answered it (its checks, the append and its fsync).
//!
//! Without the variable nothing is recorded: a job carries `None` and the marks cost nothing.

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// The environment variable that turns the trace on (any value but empty or `0`).
pub const TRACE_ENV: &str = "PRLX_NODE_TRACE";

/// Whether this process traces jobs (read once).
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os(TRACE_ENV).is_some_and(|v| !v.is_empty() && v != "0"))
}

/// The marks of one job, from the dispatch's `recorded_at` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobTrace {
    recorded_at: DateTime<Utc>,
    marks: Vec<(&'static str, DateTime<Utc>)>,
}

impl JobTrace {
    /// A trace starting at the dispatch's `recorded_at`, or `None` when tracing is off.
    pub fn start(recorded_at: DateTime<Utc>) -> Option<JobTrace> {
        enabled().then(|| JobTrace {
            recorded_at,
            marks: Vec::with_capacity(12),
        })
    }

    /// Marks `name` now.
    pub fn mark(&mut self, name: &'static str) {
        self.marks.push((name, Utc::now()));
    }

    /// Marks `name` at `at`.
    pub fn mark_at(&mut self, name: &'static str, at: DateTime<Utc>) {
        self.marks.push((name, at));
    }

    /// The time of the last mark (or `recorded_at`), to place marks measured as durations.
    pub fn last(&self) -> DateTime<Utc> {
        self.marks.last().map_or(self.recorded_at, |&(_, at)| at)
    }

    /// Marks `name` at `elapsed` after the last mark.
    pub fn mark_after(&mut self, name: &'static str, elapsed: Duration) {
        let at = self.last() + chrono::Duration::from_std(elapsed).unwrap_or_default();
        self.marks.push((name, at));
    }

    /// The line the node prints (see the module docs).
    pub fn line(&self, what: impl std::fmt::Display) -> String {
        let mut line = format!(
            "trace {what} recorded_at {}",
            self.recorded_at.timestamp_micros()
        );
        for (name, at) in &self.marks {
            let ms = (*at - self.recorded_at)
                .num_microseconds()
                .map_or(f64::NAN, |us| us as f64 / 1e3);
            let _ = write!(line, " {name} {ms:+.2}");
        }
        line
    }
}

/// Logs a finished job's trace.
pub fn report(trace: &JobTrace, what: impl std::fmt::Display) {
    tracing::info!("{}", trace.line(what));
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_line_lists_marks_in_milliseconds_after_recorded_at() {
        let t0 = Utc.timestamp_micros(1_000_000).unwrap();
        let mut trace = JobTrace {
            recorded_at: t0,
            marks: Vec::new(),
        };
        trace.mark_at("read", t0 + chrono::Duration::microseconds(2_500));
        trace.mark_after("opened", Duration::from_micros(250));
        assert_eq!(
            trace.line("1/0 attempt 1"),
            "trace 1/0 attempt 1 recorded_at 1000000 read +2.50 opened +2.75"
        );
    }
}
