//! When a registration may be recorded: its operator's spelling and its signed time. One rule
//! for the coordinator's shell and the fold, so what one records the other follows. Whose bond
//! counts as a signed node's stake is settlement's [`crate::settlement::stake_counts`].

use chrono::{DateTime, Utc};
use prlx_events::event::NodeRegistered;

use super::apply_chain::hex_problem;
use super::heartbeat::HEARTBEAT_SKEW_SECONDS;

/// Why `n` may not be recorded at `recorded_at`, as `(field, reason)`; `None` if it may. An
/// operator is one spelling of a chain address (lowercase 0x-hex), as stakers are, so the two
/// compare as strings; a signed time comes with its signature and lies within
/// [`HEARTBEAT_SKEW_SECONDS`] of the time it is recorded at, so a captured registration
/// cannot be recorded later (after, say, the node was wiped and re-keyed elsewhere).
pub fn registration_problem(
    n: &NodeRegistered,
    recorded_at: DateTime<Utc>,
) -> Option<(&'static str, String)> {
    if let Some(operator) = &n.operator {
        if let Some(problem) = hex_problem("operator", operator, 20) {
            return Some(problem);
        }
    }
    match (n.signed_at, &n.signature) {
        (None, None) => None,
        (Some(at), Some(_)) => {
            let skew = at.saturating_sub(recorded_at.timestamp());
            (skew.abs() > HEARTBEAT_SKEW_SECONDS).then(|| {
                (
                    "signed_at",
                    format!(
                        "signed at {at}, {skew} s from the time it is recorded at (at most \
                         {HEARTBEAT_SKEW_SECONDS} s either way)"
                    ),
                )
            })
        }
        (None, Some(_)) => Some(("signed_at", "a signature comes with its time".into())),
        (Some(_), None) => Some(("signature", "a signed time comes with its signature".into())),
    }
}
