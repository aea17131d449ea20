//! The coordinator's secrets on disk: the storage key and the signing key, created on first
//! start with mode 0600, refused when others can read them.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use prlx_events::seal::StorageKey;
use rand::RngCore;

use rsa::RsaPrivateKey;

use super::ShellError;

/// Reads a secret key file, refusing one that others can read; `None` when it does not exist.
fn read_secret(path: &Path) -> Result<Option<Vec<u8>>, ShellError> {
    let err = |reason: String| key_error(path, reason);
    match std::fs::read(path) {
        Ok(bytes) => {
            check_owner_only(path).map_err(err)?;
            Ok(Some(bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err(e.to_string())),
    }
}

/// Refuses a key file that anyone but its owner can read (group or others), saying how to
/// fix it; the coordinator's TLS key is held to the same rule as its other keys.
pub(crate) fn check_owner_only(path: &Path) -> Result<(), String> {
    let mode = std::fs::metadata(path)
        .map_err(|e| e.to_string())?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "permissions {:o} let others read it; chmod 600",
            mode & 0o777
        ));
    }
    Ok(())
}

/// Creates a secret key file with mode 0600 (never replacing one) and syncs it.
fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), ShellError> {
    let err = |e: std::io::Error| key_error(path, e.to_string());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(err)
}

fn key_error(path: &Path, reason: String) -> ShellError {
    ShellError::Key {
        path: path.display().to_string(),
        reason,
    }
}

/// Loads the 32-byte storage key at `path`, creating it (mode 0600) on first start. A key file
/// readable by others is refused: it opens every payload on the log.
pub fn load_or_create_key(path: &Path) -> Result<StorageKey, ShellError> {
    if let Some(bytes) = read_secret(path)? {
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| key_error(path, format!("{} bytes, expected 32", b.len())))?;
        return Ok(StorageKey::from_bytes(bytes));
    }
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    write_secret(path, &bytes)?;
    Ok(StorageKey::from_bytes(bytes))
}

/// Bits of a signing key created on first start.
pub const SIGNING_KEY_BITS: usize = 3072;

/// Loads the coordinator's RSA signing key (PKCS#8 PEM) at `path`, creating a
/// [`SIGNING_KEY_BITS`]-bit one (mode 0600) on first start. A key file readable by others is
/// refused.
pub fn load_or_create_signing_key(path: &Path) -> Result<RsaPrivateKey, ShellError> {
    use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
    if let Some(bytes) = read_secret(path)? {
        let pem = String::from_utf8(bytes).map_err(|_| key_error(path, "not UTF-8 PEM".into()))?;
        let key = RsaPrivateKey::from_pkcs8_pem(&pem)
            .map_err(|e| key_error(path, format!("not a PKCS#8 RSA key: {e}")))?;
        // Nodes refuse a grant signed by a key of another size, so say so at start.
        prlx_events::crypto::check_key_size(&key).map_err(|e| key_error(path, e.to_string()))?;
        return Ok(key);
    }
    let key = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, SIGNING_KEY_BITS)
        .map_err(|e| key_error(path, e.to_string()))?;
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| key_error(path, e.to_string()))?;
    write_secret(path, pem.as_bytes())?;
    Ok(key)
}
