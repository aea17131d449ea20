//! What an https connection to the coordinator trusts: the certificates of a pin file, or
//! the system's roots.
//!
//! A pin file (`--coordinator-cert FILE`, PEM) holds the only certificates trusted. The
//! coordinator's own certificate, matched byte for byte, is trusted whatever names and dates
//! it carries: that is what pinning means, and it is how a development certificate (self-signed,
//! made on the coordinator's first start) is trusted. A certificate in the file that issued
//! the coordinator's (a private CA) is trusted with the usual checks of name and validity.
//! Without a pin, the system's trusted roots (rustls-native-certs: the OS store, read at
//! start) decide, as for any https site.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use sha2::{Digest, Sha256};

use super::EndpointError;

/// The TLS library's algorithms, chosen explicitly (alloy's HTTP client links the same
/// provider; naming it keeps one process-wide default from mattering).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The SHA-256 fingerprint of a certificate's DER bytes, as `openssl x509 -fingerprint
/// -sha256` prints it (`AB:CD:…`), to compare by eye with what the coordinator logs.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let hex: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

/// Every certificate of the PEM file at `path`, or why there is none.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let text = std::fs::read(path).map_err(|e| e.to_string())?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate file: {e}"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    Ok(certs)
}

/// A client configuration that trusts only the certificates of the pin file at `path`.
pub fn pinned_config(path: &Path) -> Result<ClientConfig, EndpointError> {
    let bad = |reason: String| EndpointError::Pin {
        path: path.display().to_string(),
        reason,
    };
    let pinned = read_certificates(path).map_err(bad)?;
    let mut roots = RootCertStore::empty();
    for cert in &pinned {
        roots
            .add(cert.clone())
            .map_err(|e| bad(format!("not a usable certificate: {e}")))?;
    }
    let chain = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| bad(e.to_string()))?;
    let verifier = PinnedVerifier { pinned, chain };
    Ok(builder()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// A client configuration that trusts the system's roots.
pub fn system_config() -> Result<ClientConfig, EndpointError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let reason = match found.errors.first() {
            Some(e) => e.to_string(),
            None => "none found".into(),
        };
        return Err(EndpointError::NoSystemRoots { reason });
    }
    Ok(builder()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn builder() -> Result<rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>, EndpointError> {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| EndpointError::Tls(e.to_string()))
}

/// The certificates of a pin file: the coordinator's own, or one that issued it.
#[derive(Debug)]
struct PinnedVerifier {
    pinned: Vec<CertificateDer<'static>>,
    /// The usual checks with the pinned certificates as the only roots.
    chain: Arc<WebPkiServerVerifier>,
}

/// The coordinator showed a certificate the pin file neither holds nor issued.
#[derive(Debug, thiserror::Error)]
#[error(
    "the coordinator's certificate (SHA-256 {fingerprint}) is not the pinned one \
     (--coordinator-cert) nor issued by it"
)]
struct NotPinned {
    fingerprint: String,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self
            .pinned
            .iter()
            .any(|p| p.as_ref() == end_entity.as_ref())
        {
            return Ok(ServerCertVerified::assertion());
        }
        self.chain
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map_err(|e| match e {
                // No pinned certificate issued it (one with the same subject, as another
                // coordinator's development certificate has, fails on the signature).
                rustls::Error::InvalidCertificate(
                    CertificateError::UnknownIssuer | CertificateError::BadSignature,
                ) => {
                    let not_pinned = NotPinned {
                        fingerprint: fingerprint(end_entity),
                    };
                    rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
                        Arc::new(not_pinned),
                    )))
                }
                other => other,
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_read_like_openssl() {
        let f = fingerprint(b"");
        assert!(f.starts_with("E3:B0:C4:42:98:FC"), "{f}");
        assert_eq!(f.len(), 32 * 3 - 1);
    }

    #[test]
    fn a_pin_file_without_a_certificate_is_refused_naming_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no pem here\n").unwrap();
        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let missing = dir.path().join("missing.pem");
        for (path, says) in [
            (&empty, "holds no PEM certificate"),
            (&broken, "not a PEM certificate file"),
            (&missing, "No such file"),
        ] {
            let err = pinned_config(path).unwrap_err().to_string();
            assert!(err.starts_with("--coordinator-cert "), "{err}");
            assert!(err.contains(says), "{err}");
        }
    }
}
