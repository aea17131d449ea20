//! `verify --chain URL`: every credit and every stake change on the log checked against the
//! chain.
//!
//! A `CreditsDeposited` must carry where on the chain its deposit is, and the chain must
//! agree (`prlx_chain::verify::check`: the transaction in that block, the block canonical,
//! the escrow's `Deposited` at that log index for the same account and amount). A credit
//! without a chain deposit (claimed over HTTP by an older or misconfigured coordinator) is
//! reported too: nothing proves its money exists. A `ChainStakeChanged` must match the
//! staking contract's event at its place (node, staker, amount, the bond after it). Each
//! finding names the record's offset.

use alloy::primitives::{Address, B256, U256};
use prlx_chain::devchain::connect;
use prlx_chain::record::{deposit_observed, hex0x, observed_at};
use prlx_chain::verify::{check, locate};
use prlx_chain::watch::ChainEvent;
use prlx_events::event::{ChainStakeChanged, StakeChange};
use prlx_events::log::{LogReader, LogUrl, Offset};
use prlx_events::{Envelope, Event};
use serde::Serialize;

use crate::{Divergence, DivergenceKind, VerifyError};

/// What the chain check found.
#[derive(Debug, Clone, Serialize)]
pub struct ChainAudit {
    /// The node asked.
    pub rpc_url: String,
    /// Credits checked.
    pub deposits_checked: u64,
    /// Stake changes (`ChainStakeChanged`) checked.
    pub stake_changes_checked: u64,
    /// Every record that does not match the chain, in log order.
    pub divergences: Vec<Divergence>,
}

/// Why the chain could not be asked (the audit is then incomplete, not negative).
#[derive(Debug, thiserror::Error)]
#[error("the chain at {rpc_url}: {reason}")]
pub struct ChainUnreachable {
    /// The node.
    pub rpc_url: String,
    /// What failed.
    pub reason: String,
}

fn finding(offset: Offset, field: &str, message: String) -> Divergence {
    finding_in("CreditsDeposited", offset, field, message)
}

fn finding_in(event_type: &str, offset: Offset, field: &str, message: String) -> Divergence {
    Divergence {
        offset,
        kind: DivergenceKind::ChainMismatch,
        event_type: Some(event_type.into()),
        field: Some(field.into()),
        message,
    }
}

/// Checks every credit on the log at `log_url` against the chain at `rpc_url`.
pub async fn audit(
    log_url: &str,
    rpc_url: &str,
) -> Result<Result<ChainAudit, ChainUnreachable>, VerifyError> {
    let reader = LogUrl::parse(log_url)?.open_reader()?;
    let unreachable = |reason: String| ChainUnreachable {
        rpc_url: rpc_url.into(),
        reason,
    };
    let provider = match connect(rpc_url, None) {
        Ok(p) => p,
        Err(e) => return Ok(Err(unreachable(e.to_string()))),
    };
    let mut audit = ChainAudit {
        rpc_url: rpc_url.into(),
        deposits_checked: 0,
        stake_changes_checked: 0,
        divergences: Vec::new(),
    };
    let mut next = 0;
    loop {
        let batch = reader.read(next, 1024).await?;
        let Some(last) = batch.last() else { break };
        next = last.offset + 1;
        for record in &batch {
            // Undecodable records are the replay's to report; here only what decodes counts.
            let Ok(env) = Envelope::decode(&record.payload) else {
                continue;
            };
            if let Event::ChainStakeChanged(c) = &env.event {
                audit.stake_changes_checked += 1;
                match check_stake(&provider, c).await {
                    Ok(None) => {}
                    Ok(Some((field, why))) => audit.divergences.push(finding_in(
                        "ChainStakeChanged",
                        record.offset,
                        field,
                        why,
                    )),
                    Err(e) => return Ok(Err(unreachable(e))),
                }
                continue;
            }
            let Event::CreditsDeposited(d) = &env.event else {
                continue;
            };
            audit.deposits_checked += 1;
            let Some(c) = &d.chain else {
                audit.divergences.push(finding(
                    record.offset,
                    "chain",
                    format!(
                        "{} credits to {} with no chain deposit behind them",
                        d.amount, d.account
                    ),
                ));
                continue;
            };
            let o = match deposit_observed(&d.account, c) {
                Ok(o) => o,
                Err((field, why)) => {
                    audit.divergences.push(finding(
                        record.offset,
                        field,
                        format!("not a chain value: {why}"),
                    ));
                    continue;
                }
            };
            match check(&provider, &o).await {
                Ok(None) => {}
                Ok(Some(d)) => {
                    audit
                        .divergences
                        .push(finding(record.offset, "chain", d.to_string()))
                }
                Err(e) => return Ok(Err(unreachable(e.to_string()))),
            }
        }
    }
    Ok(Ok(audit))
}

/// A recorded stake change against the chain's event at its place: `Ok(None)` when they
/// agree, else the field that differs and how.
async fn check_stake(
    provider: &alloy::providers::DynProvider,
    c: &ChainStakeChanged,
) -> Result<Option<(&'static str, String)>, String> {
    // The event is not compared: `locate` returns the chain's event at the place.
    let placeholder = ChainEvent::Withdrawn {
        node_id: B256::ZERO,
        staker: Address::ZERO,
        amount: U256::ZERO,
    };
    let place = match observed_at(&c.chain, placeholder) {
        Ok(p) => p,
        Err((field, why)) => return Ok(Some((field, format!("not a chain value: {why}")))),
    };
    let event = match locate(provider, &place).await.map_err(|e| e.to_string())? {
        Err(d) => return Ok(Some(("chain", d.to_string()))),
        Ok(e) => e,
    };
    let (change, node_id, staker, amount, bonded) = match event {
        ChainEvent::Staked {
            node_id,
            staker,
            amount,
            bonded,
        } => (StakeChange::Staked, node_id, staker, amount, Some(bonded)),
        ChainEvent::UnstakeRequested {
            node_id,
            staker,
            amount,
            bonded,
            ..
        } => (
            StakeChange::UnstakeRequested,
            node_id,
            staker,
            amount,
            Some(bonded),
        ),
        ChainEvent::Withdrawn {
            node_id,
            staker,
            amount,
        } => (StakeChange::Withdrawn, node_id, staker, amount, None),
        other => return Ok(Some(("change", format!("the chain has {other:?} there")))),
    };
    let differs = |field, chain: String, recorded: String| {
        Some((
            field,
            format!("the chain has {chain}, the record {recorded}"),
        ))
    };
    Ok(if change != c.change {
        differs("change", format!("{change:?}"), format!("{:?}", c.change))
    } else if node_id.0 != c.node_id.0 .0 {
        differs("node_id", hex0x(node_id.as_slice()), c.node_id.to_string())
    } else if hex0x(staker.as_slice()) != c.staker {
        differs("staker", hex0x(staker.as_slice()), c.staker.clone())
    } else if amount.to_string() != c.amount_wei {
        differs("amount_wei", amount.to_string(), c.amount_wei.clone())
    } else if let Some(b) = bonded.filter(|b| b.to_string() != c.bonded_wei) {
        differs("bonded_wei", b.to_string(), c.bonded_wei.clone())
    } else {
        None
    })
}
