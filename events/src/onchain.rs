//! The records of what happened on the chain, and the units that map it to credits: a
//! deposit's place and amount (`ChainDeposit`), a node's bond (`ChainStakeChanged`), an
//! epoch's payout tree (`RewardRootPrepared`) and its post (`RewardRootPosted`), a
//! steady-state epoch's usage paid out of escrow (`UsageSettled`), the bootstrap stream's
//! terms (`RewardStreamObserved`). Re-exported by
//! [`crate::event`], where the catalog of event types lists them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{Hash32, NodeId};

/// Minor units of PRLX (10^-18) per credit: a credit is 10^-9 PRLX, so the token's whole
/// supply (10^27 minor units) fits a u64 of credits.
pub const CREDIT_UNIT_WEI: u128 = 1_000_000_000;

/// A `CreditEscrow.Deposited` event as the watcher saw it: enough for the fold to re-derive
/// the credit and for the auditor to find it on the chain again. Hashes and addresses are
/// 0x-hex, lowercase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChainDeposit {
    /// Where it is; `contract` is the escrow. (Flattened: the fields sit beside the others.)
    #[serde(flatten)]
    pub place: ChainRef,
    /// Who paid (the account credited is the event's `account`).
    pub payer: String,
    /// The amount in minor units of PRLX, decimal (it passes u64).
    pub amount_wei: String,
}

impl ChainDeposit {
    /// The reference that makes it credit once: chain, transaction, log index.
    pub fn tx_ref(&self) -> String {
        self.place.key()
    }

    /// The credits it buys: `amount_wei / CREDIT_UNIT_WEI`, rounded down (the dust stays in
    /// escrow); `None` if the amount is not a decimal or the credits pass u64.
    pub fn credits(&self) -> Option<u64> {
        wei_to_units(&self.amount_wei)
    }
}

/// A change of what `NodeStaking` holds for a node, as the chain watcher observed it. With a
/// chain, the only source of a node's stake: the stake that weighs its uptime is what the
/// contract holds bonded for its id, nothing the node declares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChainStakeChanged {
    pub node_id: NodeId,
    /// The node's staker (0x-hex, lowercase): the only address the contract pays principal
    /// back to, and the recipient of the node's payouts.
    pub staker: String,
    pub change: StakeChange,
    /// The amount of this change, minor units of PRLX, decimal.
    pub amount_wei: String,
    /// What stays bonded for the node after it, minor units of PRLX, decimal.
    pub bonded_wei: String,
    /// `bonded_wei / CREDIT_UNIT_WEI`, rounded down: the stake the reward weighting uses.
    pub stake: u64,
    pub chain: ChainRef,
}

/// Which `NodeStaking` event a [`ChainStakeChanged`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StakeChange {
    /// `Staked`: bonded more.
    Staked,
    /// `UnstakeRequested`: left the bond (withdrawable after the contract's cooldown).
    UnstakeRequested,
    /// `Withdrawn`: paid back to the staker; the bond is unchanged.
    Withdrawn,
}

/// Where an event is on the chain. Hashes and addresses are 0x-hex, lowercase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChainRef {
    pub chain_id: u64,
    /// The contract that emitted it.
    pub contract: String,
    pub block_number: u64,
    pub block_hash: String,
    pub tx_hash: String,
    pub log_index: u64,
}

impl ChainRef {
    /// Names the event once: chain, transaction, log index.
    pub fn key(&self) -> String {
        format!(
            "chain:{}:{}:{}",
            self.chain_id, self.tx_hash, self.log_index
        )
    }
}

/// One leaf of an epoch's payout tree: a node's payout, to its staker, in minor units of PRLX.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RootLeaf {
    pub node_id: NodeId,
    /// The node's staker (0x-hex, lowercase), who receives the payout.
    pub recipient: String,
    /// The payout times `CREDIT_UNIT_WEI`, decimal.
    pub amount_wei: String,
}

/// The payout tree of a settled epoch, fixed before it is posted to the RewardsDistributor:
/// one leaf per payout above zero of a node with a staker on chain (a node never staked on
/// chain has no stake, so no weight and no payout), in node id order. `root` is the Merkle root
/// of the leaves (`prlx_chain::merkle`, checked by the auditor); the fold re-derives the
/// leaves from the settlement and the stakers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RewardRootPrepared {
    pub epoch: u64,
    pub leaves: Vec<RootLeaf>,
    /// The sum of the leaves, decimal minor units.
    pub total_wei: String,
    pub root: Hash32,
}

/// The RewardsDistributor's `EpochPosted`, as the chain watcher observed it: the root, the
/// total and the head of this log's hash chain the coordinator posted with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RewardRootPosted {
    pub epoch: u64,
    pub root: Hash32,
    /// SHA-256 of the last record on the log when the root was posted: the auditor finds it
    /// on the log, so history up to there cannot be rewritten without the chain showing it.
    pub log_head: Hash32,
    pub total_wei: String,
    pub chain: ChainRef,
}

/// The bootstrap bucket's Sablier stream, its terms as the coordinator read them off the
/// Lockup at a block: settlement pays each bootstrap epoch what the stream unlocks in it
/// (`prlx_projections::stream`), instead of computing an unlock from the policy. Times are
/// Unix seconds; amounts decimal minor units of PRLX; addresses and the hash lowercase 0x-hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RewardStreamObserved {
    /// The Lockup contract and the stream's id in it.
    pub lockup: String,
    pub stream_id: u64,
    /// Who the stream pays: the RewardsDistributor.
    pub recipient: String,
    pub deposited_wei: String,
    pub start_time: u64,
    /// 0: no cliff.
    pub cliff_time: u64,
    pub end_time: u64,
    /// Seconds per unlock step.
    pub granularity: u64,
    pub start_unlock_wei: String,
    pub cliff_unlock_wei: String,
    pub cancelable: bool,
    /// Where the terms were read.
    pub chain_id: u64,
    pub block_number: u64,
    pub block_hash: String,
}

/// A signature over a submission's EIP-712 typed data (`prlx_chain::consent`), bound to one
/// deployment: the chain id and the CreditEscrow as verifying contract. Addresses and the
/// signature are lowercase 0x-hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Consent {
    /// The key that signed: the account itself, or the delegate of [`Consent::delegation`].
    pub signer: String,
    /// 65 bytes (r, s, v).
    pub signature: String,
    pub chain_id: u64,
    pub verifying_contract: String,
    /// When a delegate signed: the account's delegation it signed under (absent: the
    /// account signed itself, and on logs written before delegations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegation: Option<Delegation>,
    /// When the signature covers a batch of submissions (`prlx_chain::consent_batch`): this
    /// one's place in it. The signature is then over the EIP-712 `SubmissionBatch(bytes32
    /// root, uint32 count)` whose root the submission's typed data and this proof give
    /// (absent: the signature is over this submission alone, and on logs written before
    /// batches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<Box<ConsentBatch>>,
}

/// An account withdrew one of its delegations before its expiry, by its signature over the
/// EIP-712 `DelegationRevocation(address account, bytes32 delegation)` (`prlx_chain::consent`)
/// under the recorded domain: no request signed under the delegation is accepted after it.
/// The delegation's terms are recorded so that the auditor derives its hash again and the
/// fold forgets the revocation once the delegation would have expired anyway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DelegationRevoked {
    pub account: crate::ids::AccountId,
    /// The delegation's EIP-712 hash, as `Delegation::hash` records it.
    pub delegation: Hash32,
    pub delegate: String,
    pub spending_limit: u64,
    /// Unix seconds.
    pub expires_at: u64,
    /// Who signed the revocation, recovered at intake: it must be the account.
    pub signer: String,
    /// 65 bytes (r, s, v), 0x-hex.
    pub signature: String,
    pub chain_id: u64,
    pub verifying_contract: String,
}

/// A submission's place in a batch signed once: its index, the batch's count and the sibling
/// hashes (keccak-256) on its path to the root, from the leaves up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ConsentBatch {
    pub index: u32,
    pub count: u32,
    pub proof: Vec<Hash32>,
}

/// An account's EIP-712 `Delegation(address account, address delegate, uint64
/// spendingLimit, uint64 expiresAt)` under the consent's domain, whose `account` is the one
/// the request charges: it lets `delegate` sign submissions charged to the account, up to
/// `spending_limit` credits in all (a refund gives its credits back to the limit) until
/// `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Delegation {
    /// Who signed the delegation, recovered at intake: it must be the account charged.
    pub signer: String,
    /// The key it lets sign, lowercase 0x-hex.
    pub delegate: String,
    /// Credits that may be reserved and charged under it, refunds given back.
    pub spending_limit: u64,
    /// Unix seconds: a request recorded at or after it is refused.
    pub expires_at: u64,
    /// The account's signature, 65 bytes (r, s, v), 0x-hex.
    pub signature: String,
    /// The delegation's EIP-712 signing hash (keccak-256, not SHA-256): what the spending
    /// under it is counted by. The auditor derives it again from the fields and the domain.
    pub hash: Hash32,
}

/// `CreditEscrow`'s fixed split of settled usage: the treasury's and infra's percent (the
/// operators get the rest, 85 % and the rounding).
pub const ESCROW_TREASURY_PCT: u128 = 10;
pub const ESCROW_INFRA_PCT: u128 = 5;

/// `CreditEscrow.UsageSettled`, as the chain watcher observed it: a steady-state epoch's
/// income (the credits charged in it, times [`CREDIT_UNIT_WEI`]) paid out of escrow, split by
/// the contract between the distributor (operators), the treasury and infra. Amounts are
/// decimal minor units of PRLX.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UsageSettled {
    pub epoch: u64,
    pub operators_wei: String,
    pub treasury_wei: String,
    pub infra_wei: String,
    pub chain: ChainRef,
}

impl UsageSettled {
    /// The amount settled: the three shares' sum (`None` if one is not a decimal or the sum
    /// passes u128).
    pub fn amount_wei(&self) -> Option<u128> {
        let part = |s: &str| {
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse::<u128>().ok())
                .flatten()
        };
        part(&self.operators_wei)?
            .checked_add(part(&self.treasury_wei)?)?
            .checked_add(part(&self.infra_wei)?)
    }
}

/// `wei / CREDIT_UNIT_WEI` for a decimal amount of minor units; `None` if it is not a decimal
/// or passes u64.
pub fn wei_to_units(wei: &str) -> Option<u64> {
    if wei.is_empty() || !wei.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let wei: u128 = wei.parse().ok()?;
    u64::try_from(wei / CREDIT_UNIT_WEI).ok()
}
