//! Between what the watcher observes and what the log records: the coordinator writes an
//! observation's place and values as the log's text fields ([`place_of`], [`hex0x`]), and
//! the auditor turns a record back into an observation to look up ([`observed_at`]). One
//! mapping both ways, so the two cannot drift apart.

use std::str::FromStr;

use alloy::primitives::{Address, B256, U256};
use prlx_events::event::{ChainDeposit, ChainRef, RewardRootPrepared};
use prlx_events::AccountId;

use crate::merkle::{Payout, PayoutTree};
use crate::watch::{ChainEvent, Observed};
use crate::ChainError;

/// 0x-hex, lowercase: how the log writes addresses and hashes.
pub fn hex0x(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

/// Where an observation is, as the log records it.
pub fn place_of(o: &Observed) -> ChainRef {
    ChainRef {
        chain_id: o.chain_id,
        contract: hex0x(o.contract.as_slice()),
        block_number: o.block_number,
        block_hash: hex0x(o.block_hash.as_slice()),
        tx_hash: hex0x(o.tx_hash.as_slice()),
        log_index: o.log_index,
    }
}

/// The deposit a `Deposited` observation records as: the account and its chain deposit.
pub fn deposit_of(o: &Observed) -> Option<(AccountId, ChainDeposit)> {
    let ChainEvent::Deposited {
        account,
        payer,
        amount,
    } = &o.event
    else {
        return None;
    };
    Some((
        AccountId(hex0x(account.as_slice())),
        ChainDeposit {
            place: place_of(o),
            payer: hex0x(payer.as_slice()),
            amount_wei: amount.to_string(),
        },
    ))
}

/// A recorded place with `event`, for looking it up; `Err((field, why))` for a field that is
/// not a chain value.
pub fn observed_at(
    place: &ChainRef,
    event: ChainEvent,
) -> Result<Observed, (&'static str, String)> {
    Ok(Observed {
        chain_id: place.chain_id,
        contract: address("chain.contract", &place.contract)?,
        block_number: place.block_number,
        block_hash: hash("chain.block_hash", &place.block_hash)?,
        tx_hash: hash("chain.tx_hash", &place.tx_hash)?,
        log_index: place.log_index,
        event,
    })
}

/// The payout tree of a prepared epoch, from its leaves on the log (the root is not checked
/// here: compare `tree.root()` with the record's).
pub fn tree_of(r: &RewardRootPrepared) -> Result<PayoutTree, ChainError> {
    let bad = |field: &str| {
        ChainError::Tree(format!(
            "epoch {}: a leaf's {field} is not a chain value",
            r.epoch
        ))
    };
    let payouts = r
        .leaves
        .iter()
        .map(|l| {
            Ok(Payout {
                node_id: B256::from(l.node_id.0 .0),
                recipient: l.recipient.parse().map_err(|_| bad("recipient"))?,
                amount: l.amount_wei.parse().map_err(|_| bad("amount_wei"))?,
            })
        })
        .collect::<Result<Vec<_>, ChainError>>()?;
    PayoutTree::build(r.epoch, payouts)
}

/// A recorded place alone, to find what the chain has there ([`crate::verify::locate`]
/// does not look at the event).
pub fn place_at(place: &ChainRef) -> Result<Observed, (&'static str, String)> {
    let any = ChainEvent::Withdrawn {
        node_id: B256::ZERO,
        staker: Address::ZERO,
        amount: U256::ZERO,
    };
    observed_at(place, any)
}

/// The observation a recorded deposit claims.
pub fn deposit_observed(
    account: &AccountId,
    d: &ChainDeposit,
) -> Result<Observed, (&'static str, String)> {
    let event = ChainEvent::Deposited {
        account: address("account", &account.0)?,
        payer: address("chain.payer", &d.payer)?,
        amount: U256::from_str_radix(&d.amount_wei, 10)
            .map_err(|e| ("chain.amount_wei", format!("{:?}: {e}", d.amount_wei)))?,
    };
    observed_at(&d.place, event)
}

fn hash(field: &'static str, v: &str) -> Result<B256, (&'static str, String)> {
    B256::from_str(v).map_err(|e| (field, format!("{v:?}: {e}")))
}

fn address(field: &'static str, v: &str) -> Result<Address, (&'static str, String)> {
    Address::from_str(v).map_err(|e| (field, format!("{v:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deposit_round_trips_through_its_record() {
        let o = Observed {
            chain_id: 31337,
            contract: Address::repeat_byte(1),
            block_number: 9,
            block_hash: B256::repeat_byte(2),
            tx_hash: B256::repeat_byte(3),
            log_index: 4,
            event: ChainEvent::Deposited {
                account: Address::repeat_byte(5),
                payer: Address::repeat_byte(6),
                amount: U256::from(7_000_000_000u64),
            },
        };
        let (account, d) = deposit_of(&o).unwrap();
        assert_eq!(account.0, format!("0x{}", "05".repeat(20)));
        assert_eq!(deposit_observed(&account, &d).unwrap(), o);
        let bad = ChainDeposit {
            place: ChainRef {
                tx_hash: "0x12".into(),
                ..d.place.clone()
            },
            ..d
        };
        assert_eq!(
            deposit_observed(&account, &bad).unwrap_err().0,
            "chain.tx_hash"
        );
    }
}
