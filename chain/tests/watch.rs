//! The watcher on a real chain: a deposit is seen once and only after its confirmations; a
//! reorg before that never shows it; a deeper one stops the watcher; tokens that reach the
//! escrow without `deposit`, or a look-alike contract's events, are not deposits.

mod common;

use alloy::primitives::U256;
use alloy::providers::Provider;
use common::{prlx, World};
use prlx_chain::bindings::{CreditEscrow, NodeStaking, PRLX};
use prlx_chain::deploy::confirm;
use prlx_chain::devchain::dev_role::{self, CLIENT};
use prlx_chain::watch::{ChainEvent, WatchConfig, WatchError, Watcher};

fn watcher(w: &World, confirmations: u64, page_blocks: u64) -> Watcher {
    let config = WatchConfig {
        confirmations,
        page_blocks,
    };
    Watcher::new(w.as_account(0), &w.d, config, w.d.deployed_at_block, None)
}

async fn mine(w: &World, blocks: u64) {
    let p = w.as_account(0);
    let _: serde_json::Value = p.raw_request("anvil_mine".into(), (blocks,)).await.unwrap();
}

async fn snapshot(w: &World) -> U256 {
    w.as_account(0)
        .raw_request("evm_snapshot".into(), ())
        .await
        .unwrap()
}

async fn revert_to(w: &World, id: U256) {
    let ok: bool = w
        .as_account(0)
        .raw_request("evm_revert".into(), (id,))
        .await
        .unwrap();
    assert!(ok);
}

/// Funds the client and approves the escrow (two blocks), ready for [`deposit_now`].
async fn prepare_deposit(w: &World, amount: U256) {
    w.fund(CLIENT, amount).await;
    w.approve(CLIENT, w.d.contracts.credit_escrow, amount).await;
}

async fn deposit(w: &World, amount: U256) -> u64 {
    prepare_deposit(w, amount).await;
    deposit_now(w, amount).await
}

/// The deposit transaction alone: one block.
async fn deposit_now(w: &World, amount: U256) -> u64 {
    let escrow = CreditEscrow::new(w.d.contracts.credit_escrow, w.as_account(CLIENT));
    let receipt = confirm(
        escrow.deposit(w.addr(CLIENT), amount).send().await,
        "deposit",
    )
    .await
    .unwrap();
    receipt.block_number.unwrap()
}

fn deposits(seen: &[prlx_chain::watch::Observed]) -> Vec<U256> {
    seen.iter()
        .filter_map(|o| match o.event {
            ChainEvent::Deposited { amount, .. } => Some(amount),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_deposit_is_seen_once_and_only_after_its_confirmations() {
    let w = World::new().await;
    let mut watch = watcher(&w, 3, 2_000);
    assert!(watch.poll().await.unwrap().is_empty());
    let block = deposit(&w, prlx(5)).await;
    assert_eq!(w.as_account(0).get_block_number().await.unwrap(), block);
    assert!(
        deposits(&watch.poll().await.unwrap()).is_empty(),
        "1 confirmation of 3"
    );
    mine(&w, 1).await;
    assert!(
        deposits(&watch.poll().await.unwrap()).is_empty(),
        "2 confirmations of 3"
    );
    mine(&w, 1).await;
    let seen = watch.poll().await.unwrap();
    assert_eq!(deposits(&seen), [prlx(5)]);
    let o = seen
        .iter()
        .find(|o| matches!(o.event, ChainEvent::Deposited { .. }))
        .unwrap();
    assert_eq!(
        (o.chain_id, o.contract, o.block_number),
        (31337, w.d.contracts.credit_escrow, block)
    );
    assert_eq!(
        o.event,
        ChainEvent::Deposited {
            account: w.addr(CLIENT),
            payer: w.addr(CLIENT),
            amount: prlx(5)
        }
    );
    mine(&w, 5).await;
    assert!(
        deposits(&watch.poll().await.unwrap()).is_empty(),
        "never twice"
    );
    // A caller that could not record it reads it again (and applies it once: decide).
    watch.rewind_to(block);
    assert_eq!(deposits(&watch.poll().await.unwrap()), [prlx(5)]);
}

#[tokio::test]
async fn a_reorg_before_the_confirmations_never_shows_the_deposit() {
    let w = World::new().await;
    let mut watch = watcher(&w, 3, 2_000);
    prepare_deposit(&w, prlx(7)).await;
    mine(&w, 3).await;
    watch.poll().await.unwrap();
    let before = snapshot(&w).await;
    deposit_now(&w, prlx(7)).await;
    mine(&w, 1).await;
    assert!(deposits(&watch.poll().await.unwrap()).is_empty());
    // The deposit's blocks are replaced by others without it.
    revert_to(&w, before).await;
    mine(&w, 10).await;
    assert!(deposits(&watch.poll().await.unwrap()).is_empty());
}

#[tokio::test]
async fn a_reorg_deeper_than_the_confirmations_stops_the_watcher() {
    let w = World::new().await;
    let mut watch = watcher(&w, 1, 2_000);
    let before = snapshot(&w).await;
    deposit(&w, prlx(7)).await;
    assert_eq!(deposits(&watch.poll().await.unwrap()), [prlx(7)]);
    revert_to(&w, before).await;
    mine(&w, 10).await;
    let err = watch.poll().await.unwrap_err();
    assert!(
        matches!(
            err,
            WatchError::DeepReorg {
                confirmations: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn only_deposit_credits_and_only_from_the_deployed_escrow() {
    let w = World::new().await;
    let mut watch = watcher(&w, 1, 2);
    // Tokens sent to the escrow with a plain transfer: no Deposited event.
    w.fund(CLIENT, prlx(3)).await;
    let token = PRLX::new(w.d.token.address, w.as_account(CLIENT));
    confirm(
        token
            .transfer(w.d.contracts.credit_escrow, prlx(3))
            .send()
            .await,
        "transfer",
    )
    .await
    .unwrap();
    // A look-alike escrow deployed by anyone: its events are not ours.
    let a = |i| w.addr(i);
    let fake = CreditEscrow::deploy(
        w.as_account(CLIENT),
        w.d.token.address,
        a(CLIENT),
        a(CLIENT),
        a(CLIENT),
        a(CLIENT),
    )
    .await
    .unwrap();
    w.fund(CLIENT, prlx(4)).await;
    w.approve(CLIENT, *fake.address(), prlx(4)).await;
    // A fresh handle: the provider `deploy` returned the instance with reused a stale nonce
    // after other providers signed for the same account.
    let fake = CreditEscrow::new(*fake.address(), w.as_account(CLIENT));
    confirm(
        fake.deposit(a(CLIENT), prlx(4)).send().await,
        "fake deposit",
    )
    .await
    .unwrap();
    // Stake and a real deposit, read in pages of two blocks.
    let op = dev_role::FIRST_OPERATOR;
    w.fund(op, prlx(9)).await;
    w.approve(op, w.d.contracts.node_staking, prlx(9)).await;
    let staking = NodeStaking::new(w.d.contracts.node_staking, w.as_account(op));
    let node = alloy::primitives::B256::repeat_byte(0x42);
    confirm(staking.stake(node, prlx(9)).send().await, "stake")
        .await
        .unwrap();
    deposit(&w, prlx(1)).await;

    let seen = watch.poll().await.unwrap();
    assert_eq!(deposits(&seen), [prlx(1)]);
    let stakes: Vec<_> = seen
        .iter()
        .filter_map(|o| match &o.event {
            ChainEvent::Staked {
                node_id,
                staker,
                amount,
                bonded,
            } => Some((*node_id, *staker, *amount, *bonded)),
            _ => None,
        })
        .collect();
    assert_eq!(stakes, [(node, w.addr(op), prlx(9), prlx(9))]);
    let places: Vec<_> = seen.iter().map(|o| (o.block_number, o.log_index)).collect();
    let mut sorted = places.clone();
    sorted.sort_unstable();
    assert_eq!(places, sorted, "chain order");
}

#[tokio::test]
async fn a_recorded_observation_is_checked_against_the_chain() {
    use prlx_chain::verify::{check, Divergence};
    let w = World::new().await;
    let mut watch = watcher(&w, 1, 2_000);
    let before = snapshot(&w).await;
    deposit(&w, prlx(2)).await;
    let seen = watch.poll().await.unwrap();
    let real = seen
        .iter()
        .find(|o| matches!(o.event, ChainEvent::Deposited { .. }))
        .unwrap()
        .clone();
    let p = w.as_account(0);
    assert_eq!(check(&p, &real).await.unwrap(), None);

    let mut more = real.clone();
    more.event = ChainEvent::Deposited {
        account: w.addr(CLIENT),
        payer: w.addr(CLIENT),
        amount: prlx(3),
    };
    assert!(matches!(
        check(&p, &more).await.unwrap(),
        Some(Divergence::Differs(_))
    ));
    let mut other = real.clone();
    other.event = ChainEvent::Deposited {
        account: w.addr(0),
        payer: w.addr(CLIENT),
        amount: prlx(2),
    };
    assert!(matches!(
        check(&p, &other).await.unwrap(),
        Some(Divergence::Differs(_))
    ));
    let mut invented = real.clone();
    invented.tx_hash = alloy::primitives::B256::repeat_byte(7);
    assert!(matches!(
        check(&p, &invented).await.unwrap(),
        Some(Divergence::NoTransaction(_))
    ));
    let mut elsewhere = real.clone();
    elsewhere.log_index += 5;
    assert!(matches!(
        check(&p, &elsewhere).await.unwrap(),
        Some(Divergence::NoLog(_))
    ));

    // Reorged away: the transaction is gone.
    revert_to(&w, before).await;
    mine(&w, 3).await;
    let gone = check(&p, &real).await.unwrap();
    assert!(
        matches!(
            gone,
            Some(Divergence::NoTransaction(_) | Divergence::NotCanonical { .. })
        ),
        "{gone:?}"
    );
}
