//! Credits from the chain: the coordinator's watcher credits a `CreditEscrow` deposit once,
//! only after its confirmations, with where it is on the chain recorded; a restart credits
//! nothing twice; a deposit claimed by a caller is refused; the auditor's fold re-derives the
//! credits from the recorded amount. A real anvil and the real contracts.

use std::time::Duration;

use alloy::primitives::U256;
use alloy::providers::Provider;
use prlx_chain::bindings::{CreditEscrow, PRLX};
use prlx_chain::deploy::{confirm, deploy_dev, DevParams};
use prlx_chain::devchain::{dev_role, DevChain};
use prlx_chain::watch::WatchConfig;
use prlx_commands::actor;
use prlx_commands::chain_watch::{self, ChainWatchConfig};
use prlx_commands::decide::Command;
use prlx_commands::shell::Outcome;
use prlx_events::event::CREDIT_UNIT_WEI;
use prlx_events::event::{ChainDeposit, ChainRef};
use prlx_events::log::LogUrl;
use prlx_events::{AccountId, Envelope, Event};
use prlx_tests::harness::bins::workspace_bin;
use prlx_tests::harness::client::read_log;
use prlx_tests::harness::inproc::open_coordinator;

async fn balance(handle: &actor::CoordinatorHandle, account: &AccountId) -> u64 {
    let account = account.clone();
    handle
        .read_state(move |s| s.accounts.get(&account).map_or(0, |a| a.balance))
        .await
        .unwrap()
}

/// A fresh anvil with every contract deployed, and a watcher's configuration for it with
/// `confirmations`, polling every 50 ms.
async fn deployed(confirmations: u64) -> (DevChain, prlx_chain::Deployment, ChainWatchConfig) {
    let chain = DevChain::spawn().expect("anvil (scripts/chain.sh setup)");
    let deployer = chain.provider(dev_role::DEPLOYER).unwrap();
    let params = DevParams::for_devchain(&chain, 60);
    let d = deploy_dev(&deployer, chain.address(dev_role::DEPLOYER), &params)
        .await
        .unwrap();
    let config = ChainWatchConfig {
        deployment: d.clone(),
        rpc_url: chain.endpoint(),
        watch: WatchConfig {
            confirmations,
            page_blocks: 100,
        },
        interval: Duration::from_millis(50),
        poster: None,
    };
    (chain, d, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_deposit_is_credited_once_after_its_confirmations() {
    let (chain, d, config) = deployed(2).await;
    let deployer = chain.provider(dev_role::DEPLOYER).unwrap();

    // The client buys credits: 3.5 credits' worth plus dust below one credit.
    let client = chain.address(dev_role::CLIENT);
    let wei = U256::from(7 * CREDIT_UNIT_WEI / 2 * 1_000_000 + 17);
    let credits = (7 * CREDIT_UNIT_WEI / 2 * 1_000_000 / CREDIT_UNIT_WEI) as u64;
    let client_p = ready_to_deposit(&chain, &d, wei).await;

    let dir = tempfile::tempdir().unwrap();
    let url_text = format!("file://{}", dir.path().join("log").display());
    let url = LogUrl::parse(&url_text).unwrap();
    let account = AccountId(format!("{client:#x}"));

    let (handle, task) = actor::spawn(open_coordinator(&url).await.money_from_chain_only(true));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let watcher = tokio::spawn(chain_watch::run(handle.clone(), config.clone(), stopped));

    let escrow = CreditEscrow::new(d.contracts.credit_escrow, client_p);
    confirm(escrow.deposit(client, wei).send().await, "deposit")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        balance(&handle, &account).await,
        0,
        "one confirmation of two: not yet"
    );

    let _: serde_json::Value = deployer
        .raw_request("anvil_mine".into(), (1u64,))
        .await
        .unwrap();
    let mut credited = 0;
    for _ in 0..100 {
        credited = balance(&handle, &account).await;
        if credited > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(credited, credits, "amount / 10^9, the dust left in escrow");

    // A deposit claimed by a caller is refused, naming the field.
    let claimed = handle
        .execute_command(Command::DepositCredits {
            account: account.clone(),
            tx_ref: "0xfeed".into(),
            amount: 1_000,
        })
        .await
        .unwrap();
    match claimed {
        Outcome::Rejected { rejection, .. } => {
            assert!(rejection.to_string().contains("tx_ref"), "{rejection}")
        }
        other => panic!("a claimed deposit was not refused: {other:?}"),
    }

    // Restart: the watcher reads the deposit's block again and credits nothing twice.
    stop.send(true).unwrap();
    watcher.await.unwrap();
    drop(handle);
    task.await.unwrap().unwrap();
    let (handle, task) = actor::spawn(open_coordinator(&url).await.money_from_chain_only(true));
    assert!(handle.read_state(|s| s.chain_block).await.unwrap() > 0);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let watcher = tokio::spawn(chain_watch::run(handle.clone(), config, stopped));
    let _: serde_json::Value = deployer
        .raw_request("anvil_mine".into(), (3u64,))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(balance(&handle, &account).await, credits);
    stop.send(true).unwrap();
    watcher.await.unwrap();
    drop(handle);
    task.await.unwrap().unwrap();

    // The auditor agrees with the chain.
    let deployment_file = dir.path().join("deployment.json");
    d.write(&deployment_file).unwrap();
    let audit = |url: &str| verify_chain(url, &chain.endpoint(), &deployment_file);
    let (code, report) = audit(&url_text);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["chain"]["deposits_checked"], 1);

    // A deposit the chain does not have (a coordinator that believed a lying node, or a log
    // rewritten consistently): the fold takes it, the chain check does not.
    let (handle, task) = actor::spawn(open_coordinator(&url).await);
    let real = read_log(&url_text)
        .await
        .iter()
        .find_map(|(_, p)| match Envelope::decode(p).unwrap().event {
            Event::CreditsDeposited(d) => d.chain,
            _ => None,
        })
        .unwrap();
    let invented = ChainDeposit {
        place: ChainRef {
            tx_hash: format!("0x{}", "ab".repeat(32)),
            ..real.place.clone()
        },
        ..real.clone()
    };
    // And one "from" a look-alike escrow (any contract can emit a Deposited event).
    let look_alike = ChainDeposit {
        place: ChainRef {
            contract: format!("0x{}", "5e".repeat(20)),
            tx_hash: format!("0x{}", "cd".repeat(32)),
            ..real.place.clone()
        },
        ..real
    };
    let mut offsets = Vec::new();
    for chain in [invented, look_alike] {
        let outcome = handle
            .execute_command(Command::ObserveDeposit {
                account: account.clone(),
                chain,
            })
            .await
            .unwrap();
        let Outcome::Appended(at) = outcome else {
            panic!("{outcome:?}")
        };
        offsets.push(at.start);
    }
    drop(handle);
    task.await.unwrap().unwrap();
    let (code, report) = audit(&url_text);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["ok"], false);
    // Three findings: the invented transaction, the look-alike contract, and the escrow
    // holding less than the log credited from it (at the last deposit counted).
    let found: Vec<(u64, String, String)> = report["chain"]["divergences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert_eq!(f["kind"], "chain_mismatch");
            (
                f["offset"].as_u64().unwrap(),
                f["field"].as_str().unwrap().to_owned(),
                f["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(found.len(), 3, "{report}");
    assert_eq!(
        (found[0].0, found[0].1.as_str()),
        (offsets[0], "chain"),
        "{report}"
    );
    assert!(found[0].2.contains("not on the chain"), "{report}");
    assert_eq!(
        (found[1].0, found[1].1.as_str()),
        (offsets[1], "chain.contract"),
        "{report}"
    );
    assert!(found[2].2.contains("less than the"), "{report}");

    let deposits: Vec<_> = read_log(&url_text)
        .await
        .iter()
        .filter_map(|(_, p)| match Envelope::decode(p).unwrap().event {
            Event::CreditsDeposited(d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(
        deposits.len(),
        3,
        "the real deposit once, and the two forged ones"
    );
    let c = deposits[0].chain.as_ref().expect("where on the chain");
    assert_eq!(
        (c.place.chain_id, c.amount_wei.as_str()),
        (31337, wei.to_string().as_str())
    );
    assert_eq!(deposits[0].tx_ref, c.tx_ref());
}

/// The fold re-derives a chain deposit's reference and credits from what it records: a log
/// that credits more than the chain's amount buys, or under another reference, does not fold.
#[test]
fn the_fold_refuses_a_chain_deposit_whose_credits_or_reference_do_not_follow() {
    use prlx_events::event::CreditsDeposited;
    let chain = ChainDeposit {
        place: ChainRef {
            chain_id: 31337,
            contract: format!("0x{}", "11".repeat(20)),
            block_number: 9,
            block_hash: format!("0x{}", "22".repeat(32)),
            tx_hash: format!("0x{}", "33".repeat(32)),
            log_index: 0,
        },
        payer: format!("0x{}", "44".repeat(20)),
        amount_wei: (5 * CREDIT_UNIT_WEI + 3).to_string(),
    };
    let honest = CreditsDeposited {
        account: AccountId(format!("0x{}", "44".repeat(20))),
        tx_ref: chain.tx_ref(),
        amount: 5,
        chain: Some(chain.clone()),
    };
    let fold = |d: &CreditsDeposited| {
        let mut h = prlx_commands::testkit::History::new();
        h.push(d.clone().into());
        prlx_commands::testkit::fold(&h)
    };
    let state = fold(&honest).unwrap();
    assert_eq!(state.chain_block, 9);
    let more = CreditsDeposited {
        amount: 6,
        ..honest.clone()
    };
    assert!(fold(&more)
        .unwrap_err()
        .to_string()
        .contains("CreditsDeposited.amount"));
    let renamed = CreditsDeposited {
        tx_ref: "0xabc".into(),
        ..honest
    };
    assert!(fold(&renamed)
        .unwrap_err()
        .to_string()
        .contains("CreditsDeposited.tx_ref"));
}

async fn wait_for<T: PartialEq + std::fmt::Debug>(mut read: impl AsyncFnMut() -> T, want: T) {
    let mut last = read().await;
    for _ in 0..100 {
        if last == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        last = read().await;
    }
    assert_eq!(last, want);
}

/// A node's stake is what `NodeStaking` holds for its id: bonded on chain, lowered at an
/// unstake request, unchanged by the withdrawal that pays the principal back in full; a
/// caller cannot move stake or declare it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_stake_is_what_the_staking_contract_holds() {
    use prlx_chain::bindings::NodeStaking;
    use prlx_commands::settle::SettlementCommand;
    use prlx_events::{Hash32, NodeId};

    let (chain, d, config) = deployed(1).await;
    let deployer = chain.provider(dev_role::DEPLOYER).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log_text = format!("file://{}", dir.path().join("log").display());
    let url = LogUrl::parse(&log_text).unwrap();
    let (handle, task) = actor::spawn(open_coordinator(&url).await.money_from_chain_only(true));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let watcher = tokio::spawn(chain_watch::run(handle.clone(), config, stopped));

    let op = dev_role::FIRST_OPERATOR;
    let prlx = |n: u64| U256::from(n) * U256::from(10).pow(U256::from(18));
    let token = PRLX::new(d.token.address, deployer.clone());
    confirm(
        token.transfer(chain.address(op), prlx(5)).send().await,
        "fund",
    )
    .await
    .unwrap();
    let op_p = chain.provider(op).unwrap();
    confirm(
        PRLX::new(d.token.address, op_p.clone())
            .approve(d.contracts.node_staking, prlx(5))
            .send()
            .await,
        "approve",
    )
    .await
    .unwrap();
    let staking = NodeStaking::new(d.contracts.node_staking, op_p);
    let raw = [0x5au8; 32];
    let node = NodeId(Hash32(raw));
    let stake_of = || {
        let handle = handle.clone();
        async move {
            handle
                .read_state(move |s| s.chain_stakes.get(&node).map(|c| c.stake))
                .await
                .unwrap()
        }
    };
    let units = |n: u64| n * 1_000_000_000;

    confirm(staking.stake(raw.into(), prlx(5)).send().await, "stake")
        .await
        .unwrap();
    wait_for(stake_of, Some(units(5))).await;
    confirm(
        staking.requestUnstake(raw.into(), prlx(2)).send().await,
        "unstake",
    )
    .await
    .unwrap();
    wait_for(stake_of, Some(units(3))).await;
    let _: serde_json::Value = deployer
        .raw_request("evm_increaseTime".into(), (60u64,))
        .await
        .unwrap();
    confirm(staking.withdraw(raw.into()).send().await, "withdraw")
        .await
        .unwrap();
    let withdrawals = || {
        let handle = handle.clone();
        async move { handle.read_state(|s| s.chain_seen.len()).await.unwrap() }
    };
    wait_for(withdrawals, 3).await;
    assert_eq!(
        stake_of().await,
        Some(units(3)),
        "a withdrawal leaves the bond as it was"
    );
    let back = PRLX::new(d.token.address, deployer.clone())
        .balanceOf(chain.address(op))
        .call()
        .await
        .unwrap();
    assert_eq!(back, prlx(2), "the principal, in full");

    // Nobody moves or declares stake through the coordinator.
    for (command, field) in [
        (
            Command::Settlement(SettlementCommand::DepositStake {
                node_id: node,
                amount: 10,
            }),
            "amount",
        ),
        (
            Command::Settlement(SettlementCommand::RequestUnstake {
                node_id: node,
                amount: 1,
            }),
            "amount",
        ),
        (
            Command::RegisterNode(Box::new(prlx_commands::testkit::fixtures::registered(1))),
            "stake",
        ),
    ] {
        match handle.execute_command(command).await.unwrap() {
            Outcome::Rejected { rejection, .. } => {
                assert!(rejection.to_string().contains(field), "{rejection}")
            }
            other => panic!("not refused: {other:?}"),
        }
    }
    stop.send(true).unwrap();
    watcher.await.unwrap();
    drop(handle);
    task.await.unwrap().unwrap();

    // The auditor finds each stake change on the chain.
    let deployment_file = dir.path().join("deployment.json");
    d.write(&deployment_file).unwrap();
    let (code, report) = verify_chain(&log_text, &chain.endpoint(), &deployment_file);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["chain"]["stake_changes_checked"], 3, "{report}");

    // The same log without the unstake's record: the chain has an event the log lacks.
    let records = read_log(&log_text).await;
    let cut: Vec<Vec<u8>> = records
        .into_iter()
        .filter(|(_, p)| {
            !matches!(Envelope::decode(p).unwrap().event,
                Event::ChainStakeChanged(ref c) if c.change == prlx_events::event::StakeChange::UnstakeRequested)
        })
        .map(|(_, p)| p)
        .collect();
    let cut_dir = dir.path().join("cut");
    prlx_tests::tamper::write_log(&cut_dir, &cut).await;
    let cut_url = format!("file://{}", cut_dir.display());
    let (code, report) = verify_chain(&cut_url, &chain.endpoint(), &deployment_file);
    assert_eq!(code, Some(1), "{report}");
    let missing: Vec<_> = report["chain"]["divergences"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["message"].as_str().unwrap().contains("not on the log"))
        .collect();
    assert_eq!(missing.len(), 1, "{report}");
    assert!(
        missing[0]["message"]
            .as_str()
            .unwrap()
            .contains("UnstakeRequested"),
        "{report}"
    );
}

/// The fold takes a node's stake from its bond on chain, also when the node registers after
/// it was staked for, and refuses a record that does not follow from the bond before it.
#[test]
fn the_fold_takes_stake_from_the_chain_and_refuses_inconsistent_records() {
    use prlx_commands::testkit::{fixtures, fold, History};
    use prlx_events::event::{ChainStakeChanged, NodeRegistered, StakeChange};
    let at = |i: u64| ChainRef {
        chain_id: 31337,
        contract: format!("0x{}", "77".repeat(20)),
        block_number: i,
        block_hash: format!("0x{}", "88".repeat(32)),
        tx_hash: format!("0x{i:064x}"),
        log_index: 0,
    };
    let staked = ChainStakeChanged {
        node_id: fixtures::node(1),
        staker: format!("0x{}", "99".repeat(20)),
        change: StakeChange::Staked,
        amount_wei: (7 * CREDIT_UNIT_WEI).to_string(),
        bonded_wei: (7 * CREDIT_UNIT_WEI + 5).to_string(),
        stake: 7,
        chain: at(1),
    };
    let mut h = History::new();
    h.push(fixtures::reward_policy().into());
    h.push(staked.clone().into());
    h.push(
        NodeRegistered {
            stake: 0,
            ..fixtures::registered(1)
        }
        .into(),
    );
    let state = fold(&h).unwrap();
    assert_eq!(state.nodes[&fixtures::node(1)].stake, 7);
    assert_eq!(state.rewards.operators[&fixtures::node(1)].stake, 7);

    let withdrawn = ChainStakeChanged {
        change: StakeChange::Withdrawn,
        bonded_wei: (9 * CREDIT_UNIT_WEI).to_string(),
        stake: 9,
        chain: at(2),
        ..staked.clone()
    };
    let mut forged = h.clone();
    forged.push(withdrawn.into());
    assert!(fold(&forged)
        .unwrap_err()
        .to_string()
        .contains("bonded_wei"));
    let mut thief = h.clone();
    thief.push(
        ChainStakeChanged {
            staker: format!("0x{}", "66".repeat(20)),
            chain: at(3),
            ..staked.clone()
        }
        .into(),
    );
    assert!(fold(&thief).unwrap_err().to_string().contains("staker"));
    let mut twice = h;
    twice.push(staked.into());
    assert!(fold(&twice)
        .unwrap_err()
        .to_string()
        .contains("applied twice"));
}

/// `prlx-replay verify --json --chain` on a log: its exit code and report.
fn verify_chain(
    log: &str,
    rpc: &str,
    deployment: &std::path::Path,
) -> (Option<i32>, serde_json::Value) {
    let out = std::process::Command::new(workspace_bin("prlx-replay"))
        .args(["verify", "--json", "--log", log, "--chain", rpc])
        .arg("--deployment")
        .arg(deployment)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (out.status.code(), report)
}

/// A reorg deeper than the confirmations while the coordinator was down: the watcher checks
/// the block of the last event it recorded before reading on, finds it gone, and stops
/// rather than credit on top of a chain the log no longer matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_a_deep_reorg_during_the_downtime_stops_the_watcher() {
    let (chain, d, config) = deployed(1).await;
    let deployer = chain.provider(dev_role::DEPLOYER).unwrap();
    let client = chain.address(dev_role::CLIENT);
    let wei = U256::from(5 * CREDIT_UNIT_WEI);
    let client_p = ready_to_deposit(&chain, &d, wei).await;
    let before: U256 = deployer
        .raw_request("evm_snapshot".into(), ())
        .await
        .unwrap();
    let escrow = CreditEscrow::new(d.contracts.credit_escrow, client_p);
    confirm(escrow.deposit(client, wei).send().await, "deposit")
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let url = LogUrl::parse(&format!("file://{}", dir.path().join("log").display())).unwrap();
    let (handle, task) = actor::spawn(open_coordinator(&url).await.money_from_chain_only(true));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let watcher = tokio::spawn(chain_watch::run(handle.clone(), config.clone(), stopped));
    let account = AccountId(format!("{client:#x}"));
    let mut credited = 0;
    for _ in 0..100 {
        credited = balance(&handle, &account).await;
        if credited > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(credited, 5);
    stop.send(true).unwrap();
    watcher.await.unwrap();
    drop(handle);
    task.await.unwrap().unwrap();

    // While it is down, the deposit's block is replaced.
    let ok: bool = deployer
        .raw_request("evm_revert".into(), (before,))
        .await
        .unwrap();
    assert!(ok);
    let _: serde_json::Value = deployer
        .raw_request("anvil_mine".into(), (5u64,))
        .await
        .unwrap();

    let (handle, task) = actor::spawn(open_coordinator(&url).await.money_from_chain_only(true));
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let watcher = tokio::spawn(chain_watch::run(handle.clone(), config, stopped));
    // It stops on its own, without a stop signal.
    tokio::time::timeout(Duration::from_secs(10), watcher)
        .await
        .expect("the watcher stops at the deep reorg")
        .unwrap();
    drop(handle);
    task.await.unwrap().unwrap();
}

/// The deployer funds the client with `wei` PRLX and the client approves the escrow for it;
/// the client's provider, ready to deposit.
async fn ready_to_deposit(
    chain: &DevChain,
    d: &prlx_chain::Deployment,
    wei: U256,
) -> alloy::providers::DynProvider {
    let token = PRLX::new(d.token.address, chain.provider(dev_role::DEPLOYER).unwrap());
    confirm(
        token
            .transfer(chain.address(dev_role::CLIENT), wei)
            .send()
            .await,
        "fund",
    )
    .await
    .unwrap();
    let client = chain.provider(dev_role::CLIENT).unwrap();
    let token = PRLX::new(d.token.address, client.clone());
    confirm(
        token.approve(d.contracts.credit_escrow, wei).send().await,
        "approve",
    )
    .await
    .unwrap();
    client
}
