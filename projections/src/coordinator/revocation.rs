//! An account's revocations of its delegations (`DelegationRevoked`): after one, no request
//! signed under the delegation is accepted, by `decide` or by the fold. A revocation is kept
//! until the delegation would have expired anyway, and an account has at most
//! [`MAX_REVOKED`] unexpired ones, so the state they take is bounded by accounts, not by
//! history.

use chrono::{DateTime, Utc};
use prlx_events::event::{DelegationRevoked, RejectionCode};
use prlx_events::{AccountId, Envelope};

use crate::coordinator::state::CoordinatorState;
use crate::fold::FoldError;

/// Unexpired revocations an account may hold at once (a new delegation with a short life is
/// the way past it).
pub const MAX_REVOKED: usize = 64;

/// Why revocation `r`, recorded at `at`, may not be recorded: `(code, field, reason)`; `None`
/// when it may. A revocation already recorded is not a problem but nothing to record
/// ([`CoordinatorState::is_revoked`]).
pub fn revocation_problem(
    state: &CoordinatorState,
    r: &DelegationRevoked,
    at: DateTime<Utc>,
) -> Option<(RejectionCode, &'static str, String)> {
    if r.signer != r.account.0 {
        return Some((
            RejectionCode::Unauthorized,
            "signature",
            format!(
                "signed by {}: only account {} may revoke its delegations",
                r.signer, r.account
            ),
        ));
    }
    // Only an account a deposit created has anything to delegate; refusing the others keeps
    // the revocations the state holds bounded by funded accounts, not by keys anyone makes.
    if !state.accounts.contains_key(&r.account) {
        return Some((
            RejectionCode::MalformedRequest,
            "account",
            format!(
                "no deposit ever credited account {}: it has no delegation to revoke",
                r.account
            ),
        ));
    }
    if expired(r.expires_at, at) {
        return Some((
            RejectionCode::DelegationExpired,
            "expires_at",
            format!(
                "the delegation expired at {} (Unix seconds): nothing left to revoke",
                r.expires_at
            ),
        ));
    }
    (state.live_revocations(&r.account, at) >= MAX_REVOKED).then(|| {
        (
            RejectionCode::MalformedRequest,
            "delegation",
            format!(
                "account {} already holds {MAX_REVOKED} revocations of unexpired delegations",
                r.account
            ),
        )
    })
}

fn expired(expires_at: u64, at: DateTime<Utc>) -> bool {
    at.timestamp() >= i64::try_from(expires_at).unwrap_or(i64::MAX)
}

impl CoordinatorState {
    /// How many of `account`'s revocations are of delegations not expired at `at`.
    pub fn live_revocations(&self, account: &AccountId, at: DateTime<Utc>) -> usize {
        self.revoked
            .get(account)
            .map_or(0, |r| r.values().filter(|e| !expired(**e, at)).count())
    }

    /// The fold's side of a revocation: by the account, of a delegation not expired when
    /// recorded, not twice, within [`MAX_REVOKED`]. Revocations of delegations expired by
    /// then are forgotten here (the expiry refuses their requests already).
    pub(super) fn fold_revoked(
        &mut self,
        env: &Envelope,
        r: &DelegationRevoked,
        at: DateTime<Utc>,
    ) -> Result<(), FoldError> {
        if self.is_revoked(&r.account, &r.delegation) {
            return Err(FoldError::at_field(
                env,
                "delegation",
                format!("delegation {} revoked twice", r.delegation),
            ));
        }
        if let Some((_, field, reason)) = revocation_problem(self, r, at) {
            return Err(FoldError::at_field(env, field, reason));
        }
        let revoked = self.revoked.entry(r.account.clone()).or_default();
        revoked.retain(|_, e| !expired(*e, at));
        revoked.insert(r.delegation, r.expires_at);
        Ok(())
    }
}
