//! Deploying every contract on a development chain.
//!
//! On a real network nothing of this runs: the token, the stream and the contracts are
//! already there and the deployment file is written by hand (docs/settlement.md). Here, in
//! order: PRLX (the whole supply to the deployer), RewardsDistributor, CreditEscrow,
//! NodeStaking, then Sablier's comptroller, NFT descriptor, the Lockup's two libraries and the
//! linked Lockup itself, and finally the bootstrap stream: 25 % of the supply (the Operator
//! Rewards bucket), linear over `stream_seconds`, not cancelable, not transferable, paying
//! the distributor.

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolValue;
use tracing::info;

use crate::artifact::SablierArtifacts;
use crate::bindings::{CreditEscrow, ISablierLockup, NodeStaking, RewardsDistributor, PRLX};
use crate::deployment::{self, Contracts, Deployment, RewardStream, Roles, Staking, Token};
use crate::ChainError;

/// The bootstrap bucket's share of the supply, percent (the protocol's Operator Rewards).
pub const BOOTSTRAP_BUCKET_PCT: u64 = 25;
/// The stream's default length: ~24 months.
pub const DEFAULT_STREAM_SECONDS: u64 = 730 * 86_400;

/// What a development deployment needs besides the deployer's provider.
#[derive(Debug, Clone)]
pub struct DevParams {
    /// The coordinator's chain address (poster of epochs, settler of escrow).
    pub coordinator: Address,
    /// Receives 10 % of settled usage.
    pub treasury: Address,
    /// Receives 5 % of settled usage.
    pub infra: Address,
    /// NodeStaking's cooldown.
    pub cooldown_seconds: u64,
    /// The bootstrap stream's length.
    pub stream_seconds: u64,
    /// Where Sablier's artifacts are.
    pub sablier: SablierArtifacts,
    /// The RPC URL written into the deployment file.
    pub rpc_url: String,
}

impl DevParams {
    /// The parameters for a private [`DevChain`]: its dev accounts in their roles
    /// ([`crate::devchain::dev_role`]), Sablier's artifacts where `scripts/chain.sh setup`
    /// unpacks them, a ~24-month stream.
    pub fn for_devchain(chain: &crate::devchain::DevChain, cooldown_seconds: u64) -> Self {
        use crate::devchain::dev_role;
        DevParams {
            coordinator: chain.address(dev_role::COORDINATOR),
            treasury: chain.address(dev_role::TREASURY),
            infra: chain.address(dev_role::INFRA),
            cooldown_seconds,
            stream_seconds: DEFAULT_STREAM_SECONDS,
            sablier: SablierArtifacts::under(&SablierArtifacts::default_dir()),
            rpc_url: chain.endpoint(),
        }
    }
}

/// Deploys everything with `provider` (which signs as `deployer`) and returns the deployment.
pub async fn deploy_dev(
    provider: &DynProvider,
    deployer: Address,
    params: &DevParams,
) -> Result<Deployment, ChainError> {
    let chain_id = provider
        .get_chain_id()
        .await
        .map_err(|e| ChainError::rpc("eth_chainId", e))?;
    let first_block = provider
        .get_block_number()
        .await
        .map_err(|e| ChainError::rpc("eth_blockNumber", e))?
        + 1;

    let token = PRLX::deploy(provider.clone())
        .await
        .map_err(|e| ChainError::tx("deploying PRLX", e))?;
    let token_address = *token.address();
    let supply = token
        .totalSupply()
        .call()
        .await
        .map_err(|e| ChainError::rpc("PRLX.totalSupply", e))?;
    let decimals = token
        .decimals()
        .call()
        .await
        .map_err(|e| ChainError::rpc("PRLX.decimals", e))?;
    let distributor =
        RewardsDistributor::deploy(provider.clone(), token_address, params.coordinator)
            .await
            .map_err(|e| ChainError::tx("deploying RewardsDistributor", e))?;
    let escrow = CreditEscrow::deploy(
        provider.clone(),
        token_address,
        params.coordinator,
        *distributor.address(),
        params.treasury,
        params.infra,
    )
    .await
    .map_err(|e| ChainError::tx("deploying CreditEscrow", e))?;
    let staking = NodeStaking::deploy(
        provider.clone(),
        token_address,
        U256::from(params.cooldown_seconds),
    )
    .await
    .map_err(|e| ChainError::tx("deploying NodeStaking", e))?;

    let lockup = deploy_sablier(provider, deployer, &params.sablier).await?;

    // The bootstrap bucket, streamed to the distributor.
    let bucket = supply * U256::from(BOOTSTRAP_BUCKET_PCT) / U256::from(100);
    let deposit: u128 = bucket
        .try_into()
        .map_err(|_| ChainError::tx("the reward stream", "25 % of the supply passes uint128"))?;
    let duration: u64 = params.stream_seconds;
    let duration40 = alloy::primitives::aliases::U40::try_from(duration)
        .map_err(|_| ChainError::tx("the reward stream", "its duration passes uint40"))?;
    confirm(
        token.approve(lockup, bucket).send().await,
        "approving the stream's deposit",
    )
    .await?;
    let sablier = ISablierLockup::new(lockup, provider.clone());
    let create = sablier.createWithDurationsLL(
        ISablierLockup::CreateWithDurations {
            sender: deployer,
            recipient: *distributor.address(),
            depositAmount: deposit,
            token: token_address,
            cancelable: false,
            transferable: false,
            shape: "linear".into(),
        },
        ISablierLockup::UnlockAmounts { start: 0, cliff: 0 },
        alloy::primitives::aliases::U40::from(1u8),
        ISablierLockup::Durations {
            cliff: alloy::primitives::aliases::U40::ZERO,
            total: duration40,
        },
    );
    // The id the creation will return, read before sending (nothing else creates streams here).
    let stream_id = create
        .call()
        .await
        .map_err(|e| ChainError::tx("creating the reward stream", e))?;
    confirm(create.send().await, "creating the reward stream").await?;

    let d = Deployment {
        format: deployment::FORMAT,
        chain_id,
        rpc_url: params.rpc_url.clone(),
        deployed_at_block: first_block,
        roles: Roles {
            deployer,
            coordinator: params.coordinator,
            treasury: params.treasury,
            infra: params.infra,
        },
        token: Token {
            address: token_address,
            decimals,
            total_supply: supply,
        },
        contracts: Contracts {
            credit_escrow: *escrow.address(),
            node_staking: *staking.address(),
            rewards_distributor: *distributor.address(),
            sablier_lockup: lockup,
        },
        staking: Staking {
            cooldown_seconds: params.cooldown_seconds,
        },
        reward_stream: RewardStream {
            stream_id,
            deposit_amount: bucket,
            duration_seconds: duration,
        },
    };
    info!(chain_id, token = %token_address, escrow = %d.contracts.credit_escrow,
        staking = %d.contracts.node_staking, distributor = %d.contracts.rewards_distributor,
        lockup = %lockup, "deployed");
    Ok(d)
}

/// Sablier's comptroller (administered by the deployer), NFT descriptor, libraries and the
/// linked Lockup; returns the Lockup's address. The comptroller is deployed with its
/// constructor, without the proxy the package also ships: a development chain never upgrades.
async fn deploy_sablier(
    provider: &DynProvider,
    deployer: Address,
    artifacts: &SablierArtifacts,
) -> Result<Address, ChainError> {
    let code = |name: &str, libs: &[(&str, Address)]| -> Result<Bytes, ChainError> {
        artifacts.read(name)?.link(libs)
    };
    let comptroller = deploy_code(
        provider,
        "SablierComptroller",
        code("SablierComptroller", &[])?,
        &deployer.abi_encode(),
    )
    .await?;
    let descriptor = deploy_code(
        provider,
        "LockupNFTDescriptor",
        code("LockupNFTDescriptor", &[])?,
        &[],
    )
    .await?;
    let helpers = deploy_code(provider, "LockupHelpers", code("LockupHelpers", &[])?, &[]).await?;
    let math = deploy_code(provider, "LockupMath", code("LockupMath", &[])?, &[]).await?;
    let lockup_code = code(
        "SablierLockup",
        &[("LockupHelpers", helpers), ("LockupMath", math)],
    )?;
    deploy_code(
        provider,
        "SablierLockup",
        lockup_code,
        &(comptroller, descriptor).abi_encode_params(),
    )
    .await
}

/// Sends a creation transaction and returns the new contract's address.
async fn deploy_code(
    provider: &DynProvider,
    what: &str,
    code: Bytes,
    constructor_args: &[u8],
) -> Result<Address, ChainError> {
    let mut input = code.to_vec();
    input.extend_from_slice(constructor_args);
    let tx = TransactionRequest::default().with_deploy_code(input);
    let receipt = provider
        .send_transaction(tx)
        .await
        .map_err(|e| ChainError::tx(format!("deploying {what}"), e))?
        .get_receipt()
        .await
        .map_err(|e| ChainError::tx(format!("deploying {what}"), e))?;
    if !receipt.status() {
        return Err(ChainError::tx(
            format!("deploying {what}"),
            "the creation reverted",
        ));
    }
    receipt
        .contract_address
        .ok_or_else(|| ChainError::tx(format!("deploying {what}"), "no contract address"))
}

/// Waits for a sent transaction's receipt and checks it succeeded.
pub async fn confirm<E: std::fmt::Display>(
    sent: Result<alloy::providers::PendingTransactionBuilder<alloy::network::Ethereum>, E>,
    what: &str,
) -> Result<alloy::rpc::types::TransactionReceipt, ChainError> {
    let receipt = sent
        .map_err(|e| ChainError::tx(what, e))?
        .get_receipt()
        .await
        .map_err(|e| ChainError::tx(what, e))?;
    if !receipt.status() {
        return Err(ChainError::tx(
            what,
            format!("reverted (tx {})", receipt.transaction_hash),
        ));
    }
    Ok(receipt)
}
