//! RSA-PSS-SHA256 verification for an auditor that checks many signatures under a few keys.
//!
//! Why not the `rsa` crate: its public operation (`modpow` in `num-bigint-dig`) takes ~180 µs
//! for a 2048-bit key on the development machine, and a replay checks one signature per
//! result, heartbeat, grant and seal. A verifier made once per key keeps the key parsed by
//! AWS-LC (`aws_lc_rs::signature::ParsedPublicKey`), whose public operation is assembly. (Until
//! 2026-12 this was a Montgomery exponentiation of our own, ~5x the `rsa` crate; AWS-LC's is
//! faster again and not ours to maintain.)
//!
//! It accepts exactly what [`crate::crypto::verify`] accepts (EMSA-PSS, MGF1-SHA256, a salt of
//! 32 bytes, as [`crate::crypto::sign`] makes them); the tests check it agrees with the `rsa`
//! crate on valid, altered and random signatures. A key outside AWS-LC's 2048 to 8192 bits
//! (none the protocol accepts) is verified by the `rsa` crate.

use aws_lc_rs::signature::{ParsedPublicKey, RSA_PSS_2048_8192_SHA256};
use rsa::pkcs1::EncodeRsaPublicKey;
use rsa::traits::PublicKeyParts;
use rsa::RsaPublicKey;

/// One key's verifier.
#[derive(Clone)]
pub struct PssVerifier {
    key: RsaPublicKey,
    /// `None` for a key AWS-LC's parameters leave out: the `rsa` crate verifies.
    parsed: Option<ParsedPublicKey>,
}

impl std::fmt::Debug for PssVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PssVerifier")
            .field("bits", &self.key.n().bits())
            .field("aws_lc", &self.parsed.is_some())
            .finish()
    }
}

impl PssVerifier {
    pub fn new(key: &RsaPublicKey) -> Self {
        let parsed = (2048..=8192)
            .contains(&key.n().bits())
            .then(|| key.to_pkcs1_der().ok())
            .flatten()
            .and_then(|der| ParsedPublicKey::new(&RSA_PSS_2048_8192_SHA256, der.as_bytes()).ok());
        Self {
            key: key.clone(),
            parsed,
        }
    }

    /// Whether `signature` is an RSA-PSS-SHA256 signature of `message` by this key.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.parsed {
            Some(parsed) => parsed.verify_sig(message, signature).is_ok(),
            None => crate::crypto::verify_portable(&self.key, message, signature),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{sign, verify_portable as verify};
    use rsa::rand_core::{OsRng, RngCore};
    use rsa::RsaPrivateKey;

    /// AWS-LC and the `rsa` crate agree: on valid signatures, on signatures and
    /// messages with a bit flipped, on random bytes, on values at or above the modulus and
    /// on the wrong length, for keys of 2048 and 3072 bits.
    #[test]
    fn agrees_with_the_rsa_crate() {
        for bits in [2048, 3072] {
            let key = RsaPrivateKey::new(&mut OsRng, bits).unwrap();
            let public = key.to_public_key();
            let fast = PssVerifier::new(&public);
            assert!(fast.parsed.is_some());
            for i in 0..40u32 {
                let message = format!("statement {i}").into_bytes();
                let sig = sign(&key, &message, &mut OsRng);
                assert!(verify(&public, &message, &sig));
                assert!(fast.verify(&message, &sig), "{bits} bits, {i}");
                let mut flipped = sig.clone();
                let at = (OsRng.next_u32() as usize) % flipped.len();
                flipped[at] ^= 1 << (i % 8);
                assert_eq!(
                    fast.verify(&message, &flipped),
                    verify(&public, &message, &flipped)
                );
                assert!(!fast.verify(&message, &flipped));
                assert!(!fast.verify(b"another statement", &sig));
                let mut random = vec![0u8; sig.len()];
                OsRng.fill_bytes(&mut random);
                assert_eq!(
                    fast.verify(&message, &random),
                    verify(&public, &message, &random)
                );
            }
            let message = b"m";
            let sig = sign(&key, message, &mut OsRng);
            assert!(!fast.verify(message, &sig[1..]));
            let mut long = sig.clone();
            long.push(0);
            assert!(!fast.verify(message, &long));
            let n = public.n().to_bytes_be();
            assert!(!fast.verify(message, &n));
            assert_eq!(fast.verify(message, &n), verify(&public, message, &n));
            assert!(!fast.verify(message, &vec![0xff; sig.len()]));
            assert!(!fast.verify(message, &vec![0; sig.len()]));
        }
    }
}
