//! Spending consent: a submission is charged to an account only with a signature by the
//! account's key, or by a key the account delegated a spending limit to, over EIP-712 typed
//! data bound to the deployment (chain id and the CreditEscrow as verifying contract). The
//! coordinator verifies at intake and records the signer and the signature; the auditor
//! verifies again from the record.
//!
//! The typed data holds every field that decides what is run and charged (account,
//! idempotency key, workload, model, tier, priority, deadline, tokens, the prompt's SHA-256 and
//! the SHA-256 of the key the result is sealed to): a signature cannot be moved to another
//! request, and replaying one names the same idempotency key, which the coordinator answers
//! with the request it already created.

use alloy::primitives::{keccak256, Address, Signature, B256};
use alloy::signers::local::PrivateKeySigner;
use alloy::signers::SignerSync;
use alloy::sol_types::{eip712_domain, Eip712Domain, SolStruct};

alloy::sol! {
    /// What a client signs to have a request charged to its account.
    struct Submission {
        address account;
        string idempotencyKey;
        string workloadClass;
        string model;
        uint8 hardwareTier;
        string priority;
        uint32 deadlineSeconds;
        uint32 maxTokens;
        bytes32 payloadHash;
        bytes32 clientKeyHash;
    }

    /// What an account signs to let `delegate` spend up to `spendingLimit` credits of it,
    /// until `expiresAt` (Unix seconds).
    struct Delegation {
        address account;
        address delegate;
        uint64 spendingLimit;
        uint64 expiresAt;
    }

    /// What an account signs to withdraw its delegation whose EIP-712 hash is `delegation`
    /// before it expires: no submission signed under it is accepted after.
    struct DelegationRevocation {
        address account;
        bytes32 delegation;
    }

    /// What the account (or a delegate of it) signs to read the account's balance and
    /// requests until `expiresAt` (Unix seconds): a bearer token, see [`crate::read_access`].
    struct ReadAccess {
        address account;
        uint64 expiresAt;
    }
}

/// Why a consent does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsentError {
    #[error("{0:?} is not a 0x address (20 bytes of hex)")]
    Address(String),
    #[error("the signature must be 65 bytes of 0x-hex (r, s, v)")]
    Encoding,
    #[error("the signature does not recover to a key")]
    Unrecoverable,
}

/// The domain every consent of one deployment is signed under.
pub fn domain(chain_id: u64, escrow: Address) -> Eip712Domain {
    eip712_domain! {
        name: "ParalleliX coordinator",
        version: "1",
        chain_id: chain_id,
        verifying_contract: escrow,
    }
}

/// Parses a 0x address (any case).
pub fn address(text: &str) -> Result<Address, ConsentError> {
    text.parse()
        .map_err(|_| ConsentError::Address(text.to_owned()))
}

/// EIP-712's hash to sign: `keccak256(0x19 0x01 ‖ domain separator ‖ struct hash)`, from a
/// separator computed once (`Eip712Domain::separator` hashes the domain's fields on every
/// call).
pub fn typed_data_hash(separator: &B256, struct_hash: &B256) -> B256 {
    let mut all = [0u8; 66];
    all[..2].copy_from_slice(&[0x19, 0x01]);
    all[2..34].copy_from_slice(separator.as_slice());
    all[34..].copy_from_slice(struct_hash.as_slice());
    keccak256(all)
}

/// The EIP-712 hash a submission's signer signs.
pub fn submission_hash(s: &Submission, domain: &Eip712Domain) -> B256 {
    s.eip712_signing_hash(domain)
}

/// The EIP-712 hash an account signs to delegate.
pub fn delegation_hash(d: &Delegation, domain: &Eip712Domain) -> B256 {
    d.eip712_signing_hash(domain)
}

/// The EIP-712 hash a reader signs.
pub fn read_access_hash(r: &ReadAccess, domain: &Eip712Domain) -> B256 {
    r.eip712_signing_hash(domain)
}

/// The address whose key made `signature` (65 bytes, 0x-hex) over `hash`.
///
/// Parsed as alloy parses it (r, s and the parity from v: 27/28 or 0/1), recovered by
/// libsecp256k1: every submission's consent is recovered at the door and again by the
/// auditor, where k256's recovery was the largest single cost.
pub fn recover(hash: B256, signature: &str) -> Result<Address, ConsentError> {
    let hex = signature.strip_prefix("0x").ok_or(ConsentError::Encoding)?;
    let bytes = hex::decode(hex).map_err(|_| ConsentError::Encoding)?;
    let sig = Signature::try_from(bytes.as_slice()).map_err(|_| ConsentError::Encoding)?;
    let id = secp256k1::ecdsa::RecoveryId::try_from(i32::from(sig.v()))
        .map_err(|_| ConsentError::Unrecoverable)?;
    let mut compact = [0u8; 64];
    compact[..32].copy_from_slice(&sig.r().to_be_bytes::<32>());
    compact[32..].copy_from_slice(&sig.s().to_be_bytes::<32>());
    let recoverable = secp256k1::ecdsa::RecoverableSignature::from_compact(&compact, id)
        .map_err(|_| ConsentError::Unrecoverable)?;
    let key = secp()
        .recover_ecdsa(secp256k1::Message::from_digest(hash.0), &recoverable)
        .map_err(|_| ConsentError::Unrecoverable)?;
    Ok(Address::from_raw_public_key(
        &key.serialize_uncompressed()[1..],
    ))
}

/// A verification context, made once (it costs more than a recovery).
fn secp() -> &'static secp256k1::Secp256k1<secp256k1::VerifyOnly> {
    static SECP: std::sync::OnceLock<secp256k1::Secp256k1<secp256k1::VerifyOnly>> =
        std::sync::OnceLock::new();
    SECP.get_or_init(secp256k1::Secp256k1::verification_only)
}

/// The name a priority is signed under: the same as the intake's JSON.
pub fn priority_name(p: prlx_events::event::Priority) -> &'static str {
    use prlx_events::event::Priority;
    match p {
        Priority::Low => "low",
        Priority::Standard => "standard",
        Priority::High => "high",
    }
}

/// The fields of a submission its signature covers, as the coordinator's log records them
/// (the priority by its name: `low`, `standard`, `high`).
#[derive(Debug, Clone)]
pub struct SubmissionFields<'a> {
    pub account: &'a str,
    pub idempotency_key: &'a str,
    pub workload_class: &'a str,
    pub model: &'a str,
    pub hardware_tier: u8,
    pub priority: &'a str,
    pub deadline_seconds: u32,
    pub max_tokens: u32,
    /// SHA-256 of the prompt.
    pub payload_hash: [u8; 32],
    /// The client's RSA public key (PEM) the result is sealed to; its SHA-256 is signed.
    pub client_pubkey: &'a str,
}

impl SubmissionFields<'_> {
    /// The typed data; `Err` when the account is not an address.
    pub fn typed(&self) -> Result<Submission, ConsentError> {
        Ok(Submission {
            account: address(self.account)?,
            idempotencyKey: self.idempotency_key.to_owned(),
            workloadClass: self.workload_class.to_owned(),
            model: self.model.to_owned(),
            hardwareTier: self.hardware_tier,
            priority: self.priority.to_owned(),
            deadlineSeconds: self.deadline_seconds,
            maxTokens: self.max_tokens,
            payloadHash: B256::from(self.payload_hash),
            clientKeyHash: B256::from(prlx_events::Hash32::of(self.client_pubkey.as_bytes()).0),
        })
    }

    /// The hash to sign under `domain`.
    pub fn hash(&self, domain: &Eip712Domain) -> Result<B256, ConsentError> {
        Ok(submission_hash(&self.typed()?, domain))
    }

    /// The typed data's EIP-712 struct hash: this submission's leaf in a batch's tree
    /// ([`crate::consent_batch`]), and what [`typed_data_hash`] signs under a domain. The
    /// type's hash is computed once per process (alloy's `eip712_hash_struct` hashes the
    /// type's text on every call: a keccak per consent the auditor need not make).
    pub fn leaf(&self) -> Result<B256, ConsentError> {
        static TYPE_HASH: std::sync::OnceLock<B256> = std::sync::OnceLock::new();
        let type_hash =
            TYPE_HASH.get_or_init(|| keccak256(Submission::eip712_encode_type().as_bytes()));
        let data = self.typed()?.eip712_encode_data();
        let mut both = Vec::with_capacity(32 + data.len());
        both.extend_from_slice(type_hash.as_slice());
        both.extend_from_slice(&data);
        Ok(keccak256(both))
    }

    /// Who made `signature` over these fields under `domain`.
    pub fn signer(&self, domain: &Eip712Domain, signature: &str) -> Result<Address, ConsentError> {
        recover(self.hash(domain)?, signature)
    }
}

/// The terms of a delegation, as a submission carries them and the log records them: the
/// account is the one the submission charges.
#[derive(Debug, Clone, Copy)]
pub struct DelegationFields<'a> {
    pub account: &'a str,
    pub delegate: &'a str,
    pub spending_limit: u64,
    pub expires_at: u64,
}

impl DelegationFields<'_> {
    /// The typed data; `Err` naming the account or the delegate when one is not an address.
    pub fn typed(&self) -> Result<Delegation, ConsentError> {
        Ok(Delegation {
            account: address(self.account)?,
            delegate: address(self.delegate)?,
            spendingLimit: self.spending_limit,
            expiresAt: self.expires_at,
        })
    }

    /// The hash the account signs under `domain`; also the delegation's name in the
    /// coordinator's running total of what was spent under it.
    pub fn hash(&self, domain: &Eip712Domain) -> Result<B256, ConsentError> {
        Ok(delegation_hash(&self.typed()?, domain))
    }
}

/// The hash an account signs to revoke its delegation `delegation` (the delegation's
/// EIP-712 hash) under `domain`; `Err` when the account is not an address.
pub fn revocation_hash(
    account: &str,
    delegation: [u8; 32],
    domain: &Eip712Domain,
) -> Result<B256, ConsentError> {
    Ok(DelegationRevocation {
        account: address(account)?,
        delegation: B256::from(delegation),
    }
    .eip712_signing_hash(domain))
}

/// Signs `hash` with `key`: 65 bytes, 0x-hex (lowercase).
pub fn sign(key: &PrivateKeySigner, hash: B256) -> String {
    let sig = key
        .sign_hash_sync(&hash)
        .expect("a local key signs any 32-byte hash");
    format!("0x{}", hex::encode(sig.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devchain::{dev_role, dev_signer};

    fn example(account: Address) -> Submission {
        Submission {
            account,
            idempotencyKey: "k-1".into(),
            workloadClass: "ai.inference".into(),
            model: "oss-chat-v1".into(),
            hardwareTier: 1,
            priority: "standard".into(),
            deadlineSeconds: 60,
            maxTokens: 16,
            payloadHash: B256::repeat_byte(7),
            clientKeyHash: B256::repeat_byte(9),
        }
    }

    #[test]
    fn a_signature_recovers_its_signer_and_only_for_what_was_signed() {
        let key = dev_signer(dev_role::CLIENT);
        let d = domain(31337, Address::repeat_byte(1));
        let s = example(key.address());
        let sig = sign(&key, submission_hash(&s, &d));
        assert_eq!(recover(submission_hash(&s, &d), &sig), Ok(key.address()));
        // Another field, another deployment: another hash, another (useless) signer.
        let more = Submission {
            maxTokens: 17,
            ..example(key.address())
        };
        assert_ne!(recover(submission_hash(&more, &d), &sig), Ok(key.address()));
        let other = domain(1, Address::repeat_byte(1));
        assert_ne!(
            recover(submission_hash(&s, &other), &sig),
            Ok(key.address())
        );
        assert_eq!(
            recover(submission_hash(&s, &d), "0x12"),
            Err(ConsentError::Encoding)
        );
    }

    /// The leaf and the hash built from a separator computed once are alloy's own.
    #[test]
    fn the_cached_type_and_domain_hashes_give_alloys_hashes() {
        let d = domain(31337, Address::repeat_byte(1));
        let account = format!("0x{}", "ab".repeat(20));
        let fields = SubmissionFields {
            account: &account,
            idempotency_key: "k-1",
            workload_class: "ai.inference",
            model: "oss-chat-v1",
            hardware_tier: 2,
            priority: "high",
            deadline_seconds: 60,
            max_tokens: 16,
            payload_hash: [7; 32],
            client_pubkey: "-----BEGIN PUBLIC KEY-----",
        };
        let typed = fields.typed().unwrap();
        assert_eq!(fields.leaf().unwrap(), typed.eip712_hash_struct());
        assert_eq!(
            typed_data_hash(&d.separator(), &fields.leaf().unwrap()),
            fields.hash(&d).unwrap()
        );
    }

    /// libsecp256k1's recovery gives what k256's (alloy's) gives, for honest signatures, their
    /// high-S twins (s -> n - s, the parity flipped) and damaged ones: switching the library
    /// changes no verdict the door or the auditor reaches.
    #[test]
    fn recovery_agrees_with_k256_on_honest_malleated_and_damaged_signatures() {
        use alloy::primitives::U256;
        let n = U256::from_str_radix(
            "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
            16,
        )
        .unwrap();
        let k256 = |hash: B256, sig: &Signature| {
            sig.recover_address_from_prehash(&hash)
                .map_err(|_| ConsentError::Unrecoverable)
        };
        let hex65 = |sig: &Signature| format!("0x{}", hex::encode(sig.as_bytes()));
        for i in 0..64u8 {
            let key = PrivateKeySigner::random();
            let hash = alloy::primitives::keccak256([i]);
            let honest = key.sign_hash_sync(&hash).unwrap();
            let twin = Signature::new(honest.r(), n - honest.s(), !honest.v());
            let damaged = Signature::new(honest.r(), honest.s() ^ U256::from(1u8), honest.v());
            for sig in [honest, twin, damaged] {
                assert_eq!(
                    recover(hash, &hex65(&sig)),
                    k256(hash, &sig),
                    "{i}: {sig:?}"
                );
            }
            assert_eq!(recover(hash, &hex65(&honest)), Ok(key.address()));
        }
    }
}
