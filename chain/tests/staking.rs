//! NodeStaking on a real chain: stake is bonded only by its staker, an unstake returns exactly
//! the principal after the cooldown, and no function moves principal anywhere but back to the
//! staker.

mod common;

use alloy::json_abi::{JsonAbi, StateMutability};
use alloy::primitives::{B256, U256};
use common::{prlx, revert_of, World, COOLDOWN};
use prlx_chain::bindings::NodeStaking::{self, NodeStakingErrors};
use prlx_chain::deploy::confirm;
use prlx_chain::devchain::dev_role;

const OPERATOR: usize = dev_role::FIRST_OPERATOR;
const ATTACKER: usize = dev_role::FIRST_OPERATOR + 1;

fn node_id(b: u8) -> B256 {
    B256::repeat_byte(b)
}

fn revert<T>(r: Result<T, alloy::contract::Error>) -> String {
    revert_of::<NodeStakingErrors, T>(r)
}

async fn staked(
    w: &World,
    amount: U256,
) -> NodeStaking::NodeStakingInstance<alloy::providers::DynProvider> {
    w.fund(OPERATOR, amount).await;
    w.approve(OPERATOR, w.d.contracts.node_staking, amount)
        .await;
    let staking = NodeStaking::new(w.d.contracts.node_staking, w.as_account(OPERATOR));
    confirm(staking.stake(node_id(1), amount).send().await, "stake")
        .await
        .unwrap();
    staking
}

#[tokio::test]
async fn an_unstake_returns_exactly_the_principal_and_only_after_the_cooldown() {
    let w = World::new().await;
    let amount = prlx(1_000) + U256::from(7);
    let staking = staked(&w, amount).await;
    let operator = w.addr(OPERATOR);
    assert_eq!(staking.bonded(node_id(1)).call().await.unwrap(), amount);
    assert_eq!(staking.stakerOf(node_id(1)).call().await.unwrap(), operator);
    assert_eq!(w.balance(operator).await, U256::ZERO);

    confirm(
        staking.requestUnstake(node_id(1), amount).send().await,
        "unstake",
    )
    .await
    .unwrap();
    assert_eq!(staking.bonded(node_id(1)).call().await.unwrap(), U256::ZERO);
    let early = revert(staking.withdraw(node_id(1)).call().await);
    assert!(early.contains("StillLocked"), "{early}");

    w.advance(COOLDOWN).await;
    confirm(staking.withdraw(node_id(1)).send().await, "withdraw")
        .await
        .unwrap();
    assert_eq!(
        w.balance(operator).await,
        amount,
        "the principal, to the minor unit"
    );
    assert_eq!(w.balance(w.d.contracts.node_staking).await, U256::ZERO);
    let again = revert(staking.withdraw(node_id(1)).call().await);
    assert!(again.contains("NothingPending"), "{again}");
}

#[tokio::test]
async fn only_the_first_staker_may_add_unstake_or_withdraw() {
    let w = World::new().await;
    let staking = staked(&w, prlx(10)).await;
    w.fund(ATTACKER, prlx(10)).await;
    w.approve(ATTACKER, w.d.contracts.node_staking, prlx(10))
        .await;
    let theirs = NodeStaking::new(w.d.contracts.node_staking, w.as_account(ATTACKER));
    for r in [
        revert(theirs.stake(node_id(1), prlx(1)).call().await),
        revert(theirs.requestUnstake(node_id(1), prlx(1)).call().await),
        revert(theirs.withdraw(node_id(1)).call().await),
    ] {
        assert!(r.contains("NotStaker"), "{r}");
    }
    // The attacker may stake for a node id of its own, which changes nothing of the first.
    confirm(theirs.stake(node_id(2), prlx(1)).send().await, "own stake")
        .await
        .unwrap();
    assert_eq!(staking.bonded(node_id(1)).call().await.unwrap(), prlx(10));
    assert!(revert(staking.stake(node_id(1), U256::ZERO).call().await).contains("ZeroAmount"));
    assert!(revert(staking.stake(B256::ZERO, prlx(1)).call().await).contains("ZeroNodeId"));
    let over = revert(staking.requestUnstake(node_id(1), prlx(11)).call().await);
    assert!(over.contains("InsufficientBond"), "{over}");
}

/// Every state-changing function of the ABI, called by someone who is not the staker, with
/// the staker's node id: each reverts and the principal stays. A function added to the
/// contract fails this test until it is walked here too.
#[tokio::test]
async fn no_function_moves_principal_anywhere_but_back_to_its_staker() {
    let w = World::new().await;
    let staking = staked(&w, prlx(50)).await;
    confirm(
        staking.requestUnstake(node_id(1), prlx(20)).send().await,
        "unstake",
    )
    .await
    .unwrap();
    w.advance(COOLDOWN).await;

    let abi: JsonAbi = serde_json::from_str::<serde_json::Value>(include_str!(
        "../../contracts/out/NodeStaking.json"
    ))
    .map(|v| serde_json::from_value(v["abi"].clone()).unwrap())
    .unwrap();
    let mut mutating: Vec<&str> = abi
        .functions()
        .filter(|f| {
            !matches!(
                f.state_mutability,
                StateMutability::View | StateMutability::Pure
            )
        })
        .map(|f| f.name.as_str())
        .collect();
    mutating.sort_unstable();
    assert_eq!(
        mutating,
        ["requestUnstake", "stake", "withdraw"],
        "walk every new function below"
    );

    let theirs = NodeStaking::new(w.d.contracts.node_staking, w.as_account(ATTACKER));
    w.fund(ATTACKER, prlx(5)).await;
    w.approve(ATTACKER, w.d.contracts.node_staking, prlx(5))
        .await;
    for amount in [U256::from(1), prlx(20), prlx(30), U256::MAX] {
        assert!(revert(theirs.stake(node_id(1), amount).call().await).contains("NotStaker"));
        assert!(
            revert(theirs.requestUnstake(node_id(1), amount).call().await).contains("NotStaker")
        );
    }
    assert!(revert(theirs.withdraw(node_id(1)).call().await).contains("NotStaker"));

    // The staker's own withdrawal pays the staker, and only the pending amount.
    let before = w.balance(w.addr(OPERATOR)).await;
    confirm(staking.withdraw(node_id(1)).send().await, "withdraw")
        .await
        .unwrap();
    assert_eq!(w.balance(w.addr(OPERATOR)).await - before, prlx(20));
    assert_eq!(staking.bonded(node_id(1)).call().await.unwrap(), prlx(30));
    assert_eq!(w.balance(w.d.contracts.node_staking).await, prlx(30));
    assert_eq!(
        w.balance(w.addr(ATTACKER)).await,
        prlx(5),
        "the attacker got nothing"
    );
}
