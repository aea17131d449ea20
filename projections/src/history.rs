//! [`RewardHistory`]: what settlement has done, as the log records it, for the read side
//! (the API's epoch listings and each node's returned stake).

use std::collections::BTreeMap;

use prlx_events::event::RewardEpochSettled;
use prlx_events::{Envelope, Event, NodeId};
use serde::{Deserialize, Serialize};

use crate::fold::{FoldError, Projection};

/// The settled epochs in order and the stake returned to each node. The coordinator's state
/// drops an epoch's details once it is closed and counts no returns, so this read model follows
/// the log instead. It holds durable records only; the coordinator's fold has already checked
/// every one of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardHistory {
    pub epochs: Vec<RewardEpochSettled>,
    pub returned: BTreeMap<NodeId, u64>,
}

impl Projection for RewardHistory {
    const NAME: &'static str = "reward-history";
    const FOLD_VERSION: u32 = 1;

    fn apply(&mut self, env: &Envelope) -> Result<(), FoldError> {
        match &env.event {
            Event::RewardEpochSettled(s) => self.epochs.push(s.clone()),
            Event::StakeReturned(r) => {
                let sum = self.returned.entry(r.node_id).or_default();
                *sum = sum.saturating_add(r.amount);
            }
            _ => {}
        }
        Ok(())
    }
}
