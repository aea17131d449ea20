//! A request's place in its queue: the order of the set is the dispatch order.

use chrono::{DateTime, Utc};
use prlx_events::event::Priority;
use prlx_events::RequestId;
use serde::{Deserialize, Serialize};

/// A request waiting for a node; the set's order is the dispatch order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QueueEntry {
    /// 0 for high priority, 1 standard, 2 low.
    pub rank: u8,
    /// When the client stops waiting: earlier first.
    pub deadline_at: DateTime<Utc>,
    pub request: RequestId,
}

impl QueueEntry {
    pub fn new(priority: Priority, deadline_at: DateTime<Utc>, request: RequestId) -> Self {
        let rank = match priority {
            Priority::High => 0,
            Priority::Standard => 1,
            Priority::Low => 2,
        };
        Self {
            rank,
            deadline_at,
            request,
        }
    }
}
