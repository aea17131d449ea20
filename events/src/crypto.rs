//! Protocol cryptography shared by the coordinator, the node and the auditor: node identities,
//! per-node session keys, dispatch sealing, proof-of-execution, and result and refusal
//! signatures.
//!
//! The scheme and its threat model are in `docs/dispatch-security.md`. In short: once per node
//! and epoch the coordinator draws a 256-bit session key, wraps it to the node's RSA key
//! (RSA-OAEP-SHA256) and signs the grant (RSA-PSS-SHA256) with its own key. A node verifies
//! that signature (a public-key operation) before it lets its private key touch the wrapped
//! key, so it never runs an RSA private-key operation on input an attacker chose. After that,
//! every dispatch and every result is AES-256-GCM under the session key, with an AAD that
//! binds request, task, node, attempt and direction: it both hides and authenticates, at
//! microseconds per message instead of milliseconds per signature.
//!
//! Randomness comes in as a parameter (`CryptoRngCore`): the shells draw it, nothing here does.

use rsa::pkcs8::{DecodePublicKey, EncodePublicKey, LineEnding};
use rsa::pss::{BlindedSigningKey, Signature, VerifyingKey};
use rsa::rand_core::CryptoRngCore;
use rsa::signature::{RandomizedSigner, SignatureEncoding, Verifier};
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};

use crate::ids::{Hash32, NodeId, TaskId};
use crate::seal::{SealError, StorageKey, NONCE_LEN};
pub use crate::statements::{
    grant_statement, heartbeat_statement, refusal_statement, registration_statement,
    result_statement, result_statement_v1, seal_statement,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("public key: {0}")]
    PublicKey(String),
    /// Too small to be safe (and too small for OAEP to wrap a 32-byte key, which would fail
    /// only later, deep in the coordinator), or larger than any party needs.
    #[error("an RSA key of {bits} bits; keys must have 2048 to 4096 bits")]
    KeySize { bits: usize },
    #[error("the session grant's signature does not verify against the coordinator's key")]
    GrantSignature,
    #[error("the session grant is for {got}, not this node ({want})")]
    GrantForAnotherNode { got: NodeId, want: NodeId },
    #[error("unwrapping the session key failed")]
    Unwrap,
    #[error("the result signature does not verify against the node's key")]
    ResultSignature,
    #[error(transparent)]
    Seal(#[from] SealError),
}

/// The SPKI DER of a public key, the bytes a [`NodeId`] is the hash of.
pub fn public_key_der(key: &RsaPublicKey) -> Vec<u8> {
    key.to_public_key_der()
        .expect("an RSA public key always encodes")
        .into_vec()
}

pub fn public_key_pem(key: &RsaPublicKey) -> String {
    key.to_public_key_pem(LineEnding::LF)
        .expect("an RSA public key always encodes")
}

/// The RSA key sizes every party's key must have: node, client and the coordinator's
/// signing key. Below 2048 bits OAEP cannot even wrap a session key; above 4096 each
/// signature check costs more than any deployment needs, and an attacker's cost would be ours.
pub const RSA_KEY_BITS: std::ops::RangeInclusive<usize> = 2048..=4096;

/// Refuses a key whose size is outside [`RSA_KEY_BITS`].
pub fn check_key_size(key: &impl PublicKeyParts) -> Result<(), CryptoError> {
    let bits = key.n().bits();
    if RSA_KEY_BITS.contains(&bits) {
        Ok(())
    } else {
        Err(CryptoError::KeySize { bits })
    }
}

/// Parses an RSA public key (SPKI PEM) of an accepted size ([`RSA_KEY_BITS`]): every key that
/// reaches the protocol comes through here, so no smaller one reaches an RSA operation.
pub fn parse_public_key_pem(pem: &str) -> Result<RsaPublicKey, CryptoError> {
    let key = RsaPublicKey::from_public_key_pem(pem)
        .map_err(|e| CryptoError::PublicKey(e.to_string()))?;
    check_key_size(&key)?;
    Ok(key)
}

/// A node is named by the SHA-256 of its public key's SPKI DER.
pub fn node_id_of(key: &RsaPublicKey) -> NodeId {
    NodeId::from_public_key_der(&public_key_der(key))
}

/// `PoE = SHA-256(task_id || result || node_id)`, with the 16-byte task id and the 32-byte
/// node id fixed width, so the concatenation is unambiguous.
pub fn proof_of_execution(task: TaskId, result: &[u8], node: NodeId) -> Hash32 {
    let mut h = Sha256::new();
    h.update(task.to_bytes());
    h.update(result);
    h.update(node.to_bytes());
    Hash32(h.finalize().into())
}

/// Signs `n` with its node's key at `unix_seconds`: sets `signed_at` and `signature`.
pub fn sign_registration(
    key: &RsaPrivateKey,
    n: &mut crate::event::NodeRegistered,
    unix_seconds: i64,
    rng: &mut impl CryptoRngCore,
) {
    let statement = registration_statement(n, unix_seconds);
    n.signed_at = Some(unix_seconds);
    n.signature = Some(crate::event::Sealed(sign(key, &statement, rng)));
}

/// Whether `n` carries a signature by the key it registers over its statement.
pub fn registration_verifies(n: &crate::event::NodeRegistered) -> bool {
    let (Some(at), Some(signature)) = (n.signed_at, &n.signature) else {
        return false;
    };
    let Ok(key) = parse_public_key_pem(&n.public_key_pem) else {
        return false;
    };
    node_id_of(&key) == n.node_id && verify(&key, &registration_statement(n, at), &signature.0)
}

pub fn sign(key: &RsaPrivateKey, message: &[u8], rng: &mut impl CryptoRngCore) -> Vec<u8> {
    BlindedSigningKey::<Sha256>::new(key.clone())
        .sign_with_rng(rng, message)
        .to_vec()
}

/// RSA-PSS with SHA-256 and a 32-byte salt, as [`sign`] makes. Keys of 2048 to 8192 bits (every
/// key the protocol accepts) are checked by AWS-LC, several times faster than the `rsa` crate
/// (the auditor checks every signature on the log); any other size by the `rsa` crate, so the
/// answer never depends on which does it (tests compare them on honest and damaged input).
pub fn verify(key: &RsaPublicKey, message: &[u8], signature: &[u8]) -> bool {
    let bits = key.n().bits();
    if (2048..=8192).contains(&bits) {
        let components = aws_lc_rs::signature::RsaPublicKeyComponents {
            n: key.n().to_bytes_be(),
            e: key.e().to_bytes_be(),
        };
        return components
            .verify(
                &aws_lc_rs::signature::RSA_PSS_2048_8192_SHA256,
                message,
                signature,
            )
            .is_ok();
    }
    verify_portable(key, message, signature)
}

/// [`verify`] by the pure-Rust `rsa` crate, for any key size.
pub fn verify_portable(key: &RsaPublicKey, message: &[u8], signature: &[u8]) -> bool {
    let Ok(sig) = Signature::try_from(signature) else {
        return false;
    };
    VerifyingKey::<Sha256>::new(key.clone())
        .verify(message, &sig)
        .is_ok()
}

/// A per-node, per-epoch AES-256 key. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct SessionKey(StorageKey, [u8; 32]);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(<redacted>)")
    }
}

impl SessionKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(StorageKey::from_bytes(bytes), bytes)
    }

    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut b = [0u8; 32];
        rng.fill_bytes(&mut b);
        Self::from_bytes(b)
    }

    /// For sealing the key itself to the coordinator's storage key (it must survive restarts).
    pub fn expose_bytes(&self) -> &[u8; 32] {
        &self.1
    }
}

/// A session key granted to a node for an epoch: wrapped so only the node can read it, and
/// signed so the node knows the coordinator made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionGrant {
    pub node_id: NodeId,
    pub epoch: u64,
    pub wrapped_key: Vec<u8>,
    pub signature: Vec<u8>,
}

/// The coordinator's side: wrap `key` to the node and sign the grant.
pub fn grant_session(
    coordinator: &RsaPrivateKey,
    node_key: &RsaPublicKey,
    epoch: u64,
    key: &SessionKey,
    rng: &mut impl CryptoRngCore,
) -> SessionGrant {
    grant_session_signed_by(node_key, epoch, key, rng, |statement, rng| {
        sign(coordinator, statement, rng)
    })
}

/// [`grant_session`] with the signature made by `sign` over the grant's statement (the
/// coordinator's shell signs with its key parsed once: `signer::Signer`).
pub fn grant_session_signed_by<R: CryptoRngCore>(
    node_key: &RsaPublicKey,
    epoch: u64,
    key: &SessionKey,
    rng: &mut R,
    sign: impl FnOnce(&[u8], &mut R) -> Vec<u8>,
) -> SessionGrant {
    let node_id = node_id_of(node_key);
    let wrapped_key = node_key
        .encrypt(rng, Oaep::new::<Sha256>(), key.expose_bytes())
        .expect("a 32-byte key fits in OAEP for keys of 2048 bits and more");
    let signature = sign(&grant_statement(node_id, epoch, &wrapped_key), rng);
    SessionGrant {
        node_id,
        epoch,
        wrapped_key,
        signature,
    }
}

/// Whether `signature` is the coordinator's over a grant of `wrapped` to `node` for `epoch`:
/// the check the node makes before unwrapping, which the auditor repeats from the log.
pub fn grant_signed_by(
    coordinator: &RsaPublicKey,
    node: NodeId,
    epoch: u64,
    wrapped: &[u8],
    signature: &[u8],
) -> bool {
    verify(
        coordinator,
        &grant_statement(node, epoch, wrapped),
        signature,
    )
}

/// The node's side: check the coordinator's signature first, and only then unwrap.
pub fn accept_session(
    coordinator: &RsaPublicKey,
    node: &RsaPrivateKey,
    grant: &SessionGrant,
) -> Result<SessionKey, CryptoError> {
    let me = node_id_of(&node.to_public_key());
    if grant.node_id != me {
        return Err(CryptoError::GrantForAnotherNode {
            got: grant.node_id,
            want: me,
        });
    }
    if !grant_signed_by(
        coordinator,
        grant.node_id,
        grant.epoch,
        &grant.wrapped_key,
        &grant.signature,
    ) {
        return Err(CryptoError::GrantSignature);
    }
    let bytes = node
        .decrypt(Oaep::new::<Sha256>(), &grant.wrapped_key)
        .map_err(|_| CryptoError::Unwrap)?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::Unwrap)?;
    Ok(SessionKey::from_bytes(bytes))
}

/// Which way a sealed message travels: part of the AAD, so a dispatch cannot pass as a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Dispatch,
    Result,
}

fn message_aad(dir: Direction, task: TaskId, node: NodeId, attempt: u32, epoch: u64) -> Vec<u8> {
    let mut aad = match dir {
        Direction::Dispatch => b"prlx/dispatch/v1\0".to_vec(),
        Direction::Result => b"prlx/result-body/v1\0".to_vec(),
    };
    aad.extend_from_slice(&task.to_bytes());
    aad.extend_from_slice(&node.to_bytes());
    aad.extend_from_slice(&attempt.to_be_bytes());
    aad.extend_from_slice(&epoch.to_be_bytes());
    aad
}

/// Seals a dispatch or a result body under the session key, bound to its task, node, attempt
/// and epoch (the task id carries the request id).
#[allow(clippy::too_many_arguments)]
pub fn seal_message(
    key: &SessionKey,
    dir: Direction,
    task: TaskId,
    node: NodeId,
    attempt: u32,
    epoch: u64,
    nonce: [u8; NONCE_LEN],
    plaintext: &[u8],
) -> Vec<u8> {
    key.0
        .seal(
            nonce,
            &message_aad(dir, task, node, attempt, epoch),
            plaintext,
        )
        .0
}

pub fn open_message(
    key: &SessionKey,
    dir: Direction,
    task: TaskId,
    node: NodeId,
    attempt: u32,
    epoch: u64,
    sealed: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let blob = crate::event::Sealed(sealed.to_vec());
    Ok(key
        .0
        .open(&message_aad(dir, task, node, attempt, epoch), &blob)?)
}

/// Hybrid sealing to an RSA public key (results returned to clients): a fresh AES-256 key,
/// RSA-OAEP-SHA256-wrapped, then AES-256-GCM. Wire form: wrapped-key length (u16 BE) ||
/// wrapped key || nonce || ciphertext+tag.
pub fn seal_to_public_key(
    key: &RsaPublicKey,
    aad: &[u8],
    plaintext: &[u8],
    rng: &mut impl CryptoRngCore,
) -> Vec<u8> {
    let mut k = [0u8; 32];
    rng.fill_bytes(&mut k);
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let wrapped = key
        .encrypt(rng, Oaep::new::<Sha256>(), &k)
        .expect("a 32-byte key fits in OAEP for keys of 2048 bits and more");
    let body = StorageKey::from_bytes(k).seal(nonce, aad, plaintext).0;
    let mut out = Vec::with_capacity(2 + wrapped.len() + body.len());
    out.extend_from_slice(&(wrapped.len() as u16).to_be_bytes());
    out.extend_from_slice(&wrapped);
    out.extend_from_slice(&body);
    out
}

/// Opens [`seal_to_public_key`]'s output (the client's side).
pub fn open_with_private_key(
    key: &RsaPrivateKey,
    aad: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let n = sealed
        .get(..2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
        .ok_or(CryptoError::Unwrap)?;
    let wrapped = sealed.get(2..2 + n).ok_or(CryptoError::Unwrap)?;
    let k = key
        .decrypt(Oaep::new::<Sha256>(), wrapped)
        .map_err(|_| CryptoError::Unwrap)?;
    let k: [u8; 32] = k.try_into().map_err(|_| CryptoError::Unwrap)?;
    let body = crate::event::Sealed(sealed[2 + n..].to_vec());
    Ok(StorageKey::from_bytes(k).open(aad, &body)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::RefusalReason;
    use crate::ids::RequestId;

    #[test]
    fn keys_outside_2048_to_4096_bits_are_refused() {
        let small = RsaPrivateKey::new(&mut OsRng, 1024).unwrap();
        assert_eq!(
            parse_public_key_pem(&public_key_pem(&small.to_public_key())),
            Err(CryptoError::KeySize { bits: 1024 })
        );
        let ok = RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
        assert!(parse_public_key_pem(&public_key_pem(&ok.to_public_key())).is_ok());
        assert!(check_key_size(&ok).is_ok());
    }
    use rsa::rand_core::OsRng;

    #[test]
    fn aws_lc_and_the_rsa_crate_agree_on_every_signature() {
        let key = key();
        let public = key.to_public_key();
        let other = RsaPrivateKey::new(&mut OsRng, 2048)
            .unwrap()
            .to_public_key();
        let message = b"prlx/test/v1 statement";
        let good = sign(&key, message, &mut OsRng);
        let mut flipped = good.clone();
        flipped[17] ^= 0x40;
        let mut longer = vec![0u8];
        longer.extend_from_slice(&good);
        let cases: [(&RsaPublicKey, &[u8], &[u8], bool); 7] = [
            (&public, message, &good, true),
            (&public, b"another statement", &good, false),
            (&other, message, &good, false),
            (&public, message, &flipped, false),
            (&public, message, &good[..good.len() - 1], false),
            (&public, message, &longer, false),
            (&public, message, &[], false),
        ];
        for (i, (key, message, signature, expected)) in cases.into_iter().enumerate() {
            assert_eq!(verify(key, message, signature), expected, "case {i}");
            assert_eq!(
                verify_portable(key, message, signature),
                expected,
                "case {i}"
            );
        }
        // A key size AWS-LC's parameters leave out still verifies, by the rsa crate.
        let small = RsaPrivateKey::new(&mut OsRng, 1024).unwrap();
        let signature = sign(&small, message, &mut OsRng);
        assert!(verify(&small.to_public_key(), message, &signature));
    }

    fn key() -> RsaPrivateKey {
        // 2048 bits keeps the test fast; production keys are 3072.
        RsaPrivateKey::new(&mut OsRng, 2048).unwrap()
    }

    #[test]
    fn a_grant_opens_only_for_its_node_and_only_if_the_coordinator_signed_it() {
        let (coord, node, other) = (key(), key(), key());
        let session = SessionKey::generate(&mut OsRng);
        let grant = grant_session(&coord, &node.to_public_key(), 7, &session, &mut OsRng);
        let got = accept_session(&coord.to_public_key(), &node, &grant).unwrap();
        assert_eq!(got.expose_bytes(), session.expose_bytes());

        // Another node cannot take it, even by relabelling it as its own.
        assert!(matches!(
            accept_session(&coord.to_public_key(), &other, &grant),
            Err(CryptoError::GrantForAnotherNode { .. })
        ));
        let mut relabelled = grant.clone();
        relabelled.node_id = node_id_of(&other.to_public_key());
        assert_eq!(
            accept_session(&coord.to_public_key(), &other, &relabelled).unwrap_err(),
            CryptoError::GrantSignature
        );

        // A grant not signed by the coordinator is refused before any private-key operation.
        let forged = grant_session(&other, &node.to_public_key(), 7, &session, &mut OsRng);
        assert_eq!(
            accept_session(&coord.to_public_key(), &node, &forged).unwrap_err(),
            CryptoError::GrantSignature
        );
        let mut bumped = grant.clone();
        bumped.epoch = 8;
        assert_eq!(
            accept_session(&coord.to_public_key(), &node, &bumped).unwrap_err(),
            CryptoError::GrantSignature
        );
    }

    #[test]
    fn messages_are_bound_to_task_node_attempt_epoch_and_direction() {
        let k = SessionKey::generate(&mut OsRng);
        let task = TaskId::whole(RequestId(3));
        let node = NodeId(Hash32([1; 32]));
        let sealed = seal_message(
            &k,
            Direction::Dispatch,
            task,
            node,
            0,
            1,
            [9; 12],
            b"prompt",
        );
        assert_eq!(
            open_message(&k, Direction::Dispatch, task, node, 0, 1, &sealed).unwrap(),
            b"prompt"
        );
        for (dir, t, n, a, e) in [
            (Direction::Result, task, node, 0, 1),
            (Direction::Dispatch, TaskId::whole(RequestId(4)), node, 0, 1),
            (Direction::Dispatch, task, NodeId(Hash32([2; 32])), 0, 1),
            (Direction::Dispatch, task, node, 1, 1),
            (Direction::Dispatch, task, node, 0, 2),
        ] {
            assert!(open_message(&k, dir, t, n, a, e, &sealed).is_err());
        }
        assert!(open_message(
            &SessionKey::generate(&mut OsRng),
            Direction::Dispatch,
            task,
            node,
            0,
            1,
            &sealed
        )
        .is_err());
        assert_eq!(format!("{k:?}"), "SessionKey(<redacted>)");
    }

    #[test]
    fn result_signatures_cannot_be_replayed_for_another_task_node_attempt_or_ciphertext() {
        let node_key = key();
        let node = node_id_of(&node_key.to_public_key());
        let task = TaskId::whole(RequestId(5));
        let poe = proof_of_execution(task, b"Paris", node);
        let sealed = Hash32::of(b"the ciphertext the node sent");
        let sig = sign(
            &node_key,
            &result_statement(RequestId(5), task, node, 0, poe, sealed),
            &mut OsRng,
        );
        let pk = node_key.to_public_key();
        assert!(verify(
            &pk,
            &result_statement(RequestId(5), task, node, 0, poe, sealed),
            &sig
        ));
        for other in [
            result_statement(
                RequestId(6),
                TaskId::whole(RequestId(6)),
                node,
                0,
                poe,
                sealed,
            ),
            result_statement(RequestId(5), task, node, 1, poe, sealed),
            result_statement(RequestId(5), task, NodeId(Hash32([0; 32])), 0, poe, sealed),
            result_statement(RequestId(5), task, node, 0, Hash32::of(b"x"), sealed),
            // The same report's signature on another ciphertext (a captured report altered).
            result_statement(RequestId(5), task, node, 0, poe, Hash32::of(b"other bytes")),
            // Nor does it pass as the statement before v2, which left the ciphertext out.
            result_statement_v1(RequestId(5), task, node, 0, poe),
        ] {
            assert!(!verify(&pk, &other, &sig));
        }
        assert!(!verify(&pk, b"garbage", b"not a signature"));
        // A v1 signature (what the auditor still reads on old records) is no v2 one.
        let v1 = result_statement_v1(RequestId(5), task, node, 0, poe);
        let v1_sig = sign(&node_key, &v1, &mut OsRng);
        assert!(verify(&pk, &v1, &v1_sig));
        assert!(!verify(
            &pk,
            &result_statement(RequestId(5), task, node, 0, poe, sealed),
            &v1_sig
        ));
    }

    #[test]
    fn refusal_and_result_signatures_never_pass_for_each_other() {
        let node_key = key();
        let pk = node_key.to_public_key();
        let node = node_id_of(&pk);
        let task = TaskId::whole(RequestId(5));
        let reason = RefusalReason::ContextExceeded {
            prompt_tokens: 12,
            max_tokens: 4095,
            context: 4096,
        };
        let refusal = refusal_statement(RequestId(5), task, node, 0, &reason);
        let sig = sign(&node_key, &refusal, &mut OsRng);
        assert!(verify(&pk, &refusal, &sig));
        // Bound to request, node, attempt and every number of the reason.
        let other_reason = RefusalReason::ContextExceeded {
            prompt_tokens: 13,
            max_tokens: 4095,
            context: 4096,
        };
        for other in [
            refusal_statement(RequestId(6), TaskId::whole(RequestId(6)), node, 0, &reason),
            refusal_statement(RequestId(5), task, NodeId(Hash32([0; 32])), 0, &reason),
            refusal_statement(RequestId(5), task, node, 1, &reason),
            refusal_statement(RequestId(5), task, node, 0, &other_reason),
        ] {
            assert!(!verify(&pk, &other, &sig));
        }
        // Distinct domains: a refusal's signature is no result's, and the other way round.
        let poe = proof_of_execution(task, b"Paris", node);
        let result = result_statement(RequestId(5), task, node, 0, poe, Hash32::of(b"sealed"));
        assert!(!verify(&pk, &result, &sig));
        let result_sig = sign(&node_key, &result, &mut OsRng);
        assert!(!verify(&pk, &refusal, &result_sig));
        assert_ne!(refusal[..16], result[..16]);
    }

    #[test]
    fn every_signed_statement_has_a_domain_tag_of_its_own() {
        let node_key = key();
        let pk = node_key.to_public_key();
        let node = node_id_of(&pk);
        let task = TaskId::whole(RequestId(5));
        let poe = proof_of_execution(task, b"Paris", node);
        let result = result_statement(RequestId(5), task, node, 0, poe, Hash32::of(b"sealed"));
        let others = [
            result_statement_v1(RequestId(5), task, node, 0, poe),
            heartbeat_statement(node, 1_700_000_000),
            refusal_statement(
                RequestId(5),
                task,
                node,
                0,
                &RefusalReason::ContextExceeded {
                    prompt_tokens: 1,
                    max_tokens: 1,
                    context: 1,
                },
            ),
            grant_statement(node, 1, b"wrapped"),
            seal_statement(Hash32::of(b"head")),
        ];
        let tag = |m: &[u8]| m[..=m.iter().position(|&b| b == 0).unwrap()].to_vec();
        let mut tags: Vec<Vec<u8>> = others.iter().map(|m| tag(m)).collect();
        tags.push(tag(&result));
        let distinct: std::collections::BTreeSet<_> = tags.iter().collect();
        assert_eq!(distinct.len(), tags.len(), "{tags:?}");
        // A signature the node made for anything else never verifies as a result's.
        for other in &others {
            let sig = sign(&node_key, other, &mut OsRng);
            assert!(!verify(&pk, &result, &sig));
        }
    }

    #[test]
    fn hybrid_sealing_opens_only_with_the_private_key_and_aad() {
        let client = key();
        let sealed = seal_to_public_key(
            &client.to_public_key(),
            b"req-1",
            b"The capital of France is Paris.",
            &mut OsRng,
        );
        assert_eq!(
            open_with_private_key(&client, b"req-1", &sealed).unwrap(),
            b"The capital of France is Paris."
        );
        assert!(open_with_private_key(&client, b"req-2", &sealed).is_err());
        assert!(open_with_private_key(&key(), b"req-1", &sealed).is_err());
        assert!(open_with_private_key(&client, b"req-1", &sealed[..10]).is_err());
    }

    #[test]
    fn poe_layout_is_task_then_result_then_node() {
        let task = TaskId {
            request: RequestId(1),
            subtask: 2,
        };
        let node = NodeId(Hash32([0xee; 32]));
        let mut bytes = task.to_bytes().to_vec();
        bytes.extend_from_slice(b"out");
        bytes.extend_from_slice(&[0xee; 32]);
        assert_eq!(proof_of_execution(task, b"out", node), Hash32::of(&bytes));
        // Moving a byte between result and node id changes the digest: fixed widths, no ambiguity.
        assert_ne!(
            proof_of_execution(task, b"ou", node),
            proof_of_execution(task, b"out", node)
        );
    }

    #[test]
    fn node_id_is_the_hash_of_the_spki_der_and_pem_round_trips() {
        let k = key().to_public_key();
        assert_eq!(node_id_of(&k), NodeId(Hash32::of(&public_key_der(&k))));
        assert_eq!(parse_public_key_pem(&public_key_pem(&k)).unwrap(), k);
        assert!(parse_public_key_pem("not a key").is_err());
    }
}
