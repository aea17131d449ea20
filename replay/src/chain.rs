//! `verify --chain URL`: every credit on the log checked against the chain.
//!
//! A `CreditsDeposited` must carry where on the chain its deposit is, and the chain must
//! agree (`prlx_chain::verify::check`: the transaction in that block, the block canonical,
//! the escrow's `Deposited` at that log index for the same account and amount). A credit
//! without a chain deposit (claimed over HTTP by an older or misconfigured coordinator) is
//! reported too: nothing proves its money exists. Each finding names the record's offset.

use std::str::FromStr;

use alloy::primitives::{Address, B256, U256};
use prlx_chain::devchain::connect;
use prlx_chain::verify::check;
use prlx_chain::watch::{ChainEvent, Observed};
use prlx_events::event::{ChainDeposit, CreditsDeposited};
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
    Divergence {
        offset,
        kind: DivergenceKind::ChainMismatch,
        event_type: Some("CreditsDeposited".into()),
        field: Some(field.into()),
        message,
    }
}

/// The observation a recorded deposit claims, or why it cannot be one.
fn observed(d: &CreditsDeposited, c: &ChainDeposit) -> Result<Observed, (&'static str, String)> {
    let hash = |field: &'static str, v: &str| {
        B256::from_str(v).map_err(|e| (field, format!("{v:?}: {e}")))
    };
    let addr = |field: &'static str, v: &str| {
        Address::from_str(v).map_err(|e| (field, format!("{v:?}: {e}")))
    };
    Ok(Observed {
        chain_id: c.chain_id,
        contract: addr("chain.contract", &c.contract)?,
        block_number: c.block_number,
        block_hash: hash("chain.block_hash", &c.block_hash)?,
        tx_hash: hash("chain.tx_hash", &c.tx_hash)?,
        log_index: c.log_index,
        event: ChainEvent::Deposited {
            account: addr("account", &d.account.0)?,
            payer: addr("chain.payer", &c.payer)?,
            amount: U256::from_str_radix(&c.amount_wei, 10)
                .map_err(|e| ("chain.amount_wei", format!("{:?}: {e}", c.amount_wei)))?,
        },
    })
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
            let o = match observed(d, c) {
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
