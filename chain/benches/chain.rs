//! The chain's hot paths, on a private anvil:
//! - gas to post an epoch's payouts and to claim one, at 10, 1k and 100k operators: posting
//!   must not grow with operators (one root), a claim grows with log2 of them (its proof);
//! - the time to build the payout tree in Rust at those sizes;
//! - deposits observed per second by the watcher over a backlog of blocks.
//!
//! `cargo bench -p prlx-chain --bench chain` (the numbers go to BENCHMARKS.md).

use std::time::Instant;

use alloy::primitives::{Address, B256, U256};
use prlx_chain::bindings::{CreditEscrow, RewardsDistributor, PRLX};
use prlx_chain::deploy::{confirm, deploy_dev, DevParams};
use prlx_chain::devchain::{dev_role, DevChain};
use prlx_chain::merkle::{Payout, PayoutTree};
use prlx_chain::watch::{WatchConfig, Watcher};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let chain = DevChain::spawn().expect("anvil (scripts/chain.sh setup)");
    let params = DevParams::for_devchain(&chain, 60);
    let deployer = chain.provider(dev_role::DEPLOYER).unwrap();
    let d = deploy_dev(&deployer, chain.address(dev_role::DEPLOYER), &params)
        .await
        .unwrap();
    let token = PRLX::new(d.token.address, deployer.clone());
    let distributor = RewardsDistributor::new(
        d.contracts.rewards_distributor,
        chain.provider(dev_role::COORDINATOR).unwrap(),
    );

    println!("| operators | tree build | post epoch gas | claim gas | proof length |");
    println!("|---:|---:|---:|---:|---:|");
    for (epoch, n) in [(1u64, 10usize), (2, 1_000), (3, 100_000)] {
        let payouts: Vec<Payout> = (0..n)
            .map(|i| Payout {
                node_id: B256::from(U256::from(i + 1)),
                recipient: Address::from_word(B256::from(U256::from(i + 1_000_000))),
                amount: U256::from(1_000_000_000u64 + i as u64),
            })
            .collect();
        let started = Instant::now();
        let tree = PayoutTree::build(epoch, payouts).unwrap();
        let built = started.elapsed();
        confirm(
            token
                .transfer(d.contracts.rewards_distributor, tree.total)
                .send()
                .await,
            "fund",
        )
        .await
        .unwrap();
        let post = confirm(
            distributor
                .postEpoch(
                    U256::from(epoch),
                    tree.root(),
                    B256::repeat_byte(1),
                    tree.total,
                )
                .send()
                .await,
            "post",
        )
        .await
        .unwrap();
        let i = n / 2;
        let p = tree.payouts[i];
        let proof = tree.proof(i);
        let proof_len = proof.len();
        let claim = confirm(
            distributor
                .claim(U256::from(epoch), p.node_id, p.recipient, p.amount, proof)
                .send()
                .await,
            "claim",
        )
        .await
        .unwrap();
        println!(
            "| {n} | {:.1} ms | {} | {} | {proof_len} |",
            built.as_secs_f64() * 1e3,
            post.gas_used,
            claim.gas_used
        );
    }

    // The watcher over a backlog: one deposit per block.
    let deposits = 400u64;
    let client = chain.provider(dev_role::CLIENT).unwrap();
    let amount = U256::from(10).pow(U256::from(18));
    confirm(
        token
            .transfer(
                chain.address(dev_role::CLIENT),
                amount * U256::from(deposits),
            )
            .send()
            .await,
        "fund",
    )
    .await
    .unwrap();
    let client_token = PRLX::new(d.token.address, client.clone());
    confirm(
        client_token
            .approve(d.contracts.credit_escrow, U256::MAX)
            .send()
            .await,
        "approve",
    )
    .await
    .unwrap();
    let escrow = CreditEscrow::new(d.contracts.credit_escrow, client);
    for _ in 0..deposits {
        confirm(
            escrow
                .deposit(chain.address(dev_role::CLIENT), amount)
                .send()
                .await,
            "deposit",
        )
        .await
        .unwrap();
    }
    for page_blocks in [100u64, 2_000] {
        let config = WatchConfig {
            confirmations: 1,
            page_blocks,
        };
        let mut watcher = Watcher::new(
            chain.provider(0).unwrap(),
            &d,
            config,
            d.deployed_at_block,
            None,
        );
        let started = Instant::now();
        let seen = watcher.poll().await.unwrap();
        let took = started.elapsed().as_secs_f64();
        let observed = seen
            .iter()
            .filter(|o| matches!(o.event, prlx_chain::watch::ChainEvent::Deposited { .. }))
            .count();
        assert_eq!(observed as u64, deposits);
        println!(
            "watcher, pages of {page_blocks} blocks: {observed} deposits in {:.1} ms = {:.0} deposits/s",
            took * 1e3,
            observed as f64 / took
        );
    }
}
