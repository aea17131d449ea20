//! Settlement on chain: a settled epoch's payouts become a payout tree fixed on the log
//! (`RewardRootPrepared`: one leaf per payout of a node staked on chain, to its staker), the
//! root is posted to the real RewardsDistributor and an operator claims its leaf with a proof
//! once; the fold refuses a tree the settlement does not give and a posted root other than the
//! prepared one.

use alloy::primitives::{B256, U256};
use prlx_chain::bindings::{RewardsDistributor, PRLX};
use prlx_chain::deploy::{confirm, deploy_dev, DevParams};
use prlx_chain::devchain::{dev_role, DevChain};
use prlx_chain::merkle::{Payout, PayoutTree};
use prlx_commands::decide::{decide, Command, RootPost};
use prlx_commands::settle::SettlementCommand;
use prlx_commands::testkit::fixtures::{self, node, registered, reward_policy, t};
use prlx_commands::testkit::{decide_at as run, fold, settle_due, History};
use prlx_events::event::*;
use prlx_events::{Event, Hash32};

const STAKER: &str = "0x90f79bf6eb2c4f870365e785982e1f101e93b906"; // dev account 3

/// Node 1 staked on chain by dev account 3, node 2 registered with stake but never staked on
/// chain; both heartbeat through epoch 0, which then settles.
fn settled_epoch() -> (History, RewardEpochSettled) {
    let mut h = History::new();
    h.record(
        t(-200),
        [fixtures::catalog(vec![fixtures::model("chat", Hash32([1; 32]))]).into()],
    );
    h.record(
        t(-190),
        [ChainStakeChanged {
            node_id: node(1),
            staker: STAKER.into(),
            change: StakeChange::Staked,
            amount_wei: (500 * CREDIT_UNIT_WEI).to_string(),
            bonded_wei: (500 * CREDIT_UNIT_WEI).to_string(),
            stake: 500,
            chain: place(1),
        }
        .into()],
    );
    h.record(
        t(-180),
        [NodeRegistered {
            stake: 0,
            ..registered(1)
        }
        .into()],
    );
    h.record(
        t(-180),
        [NodeRegistered {
            stake: 300,
            ..registered(2)
        }
        .into()],
    );
    run(
        &mut h,
        t(-30),
        Command::Settlement(SettlementCommand::PublishPolicy(reward_policy())),
    );
    for slot in 0..10 {
        for n in [1, 2] {
            let at = t(60 * slot + 5 * n);
            run(&mut h, at, fixtures::heartbeat(node(n as u8), at));
        }
    }
    let settled = settle_due(&mut h, t(600)).pop();
    (h, settled.expect("epoch 0 settles at its end"))
}

fn place(i: u64) -> ChainRef {
    fixtures::chain_place(i)
}

#[test]
fn the_payout_tree_has_a_leaf_for_each_node_staked_on_chain_and_the_fold_rederives_it() {
    let (mut h, settled) = settled_epoch();
    let paid: Vec<_> = settled
        .payouts
        .iter()
        .filter(|p| p.amount > 0)
        .map(|p| p.node_id)
        .collect();
    assert_eq!(paid, [node(1), node(2)], "both earned: {settled:?}");

    let prepared = run(&mut h, t(601), Command::PrepareRoot { epoch: 0 });
    let Event::RewardRootPrepared(r) = &prepared[0] else {
        panic!("{prepared:?}")
    };
    let a = settled
        .payouts
        .iter()
        .find(|p| p.node_id == node(1))
        .unwrap()
        .amount;
    assert_eq!(r.leaves.len(), 1, "node 2 has no staker on chain: no leaf");
    assert_eq!(r.leaves[0].recipient, STAKER);
    assert_eq!(
        r.leaves[0].amount_wei,
        (u128::from(a) * CREDIT_UNIT_WEI).to_string()
    );
    let tree = PayoutTree::build(
        0,
        vec![Payout {
            node_id: B256::from(node(1).0 .0),
            recipient: STAKER.parse().unwrap(),
            amount: U256::from(u128::from(a) * CREDIT_UNIT_WEI),
        }],
    )
    .unwrap();
    assert_eq!(r.root.0, tree.root().0);
    assert!(fold(&h).is_ok());
    assert!(
        decide(&fold(&h).unwrap(), Command::PrepareRoot { epoch: 0 })
            .unwrap()
            .is_empty(),
        "once"
    );

    // A tree paying someone else, or more, does not fold.
    let at = h.envelopes().len() - 1;
    for forged in [
        RewardRootPrepared {
            leaves: vec![RootLeaf {
                recipient: format!("0x{}", "66".repeat(20)),
                ..r.leaves[0].clone()
            }],
            ..r.clone()
        },
        RewardRootPrepared {
            total_wei: "1".into(),
            ..r.clone()
        },
    ] {
        let mut bad = h.clone();
        bad.replace(at, forged);
        assert!(fold(&bad).is_err());
    }

    // The chain's EpochPosted is recorded once, and only for the prepared root.
    let post = |root: Hash32, i| RootPost {
        epoch: 0,
        root,
        log_head: Hash32([9; 32]),
        total_wei: r.total_wei.clone(),
        chain: place(i),
    };
    let state = fold(&h).unwrap();
    assert!(decide(
        &state,
        Command::ObservePost(Box::new(post(Hash32([1; 32]), 7)))
    )
    .is_err());
    run(
        &mut h,
        t(602),
        Command::ObservePost(Box::new(post(r.root, 8))),
    );
    let state = fold(&h).unwrap();
    assert!(state.roots[&0].posted);
    assert!(
        decide(&state, Command::ObservePost(Box::new(post(r.root, 8))))
            .unwrap()
            .is_empty()
    );
    let mut twice = h.clone();
    twice.record(
        t(603),
        [RewardRootPosted {
            epoch: 0,
            root: r.root,
            log_head: Hash32([9; 32]),
            total_wei: r.total_wei.clone(),
            chain: place(9),
        }
        .into()],
    );
    assert!(fold(&twice).is_err(), "an epoch is posted once");
}

/// The prepared root on the real distributor: the staker claims its leaf once, with the proof
/// rebuilt from the leaves on the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_root_posted_on_chain_pays_the_staker_once() {
    let (mut h, _) = settled_epoch();
    let prepared = run(&mut h, t(601), Command::PrepareRoot { epoch: 0 });
    let Event::RewardRootPrepared(r) = &prepared[0] else {
        panic!()
    };

    let chain = DevChain::spawn().expect("anvil (scripts/chain.sh setup)");
    let deployer = chain.provider(dev_role::DEPLOYER).unwrap();
    let d = deploy_dev(
        &deployer,
        chain.address(dev_role::DEPLOYER),
        &DevParams::for_devchain(&chain, 60),
    )
    .await
    .unwrap();
    assert_eq!(
        format!("{:#x}", chain.address(dev_role::FIRST_OPERATOR)),
        STAKER
    );
    let total: U256 = r.total_wei.parse().unwrap();
    let token = PRLX::new(d.token.address, deployer.clone());
    confirm(
        token
            .transfer(d.contracts.rewards_distributor, total)
            .send()
            .await,
        "fund",
    )
    .await
    .unwrap();
    let coordinator = RewardsDistributor::new(
        d.contracts.rewards_distributor,
        chain.provider(dev_role::COORDINATOR).unwrap(),
    );
    // Posted with the head of the log as it stands: the prepared tree is its last record.
    let records: Vec<Vec<u8>> = h.envelopes().iter().map(|e| e.encode()).collect();
    let head = prlx_events::chain::link_to(records.last().unwrap());
    let receipt = confirm(
        coordinator
            .postEpoch(U256::ZERO, B256::from(r.root.0), B256::from(head.0), total)
            .send()
            .await,
        "post",
    )
    .await
    .unwrap();
    let log = &receipt.inner.logs()[0];
    let place = ChainRef {
        chain_id: 31337,
        contract: format!("{:#x}", d.contracts.rewards_distributor),
        block_number: log.block_number.unwrap(),
        block_hash: format!("{:#x}", log.block_hash.unwrap()),
        tx_hash: format!("{:#x}", log.transaction_hash.unwrap()),
        log_index: log.log_index.unwrap(),
    };
    let posted = RootPost {
        epoch: 0,
        root: r.root,
        log_head: head,
        total_wei: r.total_wei.clone(),
        chain: place,
    };
    run(&mut h, t(602), Command::ObservePost(Box::new(posted)));

    // The auditor recomputes the root from the leaves and finds the post on the chain, with
    // a head that is a record of the log.
    let endpoint = chain.endpoint();
    let honest = audit(&h, &endpoint, &d).await;
    assert_eq!(honest["roots_checked"], 2, "{honest}");
    assert!(roots_found(&honest).is_empty(), "{honest}");
    let prepared_at = h
        .envelopes()
        .iter()
        .position(|e| matches!(e.event, Event::RewardRootPrepared(_)))
        .unwrap();
    let mut forged = h.clone();
    forged.replace(
        prepared_at,
        RewardRootPrepared {
            root: Hash32([7; 32]),
            ..r.clone()
        },
    );
    let found = roots_found(&audit(&forged, &endpoint, &d).await);
    assert!(
        found.contains(&"RewardRootPrepared root".to_string()),
        "{found:?}"
    );

    // The operator claims with `prlx-node claim`, which rebuilds its proof from the log's
    // leaves; any account may send (here the client's pays the gas).
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let records: Vec<Vec<u8>> = h.envelopes().iter().map(|e| e.encode()).collect();
    prlx_tests::tamper::write_log(&log_dir, &records).await;
    let deployment = dir.path().join("deployment.json");
    d.write(&deployment).unwrap();
    let claim = || {
        let out = std::process::Command::new(prlx_tests::harness::bins::workspace_bin("prlx-node"))
            .args(["claim", "--log", &format!("file://{}", log_dir.display())])
            .args([
                "--node-id",
                &node(1)
                    .0
                     .0
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>(),
                "--dev-account",
                "2",
            ])
            .arg("--deployment")
            .arg(&deployment)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let amount: U256 = r.leaves[0].amount_wei.parse().unwrap();
    let first = claim();
    assert!(
        first.starts_with(&format!("epoch 0: claimed {amount} to")),
        "{first}"
    );
    assert_eq!(
        token
            .balanceOf(STAKER.parse().unwrap())
            .call()
            .await
            .unwrap(),
        amount
    );
    let second = claim();
    assert_eq!(second.trim(), "epoch 0: already claimed");
    assert_eq!(
        token
            .balanceOf(STAKER.parse().unwrap())
            .call()
            .await
            .unwrap(),
        amount,
        "paid once"
    );
}

/// `prlx-replay verify --chain` over `h` written as a log: the report's chain part.
async fn audit(h: &History, endpoint: &str, d: &prlx_chain::Deployment) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<Vec<u8>> = h.envelopes().iter().map(|e| e.encode()).collect();
    prlx_tests::tamper::write_log(&dir.path().join("log"), &records).await;
    let url = format!("file://{}", dir.path().join("log").display());
    let deployment = dir.path().join("deployment.json");
    d.write(&deployment).unwrap();
    let out = std::process::Command::new(prlx_tests::harness::bins::workspace_bin("prlx-replay"))
        .args(["verify", "--json", "--log", &url, "--chain", endpoint])
        .arg("--deployment")
        .arg(&deployment)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    report["chain"].clone()
}

/// The chain findings about payout roots, as "type field".
fn roots_found(chain: &serde_json::Value) -> Vec<String> {
    chain["divergences"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| {
            d["event_type"]
                .as_str()
                .is_some_and(|t| t.starts_with("RewardRoot"))
        })
        .map(|d| {
            format!(
                "{} {}",
                d["event_type"].as_str().unwrap(),
                d["field"].as_str().unwrap_or("-")
            )
        })
        .collect()
}
