//! The money paths on a real chain: the Sablier bootstrap stream unlocks linearly into the
//! distributor, a posted payout root pays each claim once with a valid proof, escrowed usage
//! splits 85/10/5 to the fixed payees.

mod common;

use alloy::primitives::{Address, B256, U256};
use common::{prlx, revert_of, World};
use prlx_chain::bindings::{
    CreditEscrow::{self, CreditEscrowErrors},
    ISablierLockup,
    RewardsDistributor::{self, RewardsDistributorErrors},
};
use prlx_chain::deploy::confirm;
use prlx_chain::devchain::dev_role;
use prlx_chain::merkle::{Payout, PayoutTree};

fn distributor_revert<T>(r: Result<T, alloy::contract::Error>) -> String {
    revert_of::<RewardsDistributorErrors, T>(r)
}

fn escrow_revert<T>(r: Result<T, alloy::contract::Error>) -> String {
    revert_of::<CreditEscrowErrors, T>(r)
}

/// The revert of claiming `claim` in `epoch` with `proof` ("" if it would pay).
async fn claim_revert(
    d: &RewardsDistributor::RewardsDistributorInstance<alloy::providers::DynProvider>,
    epoch: u64,
    claim: Payout,
    proof: Vec<B256>,
) -> String {
    let call = d.claim(
        U256::from(epoch),
        claim.node_id,
        claim.recipient,
        claim.amount,
        proof,
    );
    distributor_revert(call.call().await)
}

/// Five operators' payouts, paid to their own accounts.
fn payouts(w: &World) -> Vec<Payout> {
    (0..5)
        .map(|i| Payout {
            node_id: B256::repeat_byte(0x10 + i as u8),
            recipient: w.addr(dev_role::FIRST_OPERATOR + i),
            amount: prlx(100 * (i as u64 + 1)),
        })
        .collect()
}

/// Withdraws what the stream has unlocked to the distributor (anyone may: the tokens can
/// only go to the stream's recipient).
async fn pull_stream(w: &World) -> U256 {
    let lockup = ISablierLockup::new(
        w.d.contracts.sablier_lockup,
        w.as_account(dev_role::COORDINATOR),
    );
    let id = w.d.reward_stream.stream_id;
    let fee = lockup.calculateMinFeeWei(id).call().await.unwrap();
    let before = w.balance(w.d.contracts.rewards_distributor).await;
    confirm(
        lockup
            .withdrawMax(id, w.d.contracts.rewards_distributor)
            .value(fee)
            .send()
            .await,
        "withdrawMax",
    )
    .await
    .unwrap();
    w.balance(w.d.contracts.rewards_distributor).await - before
}

#[tokio::test]
async fn the_bootstrap_stream_unlocks_linearly_to_the_distributor() {
    let w = World::new().await;
    let lockup = ISablierLockup::new(w.d.contracts.sablier_lockup, w.as_account(0));
    let id = w.d.reward_stream.stream_id;
    let deposit = w.d.reward_stream.deposit_amount;
    assert_eq!(
        deposit,
        w.d.token.total_supply / U256::from(4),
        "the 25 % bucket"
    );
    assert_eq!(
        lockup.getRecipient(id).call().await.unwrap(),
        w.d.contracts.rewards_distributor
    );
    assert_eq!(
        U256::from(lockup.getDepositedAmount(id).call().await.unwrap()),
        deposit
    );
    let start = lockup.getStartTime(id).call().await.unwrap().to::<u64>();
    let end = lockup.getEndTime(id).call().await.unwrap().to::<u64>();
    assert_eq!(end - start, w.d.reward_stream.duration_seconds);

    w.advance(w.d.reward_stream.duration_seconds / 2).await;
    let now = w.now().await;
    let expected = deposit * U256::from(now - start) / U256::from(end - start);
    let unlocked = U256::from(lockup.withdrawableAmountOf(id).call().await.unwrap());
    assert_eq!(unlocked, expected, "linear: deposit x elapsed / duration");
    let half = deposit / U256::from(2);
    assert!(unlocked >= half && unlocked - half < deposit / U256::from(1_000_000));

    // Pulled by the coordinator's account, paid to the distributor.
    let pulled = pull_stream(&w).await;
    assert!(pulled >= unlocked, "{pulled} < {unlocked}");
    assert_eq!(w.balance(w.addr(dev_role::COORDINATOR)).await, U256::ZERO);
}

#[tokio::test]
async fn a_claim_pays_once_with_a_valid_proof_and_never_with_a_wrong_one() {
    let w = World::new().await;
    w.advance(86_400 * 30).await;
    pull_stream(&w).await;
    let tree = PayoutTree::build(1, payouts(&w)).unwrap();
    let coordinator = RewardsDistributor::new(
        w.d.contracts.rewards_distributor,
        w.as_account(dev_role::COORDINATOR),
    );
    let head = B256::repeat_byte(0xee);

    // Only the coordinator posts.
    let stranger = RewardsDistributor::new(
        w.d.contracts.rewards_distributor,
        w.as_account(dev_role::CLIENT),
    );
    let r = distributor_revert(
        stranger
            .postEpoch(U256::from(1), tree.root(), head, tree.total)
            .call()
            .await,
    );
    assert!(r.contains("NotPoster"), "{r}");
    let receipt = confirm(
        coordinator
            .postEpoch(U256::from(1), tree.root(), head, tree.total)
            .send()
            .await,
        "post",
    )
    .await
    .unwrap();
    assert!(receipt.gas_used > 0);
    let posted = coordinator.epochOf(U256::from(1)).call().await.unwrap();
    assert_eq!(
        (posted.root, posted.logHead, posted.total),
        (tree.root(), head, tree.total)
    );
    let r = distributor_revert(
        coordinator
            .postEpoch(U256::from(1), tree.root(), head, tree.total)
            .call()
            .await,
    );
    assert!(r.contains("EpochNotIncreasing"), "{r}");

    // Operator 2 claims with its proof, sent by anyone (here the client pays the gas).
    let i = 2;
    let p = tree.payouts[i];
    let proof = tree.proof(i);
    let bad = [
        (
            1,
            Payout {
                amount: p.amount + U256::from(1),
                ..p
            },
            proof.clone(),
            "InvalidProof",
        ),
        (
            1,
            Payout {
                recipient: Address::repeat_byte(9),
                ..p
            },
            proof.clone(),
            "InvalidProof",
        ),
        (1, p, tree.proof(0), "InvalidProof"),
        (2, p, proof.clone(), "UnknownEpoch"),
    ];
    for (epoch, claim, proof, want) in bad {
        let r = claim_revert(&stranger, epoch, claim, proof).await;
        assert!(r.contains(want), "{claim:?} in epoch {epoch}: {r}");
    }
    assert_eq!(w.balance(p.recipient).await, U256::ZERO);
    confirm(
        stranger
            .claim(
                U256::from(1),
                p.node_id,
                p.recipient,
                p.amount,
                proof.clone(),
            )
            .send()
            .await,
        "claim",
    )
    .await
    .unwrap();
    assert_eq!(w.balance(p.recipient).await, p.amount);
    let twice = claim_revert(&stranger, 1, p, proof).await;
    assert!(twice.contains("AlreadyClaimed"), "{twice}");
    assert!(coordinator
        .claimed(U256::from(1), p.node_id)
        .call()
        .await
        .unwrap());
    assert_eq!(
        coordinator.outstanding().call().await.unwrap(),
        tree.total - p.amount
    );
}

#[tokio::test]
async fn posting_more_than_the_distributor_holds_is_refused() {
    let w = World::new().await;
    let tree = PayoutTree::build(0, payouts(&w)).unwrap();
    let coordinator = RewardsDistributor::new(
        w.d.contracts.rewards_distributor,
        w.as_account(dev_role::COORDINATOR),
    );
    let r = distributor_revert(
        coordinator
            .postEpoch(U256::ZERO, tree.root(), B256::ZERO, tree.total)
            .call()
            .await,
    );
    assert!(r.contains("Underfunded"), "{r}");
}

#[tokio::test]
async fn deposits_are_events_and_usage_splits_85_10_5_to_the_fixed_payees() {
    let w = World::new().await;
    let client = dev_role::CLIENT;
    w.fund(client, prlx(1_000)).await;
    w.approve(client, w.d.contracts.credit_escrow, prlx(1_000))
        .await;
    let escrow = CreditEscrow::new(w.d.contracts.credit_escrow, w.as_account(client));
    let receipt = confirm(
        escrow.deposit(w.addr(client), prlx(1_000)).send().await,
        "deposit",
    )
    .await
    .unwrap();
    let deposited: Vec<_> = receipt
        .inner
        .logs()
        .iter()
        .filter_map(|l| l.log_decode::<CreditEscrow::Deposited>().ok())
        .collect();
    assert_eq!(deposited.len(), 1);
    assert_eq!(deposited[0].inner.data.account, w.addr(client));
    assert_eq!(deposited[0].inner.data.amount, prlx(1_000));

    let r = escrow_revert(escrow.settleUsage(U256::from(1), prlx(100)).call().await);
    assert!(r.contains("NotSettler"), "{r}");
    let settler = CreditEscrow::new(
        w.d.contracts.credit_escrow,
        w.as_account(dev_role::COORDINATOR),
    );
    let amount = prlx(100) + U256::from(19); // rounding goes to operators
    confirm(
        settler.settleUsage(U256::from(1), amount).send().await,
        "settle",
    )
    .await
    .unwrap();
    let treasury = w.balance(w.addr(dev_role::TREASURY)).await;
    let infra = w.balance(w.addr(dev_role::INFRA)).await;
    let operators = w.balance(w.d.contracts.rewards_distributor).await;
    assert_eq!(treasury, amount * U256::from(10) / U256::from(100));
    assert_eq!(infra, amount * U256::from(5) / U256::from(100));
    assert_eq!(operators + treasury + infra, amount);
    let r = escrow_revert(settler.settleUsage(U256::from(1), amount).call().await);
    assert!(r.contains("EpochAlreadySettled"), "{r}");
}
