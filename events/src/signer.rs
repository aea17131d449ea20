//! An RSA key kept ready for signing many statements: the coordinator's seals of the log, a
//! node's results, refusals and heartbeats.
//!
//! Why a type of its own: the `rsa` crate's private-key operation (big integers in portable
//! Rust, blinded) takes milliseconds for a 3072-bit key (5.3 ms on the signing bench), and
//! both the coordinator's encoder thread (a seal every thousand records, in line with the
//! appends behind it) and a node (one signature per result) sign on their hot paths. AWS-LC
//! (already built for TLS and the auditor's verification) does the same RSA-PSS signature
//! several times faster. Parsing a key into AWS-LC checks it, which costs more than a
//! signature, so the parsed key is kept here instead of being made per statement.
//!
//! The signatures are the same scheme as [`crate::crypto::sign`]'s: RSA-PSS, SHA-256, a salt
//! of 32 bytes, so [`crate::crypto::verify`] checks either (tests below).
//!
//! Behind the `signing` feature, like `cli` and `endpoint`: it is for the shells that sign
//! (the coordinator, the node), not for the pure decide and fold. The salt's randomness is the
//! caller's, passed to [`Signer::sign`] as [`crate::crypto::sign`] takes its generator: no
//! randomness originates here. The salt feeds no decision and no fold: a signature is checked,
//! never re-derived, so replay is unaffected.

use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;

/// A private key parsed once for signing. Its `Debug` shows only the key's size.
pub struct Signer {
    inner: Inner,
}

enum Inner {
    /// Keys of 2048 to 8192 bits: every key the coordinator makes or accepts.
    AwsLc(aws_lc_rs::rsa::KeyPair),
    /// Any other size (tests' small keys), or a key AWS-LC refused: the `rsa` crate.
    Portable(Box<RsaPrivateKey>),
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (backend, bits) = match &self.inner {
            Inner::AwsLc(pair) => ("aws-lc", pair.public_modulus_len() * 8),
            Inner::Portable(key) => ("rsa", key.n().bits()),
        };
        write!(f, "Signer({backend}, {bits} bits)")
    }
}

impl Signer {
    pub fn new(key: &RsaPrivateKey) -> Self {
        let bits = key.n().bits();
        if (2048..=8192).contains(&bits) {
            let parsed = key
                .to_pkcs1_der()
                .ok()
                .and_then(|der| aws_lc_rs::rsa::KeyPair::from_der(der.as_bytes()).ok());
            if let Some(pair) = parsed {
                return Self {
                    inner: Inner::AwsLc(pair),
                };
            }
            tracing::warn!(
                bits,
                "AWS-LC refused the signing key; signing with the rsa crate"
            );
        }
        Self {
            inner: Inner::Portable(Box::new(key.clone())),
        }
    }

    /// RSA-PSS-SHA256 over `message`, salted from `salt`: the caller's randomness (the shell's
    /// operating-system generator), as [`crate::crypto::sign`] takes its generator. The salt
    /// feeds no decision and no fold: a signature is checked on replay, never re-derived.
    pub fn sign(&self, message: &[u8], salt: &dyn aws_lc_rs::rand::SecureRandom) -> Vec<u8> {
        match &self.inner {
            Inner::AwsLc(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(
                    &aws_lc_rs::signature::RSA_PSS_SHA256,
                    salt,
                    message,
                    &mut signature,
                )
                .expect("AWS-LC signs with a key it parsed");
                signature
            }
            Inner::Portable(key) => crate::crypto::sign(key, message, &mut Salt(salt)),
        }
    }
}

/// The caller's randomness as the `rsa` crate's generator, for the keys AWS-LC refuses.
struct Salt<'a>(&'a dyn aws_lc_rs::rand::SecureRandom);

impl rsa::rand_core::RngCore for Salt<'_> {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0
            .fill(dest)
            .expect("the operating system's randomness fills");
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rsa::rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rsa::rand_core::CryptoRng for Salt<'_> {}

#[cfg(test)]
mod tests {
    use aws_lc_rs::rand::SystemRandom;
    use rsa::rand_core::OsRng;

    use super::*;
    use crate::crypto::{verify, verify_portable};

    fn both_verify(key: &RsaPrivateKey, message: &[u8], signature: &[u8]) -> (bool, bool) {
        let public = key.to_public_key();
        (
            verify(&public, message, signature),
            verify_portable(&public, message, signature),
        )
    }

    #[test]
    fn aws_lc_signatures_are_the_protocols() {
        let key = RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
        let signer = Signer::new(&key);
        assert!(
            format!("{signer:?}").contains("aws-lc, 2048 bits"),
            "{signer:?}"
        );
        let signature = signer.sign(b"seal of the log", &SystemRandom::new());
        assert_eq!(signature.len(), 256);
        // Both verifiers accept it, and the rsa crate's own check (salt length included).
        assert_eq!(
            both_verify(&key, b"seal of the log", &signature),
            (true, true)
        );
        assert_eq!(
            both_verify(&key, b"seal of the lag", &signature),
            (false, false)
        );
        let other = RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
        let public = other.to_public_key();
        assert!(!verify(&public, b"seal of the log", &signature));
        // Salted: two signatures of one message differ, and both verify.
        let again = signer.sign(b"seal of the log", &SystemRandom::new());
        assert_ne!(signature, again);
        assert_eq!(both_verify(&key, b"seal of the log", &again), (true, true));
    }

    #[test]
    fn other_sizes_sign_with_the_rsa_crate() {
        let key = RsaPrivateKey::new(&mut OsRng, 1024).unwrap();
        let signer = Signer::new(&key);
        assert!(
            format!("{signer:?}").contains("rsa, 1024 bits"),
            "{signer:?}"
        );
        let signature = signer.sign(b"m", &SystemRandom::new());
        assert!(verify(&key.to_public_key(), b"m", &signature));
        assert!(!verify(&key.to_public_key(), b"n", &signature));
    }
}
