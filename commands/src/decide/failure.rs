//! A request that will not be served: its failure and its full refund, the pair every
//! failing decision records (a leaf, shared by `work` and `general`).

use prlx_events::event::*;
use prlx_events::{Event, RequestId};
use prlx_projections::CoordinatorState;

/// `RequestFailed` of `request` for `cause`, and `CreditsRefunded` of all it holds.
pub(super) fn failed_and_refunded(
    state: &CoordinatorState,
    request: RequestId,
    cause: FailureCause,
    reason: String,
) -> Vec<Event> {
    let req = &state.requests[&request];
    let mut events: Vec<Event> = vec![RequestFailed {
        request_id: request,
        reason,
        cause: Some(cause),
    }
    .into()];
    if req.reserved > 0 {
        events.push(
            CreditsRefunded {
                account: req.account.clone(),
                request_id: request,
                amount: req.reserved,
            }
            .into(),
        );
    }
    events
}
