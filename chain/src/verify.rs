//! Checking a recorded observation against the chain: the auditor's side of the watcher.
//!
//! The log says "this event was at (chain, block, tx, log index)". The chain must agree: the
//! transaction exists and is in that block, the block is still the canonical one at its
//! height, and the log at that index was emitted by the recorded contract and decodes to the
//! recorded event (same account, amount, node...). Anything else is a [`Divergence`], named
//! precisely so a report can say which record is wrong and how.

use alloy::primitives::B256;
use alloy::providers::{DynProvider, Provider};

use crate::watch::{decode_any, ChainEvent, Observed};

/// How a recorded observation differs from the chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Divergence {
    /// The chain id the node reports is not the record's.
    #[error("the record is on chain {recorded}, the node is chain {actual}")]
    WrongChain {
        /// The record's.
        recorded: u64,
        /// The node's.
        actual: u64,
    },
    /// No such transaction (invented, or reorged out and never re-included).
    #[error("transaction {0} is not on the chain")]
    NoTransaction(B256),
    /// The transaction is in another block than recorded.
    #[error("transaction is in block {actual}, recorded in block {recorded}")]
    OtherBlock {
        /// The record's block number.
        recorded: u64,
        /// Where it is.
        actual: u64,
    },
    /// The recorded block hash is not the canonical block at that height any more.
    #[error("block {number} is {canonical} on the chain, recorded as {recorded}: not canonical")]
    NotCanonical {
        /// The height.
        number: u64,
        /// The record's hash.
        recorded: B256,
        /// The chain's.
        canonical: B256,
    },
    /// The transaction has no log at the recorded index.
    #[error("the transaction has no log {0}")]
    NoLog(u64),
    /// The log was emitted by another contract, or says something else.
    #[error("the chain's log differs: {0}")]
    Differs(String),
}

/// Why a check could not be made (the answer is unknown, not negative).
#[derive(Debug, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct Unreachable {
    /// What was asked.
    pub what: String,
    /// The answer.
    pub reason: String,
}

fn unreachable(what: &str, e: impl std::fmt::Display) -> Unreachable {
    Unreachable {
        what: what.into(),
        reason: e.to_string(),
    }
}

/// Checks one recorded observation: `Ok(None)` when the chain agrees.
pub async fn check(
    provider: &DynProvider,
    recorded: &Observed,
) -> Result<Option<Divergence>, Unreachable> {
    Ok(match locate(provider, recorded).await? {
        Err(d) => Some(d),
        Ok(event) if event == recorded.event => None,
        Ok(event) => Some(Divergence::Differs(format!(
            "the chain has {event:?}, the record {:?}",
            recorded.event
        ))),
    })
}

/// The followed event the chain has at the recorded place (chain, block, transaction, log
/// index, contract; `recorded.event` is not looked at), or how the place differs.
pub async fn locate(
    provider: &DynProvider,
    recorded: &Observed,
) -> Result<Result<ChainEvent, Divergence>, Unreachable> {
    let chain_id = provider
        .get_chain_id()
        .await
        .map_err(|e| unreachable("eth_chainId", e))?;
    if chain_id != recorded.chain_id {
        return Ok(Err(Divergence::WrongChain {
            recorded: recorded.chain_id,
            actual: chain_id,
        }));
    }
    let Some(receipt) = provider
        .get_transaction_receipt(recorded.tx_hash)
        .await
        .map_err(|e| unreachable("eth_getTransactionReceipt", e))?
    else {
        return Ok(Err(Divergence::NoTransaction(recorded.tx_hash)));
    };
    let actual = receipt.block_number.unwrap_or_default();
    if actual != recorded.block_number {
        return Ok(Err(Divergence::OtherBlock {
            recorded: recorded.block_number,
            actual,
        }));
    }
    let canonical = provider
        .get_block_by_number(recorded.block_number.into())
        .await
        .map_err(|e| unreachable("eth_getBlockByNumber", e))?
        .map(|b| b.header.hash)
        .unwrap_or_default();
    if canonical != recorded.block_hash {
        return Ok(Err(Divergence::NotCanonical {
            number: recorded.block_number,
            recorded: recorded.block_hash,
            canonical,
        }));
    }
    let Some(log) = receipt
        .inner
        .logs()
        .iter()
        .find(|l| l.log_index == Some(recorded.log_index))
    else {
        return Ok(Err(Divergence::NoLog(recorded.log_index)));
    };
    if log.address() != recorded.contract {
        return Ok(Err(Divergence::Differs(format!(
            "emitted by {}, recorded from {}",
            log.address(),
            recorded.contract
        ))));
    }
    Ok(match decode_any(log) {
        Ok(Some(event)) => Ok(event),
        Ok(None) => Err(Divergence::Differs(
            "not an event the coordinator follows".into(),
        )),
        Err(e) => Err(Divergence::Differs(format!("does not decode: {e}"))),
    })
}
