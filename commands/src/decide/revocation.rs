//! An account revoking one of its delegations (`DelegationRevoked`): recorded once, while the
//! delegation lives, by the account's own key (the door recovered who signed); the rules are
//! the fold's (`prlx_projections::coordinator::revocation`), so both judge alike.

use chrono::{DateTime, Utc};
use prlx_events::event::DelegationRevoked;
use prlx_events::Event;
use prlx_projections::coordinator::revocation::revocation_problem;
use prlx_projections::CoordinatorState;

use crate::decide::rejection::Rejection;

pub(super) fn revoke(
    state: &CoordinatorState,
    r: DelegationRevoked,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, Rejection> {
    // Revoked already: the same answer, nothing recorded again.
    if state.is_revoked(&r.account, &r.delegation) && r.signer == r.account.0 {
        return Ok(vec![]);
    }
    if let Some((code, field, reason)) = revocation_problem(state, &r, now) {
        return Err(Rejection::new(code, Some(field), reason));
    }
    Ok(vec![r.into()])
}
