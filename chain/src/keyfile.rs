//! A chain key kept in a file: the hex private key (with or without `0x`), readable by its
//! owner only, as `prlx-node` keeps its RSA key. The key never appears in an error or a log.

use std::path::Path;

use alloy::signers::local::PrivateKeySigner;

use crate::ChainError;

/// Reads the key in `path`. Refused: a file group or others may read, or text that is not a
/// 32-byte hex key (the message does not quote it).
pub fn read_key_file(path: &Path) -> Result<PrivateKeySigner, ChainError> {
    let malformed = |reason: &str| ChainError::Malformed {
        path: path.to_owned(),
        reason: reason.into(),
    };
    let meta = std::fs::metadata(path).map_err(|source| ChainError::Io {
        path: path.to_owned(),
        source,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(malformed("group or others may read it: chmod 600 it first"));
        }
    }
    let text = std::fs::read_to_string(path).map_err(|source| ChainError::Io {
        path: path.to_owned(),
        source,
    })?;
    let hex_key = text.trim().trim_start_matches("0x");
    if hex_key.len() != 64 || !hex_key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(malformed("not a private key: 64 hex characters expected"));
    }
    hex_key
        .parse()
        .map_err(|_| malformed("not a valid secp256k1 private key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_owner_only_key_and_refuses_others_without_quoting_them() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let key = crate::devchain::DEV_KEYS[1];
        std::fs::write(&path, format!("0x{key}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_key_file(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600") && !err.contains(key), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            read_key_file(&path).unwrap().address(),
            crate::devchain::dev_signer(1).address()
        );
        std::fs::write(&path, "secret-but-not-hex").unwrap();
        let err = read_key_file(&path).unwrap_err().to_string();
        assert!(!err.contains("secret"), "{err}");
    }
}
