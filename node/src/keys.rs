//! The node's RSA key: its identity (the node id is the SHA-256 of the public key's SPKI DER),
//! what unwraps its session grants and what signs its results.
//!
//! Stored as PKCS#8 PEM with mode 0600; a file that group or others may read is refused, since
//! whoever holds it can read this node's dispatches and sign results in its name. Nothing here
//! prints or formats the key.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;

/// Bits of a key created on first start.
pub const NODE_KEY_BITS: usize = 3072;
/// The smallest key accepted from a file.
pub const MIN_KEY_BITS: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("node key {}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "node key {}: permissions {mode:o} let group or others read it; chmod 600 it \
         (whoever reads it can read this node's work and sign results as this node)",
        path.display()
    )]
    Readable { path: PathBuf, mode: u32 },
    #[error("node key {}: not a PKCS#8 PEM RSA private key", path.display())]
    Parse { path: PathBuf },
    #[error("node key {}: {bits} bits; at least {MIN_KEY_BITS} are required", path.display())]
    TooSmall { path: PathBuf, bits: usize },
    #[error("generating a node key: {0}")]
    Generate(String),
}

/// Whether the key was read or made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    Loaded,
    Created,
}

/// Loads the key at `path`, or creates a `bits`-bit one there (mode 0600, parent directories
/// created) when the file does not exist.
pub fn load_or_create(path: &Path, bits: usize) -> Result<(RsaPrivateKey, KeySource), KeyError> {
    let io = |error| KeyError::Io {
        path: path.to_owned(),
        error,
    };
    match std::fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::Readable {
                    path: path.to_owned(),
                    mode,
                });
            }
            let pem = std::fs::read_to_string(path).map_err(io)?;
            // The parser's error could quote key material; say only what went wrong.
            let key = RsaPrivateKey::from_pkcs8_pem(&pem).map_err(|_| KeyError::Parse {
                path: path.to_owned(),
            })?;
            let key_bits = key.size() * 8;
            if key_bits < MIN_KEY_BITS {
                return Err(KeyError::TooSmall {
                    path: path.to_owned(),
                    bits: key_bits,
                });
            }
            Ok((key, KeySource::Loaded))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            let key = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits)
                .map_err(|e| KeyError::Generate(e.to_string()))?;
            let pem = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| KeyError::Generate(e.to_string()))?;
            // create_new: never overwrite a key another process wrote meanwhile.
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io)?;
            file.write_all(pem.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(io)?;
            Ok((key, KeySource::Created))
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_key_is_private_to_its_owner_and_loads_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/node.pem");
        let (created, source) = load_or_create(&path, MIN_KEY_BITS).unwrap();
        assert_eq!(source, KeySource::Created);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (loaded, source) = load_or_create(&path, MIN_KEY_BITS).unwrap();
        assert_eq!(source, KeySource::Loaded);
        assert_eq!(loaded, created);
    }

    #[test]
    fn a_readable_small_or_malformed_key_is_refused_without_quoting_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.pem");
        let (_, _) = load_or_create(&path, MIN_KEY_BITS).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = load_or_create(&path, MIN_KEY_BITS).unwrap_err();
        assert!(
            matches!(err, KeyError::Readable { mode: 0o640, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");

        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n").unwrap();
        std::fs::set_permissions(&junk, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = load_or_create(&junk, MIN_KEY_BITS).unwrap_err();
        assert!(matches!(err, KeyError::Parse { .. }));
        assert!(!err.to_string().contains("c2VjcmV0"), "{err}");

        let small = dir.path().join("small.pem");
        let key = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap();
        let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap();
        std::fs::write(&small, pem.as_bytes()).unwrap();
        std::fs::set_permissions(&small, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            load_or_create(&small, MIN_KEY_BITS).unwrap_err(),
            KeyError::TooSmall { bits: 1024, .. }
        ));
    }
}
