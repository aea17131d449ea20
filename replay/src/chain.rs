//! `verify --chain URL`: every credit and every stake change on the log checked against the
//! chain.
//!
//! A `CreditsDeposited` must carry where on the chain its deposit is, and the chain must
//! agree (`prlx_chain::verify::check`: the transaction in that block, the block canonical,
//! the escrow's `Deposited` at that log index for the same account and amount). A credit
//! without a chain deposit (claimed over HTTP by an older or misconfigured coordinator) is
//! reported too: nothing proves its money exists. A `ChainStakeChanged` must match the
//! staking contract's event at its place (node, staker, amount, the bond after it). A payout
//! tree's root (`RewardRootPrepared`) must be the Merkle root of its leaves, and a posted root
//! (`RewardRootPosted`) the distributor's `EpochPosted` at its place, with a log head that is
//! the hash-chain value of a record before it. A `UsageSettled` must be the escrow's event at
//! its place, with the same epoch and shares. A `RewardStreamObserved` must be the
//! deployment's stream, paying the distributor, with the terms the Lockup holds. At the end the balances must add up: each
//! escrow holds at least what the log credited from it less the usage it settled, and each
//! distributor's `totalPosted` is the sum of the posts on the log. Each finding names a record's offset (for a balance,
//! the last record that counts toward it).

use alloy::primitives::{B256, U256};
use prlx_chain::devchain::connect;
use prlx_chain::record::{deposit_observed, hex0x, place_at, tree_of};
use prlx_chain::verify::{check, locate};
use prlx_chain::watch::ChainEvent;
use prlx_chain::Deployment;
use prlx_events::event::{
    ChainStakeChanged, RewardRootPosted, RewardRootPrepared, StakeChange, UsageSettled,
};
use prlx_events::log::{LogUrl, Offset};
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
    /// Payout trees (`RewardRootPrepared`) recomputed and posted roots (`RewardRootPosted`)
    /// checked.
    pub roots_checked: u64,
    /// Usage settlements (`UsageSettled`) checked.
    pub usage_settlements_checked: u64,
    /// Bootstrap stream terms (`RewardStreamObserved`) checked.
    pub streams_checked: u64,
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
    deployment: &Deployment,
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
    match alloy::providers::Provider::get_chain_id(&provider).await {
        Ok(id) if id == deployment.chain_id => {}
        Ok(id) => {
            return Ok(Err(unreachable(format!(
                "it is chain {id}, the deployment chain {}",
                deployment.chain_id
            ))))
        }
        Err(e) => return Ok(Err(unreachable(format!("eth_chainId: {e}")))),
    }
    let mut audit = ChainAudit {
        rpc_url: rpc_url.into(),
        deposits_checked: 0,
        stake_changes_checked: 0,
        roots_checked: 0,
        usage_settlements_checked: 0,
        streams_checked: 0,
        divergences: Vec::new(),
    };
    // The hash-chain value of every record read so far: a posted log head must be one.
    let mut heads = Heads::default();
    // What the log says each escrow took in and each distributor had posted, for the
    // balance checks at the end.
    let mut sums = Sums::default();
    // Which chain events the log holds, to find the ones it is missing.
    let mut seen = Seen::default();
    let mut batches = prlx_events::log::Batches::new(&reader, 0);
    while let Some(batch) = batches.next().await? {
        for record in &batch {
            // Undecodable records are the replay's to report; here only what decodes counts.
            let decoded = Envelope::decode(&record.payload);
            let head_after = prlx_events::chain::link_to(&record.payload);
            let Ok(env) = decoded else {
                heads.at.insert(head_after, record.offset);
                continue;
            };
            // A record naming another chain or contract than the deployment's is forged
            // (a look-alike contract can emit any event): reported, not looked up.
            if let Some((field, why)) = contract_problem(&env.event, deployment) {
                audit.divergences.push(finding_in(
                    env.event.type_name(),
                    record.offset,
                    field,
                    why,
                ));
                continue;
            }
            sums.add(record.offset, &env.event);
            seen.add(record.offset, &env.event);
            if let Some(problem) = check_root(&provider, &env.event, &heads).await {
                audit.roots_checked += 1;
                match problem {
                    Ok(None) => {}
                    Ok(Some((field, why))) => audit.divergences.push(finding_in(
                        env.event.type_name(),
                        record.offset,
                        field,
                        why,
                    )),
                    Err(e) => return Ok(Err(unreachable(e))),
                }
            }
            if let Event::RewardRootPrepared(r) = &env.event {
                heads.prepared.insert(r.epoch, record.offset);
            }
            heads.at.insert(head_after, record.offset);
            if let Event::RewardStreamObserved(o) = &env.event {
                audit.streams_checked += 1;
                match stream_problem(&provider, deployment, o).await {
                    Ok(None) => {}
                    Ok(Some((field, why))) => audit.divergences.push(finding_in(
                        "RewardStreamObserved",
                        record.offset,
                        field,
                        why,
                    )),
                    Err(e) => return Ok(Err(unreachable(e))),
                }
                continue;
            }
            if let Event::UsageSettled(u) = &env.event {
                audit.usage_settlements_checked += 1;
                match usage_problem(&provider, u).await {
                    Ok(None) => {}
                    Ok(Some((field, why))) => audit.divergences.push(finding_in(
                        "UsageSettled",
                        record.offset,
                        field,
                        why,
                    )),
                    Err(e) => return Ok(Err(unreachable(e))),
                }
                continue;
            }
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
    match seen.missing(&provider, deployment).await {
        Ok(found) => audit.divergences.extend(found),
        Err(e) => return Ok(Err(unreachable(e))),
    }
    match sums.check(&provider, deployment).await {
        Ok(found) => audit.divergences.extend(found),
        Err(e) => return Ok(Err(unreachable(e))),
    }
    Ok(Ok(audit))
}

/// Per contract: the sum of the amounts the log records, and the offset of the last record.
#[derive(Debug, Default)]
struct Sums {
    deposited: std::collections::BTreeMap<String, (u128, Offset)>,
    settled: std::collections::BTreeMap<String, (u128, Offset)>,
    posted: std::collections::BTreeMap<String, (u128, Offset)>,
}

impl Sums {
    fn add(&mut self, offset: Offset, event: &Event) {
        let (map, contract, amount) = match event {
            Event::CreditsDeposited(d) => match &d.chain {
                Some(c) => (&mut self.deposited, &c.place.contract, &c.amount_wei),
                None => return,
            },
            Event::RewardRootPosted(p) => (&mut self.posted, &p.chain.contract, &p.total_wei),
            Event::UsageSettled(u) => {
                let amount = u.amount_wei().unwrap_or(0);
                let entry = self
                    .settled
                    .entry(u.chain.contract.clone())
                    .or_insert((0, offset));
                *entry = (entry.0.saturating_add(amount), offset);
                return;
            }
            _ => return,
        };
        // An unparsable amount is reported by the record's own check.
        let amount: u128 = amount.parse().unwrap_or(0);
        let entry = map.entry(contract.clone()).or_insert((0, offset));
        *entry = (entry.0.saturating_add(amount), offset);
    }

    /// The balances add up: an escrow holds at least what the log credited from it less the
    /// usage the log says it settled (nothing else leaves escrow), and a distributor's
    /// `totalPosted` is exactly the sum of the posts on the log (a post missing from the log,
    /// or one it invents, shows here).
    async fn check(
        &self,
        provider: &alloy::providers::DynProvider,
        deployment: &Deployment,
    ) -> Result<Vec<Divergence>, String> {
        use prlx_chain::bindings::{RewardsDistributor, PRLX};
        let c = &deployment.contracts;
        let mut found = Vec::new();
        // Only the deployment's contracts are summed: records naming others were reported.
        let escrow = hex0x(c.credit_escrow.as_slice());
        if let Some((sum, at)) = self.deposited.get(&escrow) {
            let held = PRLX::new(deployment.token.address, provider.clone())
                .balanceOf(c.credit_escrow)
                .call()
                .await
                .map_err(|e| format!("balanceOf: {e}"))?;
            let (settled, settled_at) = self.settled.get(&escrow).copied().unwrap_or((0, *at));
            let owed = sum.saturating_sub(settled);
            if held < U256::from(owed) {
                found.push(finding(
                    (*at).max(settled_at),
                    "chain.amount_wei",
                    format!(
                        "the escrow holds {held}, less than the {owed} the log credited from it \
                         ({sum}) less the usage it settled ({settled})"
                    ),
                ));
            }
        }
        if let Some((sum, at)) = self.posted.get(&hex0x(c.rewards_distributor.as_slice())) {
            let total = RewardsDistributor::new(c.rewards_distributor, provider.clone())
                .totalPosted()
                .call()
                .await
                .map_err(|e| format!("RewardsDistributor.totalPosted: {e}"))?;
            if total != U256::from(*sum) {
                found.push(finding_in(
                    "RewardRootPosted",
                    *at,
                    "total_wei",
                    format!("the distributor has {total} posted in all, the log {sum}"),
                ));
            }
        }
        Ok(found)
    }
}

/// Why a chain record cannot be the deployment's: another chain, or another contract than
/// the one that defines its event.
fn contract_problem(event: &Event, deployment: &Deployment) -> Option<(&'static str, String)> {
    let c = &deployment.contracts;
    let (place, expected, what) = match event {
        Event::CreditsDeposited(d) => (&d.chain.as_ref()?.place, c.credit_escrow, "the escrow"),
        Event::ChainStakeChanged(s) => (&s.chain, c.node_staking, "the staking contract"),
        Event::RewardRootPosted(p) => (&p.chain, c.rewards_distributor, "the distributor"),
        Event::UsageSettled(u) => (&u.chain, c.credit_escrow, "the escrow"),
        _ => return None,
    };
    if place.chain_id != deployment.chain_id {
        return Some((
            "chain.chain_id",
            format!(
                "chain {}, the deployment is chain {}",
                place.chain_id, deployment.chain_id
            ),
        ));
    }
    let expected = hex0x(expected.as_slice());
    (place.contract != expected).then(|| {
        (
            "chain.contract",
            format!(
                "{} is not {what} of the deployment ({expected})",
                place.contract
            ),
        )
    })
}

/// A recorded stake change against the chain's event at its place: `Ok(None)` when they
/// agree, else the field that differs and how.
async fn check_stake(
    provider: &alloy::providers::DynProvider,
    c: &ChainStakeChanged,
) -> Result<Option<(&'static str, String)>, String> {
    let place = match place_at(&c.chain) {
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

/// For a payout tree or a posted root, whether the chain and the log agree: `None` for other
/// events; `Some(Ok(None))` when they agree.
async fn check_root(
    provider: &alloy::providers::DynProvider,
    event: &Event,
    heads: &Heads,
) -> Option<Result<Option<(&'static str, String)>, String>> {
    match event {
        Event::RewardRootPrepared(r) => Some(Ok(prepared_problem(r))),
        Event::RewardRootPosted(p) => Some(posted_problem(provider, p, heads).await),
        _ => None,
    }
}

/// A prepared tree's root must be the Merkle root of its leaves.
fn prepared_problem(r: &RewardRootPrepared) -> Option<(&'static str, String)> {
    let tree = match tree_of(r) {
        Ok(tree) => tree,
        Err(e) => return Some(("leaves", e.to_string())),
    };
    (tree.root().0 != r.root.0).then(|| {
        (
            "root",
            format!("the leaves' root is {}, recorded {}", tree.root(), r.root),
        )
    })
}

/// A posted root must be the distributor's `EpochPosted` at its place, with the same epoch,
/// root, head and total, and its head must be a record on the log before it.
async fn posted_problem(
    provider: &alloy::providers::DynProvider,
    p: &RewardRootPosted,
    heads: &Heads,
) -> Result<Option<(&'static str, String)>, String> {
    let place = match place_at(&p.chain) {
        Ok(place) => place,
        Err((field, why)) => return Ok(Some((field, format!("not a chain value: {why}")))),
    };
    let recorded = ChainEvent::EpochPosted {
        epoch: U256::from(p.epoch),
        root: B256::from(p.root.0),
        log_head: B256::from(p.log_head.0),
        total: p.total_wei.parse().unwrap_or(U256::MAX),
    };
    match locate(provider, &place).await.map_err(|e| e.to_string())? {
        Err(d) => return Ok(Some(("chain", d.to_string()))),
        Ok(e) if e != recorded => {
            return Ok(Some((
                "root",
                format!("the chain has {e:?}, the record {recorded:?}"),
            )))
        }
        Ok(_) => {}
    }
    // The head must commit to the tree: the record it is the hash of comes at or after the
    // epoch's RewardRootPrepared.
    match (heads.at.get(&p.log_head), heads.prepared.get(&p.epoch)) {
        (None, _) => {
            return Ok(Some((
                "log_head",
                format!(
                    "{} is not the head of any record before this one",
                    p.log_head
                ),
            )))
        }
        (Some(at), Some(prepared)) if at < prepared => {
            return Ok(Some((
                "log_head",
                format!(
                    "it is the head at offset {at}, before the epoch's tree at offset {prepared}"
                ),
            )))
        }
        _ => {}
    }
    Ok(None)
}

/// Recorded stream terms must be the deployment's stream, paying the distributor, with the
/// terms the Lockup holds: `Ok(None)` when they agree.
async fn stream_problem(
    provider: &alloy::providers::DynProvider,
    deployment: &Deployment,
    o: &prlx_events::event::RewardStreamObserved,
) -> Result<Option<(&'static str, String)>, String> {
    let lockup = hex0x(deployment.contracts.sablier_lockup.as_slice());
    if o.lockup != lockup || U256::from(o.stream_id) != deployment.reward_stream.stream_id {
        return Ok(Some((
            "lockup",
            format!(
                "stream {} of {} is not the deployment's (stream {} of {lockup})",
                o.stream_id, o.lockup, deployment.reward_stream.stream_id
            ),
        )));
    }
    let distributor = hex0x(deployment.contracts.rewards_distributor.as_slice());
    if o.recipient != distributor {
        return Ok(Some((
            "recipient",
            format!("{} is not the distributor ({distributor})", o.recipient),
        )));
    }
    let chain = prlx_chain::stream::read_stream(provider, deployment)
        .await
        .map_err(|e| e.to_string())?;
    let terms = |r: &prlx_events::event::RewardStreamObserved| {
        (
            r.deposited_wei.clone(),
            r.start_time,
            r.cliff_time,
            r.end_time,
            r.granularity,
            r.start_unlock_wei.clone(),
            r.cliff_unlock_wei.clone(),
            r.cancelable,
        )
    };
    Ok((terms(&chain) != terms(o)).then(|| {
        (
            "deposited_wei",
            format!(
                "the Lockup holds {:?}, the record {:?} (deposit, start, cliff, end, \
                 granularity, unlocks, cancelable)",
                terms(&chain),
                terms(o)
            ),
        )
    }))
}

/// A usage settlement must be the escrow's `UsageSettled` at its place, with the same epoch
/// and shares: `Ok(None)` when they agree.
async fn usage_problem(
    provider: &alloy::providers::DynProvider,
    u: &UsageSettled,
) -> Result<Option<(&'static str, String)>, String> {
    let place = match place_at(&u.chain) {
        Ok(place) => place,
        Err((field, why)) => return Ok(Some((field, format!("not a chain value: {why}")))),
    };
    let amount = |s: &str| s.parse().unwrap_or(U256::MAX);
    let recorded = ChainEvent::UsageSettled {
        epoch: U256::from(u.epoch),
        operators: amount(&u.operators_wei),
        treasury: amount(&u.treasury_wei),
        infra: amount(&u.infra_wei),
    };
    Ok(
        match locate(provider, &place).await.map_err(|e| e.to_string())? {
            Err(d) => Some(("chain", d.to_string())),
            Ok(e) if e != recorded => Some((
                "operators_wei",
                format!("the chain has {e:?}, the record {recorded:?}"),
            )),
            Ok(_) => None,
        },
    )
}

/// The hash-chain value of every record read so far, with its offset (a posted log head must
/// be one), and where each epoch's tree was prepared.
#[derive(Debug, Default)]
struct Heads {
    at: std::collections::HashMap<prlx_events::Hash32, Offset>,
    prepared: std::collections::HashMap<u64, Offset>,
}

/// The chain events on the log, by their place's key, and the highest block among them.
#[derive(Debug, Default)]
struct Seen {
    keys: std::collections::HashSet<String>,
    highest: Option<(u64, Offset)>,
}

impl Seen {
    fn add(&mut self, offset: Offset, event: &Event) {
        let place = match event {
            Event::CreditsDeposited(d) => match &d.chain {
                Some(c) => &c.place,
                None => return,
            },
            Event::ChainStakeChanged(c) => &c.chain,
            Event::RewardRootPosted(p) => &p.chain,
            Event::UsageSettled(u) => &u.chain,
            _ => return,
        };
        self.keys.insert(place.key());
        if self.highest.is_none_or(|(b, _)| place.block_number >= b) {
            self.highest = Some((place.block_number, offset));
        }
    }

    /// Every event the coordinator follows, up to the highest block the log recorded one
    /// from, must be on the log: a deposit worth a credit or more, a stake change, a post. One
    /// that is not was dropped (or the log was cut): reported at the last chain record.
    async fn missing(
        &self,
        provider: &alloy::providers::DynProvider,
        deployment: &Deployment,
    ) -> Result<Vec<Divergence>, String> {
        use prlx_chain::watch::{WatchConfig, Watcher};
        let Some((highest, at)) = self.highest else {
            return Ok(Vec::new());
        };
        let config = WatchConfig {
            confirmations: 1,
            ..Default::default()
        };
        let mut watcher = Watcher::new(
            provider.clone(),
            deployment,
            config,
            deployment.deployed_at_block,
            None,
        );
        let mut found = Vec::new();
        loop {
            let page = watcher.poll().await.map_err(|e| e.to_string())?;
            if page.is_empty() {
                break;
            }
            for o in page.iter().filter(|o| o.block_number <= highest) {
                let followed = match &o.event {
                    ChainEvent::Deposited { amount, .. } => {
                        *amount >= U256::from(prlx_events::event::CREDIT_UNIT_WEI)
                    }
                    ChainEvent::Claimed { .. } => false,
                    _ => true,
                };
                let key = prlx_chain::record::place_of(o).key();
                if followed && !self.keys.contains(&key) {
                    let recorded_as = match &o.event {
                        ChainEvent::Deposited { .. } => "CreditsDeposited",
                        ChainEvent::EpochPosted { .. } => "RewardRootPosted",
                        ChainEvent::UsageSettled { .. } => "UsageSettled",
                        _ => "ChainStakeChanged",
                    };
                    found.push(finding_in(
                        recorded_as,
                        at,
                        "chain",
                        format!("{key} ({:?}) is on the chain but not on the log", o.event),
                    ));
                }
            }
            if watcher.next_block() > highest {
                break;
            }
        }
        Ok(found)
    }
}
