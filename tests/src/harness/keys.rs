//! RSA keys for the processes of a test: node keys and the coordinator's signing key, written
//! as the binaries read them (PKCS#8 PEM, mode 0600); and keys the benches keep between runs.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use prlx_events::crypto::public_key_pem;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::RsaPrivateKey;

/// A fresh key of 2048 bits, which keeps the tests fast (a node makes 3072-bit keys itself).
pub fn new_key() -> RsaPrivateKey {
    RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap()
}

/// Writes `key` to `path` as PKCS#8 PEM readable by its owner only, as `prlx-node run --key`
/// and `prlx-coordinator serve --signing-key` require.
pub fn write_private(path: &Path, key: &RsaPrivateKey) {
    let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap();
    std::fs::write(path, pem.as_bytes()).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// `count` keys kept in `dir` (`0.pem`, `1.pem`, …) between runs: those already there are
/// read, the rest made and written. For benches, where making dozens of keys would take
/// longer than what they measure.
pub fn cached_keys(dir: &Path, count: usize) -> Vec<RsaPrivateKey> {
    std::fs::create_dir_all(dir).unwrap();
    (0..count)
        .map(|i| {
            let path = dir.join(format!("{i}.pem"));
            if let Ok(pem) = std::fs::read_to_string(&path) {
                return RsaPrivateKey::from_pkcs8_pem(&pem).unwrap();
            }
            let key = new_key();
            std::fs::write(&path, key.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes()).unwrap();
            key
        })
        .collect()
}

/// The coordinator's signing key, made for one test: the private key for `serve
/// --signing-key` and its public half for `prlx-node run --coordinator-key` to pin.
#[derive(Debug, Clone)]
pub struct CoordinatorKeys {
    /// `DIR/coordinator-signing.pem`.
    pub signing: PathBuf,
    /// `DIR/coordinator.pub.pem`.
    pub public: PathBuf,
}

impl CoordinatorKeys {
    /// Makes a signing key and writes both halves into `dir`.
    pub fn create(dir: &Path) -> CoordinatorKeys {
        let key = new_key();
        let keys = CoordinatorKeys {
            signing: dir.join("coordinator-signing.pem"),
            public: dir.join("coordinator.pub.pem"),
        };
        write_private(&keys.signing, &key);
        std::fs::write(&keys.public, public_key_pem(&key.to_public_key())).unwrap();
        keys
    }
}
