//! The payout tree `RewardsDistributor` verifies claims against.
//!
//! One tree per epoch; one leaf per node that earned: `keccak256(keccak256(abi.encode(uint256
//! epoch, bytes32 nodeId, address recipient, uint256 amount)))`, OpenZeppelin's standard
//! double-hashed leaf. Inner nodes hash the sorted pair (what `MerkleProof` expects, so a
//! proof needs no left/right flags). The layout is `@openzeppelin/merkle-tree`'s
//! `StandardMerkleTree`: leaves sorted by hash, a complete binary tree in an array (root at 0,
//! the children of `i` at `2i+1` and `2i+2`, leaves at the end in reverse order). The same
//! tree is built by `contracts/scripts/merkle.js`, and a test checks the two agree.
//!
//! Deterministic: the root depends only on the set of payouts, not on their order.

use alloy::primitives::{keccak256, Address, B256, U256};

use crate::ChainError;

/// One node's payout of an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payout {
    /// The node's id (SHA-256 of its public key), as the staking contract names it.
    pub node_id: B256,
    /// Who receives it (the node's staker).
    pub recipient: Address,
    /// How much, minor units of PRLX.
    pub amount: U256,
}

/// The leaf of one payout.
pub fn leaf(epoch: u64, p: &Payout) -> B256 {
    let mut encoded = [0u8; 128];
    encoded[24..32].copy_from_slice(&epoch.to_be_bytes());
    encoded[32..64].copy_from_slice(p.node_id.as_slice());
    encoded[76..96].copy_from_slice(p.recipient.as_slice());
    encoded[96..128].copy_from_slice(&p.amount.to_be_bytes::<32>());
    keccak256(keccak256(encoded))
}

fn hash_pair(a: &B256, b: &B256) -> B256 {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(lo.as_slice());
    buf[32..].copy_from_slice(hi.as_slice());
    keccak256(buf)
}

/// Whether `proof` leads from `leaf` to `root`, as `MerkleProof.verify` decides.
pub fn verify(proof: &[B256], root: &B256, leaf: &B256) -> bool {
    proof.iter().fold(*leaf, |acc, p| hash_pair(&acc, p)) == *root
}

/// An epoch's payout tree.
#[derive(Debug, Clone)]
pub struct PayoutTree {
    /// The epoch the leaves are bound to.
    pub epoch: u64,
    /// The payouts, in the order given.
    pub payouts: Vec<Payout>,
    /// The sum of the amounts (what the epoch is posted with).
    pub total: U256,
    tree: Vec<B256>,
    /// `positions[i]`: where `payouts[i]`'s leaf sits in `tree`.
    positions: Vec<usize>,
}

impl PayoutTree {
    /// Builds the tree. Refused: no payouts (post nothing for an epoch nobody earned in), a
    /// node twice (each claims once per epoch), a zero amount (the contract refuses to pay
    /// one), an overflowing total.
    pub fn build(epoch: u64, payouts: Vec<Payout>) -> Result<Self, ChainError> {
        if payouts.is_empty() {
            return Err(ChainError::Tree("no payouts".into()));
        }
        let mut ids: Vec<B256> = payouts.iter().map(|p| p.node_id).collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(ChainError::Tree(format!("node {} appears twice", w[0])));
        }
        let mut total = U256::ZERO;
        for p in &payouts {
            if p.amount.is_zero() {
                return Err(ChainError::Tree(format!("node {}: amount 0", p.node_id)));
            }
            total = total
                .checked_add(p.amount)
                .ok_or_else(|| ChainError::Tree("the total overflows uint256".into()))?;
        }
        let leaves: Vec<B256> = payouts.iter().map(|p| leaf(epoch, p)).collect();
        let mut order: Vec<usize> = (0..leaves.len()).collect();
        order.sort_by(|&i, &j| leaves[i].cmp(&leaves[j]));
        let n = leaves.len();
        let mut tree = vec![B256::ZERO; 2 * n - 1];
        let mut positions = vec![0; n];
        for (k, &i) in order.iter().enumerate() {
            let at = tree.len() - 1 - k;
            tree[at] = leaves[i];
            positions[i] = at;
        }
        for i in (0..tree.len() - n).rev() {
            tree[i] = hash_pair(&tree[2 * i + 1], &tree[2 * i + 2]);
        }
        Ok(PayoutTree {
            epoch,
            payouts,
            total,
            tree,
            positions,
        })
    }

    /// The root posted to the distributor.
    pub fn root(&self) -> B256 {
        self.tree[0]
    }

    /// The proof of `payouts[index]`.
    pub fn proof(&self, index: usize) -> Vec<B256> {
        let mut proof = Vec::new();
        let mut i = self.positions[index];
        while i > 0 {
            proof.push(self.tree[if i % 2 == 1 { i + 1 } else { i - 1 }]);
            i = (i - 1) / 2;
        }
        proof
    }

    /// The index of `node_id`'s payout, if it has one.
    pub fn position_of(&self, node_id: &B256) -> Option<usize> {
        self.payouts.iter().position(|p| &p.node_id == node_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn payouts(n: u8) -> Vec<Payout> {
        (1..=n)
            .map(|i| Payout {
                node_id: B256::repeat_byte(i),
                recipient: Address::repeat_byte(0xa0 ^ i),
                amount: U256::from(1000u64 * u64::from(i)),
            })
            .collect()
    }

    #[test]
    fn every_proof_verifies_and_the_root_ignores_order() {
        for n in 1..=9u8 {
            let t = PayoutTree::build(7, payouts(n)).unwrap();
            for i in 0..usize::from(n) {
                assert!(
                    verify(&t.proof(i), &t.root(), &leaf(7, &t.payouts[i])),
                    "n={n} i={i}"
                );
            }
            let mut rev = payouts(n);
            rev.reverse();
            assert_eq!(PayoutTree::build(7, rev).unwrap().root(), t.root());
            assert_eq!(
                t.total,
                U256::from(500u64 * u64::from(n) * (u64::from(n) + 1))
            );
        }
        let one = PayoutTree::build(1, payouts(1)).unwrap();
        assert!(one.proof(0).is_empty());
        assert_eq!(one.root(), leaf(1, &one.payouts[0]));
    }

    #[test]
    fn a_changed_amount_epoch_or_recipient_does_not_verify() {
        let t = PayoutTree::build(3, payouts(5)).unwrap();
        let p = t.payouts[2];
        let proof = t.proof(2);
        assert!(verify(&proof, &t.root(), &leaf(3, &p)));
        assert!(!verify(&proof, &t.root(), &leaf(4, &p)));
        assert!(!verify(
            &proof,
            &t.root(),
            &leaf(
                3,
                &Payout {
                    amount: p.amount + U256::from(1),
                    ..p
                }
            )
        ));
        assert!(!verify(
            &proof,
            &t.root(),
            &leaf(
                3,
                &Payout {
                    recipient: Address::ZERO,
                    ..p
                }
            )
        ));
    }

    #[test]
    fn refuses_empty_duplicate_and_zero() {
        assert!(PayoutTree::build(1, vec![]).is_err());
        let mut dup = payouts(3);
        dup[2].node_id = dup[0].node_id;
        assert!(PayoutTree::build(1, dup)
            .unwrap_err()
            .to_string()
            .contains("twice"));
        let mut zero = payouts(2);
        zero[1].amount = U256::ZERO;
        assert!(PayoutTree::build(1, zero).is_err());
    }
}
