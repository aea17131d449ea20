//! AES-256-GCM sealing of bytes at rest: the coordinator seals accepted payloads (and results)
//! to its own storage key, so they survive a crash on the log without ever lying there in
//! plaintext. The AAD binds a blob to its place (e.g. the request id), so a blob cannot be moved
//! to another record and still open.
//!
//! Wire form: 12-byte nonce || ciphertext || 16-byte tag. Nonces are drawn by the caller (the
//! I/O shell owns randomness); a 96-bit random nonce per seal is safe far beyond the volumes of
//! one key here.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};

use crate::event::Sealed;

pub const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// A 256-bit AES key. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct StorageKey([u8; 32]);

impl std::fmt::Debug for StorageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StorageKey(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("sealed blob is {0} bytes, shorter than nonce + tag")]
    TooShort(usize),
    #[error(
        "sealed blob does not open with this key and context (wrong key, wrong AAD, or tampered)"
    )]
    Open,
}

impl StorageKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.0))
    }

    pub fn seal(&self, nonce: [u8; NONCE_LEN], aad: &[u8], plaintext: &[u8]) -> Sealed {
        let ct = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("AES-GCM encryption cannot fail for in-memory buffers");
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Sealed(out)
    }

    pub fn open(&self, aad: &[u8], sealed: &Sealed) -> Result<Vec<u8>, SealError> {
        let b = &sealed.0;
        if b.len() < NONCE_LEN + TAG_LEN {
            return Err(SealError::TooShort(b.len()));
        }
        self.cipher()
            .decrypt(
                Nonce::from_slice(&b[..NONCE_LEN]),
                Payload {
                    msg: &b[NONCE_LEN..],
                    aad,
                },
            )
            .map_err(|_| SealError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_opens_and_refuses_wrong_context() {
        let key = StorageKey::from_bytes([7; 32]);
        let sealed = key.seal([1; 12], b"req-1", b"the prompt");
        assert!(!sealed.0.windows(10).any(|w| w == b"the prompt"));
        assert_eq!(key.open(b"req-1", &sealed).unwrap(), b"the prompt");
        assert_eq!(key.open(b"req-2", &sealed), Err(SealError::Open));
        assert_eq!(
            StorageKey::from_bytes([8; 32]).open(b"req-1", &sealed),
            Err(SealError::Open)
        );
        let mut tampered = sealed.clone();
        *tampered.0.last_mut().unwrap() ^= 1;
        assert_eq!(key.open(b"req-1", &tampered), Err(SealError::Open));
        assert_eq!(format!("{key:?}"), "StorageKey(<redacted>)");
    }
}
