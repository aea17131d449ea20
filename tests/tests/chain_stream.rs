//! The bootstrap stream on chain: the terms the coordinator reads off the real Sablier Lockup
//! give, at any time, exactly what the Lockup says it has streamed; once they are on the log,
//! a bootstrap epoch earns what the stream unlocked in it (not the policy's unlock), the fold
//! refuses any other income, and the terms are recorded once.

use alloy::primitives::U256;
use alloy::providers::Provider;
use prlx_chain::bindings::ISablierLockup;
use prlx_chain::devchain::dev_role;
use prlx_chain::stream::read_stream;
use prlx_commands::decide::{decide, Command};
use prlx_commands::testkit::fixtures::{self, node, reward_policy, t};
use prlx_commands::testkit::{
    decide_at as run, fold, one_node_under_the_reward_policy, settle_due, History,
};
use prlx_events::event::*;
use prlx_projections::settlement::bootstrap_unlock;
use prlx_projections::stream::StreamTerms;
use prlx_tests::harness::chain::TestChain;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terms_read_off_the_lockup_give_what_it_has_streamed() {
    let dir = tempfile::tempdir().unwrap();
    let chain = TestChain::start(dir.path()).await;
    let observed = read_stream(&chain.provider(dev_role::DEPLOYER), &chain.deployment)
        .await
        .unwrap();
    let d = &chain.deployment;
    assert_eq!(
        observed.recipient,
        format!("{:#x}", d.contracts.rewards_distributor)
    );
    assert_eq!(
        observed.deposited_wei,
        d.reward_stream.deposit_amount.to_string()
    );
    assert!(!observed.cancelable);
    let terms = StreamTerms::of(&observed).unwrap();

    // Move the chain's clock through the stream and ask the Lockup at each block.
    let provider = chain.provider(dev_role::DEPLOYER);
    let lockup = ISablierLockup::new(d.contracts.sablier_lockup, provider.clone());
    let (start, end) = (terms.start_time, terms.end_time);
    let length = end - start;
    let mut checked = 0;
    for at in [
        start + 1,
        start + 7_777,
        start + length / 3 + 11,
        start + length / 2,
        end - 1,
        end,
        end + 86_400,
    ] {
        let _: serde_json::Value = provider
            .raw_request("evm_setNextBlockTimestamp".into(), (at,))
            .await
            .unwrap();
        chain.mine().await;
        let streamed = lockup
            .streamedAmountOf(d.reward_stream.stream_id)
            .call()
            .await
            .unwrap();
        assert_eq!(
            U256::from(terms.streamed_at(at as i64)),
            U256::from(streamed),
            "at {at} ({} s into the stream)",
            at - start
        );
        checked += 1;
    }
    assert_eq!(checked, 7);
    assert_eq!(terms.streamed_at(end as i64), terms.deposited_wei);
}

/// Terms of a stream of 3000 credits' worth over 1200 s from `t(0)`, as if read at block 9.
fn observed() -> RewardStreamObserved {
    RewardStreamObserved {
        lockup: format!("0x{}", "11".repeat(20)),
        stream_id: 1,
        recipient: format!("0x{}", "22".repeat(20)),
        deposited_wei: (3_000 * CREDIT_UNIT_WEI + 17).to_string(),
        start_time: t(0).timestamp() as u64,
        cliff_time: 0,
        end_time: t(1_200).timestamp() as u64,
        granularity: 1,
        start_unlock_wei: "0".into(),
        cliff_unlock_wei: "0".into(),
        cancelable: false,
        chain_id: 31337,
        block_number: 9,
        block_hash: format!("0x{:064x}", 9),
    }
}

/// Node 1 up through epoch 0 of [`reward_policy`], with `stream` on the log (or not).
fn bootstrap_epoch(stream: Option<RewardStreamObserved>) -> (History, RewardEpochSettled) {
    let mut h = one_node_under_the_reward_policy();
    if let Some(o) = stream {
        run(&mut h, t(-20), Command::ObserveStream(Box::new(o)));
    }
    for slot in 0..10 {
        let at = t(60 * slot + 5);
        run(&mut h, at, fixtures::heartbeat(node(1), at));
    }
    let settled = settle_due(&mut h, t(600)).pop();
    (h, settled.expect("epoch 0 settles at its end"))
}

#[test]
fn a_bootstrap_epoch_earns_what_the_stream_unlocked_in_it() {
    let (_, by_policy) = bootstrap_epoch(None);
    assert_eq!(by_policy.income, bootstrap_unlock(&reward_policy(), 0));

    let (h, by_stream) = bootstrap_epoch(Some(observed()));
    // Half the stream's 1200 s: 1500 credits' worth (the 17 wei stay below a unit).
    assert_eq!(by_stream.income, 1_500);
    assert_ne!(by_stream.income, by_policy.income);
    assert_eq!(by_stream.pool, 1_500);

    // The fold re-derives the income from the terms: the policy's figure does not fold.
    let at = h
        .envelopes()
        .iter()
        .position(|e| matches!(e.event, prlx_events::Event::RewardEpochSettled(_)))
        .unwrap();
    let mut forged = h.clone();
    forged.replace(
        at,
        RewardEpochSettled {
            income: by_policy.income,
            ..by_stream.clone()
        },
    );
    let refused = fold(&forged).expect_err("an income the stream did not unlock");
    assert!(refused.to_string().contains("income"), "{refused}");

    // Once: the same terms again decide nothing, other terms are refused, and a log with a
    // second observation does not fold.
    let state = fold(&h).unwrap();
    assert!(decide(&state, Command::ObserveStream(Box::new(observed())))
        .unwrap()
        .is_empty());
    let other = RewardStreamObserved {
        end_time: t(2_400).timestamp() as u64,
        ..observed()
    };
    assert!(decide(&state, Command::ObserveStream(Box::new(other.clone()))).is_err());
    let mut twice = h.clone();
    twice.record(t(700), [other.into()]);
    assert!(fold(&twice).is_err());

    // Terms the settlement cannot follow are refused naming the field.
    for (bad, field) in [
        (
            RewardStreamObserved {
                cancelable: true,
                ..observed()
            },
            "cancelable",
        ),
        (
            RewardStreamObserved {
                end_time: observed().start_time,
                ..observed()
            },
            "end_time",
        ),
        (
            RewardStreamObserved {
                lockup: "0xABC".into(),
                ..observed()
            },
            "lockup",
        ),
    ] {
        let (empty, _) = bootstrap_epoch(None);
        let rejection = decide(
            &fold(&empty).unwrap(),
            Command::ObserveStream(Box::new(bad)),
        )
        .expect_err("terms the settlement cannot follow");
        assert_eq!(rejection.field.as_deref(), Some(field), "{rejection}");
    }
}
