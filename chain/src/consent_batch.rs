//! One signature for a batch of submissions: the signer signs the EIP-712 typed data
//! `SubmissionBatch(bytes32 root, uint32 count)`, where `root` is the root of a binary tree
//! over the batch's `Submission` struct hashes (EIP-712 `hashStruct`, in the batch's order),
//! and each submission carries its index, the count and the sibling hashes on its path.
//!
//! Why: a consent is a secp256k1 recovery at the door and again in the auditor (~30–45 µs
//! each on this project's machines), the largest single cost of an audit. A publisher that
//! submits many requests at once (ParalleliX AI on the Kafka topic) signs once per batch, and
//! the door and the auditor recover each distinct batch signature once.
//!
//! The tree: level 0 is the leaves; each level pairs its nodes left to right into
//! `keccak256(left ‖ right)`, and a last node without a partner moves up unchanged. Its shape
//! is fixed by `count`, which is signed, so a path's length and the side of every sibling
//! follow from `(index, count)`: a proof one hash too long or too short is refused, and an
//! inner node cannot pose as a leaf (that would take a `Submission` whose struct hash is a
//! chosen value, a keccak preimage).

use alloy::primitives::{keccak256, B256};
use alloy::sol_types::{Eip712Domain, SolStruct};

alloy::sol! {
    /// What a signer signs to consent to a whole batch of submissions at once.
    struct SubmissionBatch {
        bytes32 root;
        uint32 count;
    }
}

/// The most submissions one batch signature may cover (a proof is at most 16 hashes).
pub const MAX_BATCH: u32 = 65_536;

/// Why a submission's place in a batch cannot be checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("count must be 1 to {MAX_BATCH}, not {0}")]
    Count(u32),
    #[error("index {index} is not below the batch's count {count}")]
    Index { index: u32, count: u32 },
    #[error("the proof must hold {expected} hashes for index {index} of {count}, not {got}")]
    ProofLength {
        index: u32,
        count: u32,
        expected: usize,
        got: usize,
    },
}

fn check(index: u32, count: u32) -> Result<(), BatchError> {
    if count == 0 || count > MAX_BATCH {
        return Err(BatchError::Count(count));
    }
    if index >= count {
        return Err(BatchError::Index { index, count });
    }
    Ok(())
}

/// How many sibling hashes the path of `index` in a batch of `count` holds (the levels where
/// the node has a partner).
pub fn proof_len(index: u32, count: u32) -> Result<usize, BatchError> {
    check(index, count)?;
    let (mut i, mut n, mut len) = (index, count, 0);
    while n > 1 {
        if i % 2 == 1 || i + 1 < n {
            len += 1;
        }
        i /= 2;
        n = n.div_ceil(2);
    }
    Ok(len)
}

/// The root that `leaf` at `index` of `count`, with `proof`, leads to.
pub fn root_of(leaf: B256, index: u32, count: u32, proof: &[B256]) -> Result<B256, BatchError> {
    let expected = proof_len(index, count)?;
    if proof.len() != expected {
        return Err(BatchError::ProofLength {
            index,
            count,
            expected,
            got: proof.len(),
        });
    }
    let (mut node, mut i, mut n) = (leaf, index, count);
    let mut siblings = proof.iter();
    while n > 1 {
        if i % 2 == 1 {
            node = pair(siblings.next().expect("length checked"), &node);
        } else if i + 1 < n {
            node = pair(&node, siblings.next().expect("length checked"));
        }
        i /= 2;
        n = n.div_ceil(2);
    }
    Ok(node)
}

fn pair(left: &B256, right: &B256) -> B256 {
    let mut both = [0u8; 64];
    both[..32].copy_from_slice(left.as_slice());
    both[32..].copy_from_slice(right.as_slice());
    keccak256(both)
}

/// The tree over `leaves`: its root and each leaf's proof, in order.
pub fn tree(leaves: &[B256]) -> Result<(B256, Vec<Vec<B256>>), BatchError> {
    let count = u32::try_from(leaves.len()).map_err(|_| BatchError::Count(u32::MAX))?;
    check(0, count)?;
    let mut proofs = vec![Vec::new(); leaves.len()];
    // Which leaves sit under each node of the current level, to hand its sibling to them.
    let mut level: Vec<(B256, std::ops::Range<usize>)> = leaves
        .iter()
        .enumerate()
        .map(|(i, leaf)| (*leaf, i..i + 1))
        .collect();
    while level.len() > 1 {
        let mut up = Vec::with_capacity(level.len().div_ceil(2));
        for two in level.chunks(2) {
            match two {
                [(l, lr), (r, rr)] => {
                    for p in &mut proofs[lr.clone()] {
                        p.push(*r);
                    }
                    for p in &mut proofs[rr.clone()] {
                        p.push(*l);
                    }
                    up.push((pair(l, r), lr.start..rr.end));
                }
                [alone] => up.push(alone.clone()),
                _ => unreachable!("chunks of two"),
            }
        }
        level = up;
    }
    Ok((level[0].0, proofs))
}

/// The EIP-712 hash a batch's signer signs under `domain`.
pub fn batch_hash(root: B256, count: u32, domain: &Eip712Domain) -> B256 {
    SubmissionBatch { root, count }.eip712_signing_hash(domain)
}

/// The batch's EIP-712 struct hash, its type's hash computed once: with the domain's
/// separator, [`crate::consent::typed_data_hash`] of it is [`batch_hash`].
pub fn batch_struct_hash(root: B256, count: u32) -> B256 {
    static TYPE_HASH: std::sync::OnceLock<B256> = std::sync::OnceLock::new();
    let type_hash =
        TYPE_HASH.get_or_init(|| keccak256(SubmissionBatch::eip712_encode_type().as_bytes()));
    let mut all = [0u8; 96];
    all[..32].copy_from_slice(type_hash.as_slice());
    all[32..64].copy_from_slice(root.as_slice());
    all[92..].copy_from_slice(&count.to_be_bytes());
    keccak256(all)
}

/// A submission's place in a batch: its index, the batch's count, the proof's siblings.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    pub index: u32,
    pub count: u32,
    pub proof: &'a [B256],
}

/// Why the hash a consent signs cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignedHashError {
    /// The submission's account is not an address.
    #[error(transparent)]
    Account(#[from] crate::consent::ConsentError),
    /// Its place in the batch does not hold.
    #[error(transparent)]
    Batch(#[from] BatchError),
}

/// The hash a consent's signer signed, under the domain whose separator is `separator`: the
/// submission's own typed data, or in a batch the `SubmissionBatch` whose root its `place`
/// gives. The door and the auditor both judge a consent by this.
pub fn signed_hash(
    fields: &crate::consent::SubmissionFields<'_>,
    place: Option<Place<'_>>,
    separator: &B256,
) -> Result<B256, SignedHashError> {
    let leaf = fields.leaf()?;
    let signed = match place {
        None => leaf,
        Some(p) => batch_struct_hash(root_of(leaf, p.index, p.count, p.proof)?, p.count),
    };
    Ok(crate::consent::typed_data_hash(separator, &signed))
}

/// Signs the batch of `leaves` (its submissions' struct hashes, in order) once with `key`:
/// the signature, and each leaf's proof.
pub fn sign_batch(
    key: &alloy::signers::local::PrivateKeySigner,
    leaves: &[B256],
    domain: &Eip712Domain,
) -> Result<(String, Vec<Vec<B256>>), BatchError> {
    let (root, proofs) = tree(leaves)?;
    let hash = batch_hash(root, leaves.len() as u32, domain);
    Ok((crate::consent::sign(key, hash), proofs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<B256> {
        (0..n).map(|i| keccak256(i.to_be_bytes())).collect()
    }

    /// Every leaf's proof leads to the root, for every batch size up to 33 and a few larger,
    /// and has the length `proof_len` gives.
    #[test]
    fn every_proof_leads_to_the_root() {
        for n in (1..=33).chain([64, 100, 1000]) {
            let leaves = leaves(n);
            let (root, proofs) = tree(&leaves).unwrap();
            for (i, (leaf, proof)) in leaves.iter().zip(&proofs).enumerate() {
                let i = i as u32;
                assert_eq!(proof.len(), proof_len(i, n as u32).unwrap(), "{i} of {n}");
                assert_eq!(root_of(*leaf, i, n as u32, proof), Ok(root), "{i} of {n}");
            }
        }
        // One leaf: its own root, no proof.
        let one = leaves(1);
        assert_eq!(tree(&one).unwrap(), (one[0], vec![vec![]]));
    }

    /// Another leaf, index or sibling leads elsewhere; a proof of the wrong length, an
    /// index past the count and a count of 0 or past the bound are refused.
    #[test]
    fn a_changed_place_or_proof_leads_elsewhere_or_is_refused() {
        let leaves = leaves(7);
        let (root, proofs) = tree(&leaves).unwrap();
        let (leaf, proof) = (leaves[2], &proofs[2]);
        assert_ne!(root_of(leaves[3], 2, 7, proof).unwrap(), root);
        assert_ne!(root_of(leaf, 3, 7, proof).unwrap(), root);
        // Index 2's path is the same in a batch of 8: the count is bound by the signed
        // hash (`batch_hash`), not by the root.
        assert_eq!(root_of(leaf, 2, 8, proof).unwrap(), root);
        // The last of 7 has another path as 6 of 8.
        assert!(root_of(leaves[6], 6, 8, &proofs[6]).is_err());
        let mut bent = proof.clone();
        bent[1] = B256::repeat_byte(1);
        assert_ne!(root_of(leaf, 2, 7, &bent).unwrap(), root);
        let mut long = proof.clone();
        long.push(B256::ZERO);
        assert!(matches!(
            root_of(leaf, 2, 7, &long),
            Err(BatchError::ProofLength {
                expected: 3,
                got: 4,
                ..
            })
        ));
        assert!(matches!(
            root_of(leaf, 2, 7, &proof[..2]),
            Err(BatchError::ProofLength { .. })
        ));
        // The last of 7 moves up alone from the leaves: two hashes where the others have three.
        assert_eq!(proof_len(6, 7), Ok(2));
        assert_eq!(
            root_of(leaf, 7, 7, proof),
            Err(BatchError::Index { index: 7, count: 7 })
        );
        assert_eq!(root_of(leaf, 0, 0, &[]), Err(BatchError::Count(0)));
        assert_eq!(
            proof_len(0, MAX_BATCH + 1),
            Err(BatchError::Count(MAX_BATCH + 1))
        );
        assert_eq!(tree(&[]), Err(BatchError::Count(0)));
    }

    /// `sign_batch`'s signature recovers, over `signed_hash` of each place, to its key; a
    /// submission alone is signed over its own typed data.
    #[test]
    fn a_batch_signature_recovers_for_every_place() {
        use crate::consent::{recover, SubmissionFields};
        let key = crate::devchain::dev_signer(crate::devchain::dev_role::CLIENT);
        let d = crate::consent::domain(31337, alloy::primitives::Address::repeat_byte(1));
        let account = crate::record::hex0x(key.address().as_slice());
        let keys: Vec<String> = (0..5).map(|i| format!("k-{i}")).collect();
        let fields: Vec<SubmissionFields> = keys
            .iter()
            .map(|k| SubmissionFields {
                account: &account,
                idempotency_key: k,
                workload_class: "ai.inference",
                model: "m",
                hardware_tier: 1,
                priority: "standard",
                deadline_seconds: 60,
                max_tokens: 8,
                payload_hash: [3; 32],
                client_pubkey: "pem",
            })
            .collect();
        let leaves: Vec<B256> = fields.iter().map(|f| f.leaf().unwrap()).collect();
        let (signature, proofs) = sign_batch(&key, &leaves, &d).unwrap();
        for (i, (f, proof)) in fields.iter().zip(&proofs).enumerate() {
            let place = Place {
                index: i as u32,
                count: 5,
                proof,
            };
            let hash = signed_hash(f, Some(place), &d.separator()).unwrap();
            assert_eq!(recover(hash, &signature), Ok(key.address()), "{i}");
        }
        assert_eq!(
            signed_hash(&fields[0], None, &d.separator()),
            Ok(fields[0].hash(&d).unwrap())
        );
        let bent = Place {
            index: 9,
            count: 5,
            proof: &proofs[0],
        };
        assert!(matches!(
            signed_hash(&fields[0], Some(bent), &d.separator()),
            Err(SignedHashError::Batch(BatchError::Index { .. }))
        ));
    }

    /// The signed hash binds the root and the count.
    #[test]
    fn the_batch_hash_binds_root_and_count() {
        let d = crate::consent::domain(31337, alloy::primitives::Address::repeat_byte(1));
        let h = batch_hash(B256::repeat_byte(1), 4, &d);
        assert_ne!(h, batch_hash(B256::repeat_byte(2), 4, &d));
        assert_ne!(h, batch_hash(B256::repeat_byte(1), 5, &d));
        assert_eq!(
            crate::consent::typed_data_hash(
                &d.separator(),
                &batch_struct_hash(B256::repeat_byte(1), 4)
            ),
            h
        );
        assert_eq!(
            SubmissionBatch::eip712_encode_type(),
            "SubmissionBatch(bytes32 root,uint32 count)"
        );
    }
}
