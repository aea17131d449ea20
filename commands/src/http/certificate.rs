//! The listener's certificate and key: the operator's files (`--tls-cert`, `--tls-key`), or
//! the development certificate, made on the coordinator's first start without them, kept in a
//! directory of its own (`cert.pem`, and `key.pem` with mode 0600) and used again on every
//! later start, so the certificate clients pin (`--coordinator-cert DIR/cert.pem`) stays the
//! same across restarts.
//!
//! The development certificate is self-signed (ECDSA P-256) for `localhost`, `127.0.0.1`,
//! `::1`, the listen address and the names given with `--allowed-host` at its first start.
//! Nobody's roots trust it: a client trusts it by pinning it, which compares the bytes, not
//! the names. The directory is made whole under another name and renamed into place, so two
//! instances starting together (a Kafka standby beside the active one) end up with one
//! certificate between them.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// Why the listener's certificate cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// A file (`what`: `--tls-cert`, `--tls-key`, the development key).
    #[error("{what} {path}: {reason}")]
    File {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error("development certificate in {dir}: {reason}")]
    Development { dir: String, reason: String },
    /// The TLS library refused the certificate and key as a pair.
    #[error("{0}")]
    Config(String),
}

/// Where the listener's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateSource {
    /// The operator's: a PEM certificate chain (the server's first) and its private key.
    Given { cert: PathBuf, key: PathBuf },
    /// The development certificate in `dir`, made for `names` on first start.
    Development { dir: PathBuf, names: Vec<String> },
}

/// A certificate chain and its key, loaded.
#[derive(Debug)]
pub struct Loaded {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// The file of the chain.
    pub cert_path: PathBuf,
    /// Whether the development certificate was made by this start.
    pub made_now: bool,
}

impl CertificateSource {
    /// The chain and key (making the development certificate first if due).
    pub fn load(&self) -> Result<Loaded, CertificateError> {
        match self {
            CertificateSource::Given { cert, key } => {
                let chain =
                    prlx_events::endpoint::trust::read_certificates(cert).map_err(|reason| {
                        CertificateError::File {
                            what: "--tls-cert",
                            path: cert.display().to_string(),
                            reason,
                        }
                    })?;
                Ok(Loaded {
                    chain,
                    key: read_private_key(key, "--tls-key")?,
                    cert_path: cert.clone(),
                    made_now: false,
                })
            }
            CertificateSource::Development { dir, names } => load_or_create(dir, names),
        }
    }
}

/// The certificate's file in the directory.
pub const CERT_FILE: &str = "cert.pem";
/// The private key's file in the directory (mode 0600).
pub const KEY_FILE: &str = "key.pem";

/// The names a development certificate is made for: the loopback names, the listen address
/// when it is one, and the hosts of `--allowed-host` (without ports; `*` names nothing).
pub fn subject_names(listen: std::net::IpAddr, allowed_hosts: &[String]) -> Vec<String> {
    let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(String::from).into();
    if !listen.is_unspecified() {
        names.push(listen.to_string());
    }
    for host in allowed_hosts {
        let host = host.trim().to_ascii_lowercase();
        let name = without_port(&host);
        if !name.is_empty() && name != "*" {
            names.push(name.to_owned());
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

/// `NAME[:PORT]` or `[IPv6][:PORT]` without the port and brackets; a bare IPv6 address as it is.
fn without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.parse::<u16>().is_ok() => name,
        _ => host,
    }
}

/// The certificate and key in `dir`, made for `names` first if the directory has none.
fn load_or_create(dir: &Path, names: &[String]) -> Result<Loaded, CertificateError> {
    let made_now = !dir.join(CERT_FILE).exists() && create(dir, names)?;
    let cert_path = dir.join(CERT_FILE);
    let chain = prlx_events::endpoint::trust::read_certificates(&cert_path)
        .map_err(|reason| dev_error(dir, format!("{CERT_FILE}: {reason}")))?;
    let key = read_private_key(&dir.join(KEY_FILE), "development key")?;
    if !made_now {
        let missing = uncovered(&chain[0], names);
        if !missing.is_empty() {
            tracing::warn!(
                "the development certificate {} does not name {}: clients that pin it are \
                 not affected; to make one that does, remove {} (clients must then pin the \
                 new certificate)",
                cert_path.display(),
                missing.join(", "),
                dir.display()
            );
        }
    }
    Ok(Loaded {
        chain,
        key,
        cert_path,
        made_now,
    })
}

/// Makes the directory with a new certificate and key; `false` when another process made it
/// first (its certificate is the one to use).
fn create(dir: &Path, names: &[String]) -> Result<bool, CertificateError> {
    let err = |reason: String| dev_error(dir, reason);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| err(format!("generating a key: {e}")))?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())
        .map_err(|e| err(format!("the names {names:?}: {e}")))?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "ParalleliX coordinator (development)",
    );
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params
        .self_signed(&key)
        .map_err(|e| err(format!("signing the certificate: {e}")))?;

    let staging = staging_dir(dir);
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&staging)
        .map_err(|e| err(format!("creating {}: {e}", staging.display())))?;
    let written =
        write_file(&staging.join(CERT_FILE), cert.pem().as_bytes(), 0o644).and_then(|()| {
            write_file(
                &staging.join(KEY_FILE),
                key.serialize_pem().as_bytes(),
                0o600,
            )
        });
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(err(format!("writing into {}: {e}", staging.display())));
    }
    match std::fs::rename(&staging, dir) {
        Ok(()) => Ok(true),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            if dir.join(CERT_FILE).exists() {
                Ok(false)
            } else {
                Err(err(format!(
                    "cannot put it in place ({e}); an existing directory without {CERT_FILE} \
                     is left alone: remove it, or give another --tls-dev-dir"
                )))
            }
        }
    }
}

/// A sibling of `dir` that only this process writes.
fn staging_dir(dir: &Path) -> PathBuf {
    let name = dir
        .file_name()
        .map_or_else(|| "tls".into(), |n| n.to_string_lossy().into_owned());
    let staging = format!(".{name}.{}.new", std::process::id());
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.join(staging),
        _ => PathBuf::from(staging),
    }
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// The private key (PKCS#8, PKCS#1 or SEC1 PEM) at `path`, refused when others can read it,
/// as the coordinator's other keys are. `what` names it in errors.
fn read_private_key(
    path: &Path,
    what: &'static str,
) -> Result<PrivateKeyDer<'static>, CertificateError> {
    let err = |reason: String| CertificateError::File {
        what,
        path: path.display().to_string(),
        reason,
    };
    crate::shell::check_owner_only(path).map_err(err)?;
    PrivateKeyDer::from_pem_file(path).map_err(|e| err(format!("not a PEM private key: {e}")))
}

/// Which of `names` the certificate does not cover.
fn uncovered(cert: &CertificateDer<'_>, names: &[String]) -> Vec<String> {
    let Ok(cert) = webpki::EndEntityCert::try_from(cert) else {
        return names.to_vec();
    };
    names
        .iter()
        .filter(|name| {
            ServerName::try_from(name.as_str())
                .map_or(true, |n| cert.verify_is_valid_for_subject_name(&n).is_err())
        })
        .cloned()
        .collect()
}

fn dev_error(dir: &Path, reason: String) -> CertificateError {
    CertificateError::Development {
        dir: dir.display().to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn names_are_the_loopback_ones_the_listen_address_and_the_allowed_hosts() {
        let hosts = [
            "coordinator.lan:8080".to_owned(),
            "[fd00::1]:8443".to_owned(),
            "*".to_owned(),
            "LOCALHOST".to_owned(),
            "10.0.0.5".to_owned(),
        ];
        assert_eq!(
            subject_names("10.0.0.5".parse().unwrap(), &hosts),
            [
                "localhost",
                "127.0.0.1",
                "::1",
                "10.0.0.5",
                "coordinator.lan",
                "fd00::1"
            ]
        );
        assert_eq!(
            subject_names("0.0.0.0".parse().unwrap(), &[]),
            ["localhost", "127.0.0.1", "::1"]
        );
    }

    #[test]
    fn made_once_with_a_private_key_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        let names = subject_names("127.0.0.1".parse().unwrap(), &[]);
        let first = load_or_create(&tls, &names).unwrap();
        assert!(first.made_now);
        let mode = std::fs::metadata(tls.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(uncovered(&first.chain[0], &names).is_empty());
        assert_eq!(
            uncovered(&first.chain[0], &["other.example".to_owned()]),
            ["other.example"]
        );
        let again = load_or_create(&tls, &names).unwrap();
        assert!(!again.made_now);
        assert_eq!(first.chain, again.chain);
        // Nothing staged is left beside it.
        let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(entries.len(), 1);
    }

    #[test]
    fn a_key_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        load_or_create(&tls, &["localhost".to_owned()]).unwrap();
        let key = tls.join(KEY_FILE);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create(&tls, &[]).unwrap_err().to_string();
        assert!(err.contains("permissions 644 let others read it"), "{err}");
    }

    #[test]
    fn a_directory_without_a_certificate_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        let err = load_or_create(dir.path(), &["localhost".to_owned()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("is left alone"), "{err}");
        assert!(dir.path().join("notes.txt").exists());
    }
}
