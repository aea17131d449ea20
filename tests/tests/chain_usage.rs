//! Steady-state income on chain: once a steady-state epoch with income is settled, the
//! coordinator's poster has the real `CreditEscrow` pay it out (`settleUsage`, 85 / 10 / 5 to
//! the distributor, the treasury and infra), once; the watcher records the escrow's
//! `UsageSettled`; the fold and `decide` refuse a settlement of another amount or split; the
//! auditor finds the record on the chain and the escrow's balance consistent with it.

use std::time::Duration;

use alloy::primitives::U256;
use prlx_chain::bindings::PRLX;
use prlx_chain::devchain::{dev_role, dev_signer};
use prlx_chain::watch::WatchConfig;
use prlx_commands::actor;
use prlx_commands::chain_post::{self, PosterConfig};
use prlx_commands::chain_watch::{self, ChainWatchConfig};
use prlx_commands::decide::{decide, Command, Completion};
use prlx_commands::settle::SettlementCommand;
use prlx_commands::testkit::fixtures::{self, node, t};
use prlx_commands::testkit::{
    decide_at as run, dispatch_next, fold, one_node_under_the_reward_policy, settle_due, History,
};
use prlx_events::event::*;
use prlx_events::log::LogUrl;
use prlx_events::{Event, RequestId};
use prlx_tests::harness::chain::TestChain;
use prlx_tests::harness::inproc::open_coordinator;

/// Epoch 0 settled in steady state, with request 0 charged in it.
fn steady_epoch() -> (History, RewardEpochSettled) {
    let mut h = one_node_under_the_reward_policy();
    run(
        &mut h,
        t(-20),
        Command::Settlement(SettlementCommand::ChangeMode {
            mode: RewardMode::SteadyState,
        }),
    );
    h.record(t(-10), [fixtures::deposited(1_000).into()]);
    h.record(
        t(1),
        fixtures::accepted_and_reserved(fixtures::request_accepted(0)),
    );
    let n = dispatch_next(&mut h, t(2));
    assert_eq!(n, node(1));
    run(
        &mut h,
        t(3),
        Command::CompleteTask(Box::new(Completion {
            now: t(3),
            ..fixtures::completion(RequestId(0), node(1), 0)
        })),
    );
    for slot in 0..10 {
        let at = t(60 * slot + 5);
        run(&mut h, at, fixtures::heartbeat(node(1), at));
    }
    let settled = settle_due(&mut h, t(600)).pop();
    (h, settled.expect("epoch 0 settles at its end"))
}

fn usage(operators: u128, treasury: u128, infra: u128) -> UsageSettled {
    UsageSettled {
        epoch: 0,
        operators_wei: operators.to_string(),
        treasury_wei: treasury.to_string(),
        infra_wei: infra.to_string(),
        chain: ChainRef {
            chain_id: 31337,
            contract: format!("0x{}", "77".repeat(20)),
            block_number: 5,
            block_hash: format!("0x{:064x}", 5),
            tx_hash: format!("0x{:064x}", 6),
            log_index: 0,
        },
    }
}

#[test]
fn only_the_epoch_s_income_split_as_the_escrow_splits_it_is_recorded() {
    let (h, settled) = steady_epoch();
    assert_eq!(settled.mode, RewardMode::SteadyState);
    assert!(settled.income > 0, "{settled:?}");
    let state = fold(&h).unwrap();
    assert_eq!(state.usage_due.get(&0), Some(&settled.income));

    let wei = u128::from(settled.income) * CREDIT_UNIT_WEI;
    let (treasury, infra) = (wei / 10, wei / 20);
    let honest = usage(wei - treasury - infra, treasury, infra);
    let decided = decide(&state, Command::ObserveUsage(Box::new(honest.clone()))).unwrap();
    assert_eq!(decided, [Event::UsageSettled(honest.clone())]);

    // Another amount, another split, another epoch: refused naming the field, and a log
    // that holds one does not fold.
    for (forged, field) in [
        (usage(wei, treasury, infra), "operators_wei"),
        (
            usage(wei - treasury - infra - 1, treasury + 1, infra),
            "treasury_wei",
        ),
        (
            UsageSettled {
                epoch: 1,
                ..honest.clone()
            },
            "epoch",
        ),
    ] {
        let refused = decide(&state, Command::ObserveUsage(Box::new(forged.clone())))
            .expect_err("a forged settlement");
        assert_eq!(refused.field.as_deref(), Some(field), "{refused}");
        let mut bad = h.clone();
        bad.record(t(700), [forged.into()]);
        assert!(fold(&bad).is_err());
    }

    // Recorded once: after it nothing is due, a repeat decides nothing, and a second
    // settlement of the epoch does not fold.
    let mut h = h;
    h.record(t(700), decided);
    let state = fold(&h).unwrap();
    assert!(state.usage_due.is_empty());
    assert!(
        decide(&state, Command::ObserveUsage(Box::new(honest.clone())))
            .unwrap()
            .is_empty()
    );
    let mut twice = h.clone();
    twice.record(
        t(701),
        [UsageSettled {
            chain: ChainRef {
                log_index: 1,
                ..honest.chain.clone()
            },
            ..honest
        }
        .into()],
    );
    assert!(fold(&twice).is_err(), "an epoch's usage is settled once");
}

/// The coordinator's own poster and watcher on a real chain: the escrow pays the epoch's
/// income out once, split 85 / 10 / 5, and the log records it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poster_has_the_escrow_pay_a_steady_state_income_once() {
    let (h, settled) = steady_epoch();
    let dir = tempfile::tempdir().unwrap();
    let chain = TestChain::start(dir.path()).await;
    // The escrow holds the client's PRLX: more than the income.
    chain.buy_credits(1_000_000).await;

    let log_dir = dir.path().join("log");
    let records: Vec<Vec<u8>> = h.envelopes().iter().map(|e| e.encode()).collect();
    prlx_tests::tamper::write_log(&log_dir, &records).await;
    let url_text = format!("file://{}", log_dir.display());
    let url = LogUrl::parse(&url_text).unwrap();
    let (handle, task) = actor::spawn(open_coordinator(&url).await.money_from_chain_only(true));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let watch = ChainWatchConfig {
        deployment: chain.deployment.clone(),
        rpc_url: chain.rpc_url(),
        watch: WatchConfig {
            confirmations: 1,
            page_blocks: 100,
        },
        interval: Duration::from_millis(50),
        poster: None,
    };
    let post = PosterConfig {
        deployment: chain.deployment.clone(),
        rpc_url: chain.rpc_url(),
        signer: dev_signer(dev_role::COORDINATOR),
        log: url_text.clone(),
        interval: Duration::from_millis(50),
    };
    let watcher = tokio::spawn(chain_watch::run(handle.clone(), watch, stopped.clone()));
    let poster = tokio::spawn(chain_post::run(handle.clone(), post, stopped));

    let mut recorded = None;
    for _ in 0..200 {
        let seen = handle
            .read_state(|s| (s.usage_due.is_empty(), s.chain_seen.len()))
            .await
            .unwrap();
        if seen.0 {
            recorded = Some(seen);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(recorded.is_some(), "the income was not settled in 10 s");
    stop.send(true).unwrap();
    watcher.await.unwrap();
    poster.await.unwrap();
    drop(handle);
    task.await.unwrap().unwrap();

    // On chain: the treasury and infra got their shares of exactly the income.
    let wei = U256::from(u128::from(settled.income) * CREDIT_UNIT_WEI);
    let token = PRLX::new(
        chain.deployment.token.address,
        chain.provider(dev_role::DEPLOYER),
    );
    let d = &chain.deployment.roles;
    let treasury = token.balanceOf(d.treasury).call().await.unwrap();
    let infra = token.balanceOf(d.infra).call().await.unwrap();
    assert_eq!(
        (treasury, infra),
        (
            wei * U256::from(10) / U256::from(100),
            wei * U256::from(5) / U256::from(100)
        )
    );

    // On the log: one UsageSettled, for epoch 0, at the escrow; the auditor agrees with the
    // chain about it and about the escrow's balance.
    let events = prlx_tests::harness::client::read_log(&url_text).await;
    let settlements: Vec<UsageSettled> = events
        .iter()
        .filter_map(
            |(_, p)| match prlx_events::Envelope::decode(p).unwrap().event {
                Event::UsageSettled(u) => Some(u),
                _ => None,
            },
        )
        .collect();
    assert_eq!(settlements.len(), 1, "{settlements:?}");
    assert_eq!(settlements[0].epoch, 0);
    assert_eq!(
        settlements[0].amount_wei(),
        Some(u128::from(settled.income) * CREDIT_UNIT_WEI)
    );
    let out = std::process::Command::new(prlx_tests::harness::bins::workspace_bin("prlx-replay"))
        .args([
            "verify",
            "--json",
            "--log",
            &url_text,
            "--chain",
            &chain.rpc_url(),
        ])
        .arg("--deployment")
        .arg(&chain.deployment_file)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let chain_report = &report["chain"];
    // The watcher read the stream's terms when it started; the auditor finds them the Lockup's.
    assert_eq!(chain_report["streams_checked"], 1, "{chain_report}");
    assert_eq!(
        chain_report["usage_settlements_checked"], 1,
        "{chain_report}"
    );
    let about_usage: Vec<_> = chain_report["divergences"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["event_type"] == "UsageSettled" || d["field"] == "chain.amount_wei")
        .collect();
    assert!(about_usage.is_empty(), "{chain_report}");
}
