//! The bootstrap stream's terms, read off Sablier's Lockup: what the coordinator records
//! (`RewardStreamObserved`) so that settlement pays each bootstrap epoch what the stream
//! unlocked in it, and what the auditor reads again to check the record.

use alloy::eips::BlockId;
use alloy::providers::{DynProvider, Provider};
use prlx_events::event::RewardStreamObserved;

use crate::bindings::ISablierLockup;
use crate::record::hex0x;
use crate::{ChainError, Deployment};

fn rpc<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> ChainError {
    move |e| ChainError::rpc(what, e)
}

/// The deployment's stream as the Lockup holds it at the latest block, with that block.
pub async fn read_stream(
    provider: &DynProvider,
    deployment: &Deployment,
) -> Result<RewardStreamObserved, ChainError> {
    let chain_id = provider.get_chain_id().await.map_err(rpc("eth_chainId"))?;
    let block = provider
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .await
        .map_err(rpc("eth_getBlockByNumber"))?
        .ok_or_else(|| ChainError::rpc("eth_getBlockByNumber", "no latest block"))?;
    // Every read at the same block, so the terms are one state of the contract.
    let at = BlockId::hash(block.header.hash);
    let lockup_address = deployment.contracts.sablier_lockup;
    let lockup = ISablierLockup::new(lockup_address, provider.clone());
    let id = deployment.reward_stream.stream_id;
    let deposited = lockup
        .getDepositedAmount(id)
        .block(at)
        .call()
        .await
        .map_err(rpc("getDepositedAmount"))?;
    let recipient = lockup
        .getRecipient(id)
        .block(at)
        .call()
        .await
        .map_err(rpc("getRecipient"))?;
    let start = lockup
        .getStartTime(id)
        .block(at)
        .call()
        .await
        .map_err(rpc("getStartTime"))?;
    let cliff = lockup
        .getCliffTime(id)
        .block(at)
        .call()
        .await
        .map_err(rpc("getCliffTime"))?;
    let end = lockup
        .getEndTime(id)
        .block(at)
        .call()
        .await
        .map_err(rpc("getEndTime"))?;
    let granularity = lockup
        .getGranularity(id)
        .block(at)
        .call()
        .await
        .map_err(rpc("getGranularity"))?;
    let unlocks = lockup
        .getUnlockAmounts(id)
        .block(at)
        .call()
        .await
        .map_err(rpc("getUnlockAmounts"))?;
    let cancelable = lockup
        .isCancelable(id)
        .block(at)
        .call()
        .await
        .map_err(rpc("isCancelable"))?;
    Ok(RewardStreamObserved {
        lockup: hex0x(lockup_address.as_slice()),
        stream_id: u64::try_from(id)
            .map_err(|_| ChainError::rpc("the deployment's stream id", "passes u64"))?,
        recipient: hex0x(recipient.as_slice()),
        deposited_wei: deposited.to_string(),
        start_time: start.to::<u64>(),
        cliff_time: cliff.to::<u64>(),
        end_time: end.to::<u64>(),
        granularity: granularity.to::<u64>(),
        start_unlock_wei: unlocks.start.to_string(),
        cliff_unlock_wei: unlocks.cliff.to_string(),
        cancelable,
        chain_id,
        block_number: block.header.number,
        block_hash: hex0x(block.header.hash.as_slice()),
    })
}
