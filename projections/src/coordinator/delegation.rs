//! Who may charge an account: its own key, or a delegate it authorized with a spending limit
//! and an expiry (`Consent::delegation`). `decide` refuses by these rules and the fold
//! refuses a log that breaks them, so a delegate can spend past its limit or after its expiry
//! in neither.
//!
//! What a delegation has spent is what its requests hold: an accepted request's price counts
//! against the limit from its acceptance (reserved, then charged), and what is refunded (a
//! failed request, the part of a reservation above its charge) counts no more, since it was
//! never spent. The total is kept per account by the delegation's EIP-712 hash, which the
//! auditor derives again from the delegation's terms.

use chrono::{DateTime, Utc};
use prlx_events::event::{Consent, Delegation, RejectionCode, RequestAccepted};
use prlx_events::{AccountId, Envelope, Hash32};

use crate::coordinator::state::CoordinatorState;
use crate::coordinator::views::DelegationUse;
use crate::fold::FoldError;

/// Why a consent may not charge: the rejection's code, the field at fault in a submission's
/// body and in the recorded `RequestAccepted`, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentProblem {
    pub code: RejectionCode,
    pub field: &'static str,
    pub recorded: &'static str,
    pub reason: String,
}

impl ConsentProblem {
    fn new(
        code: RejectionCode,
        (field, recorded): (&'static str, &'static str),
        reason: String,
    ) -> Self {
        Self {
            code,
            field,
            recorded,
            reason,
        }
    }
}

/// Whether `consent`'s signer may charge `account`: the account's own key, or the delegate
/// of a delegation the account signed.
pub fn signer_problem(account: &AccountId, consent: &Consent) -> Option<ConsentProblem> {
    use RejectionCode::Unauthorized;
    // A batch's signature recovers to whoever's key signed the root the submission's place
    // and proof give: a wrong place or proof shows up here as a stranger's key.
    let batch = if consent.batch.is_some() {
        " (recovered from the batch's signature over the root this submission's \
         consent_batch gives: a wrong index or proof gives another key)"
    } else {
        ""
    };
    let Some(d) = &consent.delegation else {
        return (consent.signer != account.0).then(|| {
            ConsentProblem::new(
                Unauthorized,
                ("signature", "consent.signer"),
                format!(
                    "signed by {}, which may not charge account {account} (without a \
                     delegation only the account's own key may){batch}",
                    consent.signer
                ),
            )
        });
    };
    if d.signer != account.0 {
        return Some(ConsentProblem::new(
            Unauthorized,
            ("delegation.signature", "consent.delegation.signer"),
            format!(
                "the delegation is signed by {}, not by account {account}",
                d.signer
            ),
        ));
    }
    (consent.signer != d.delegate).then(|| {
        ConsentProblem::new(
            Unauthorized,
            ("signature", "consent.signer"),
            format!(
                "signed by {}, but the delegation of {account} names delegate {}{batch}",
                consent.signer, d.delegate
            ),
        )
    })
}

/// Whether a request recorded at `at` is within `d`'s life: strictly before its expiry.
pub fn expiry_problem(d: &Delegation, at: DateTime<Utc>) -> Option<ConsentProblem> {
    let expires_at = i64::try_from(d.expires_at).unwrap_or(i64::MAX);
    (at.timestamp() >= expires_at).then(|| {
        ConsentProblem::new(
            RejectionCode::DelegationExpired,
            ("delegation.expires_at", "consent.delegation.expires_at"),
            format!(
                "the delegation expired at {} (Unix seconds); the request is recorded at {}",
                d.expires_at,
                at.timestamp()
            ),
        )
    })
}

/// Whether a request of `price` charged to `account` fits within `d`'s limit, counting what
/// the log already holds under it.
pub fn limit_problem(
    state: &CoordinatorState,
    account: &AccountId,
    d: &Delegation,
    price: u64,
) -> Option<ConsentProblem> {
    let spent = state
        .delegation_use(account, &d.hash)
        .map_or(0, |u| u.spent);
    let within = spent
        .checked_add(price)
        .is_some_and(|t| t <= d.spending_limit);
    (!within).then(|| {
        ConsentProblem::new(
            RejectionCode::SpendingLimitExceeded,
            (
                "delegation.spending_limit",
                "consent.delegation.spending_limit",
            ),
            format!(
                "price {price} on top of the {spent} held under the delegation exceeds its \
                 limit of {} credits",
                d.spending_limit
            ),
        )
    })
}

/// Whether a request under `d`, charged to `account`, names a revoked delegation.
pub fn revoked_problem(
    state: &CoordinatorState,
    account: &AccountId,
    d: &Delegation,
) -> Option<ConsentProblem> {
    state.is_revoked(account, &d.hash).then(|| ConsentProblem {
        code: RejectionCode::DelegationRevoked,
        field: "delegation",
        recorded: "consent.delegation.hash",
        reason: format!("account {account} revoked the delegation {}", d.hash),
    })
}

impl CoordinatorState {
    /// Whether `account` revoked its delegation `hash` (`revocation`).
    pub fn is_revoked(&self, account: &AccountId, hash: &Hash32) -> bool {
        self.revoked
            .get(account)
            .is_some_and(|r| r.contains_key(hash))
    }

    /// What the log holds under `account`'s delegation `hash`, if any request used it.
    pub fn delegation_use(&self, account: &AccountId, hash: &Hash32) -> Option<&DelegationUse> {
        self.delegations.get(account)?.get(hash)
    }

    /// Whether `reader` (lowercase 0x-hex) is a delegate of `account` by a delegation the log
    /// records (one a request was accepted under) that is not expired at `now` (Unix
    /// seconds) nor revoked.
    pub fn is_delegate(&self, account: &AccountId, reader: &str, now: i64) -> bool {
        self.delegations.get(account).is_some_and(|ds| {
            ds.iter().any(|(hash, u)| {
                u.delegate == reader
                    && i64::try_from(u.expires_at).is_ok_and(|e| now < e)
                    && !self.is_revoked(account, hash)
            })
        })
    }

    /// The fold's side of a request's consent: whoever signed may charge the account, and a
    /// delegation's terms, life and limit hold; counts the price against the delegation.
    /// Returns the delegation's hash, for the request to give refunds back to.
    pub(super) fn fold_consent(
        &mut self,
        env: &Envelope,
        r: &RequestAccepted,
        at: DateTime<Utc>,
    ) -> Result<Option<Hash32>, FoldError> {
        let Some(consent) = &r.consent else {
            // Logs written before submissions were signed.
            return Ok(None);
        };
        let account = &r.credit_account;
        let refused = |p: ConsentProblem| FoldError::at_field(env, p.recorded, p.reason);
        if let Some(p) = signer_problem(account, consent) {
            return Err(refused(p));
        }
        let Some(d) = &consent.delegation else {
            return Ok(None);
        };
        if let Some(u) = self.delegation_use(account, &d.hash) {
            if (&u.delegate, u.spending_limit, u.expires_at)
                != (&d.delegate, d.spending_limit, d.expires_at)
            {
                return Err(FoldError::at_field(
                    env,
                    "consent.delegation.hash",
                    format!(
                        "names a delegation recorded before with other terms ({u:?}): one hash \
                         is one delegation"
                    ),
                ));
            }
        }
        if let Some(p) = expiry_problem(d, at)
            .or_else(|| revoked_problem(self, account, d))
            .or_else(|| limit_problem(self, account, d, r.price))
        {
            return Err(refused(p));
        }
        let used = self
            .delegations
            .entry(account.clone())
            .or_default()
            .entry(d.hash)
            .or_insert_with(|| DelegationUse {
                delegate: d.delegate.clone(),
                spending_limit: d.spending_limit,
                expires_at: d.expires_at,
                spent: 0,
            });
        used.spent += r.price;
        Ok(Some(d.hash))
    }

    /// A refund of `amount` to `account` gives it back to the delegation the request was
    /// made under, if any.
    pub(super) fn refund_delegation(
        &mut self,
        env: &Envelope,
        account: &AccountId,
        hash: Option<Hash32>,
        amount: u64,
    ) -> Result<(), FoldError> {
        let Some(hash) = hash else { return Ok(()) };
        let used = self
            .delegations
            .get_mut(account)
            .and_then(|ds| ds.get_mut(&hash))
            .ok_or_else(|| FoldError::new(env, format!("delegation {hash} is not recorded")))?;
        used.spent = used.spent.checked_sub(amount).ok_or_else(|| {
            FoldError::new(env, format!("refunds more than delegation {hash} holds"))
        })?;
        Ok(())
    }
}
