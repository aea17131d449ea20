//! Settlement (step 9): verified uptime, stake, and reward epochs.
//!
//! Folded as part of [`crate::CoordinatorState`] (its `rewards` field), so `decide` can close
//! an epoch against it and the auditor recomputes every payout with the same code.
//! Work in progress: the rules and the fold arrive with the settlement issue.

use prlx_events::Envelope;
use serde::{Deserialize, Serialize};

use crate::fold::FoldError;

/// Everything settlement needs from the log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {}

impl Settlement {
    /// Folds one event. Called after the coordinator's own fold accepted it.
    pub fn apply(&mut self, _env: &Envelope) -> Result<(), FoldError> {
        Ok(())
    }
}
