//! Settlement commands: staking, reward mode, and closing reward epochs.
//! Work in progress: arrives with the settlement issue.

use prlx_events::Event;
use prlx_projections::CoordinatorState;

use crate::decide::Rejection;

/// A settlement command; decided by [`decide_settlement`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettlementCommand {}

pub fn decide_settlement(
    _state: &CoordinatorState,
    command: SettlementCommand,
) -> Result<Vec<Event>, Rejection> {
    match command {}
}

/// The settlement commands owed at time `now` (epochs whose end has passed, stake whose
/// cooldown is over), in order. The shell's housekeeping stages them.
pub fn due_settlements(
    _state: &CoordinatorState,
    _now: chrono::DateTime<chrono::Utc>,
) -> Vec<SettlementCommand> {
    Vec::new()
}
