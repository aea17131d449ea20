//! The coordinator's chain watcher: credits come from `CreditEscrow.Deposited` on the chain
//! and stake from `NodeStaking`'s events, read past the configured confirmations
//! (`prlx_chain::watch`), each decided into a `CreditsDeposited` or `ChainStakeChanged` that
//! carries where on the chain it is; the distributor's posts and the escrow's usage
//! settlements likewise (`RewardRootPosted`, `UsageSettled`).
//!
//! Exactly once: a chain event is named by (chain id, transaction, log index), and `decide`
//! applies each name once, so a restart that reads a block again, a failover to a standby, or
//! two watchers never credit or stake twice. It runs on the active instance only, beside the
//! Kafka intake, and resumes at the highest block a chain event was recorded in.
//!
//! A deposit too small to buy one credit is logged and left in escrow. A reorg deeper than the
//! confirmations stops the watcher (no further credits) until the coordinator restarts and an
//! operator has looked (docs/settlement.md, "On chain").

use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use prlx_chain::devchain::connect;
use prlx_chain::record::{deposit_of, hex0x, place_of};
use prlx_chain::watch::{ChainEvent, Observed, WatchConfig, WatchError, Watcher};
use prlx_chain::Deployment;
use prlx_events::event::{StakeChange, UsageSettled};
use prlx_events::{Hash32, NodeId};
use tokio::sync::watch;

use crate::actor::CoordinatorHandle;
use crate::decide::{Command, RootPost, StakeObservation};
use crate::shell::Outcome;

/// What the watcher needs.
#[derive(Debug, Clone)]
pub struct ChainWatchConfig {
    /// The contracts (and the block to start at).
    pub deployment: Deployment,
    /// The node to ask.
    pub rpc_url: String,
    /// Confirmations and page size.
    pub watch: WatchConfig,
    /// Time between polls.
    pub interval: Duration,
    /// The coordinator's chain key: with it, settled epochs are also posted
    /// ([`crate::chain_post`]).
    pub poster: Option<alloy::signers::local::PrivateKeySigner>,
}

/// The command an observation becomes (`None` for a claim: operators' business).
pub fn observation_command(o: &Observed) -> Option<Command> {
    let stake = |node_id: &B256, staker: &Address, change, amount: &U256, bonded: Option<&U256>| {
        Command::ObserveStake(Box::new(StakeObservation {
            node_id: NodeId(Hash32(node_id.0)),
            staker: hex0x(staker.as_slice()),
            change,
            amount_wei: amount.to_string(),
            bonded_wei: bonded.map(U256::to_string),
            chain: place_of(o),
        }))
    };
    match &o.event {
        ChainEvent::Deposited { .. } => {
            deposit_of(o).map(|(account, chain)| Command::ObserveDeposit { account, chain })
        }
        ChainEvent::Staked {
            node_id,
            staker,
            amount,
            bonded,
        } => Some(stake(
            node_id,
            staker,
            StakeChange::Staked,
            amount,
            Some(bonded),
        )),
        ChainEvent::UnstakeRequested {
            node_id,
            staker,
            amount,
            bonded,
            ..
        } => Some(stake(
            node_id,
            staker,
            StakeChange::UnstakeRequested,
            amount,
            Some(bonded),
        )),
        ChainEvent::Withdrawn {
            node_id,
            staker,
            amount,
        } => Some(stake(node_id, staker, StakeChange::Withdrawn, amount, None)),
        ChainEvent::EpochPosted {
            epoch,
            root,
            log_head,
            total,
        } => Some(Command::ObservePost(Box::new(RootPost {
            // An epoch past u64 was not posted by a coordinator: it fails as unprepared.
            epoch: u64::try_from(*epoch).unwrap_or(u64::MAX),
            root: Hash32(root.0),
            log_head: Hash32(log_head.0),
            total_wei: total.to_string(),
            chain: place_of(o),
        }))),
        ChainEvent::UsageSettled {
            epoch,
            operators,
            treasury,
            infra,
        } => Some(Command::ObserveUsage(Box::new(UsageSettled {
            // An epoch past u64 was not settled by a coordinator: it fails as not due.
            epoch: u64::try_from(*epoch).unwrap_or(u64::MAX),
            operators_wei: operators.to_string(),
            treasury_wei: treasury.to_string(),
            infra_wei: infra.to_string(),
            chain: place_of(o),
        }))),
        ChainEvent::Claimed { .. } => None,
    }
}

/// Follows the chain until `stopped`.
pub async fn run(
    handle: CoordinatorHandle,
    config: ChainWatchConfig,
    mut stopped: watch::Receiver<bool>,
) {
    let provider = match connect(&config.rpc_url, None) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("chain watcher: {e}; no deposits are credited");
            return;
        }
    };
    let (recorded, hash) = handle
        .read_state(|s| (s.chain_block, s.chain_block_hash.clone()))
        .await
        .unwrap_or((0, None));
    let from = recorded.max(config.deployment.deployed_at_block);
    // The block of the last event recorded must still be the chain's: checked before the
    // first read, as after any other confirmed block.
    let confirmed = hash.and_then(|h| h.parse().ok()).map(|h| (recorded, h));
    let provider_for_stream = provider.clone();
    let mut watcher = Watcher::new(provider, &config.deployment, config.watch, from, confirmed);
    // Every record is stamped with the deployment's chain id: another chain must not feed it.
    loop {
        match watcher.check_chain_id().await {
            Ok(()) => break,
            Err(e @ WatchError::WrongChain { .. }) => {
                tracing::error!("chain watcher stopped: {e}");
                return;
            }
            Err(e) => tracing::warn!("chain watcher: {e}; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(config.interval) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
    }
    // The bootstrap stream's terms, before any epoch could settle on them: bootstrap epochs
    // earn what the stream unlocks (recorded once; the same terms again record nothing).
    loop {
        match prlx_chain::stream::read_stream(&provider_for_stream, &config.deployment).await {
            Ok(terms) => {
                let what = format!(
                    "reward stream {} at block {}",
                    terms.stream_id, terms.block_number
                );
                if record(&handle, Command::ObserveStream(Box::new(terms)), &what).await {
                    break;
                }
            }
            Err(e) => tracing::warn!("chain watcher: reading the reward stream: {e}; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(config.interval) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
    }
    tracing::info!(
        "chain watcher: chain {} at {}, from block {from}, {} confirmations",
        config.deployment.chain_id,
        config.rpc_url,
        config.watch.confirmations
    );
    loop {
        match watcher.poll().await {
            Ok(seen) => {
                for o in &seen {
                    let Some(command) = observation_command(o) else {
                        continue;
                    };
                    let what = format!(
                        "{:?} (block {}, tx {}, index {})",
                        o.event, o.block_number, o.tx_hash, o.log_index
                    );
                    if !record(&handle, command, &what).await {
                        // Not recorded (the log or the actor failed): read it again next
                        // time, and everything after it, rather than lose it.
                        watcher.rewind_to(o.block_number);
                        break;
                    }
                }
            }
            Err(e @ WatchError::Rpc { .. }) => tracing::warn!("chain watcher: {e}; retrying"),
            Err(e) => {
                tracing::error!("chain watcher stopped: {e}");
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(config.interval) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
    }
}

/// Decides one observation (`what` names it in the log lines); `false` when it could not be
/// decided (to be read again), `true` when it was recorded, was a repeat, or was refused for
/// good (logged).
async fn record(handle: &CoordinatorHandle, command: Command, what: &str) -> bool {
    match handle.execute_command(command).await {
        Ok(Outcome::Appended(_)) => tracing::info!("recorded {what}"),
        Ok(Outcome::Rejected { rejection, .. }) => {
            tracing::warn!("not recorded: {what}: {rejection}")
        }
        Ok(other) => tracing::debug!("{what}: {other:?}"),
        Err(e) => {
            tracing::error!("not recorded, to be read again: {what}: {e}");
            return false;
        }
    }
    true
}
