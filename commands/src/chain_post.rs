//! Settlement on chain: each settled epoch's payouts become a Merkle root posted to the
//! RewardsDistributor by the coordinator's chain key, with the head of the log's hash chain.
//!
//! In two steps, so the log says what is posted before the chain does: the tree is fixed on
//! the log (`Command::PrepareRoot` -> `RewardRootPrepared`), then posted (`postEpoch(epoch,
//! root, log head, total)`), and the watcher records the distributor's `EpochPosted` when it
//! reads it (`RewardRootPosted`). Before posting, what the Sablier stream has unlocked is
//! withdrawn to the distributor (anyone may; it can only go to the stream's recipient), so the
//! distributor holds what the root owes. A post the distributor refuses (not enough unlocked
//! yet) is tried again at the next round; epochs are posted in order, as the contract requires.
//! A steady-state epoch's income is paid out of escrow first (`CreditEscrow.settleUsage`, the
//! 85 / 10 / 5 split to the distributor, treasury and infra), once per epoch.
//!
//! Runs on the active instance only. Two instances posting the same epoch cannot both
//! succeed: the contract takes each epoch once, and a refused duplicate is only logged.

use std::collections::BTreeSet;
use std::time::Duration;

use alloy::primitives::{B256, U256};
use alloy::providers::DynProvider;
use alloy::signers::local::PrivateKeySigner;
use prlx_chain::bindings::{CreditEscrow, ISablierLockup, RewardsDistributor};
use prlx_chain::deploy::confirm;
use prlx_chain::devchain::connect;
use prlx_chain::Deployment;
use prlx_events::chain::{link_to, GENESIS};
use prlx_events::event::CREDIT_UNIT_WEI;
use prlx_events::log::{LogReader, LogUrl};
use prlx_events::Hash32;
use tokio::sync::watch;

use crate::actor::CoordinatorHandle;
use crate::decide::Command;
use crate::shell::Outcome;

/// What the poster needs.
#[derive(Debug, Clone)]
pub struct PosterConfig {
    /// The contracts.
    pub deployment: Deployment,
    /// The node to send through.
    pub rpc_url: String,
    /// The coordinator's chain key (the distributor's `poster`).
    pub signer: PrivateKeySigner,
    /// This coordinator's log, for its head.
    pub log: String,
    /// Time between rounds.
    pub interval: Duration,
}

/// Prepares and posts epochs until `stopped`.
pub async fn run(
    handle: CoordinatorHandle,
    config: PosterConfig,
    mut stopped: watch::Receiver<bool>,
) {
    let provider = match connect(&config.rpc_url, Some(config.signer.clone())) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("epoch poster: {e}; no epoch is posted");
            return;
        }
    };
    // Posting with the wrong key, or on another chain, would only fail or mislead: checked
    // once, before anything is sent.
    loop {
        match check_poster(&config, &provider).await {
            Ok(()) => break,
            Err((true, e)) => {
                tracing::error!("epoch poster stopped: {e}");
                return;
            }
            Err((false, e)) => tracing::warn!("epoch poster: {e}; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(config.interval) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
    }
    tracing::info!(poster = %config.signer.address(), "epoch poster: posting settled epochs to {}", config.deployment.contracts.rewards_distributor);
    // Epochs with nothing to post (no payout to a node staked on chain): asked once.
    let mut empty = BTreeSet::new();
    loop {
        if let Err(e) = round(&handle, &config, &provider, &mut empty).await {
            tracing::warn!("epoch poster: {e}; trying again");
        }
        tokio::select! {
            _ = tokio::time::sleep(config.interval) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
    }
}

async fn round(
    handle: &CoordinatorHandle,
    config: &PosterConfig,
    provider: &DynProvider,
    empty: &mut BTreeSet<u64>,
) -> Result<(), String> {
    // First the escrow pays steady-state income out, so the distributor holds the operators'
    // share before a root that owes it is posted.
    settle_usage(handle, config, provider).await?;
    let unprepared = handle
        .read_state(|s| {
            s.recent_payouts
                .keys()
                .filter(|e| !s.roots.contains_key(e))
                .copied()
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| e.to_string())?;
    let unprepared: Vec<u64> = unprepared
        .into_iter()
        .filter(|e| !empty.contains(e))
        .collect();
    for epoch in unprepared {
        match handle.execute_command(Command::PrepareRoot { epoch }).await {
            Ok(Outcome::Rejected { rejection, .. }) => {
                tracing::debug!(epoch, "epoch poster: nothing to post: {rejection}");
                empty.insert(epoch);
            }
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    let unposted = handle
        .read_state(|s| {
            s.roots
                .iter()
                .filter(|(_, r)| !r.posted)
                .map(|(e, r)| (*e, r.root, r.total_wei.clone()))
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| e.to_string())?;
    if unposted.is_empty() {
        return Ok(());
    }
    let distributor = RewardsDistributor::new(
        config.deployment.contracts.rewards_distributor,
        provider.clone(),
    );
    let next = distributor
        .nextEpoch()
        .call()
        .await
        .map_err(|e| format!("nextEpoch: {e}"))?;
    for (epoch, root, total_wei) in unposted {
        let on_chain = distributor
            .epochOf(U256::from(epoch))
            .call()
            .await
            .map_err(|e| format!("epochOf: {e}"))?;
        if on_chain.root != B256::ZERO {
            // Posted; the watcher records it once confirmed. Another root there means this
            // log and the chain disagree about the epoch (another coordinator posted it): say
            // so, loudly; it can never be recorded.
            if on_chain.root.0 != root.0 {
                tracing::error!(epoch, chain = %on_chain.root, log = %B256::from(root.0), "epoch poster: the distributor holds another root for this epoch");
            }
            continue;
        }
        if U256::from(epoch) < next {
            tracing::error!(
                epoch,
                "epoch poster: the distributor is past epoch {epoch}; it can no longer be posted"
            );
            continue;
        }
        pull_stream(config, provider).await;
        let total: U256 = total_wei
            .parse()
            .map_err(|_| format!("epoch {epoch}: total {total_wei:?}"))?;
        let head = log_head(&config.log).await?;
        let sent = distributor
            .postEpoch(
                U256::from(epoch),
                B256::from(root.0),
                B256::from(head.0),
                total,
            )
            .send()
            .await;
        match confirm(sent, &format!("posting epoch {epoch}")).await {
            Ok(r) => tracing::info!(epoch, tx = %r.transaction_hash, %total, "epoch posted"),
            // Most likely not enough unlocked yet: the next round tries again, in order.
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

/// Has the escrow pay out each steady-state epoch's income still due (`settleUsage`, split 85
/// / 10 / 5 by the contract), oldest first. An epoch the escrow already settled is left for
/// the watcher to record; a refusal is tried again next round.
async fn settle_usage(
    handle: &CoordinatorHandle,
    config: &PosterConfig,
    provider: &DynProvider,
) -> Result<(), String> {
    let due = handle
        .read_state(|s| s.usage_due.clone())
        .await
        .map_err(|e| e.to_string())?;
    let escrow = CreditEscrow::new(config.deployment.contracts.credit_escrow, provider.clone());
    for (epoch, income) in due {
        let settled = escrow
            .settled(U256::from(epoch))
            .call()
            .await
            .map_err(|e| format!("CreditEscrow.settled: {e}"))?;
        if settled {
            continue;
        }
        let amount = U256::from(income) * U256::from(CREDIT_UNIT_WEI);
        let sent = escrow.settleUsage(U256::from(epoch), amount).send().await;
        let r = confirm(sent, &format!("settling epoch {epoch}'s usage"))
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(epoch, tx = %r.transaction_hash, %amount, "usage settled out of escrow");
    }
    Ok(())
}

/// Withdraws what the bootstrap stream has unlocked to the distributor; nothing to withdraw
/// (or a failure) only means the post may be refused and retried.
async fn pull_stream(config: &PosterConfig, provider: &DynProvider) {
    let stream = &config.deployment.reward_stream;
    let lockup = ISablierLockup::new(config.deployment.contracts.sablier_lockup, provider.clone());
    let Ok(ready) = lockup.withdrawableAmountOf(stream.stream_id).call().await else {
        return;
    };
    if ready == 0 {
        return;
    }
    let fee = lockup
        .calculateMinFeeWei(stream.stream_id)
        .call()
        .await
        .unwrap_or_default();
    let sent = lockup
        .withdrawMax(
            stream.stream_id,
            config.deployment.contracts.rewards_distributor,
        )
        .value(fee)
        .send()
        .await;
    if let Err(e) = confirm(sent, "withdrawing the stream to the distributor").await {
        tracing::warn!("epoch poster: {e}");
    }
}

/// SHA-256 of the last record on the log: the hash chain's head.
async fn log_head(log: &str) -> Result<Hash32, String> {
    let reader = LogUrl::parse(log)
        .and_then(|u| u.open_reader())
        .map_err(|e| e.to_string())?;
    let end = reader.end().await.map_err(|e| e.to_string())?;
    if end == 0 {
        return Ok(GENESIS);
    }
    let last = reader.read(end - 1, 1).await.map_err(|e| e.to_string())?;
    Ok(last.first().map_or(GENESIS, |r| link_to(&r.payload)))
}

/// The node is the deployment's chain and the key is the distributor's poster; `Err((fatal,
/// why))`, fatal for a mismatch, not for a node that cannot be asked.
async fn check_poster(config: &PosterConfig, provider: &DynProvider) -> Result<(), (bool, String)> {
    let id = alloy::providers::Provider::get_chain_id(provider)
        .await
        .map_err(|e| (false, format!("eth_chainId: {e}")))?;
    if id != config.deployment.chain_id {
        return Err((
            true,
            format!(
                "the node is chain {id}, the deployment chain {}",
                config.deployment.chain_id
            ),
        ));
    }
    let distributor = RewardsDistributor::new(
        config.deployment.contracts.rewards_distributor,
        provider.clone(),
    );
    let poster = distributor
        .poster()
        .call()
        .await
        .map_err(|e| (false, format!("RewardsDistributor.poster: {e}")))?;
    if poster != config.signer.address() {
        return Err((
            true,
            format!(
                "the distributor's poster is {poster}, this key is {}",
                config.signer.address()
            ),
        ));
    }
    Ok(())
}
