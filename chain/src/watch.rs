//! Following the contracts' events with a confirmation depth.
//!
//! The watcher reads `eth_getLogs` over the contracts of a [`Deployment`] only, in pages of
//! block ranges (real nodes cap a range or a result size), and only up to the last block with
//! `confirmations` blocks on top of it counted inclusively: with 3 confirmations, a log in
//! block `b` is read once the head is `b + 2`. A reorg shallower than that never shows the
//! watcher anything it would have to take back.
//!
//! A reorg deeper than the confirmation depth is detected, not absorbed: before each read the
//! watcher checks that the last block it confirmed still has the hash it saw, and stops with
//! [`WatchError::DeepReorg`] if not. What it already reported stays reported (the coordinator
//! has credited it); `prlx-replay verify --chain` then shows which records no longer match the
//! chain. Choosing the depth is choosing that risk (docs/settlement.md).
//!
//! Each observation carries where it is on the chain (chain id, contract, block number and
//! hash, transaction hash, log index): `(chain_id, tx_hash, log_index)` names it uniquely, so
//! the coordinator can apply each exactly once whatever a restart or a second watcher reports
//! again. The watcher itself keeps only its cursor; where to resume is the caller's to
//! record.

use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::{Filter, Log};
use alloy::sol_types::SolEvent;

use crate::bindings::{CreditEscrow, NodeStaking, RewardsDistributor};
use crate::Deployment;

/// What the watcher reports, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainEvent {
    /// `CreditEscrow.Deposited`: credit `account` with `amount`.
    Deposited {
        /// The account credited.
        account: Address,
        /// Who paid.
        payer: Address,
        /// Minor units of PRLX.
        amount: U256,
    },
    /// `CreditEscrow.UsageSettled`: a steady-state epoch's income paid out of escrow.
    UsageSettled {
        /// The epoch.
        epoch: U256,
        /// To the distributor.
        operators: U256,
        /// To the treasury.
        treasury: U256,
        /// To infra.
        infra: U256,
    },
    /// `NodeStaking.Staked`.
    Staked {
        /// The node (SHA-256 of its key).
        node_id: B256,
        /// Its staker.
        staker: Address,
        /// Added now.
        amount: U256,
        /// The node's bond after it.
        bonded: U256,
    },
    /// `NodeStaking.UnstakeRequested`.
    UnstakeRequested {
        /// The node.
        node_id: B256,
        /// Its staker.
        staker: Address,
        /// Leaving the bond.
        amount: U256,
        /// Withdrawable from then (chain time, seconds).
        unlock_at: U256,
        /// The node's bond after it.
        bonded: U256,
    },
    /// `NodeStaking.Withdrawn`: the principal went back to its staker.
    Withdrawn {
        /// The node.
        node_id: B256,
        /// Its staker, who received it.
        staker: Address,
        /// Paid back.
        amount: U256,
    },
    /// `RewardsDistributor.EpochPosted`.
    EpochPosted {
        /// The epoch.
        epoch: U256,
        /// Its payouts' root.
        root: B256,
        /// The log head it was settled at.
        log_head: B256,
        /// Its total.
        total: U256,
    },
    /// `RewardsDistributor.Claimed`.
    Claimed {
        /// The epoch.
        epoch: U256,
        /// The node paid.
        node_id: B256,
        /// Who received it.
        recipient: Address,
        /// How much.
        amount: U256,
    },
}

/// One event at its place on the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The chain.
    pub chain_id: u64,
    /// The contract that emitted it.
    pub contract: Address,
    /// Its block.
    pub block_number: u64,
    /// That block's hash.
    pub block_hash: B256,
    /// Its transaction.
    pub tx_hash: B256,
    /// Its index in the block's logs.
    pub log_index: u64,
    /// What happened.
    pub event: ChainEvent,
}

/// Why a poll stopped.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The node could not be asked, or answered an error: try again later.
    #[error("{what}: {reason}")]
    Rpc {
        /// What was asked.
        what: String,
        /// The answer.
        reason: String,
    },
    /// A block already confirmed is no longer on the chain: a reorg deeper than the
    /// confirmation depth. Crediting stops until an operator looks.
    #[error(
        "block {number} was confirmed with hash {seen} but the chain now has {now}: a reorg deeper than {confirmations} confirmations"
    )]
    DeepReorg {
        /// The block.
        number: u64,
        /// The hash it was confirmed with.
        seen: B256,
        /// The hash there now (zero: the block is gone).
        now: B256,
        /// The configured depth.
        confirmations: u64,
    },
    /// The node is another chain than the deployment's.
    #[error("the node is chain {actual}, the deployment chain {expected}")]
    WrongChain {
        /// The deployment's.
        expected: u64,
        /// The node's.
        actual: u64,
    },
    /// A log from a watched contract did not decode (a node returning garbage).
    #[error("log {log_index} of tx {tx_hash}: {reason}")]
    Malformed {
        /// Its transaction.
        tx_hash: B256,
        /// Its index.
        log_index: u64,
        /// Why.
        reason: String,
    },
}

/// How the watcher reads.
#[derive(Debug, Clone, Copy)]
pub struct WatchConfig {
    /// Blocks counted inclusively from a log's block to the head before it is read (at
    /// least 1: the block is mined).
    pub confirmations: u64,
    /// The most blocks one `eth_getLogs` asks for.
    pub page_blocks: u64,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            confirmations: 12,
            page_blocks: 2_000,
        }
    }
}

/// Follows one deployment's contracts.
#[derive(Debug)]
pub struct Watcher {
    provider: DynProvider,
    chain_id: u64,
    contracts: [Address; 3],
    config: WatchConfig,
    /// The first block not read yet.
    next_block: u64,
    /// The last block confirmed and its hash (checked before each read).
    confirmed: Option<(u64, B256)>,
}

impl Watcher {
    /// A watcher reading from `from_block` on (the deployment's first block, or where a
    /// previous watcher stopped, with that block's hash in `confirmed`).
    pub fn new(
        provider: DynProvider,
        deployment: &Deployment,
        config: WatchConfig,
        from_block: u64,
        confirmed: Option<(u64, B256)>,
    ) -> Self {
        let c = &deployment.contracts;
        Watcher {
            provider,
            chain_id: deployment.chain_id,
            contracts: [c.credit_escrow, c.node_staking, c.rewards_distributor],
            config: WatchConfig {
                confirmations: config.confirmations.max(1),
                page_blocks: config.page_blocks.max(1),
            },
            next_block: from_block,
            confirmed,
        }
    }

    /// The first block the next poll reads.
    pub fn next_block(&self) -> u64 {
        self.next_block
    }

    /// The last confirmed block and its hash.
    pub fn confirmed(&self) -> Option<(u64, B256)> {
        self.confirmed
    }

    /// Reads `block` again from the next poll on (its caller could not record what was read
    /// from there): nothing read is lost, and what is read twice the caller applies once.
    pub fn rewind_to(&mut self, block: u64) {
        if block < self.next_block {
            self.next_block = block;
            // The hash on record may be of a later block than the one now read from; the
            // next page confirms again.
            self.confirmed = None;
        }
    }

    /// Checks that the node is the deployment's chain: events are stamped with its id.
    pub async fn check_chain_id(&self) -> Result<(), WatchError> {
        let id = self
            .provider
            .get_chain_id()
            .await
            .map_err(|e| rpc("eth_chainId", e))?;
        if id != self.chain_id {
            return Err(WatchError::WrongChain {
                expected: self.chain_id,
                actual: id,
            });
        }
        Ok(())
    }

    /// Reads every confirmed block not read yet, page by page, in chain order. The cursor
    /// moves only past pages whose events are returned: when a page fails after others were
    /// read, those are returned and the next poll starts at the failed page.
    pub async fn poll(&mut self) -> Result<Vec<Observed>, WatchError> {
        self.check_confirmed_still_canonical().await?;
        let head = self
            .provider
            .get_block_number()
            .await
            .map_err(|e| rpc("eth_blockNumber", e))?;
        let Some(last) = head
            .saturating_add(1)
            .checked_sub(self.config.confirmations)
        else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        while self.next_block <= last {
            match self.read_page(last).await {
                Ok(page) => out.extend(page),
                Err(e) if out.is_empty() => return Err(e),
                // What was read is kept; the failed page is read again next time.
                Err(_) => break,
            }
        }
        Ok(out)
    }

    /// Reads one page from `next_block` (at most up to `last`) and moves past it.
    async fn read_page(&mut self, last: u64) -> Result<Vec<Observed>, WatchError> {
        let to = last.min(self.next_block.saturating_add(self.config.page_blocks - 1));
        let filter = Filter::new()
            .address(self.contracts.to_vec())
            .from_block(self.next_block)
            .to_block(to);
        let logs = self
            .provider
            .get_logs(&filter)
            .await
            .map_err(|e| rpc("eth_getLogs", e))?;
        let mut page = Vec::new();
        for log in &logs {
            if let Some(o) = self.observe(log)? {
                page.push(o);
            }
        }
        let hash = self.block_hash(to).await?;
        // A log from another block at that height than the canonical one: the chain moved
        // between the two reads. Read the page again.
        if page
            .iter()
            .any(|o| o.block_number == to && o.block_hash != hash)
        {
            return Err(rpc(
                "eth_getLogs",
                "the chain reorganised while reading; reading again",
            ));
        }
        self.confirmed = Some((to, hash));
        self.next_block = to + 1;
        Ok(page)
    }

    async fn block_hash(&self, number: u64) -> Result<B256, WatchError> {
        let block = self
            .provider
            .get_block_by_number(number.into())
            .await
            .map_err(|e| rpc("eth_getBlockByNumber", e))?;
        // A node that does not have the block yet (lagging, load-balanced) is an RPC problem,
        // not a reorg.
        block
            .map(|b| b.header.hash)
            .ok_or_else(|| rpc("eth_getBlockByNumber", format!("block {number} not found")))
    }

    async fn check_confirmed_still_canonical(&self) -> Result<(), WatchError> {
        let Some((number, seen)) = self.confirmed else {
            return Ok(());
        };
        let now = self.block_hash(number).await?;
        if now != seen {
            return Err(WatchError::DeepReorg {
                number,
                seen,
                now,
                confirmations: self.config.confirmations,
            });
        }
        Ok(())
    }

    fn observe(&self, log: &Log) -> Result<Option<Observed>, WatchError> {
        let (Some(block_number), Some(block_hash), Some(tx_hash), Some(log_index)) = (
            log.block_number,
            log.block_hash,
            log.transaction_hash,
            log.log_index,
        ) else {
            // A pending log has no place yet; confirmed ranges never return one.
            return Ok(None);
        };
        if log.removed {
            return Ok(None);
        }
        let Some(event) = decode(log, &self.contracts).map_err(|reason| WatchError::Malformed {
            tx_hash,
            log_index,
            reason,
        })?
        else {
            return Ok(None);
        };
        Ok(Some(Observed {
            chain_id: self.chain_id,
            contract: log.address(),
            block_number,
            block_hash,
            tx_hash,
            log_index,
            event,
        }))
    }
}

/// Decodes the events the coordinator follows, each only from the contract that defines it
/// (`[escrow, staking, distributor]`); `None` for anything else.
fn decode(log: &Log, contracts: &[Address; 3]) -> Result<Option<ChainEvent>, String> {
    let [escrow, staking, distributor] = *contracts;
    decode_from(log, escrow, staking, distributor)
}

/// Decodes a log as whichever followed event its signature names, whatever contract emitted
/// it (the caller checks the emitter): for the auditor, which compares with a record.
pub(crate) fn decode_any(log: &Log) -> Result<Option<ChainEvent>, String> {
    let from = log.address();
    decode_from(log, from, from, from)
}

fn decode_from(
    log: &Log,
    escrow: Address,
    staking: Address,
    distributor: Address,
) -> Result<Option<ChainEvent>, String> {
    let Some(topic0) = log.topic0() else {
        return Ok(None);
    };
    let e = |err: alloy::sol_types::Error| err.to_string();
    let from = log.address();
    Ok(Some(match *topic0 {
        CreditEscrow::Deposited::SIGNATURE_HASH if from == escrow => {
            let d = log
                .log_decode::<CreditEscrow::Deposited>()
                .map_err(e)?
                .inner
                .data;
            ChainEvent::Deposited {
                account: d.account,
                payer: d.payer,
                amount: d.amount,
            }
        }
        CreditEscrow::UsageSettled::SIGNATURE_HASH if from == escrow => {
            let d = log
                .log_decode::<CreditEscrow::UsageSettled>()
                .map_err(e)?
                .inner
                .data;
            ChainEvent::UsageSettled {
                epoch: d.epoch,
                operators: d.operators,
                treasury: d.treasury,
                infra: d.infra,
            }
        }
        NodeStaking::Staked::SIGNATURE_HASH if from == staking => {
            let d = log
                .log_decode::<NodeStaking::Staked>()
                .map_err(e)?
                .inner
                .data;
            ChainEvent::Staked {
                node_id: d.nodeId,
                staker: d.staker,
                amount: d.amount,
                bonded: d.bonded,
            }
        }
        NodeStaking::UnstakeRequested::SIGNATURE_HASH if from == staking => {
            let d = log
                .log_decode::<NodeStaking::UnstakeRequested>()
                .map_err(e)?
                .inner
                .data;
            ChainEvent::UnstakeRequested {
                node_id: d.nodeId,
                staker: d.staker,
                amount: d.amount,
                unlock_at: d.unlockAt,
                bonded: d.bonded,
            }
        }
        NodeStaking::Withdrawn::SIGNATURE_HASH if from == staking => {
            let d = log
                .log_decode::<NodeStaking::Withdrawn>()
                .map_err(e)?
                .inner
                .data;
            ChainEvent::Withdrawn {
                node_id: d.nodeId,
                staker: d.staker,
                amount: d.amount,
            }
        }
        RewardsDistributor::EpochPosted::SIGNATURE_HASH if from == distributor => {
            let d = log
                .log_decode::<RewardsDistributor::EpochPosted>()
                .map_err(e)?
                .inner
                .data;
            ChainEvent::EpochPosted {
                epoch: d.epoch,
                root: d.root,
                log_head: d.logHead,
                total: d.total,
            }
        }
        RewardsDistributor::Claimed::SIGNATURE_HASH if from == distributor => {
            let d = log
                .log_decode::<RewardsDistributor::Claimed>()
                .map_err(e)?
                .inner
                .data;
            ChainEvent::Claimed {
                epoch: d.epoch,
                node_id: d.nodeId,
                recipient: d.recipient,
                amount: d.amount,
            }
        }
        _ => return Ok(None),
    }))
}

fn rpc(what: &str, e: impl std::fmt::Display) -> WatchError {
    WatchError::Rpc {
        what: what.into(),
        reason: e.to_string(),
    }
}
