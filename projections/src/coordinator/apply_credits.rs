//! The fold's arms of credit movements: a request's reservation, its charge and its refund,
//! each owed by the event that causes it in the same decision ([`super::batch`]) and each of
//! exactly the amount the request's state gives, so a log can neither move another
//! account's credit nor bill another price.

use prlx_events::event::{CreditsCharged, CreditsRefunded, CreditsReserved};
use prlx_events::{AccountId, Envelope, RequestId};

use crate::coordinator::batch::Owed;
use crate::coordinator::state::CoordinatorState;
use crate::coordinator::views::Account;
use crate::fold::FoldError;

impl CoordinatorState {
    pub(super) fn fold_reserved(
        &mut self,
        env: &Envelope,
        c: &CreditsReserved,
    ) -> Result<(), FoldError> {
        self.batch
            .check_owed(env, Owed::Reservation(c.request_id))?;
        let price = self.check_request_account(env, &c.account, c.request_id)?;
        if c.amount != price {
            return Err(FoldError::at_field(
                env,
                "amount",
                format!(
                    "reserves {} for request {}, whose price is {price}",
                    c.amount, c.request_id
                ),
            ));
        }
        let acct = self.account(env, &c.account)?;
        let available = acct.available();
        if c.amount > available {
            return Err(FoldError::new(
                env,
                format!(
                    "reserves {} but {} has {available} available",
                    c.amount, c.account
                ),
            ));
        }
        let reserved = checked(env, acct.reserved.checked_add(c.amount))?;
        self.request_mut(env, c.request_id)?.reserved = c.amount;
        self.account_mut(env, &c.account)?.reserved = reserved;
        self.batch.discharge(Owed::Reservation(c.request_id));
        Ok(())
    }

    pub(super) fn fold_charged(
        &mut self,
        env: &Envelope,
        c: &CreditsCharged,
    ) -> Result<(), FoldError> {
        self.batch.check_owed(env, Owed::Charge(c.request_id))?;
        let price = self.check_request_account(env, &c.account, c.request_id)?;
        let held = self.requests[&c.request_id].reserved;
        // What `decide` charges: the price, or what is reserved if that is less.
        let due = price.min(held);
        if c.amount != due {
            return Err(FoldError::at_field(
                env,
                "amount",
                format!(
                    "charges {} for request {}, which owes {due}",
                    c.amount, c.request_id
                ),
            ));
        }
        let acct = self.account(env, &c.account)?;
        let acct_reserved = checked(env, acct.reserved.checked_sub(c.amount))?;
        let balance = checked(env, acct.balance.checked_sub(c.amount))?;
        let req = self.request_mut(env, c.request_id)?;
        req.reserved = held - c.amount;
        req.charged = checked(env, req.charged.checked_add(c.amount))?;
        let rest = req.reserved;
        let acct = self.account_mut(env, &c.account)?;
        acct.reserved = acct_reserved;
        acct.balance = balance;
        self.batch.discharge(Owed::Charge(c.request_id));
        if rest > 0 {
            self.batch.owe(Owed::Refund(c.request_id));
        }
        Ok(())
    }

    pub(super) fn fold_refunded(
        &mut self,
        env: &Envelope,
        c: &CreditsRefunded,
    ) -> Result<(), FoldError> {
        self.batch.check_owed(env, Owed::Refund(c.request_id))?;
        self.check_request_account(env, &c.account, c.request_id)?;
        let held = self.requests[&c.request_id].reserved;
        if c.amount != held {
            return Err(FoldError::at_field(
                env,
                "amount",
                format!(
                    "refunds {} of request {}, which holds {held}: a refund returns all of it",
                    c.amount, c.request_id
                ),
            ));
        }
        let acct_reserved = checked(
            env,
            self.account(env, &c.account)?
                .reserved
                .checked_sub(c.amount),
        )?;
        let req = self.request_mut(env, c.request_id)?;
        req.reserved = 0;
        let delegation = req.delegation;
        self.account_mut(env, &c.account)?.reserved = acct_reserved;
        // Refunded credits were never spent: the delegation may spend them again.
        self.refund_delegation(env, &c.account, delegation, c.amount)?;
        self.batch.discharge(Owed::Refund(c.request_id));
        Ok(())
    }

    /// The request exists and is `account`'s; returns its price.
    fn check_request_account(
        &self,
        env: &Envelope,
        account: &AccountId,
        id: RequestId,
    ) -> Result<u64, FoldError> {
        let req = self.request(env, id)?;
        if &req.account != account {
            return Err(FoldError::at_field(
                env,
                "account",
                format!("request {id} belongs to {}, not {account}", req.account),
            ));
        }
        Ok(req.price)
    }

    fn account(&self, env: &Envelope, id: &AccountId) -> Result<&Account, FoldError> {
        self.accounts
            .get(id)
            .ok_or_else(|| FoldError::new(env, format!("account {id} is not recorded")))
    }

    fn account_mut(&mut self, env: &Envelope, id: &AccountId) -> Result<&mut Account, FoldError> {
        self.accounts
            .get_mut(id)
            .ok_or_else(|| FoldError::new(env, format!("account {id} is not recorded")))
    }
}

/// Credit arithmetic that a consistent log never overflows; a log that would is refused.
fn checked(env: &Envelope, v: Option<u64>) -> Result<u64, FoldError> {
    v.ok_or_else(|| FoldError::new(env, "credit arithmetic leaves the range of u64"))
}
