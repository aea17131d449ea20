//! When a heartbeat's signed time may be recorded: one rule for the coordinator's `decide`
//! and for the fold, so what one records the other follows.

use chrono::{DateTime, Utc};

use crate::coordinator::views::NodeView;

/// How far a heartbeat's signed time may be from the time it is recorded at.
pub const HEARTBEAT_SKEW_SECONDS: i64 = 120;

/// Why `node`'s heartbeat signed at `at` (Unix seconds) may not be recorded at `recorded_at`;
/// `None` if it may. A heartbeat is signed within [`HEARTBEAT_SKEW_SECONDS`] of the time it
/// is recorded at and after the node's previous one, so a captured statement cannot be
/// replayed to earn uptime in other slots.
pub fn heartbeat_time_problem(
    node: &NodeView,
    at: i64,
    recorded_at: DateTime<Utc>,
) -> Option<String> {
    let skew = at.saturating_sub(recorded_at.timestamp());
    if skew.abs() > HEARTBEAT_SKEW_SECONDS {
        return Some(format!(
            "signed at {at}, {skew} s from the time it is recorded at (at most \
             {HEARTBEAT_SKEW_SECONDS} s either way)"
        ));
    }
    match node.heartbeat_at {
        Some(last) if at <= last => Some(format!(
            "signed at {at}, not after the node's previous heartbeat ({last})"
        )),
        _ => None,
    }
}
