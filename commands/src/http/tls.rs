//! TLS on the coordinator's listener (docs/security.md, "TLS"): the server configuration over
//! the certificate ([`super::certificate`]: given, or the development one) and each
//! connection's handshake.
//!
//! The handshake runs in the connection's own task, within the header read timeout, so a
//! client that connects and never finishes it holds its slot no longer than one that never
//! sends a request head. A failed handshake is logged at debug and closes that connection
//! only. A connection that opens with plain HTTP instead of a TLS handshake gets one fixed
//! answer, `400 tls_required` (the error body of every refusal), so an `http://` client is
//! told what to change rather than seeing the connection drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::certificate::{CertificateError, CertificateSource};

/// The listener's TLS: what each accepted connection is handshaken with.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
    cert_path: PathBuf,
    fingerprint: String,
    made_now: bool,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert_path", &self.cert_path)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl ServerTls {
    /// Loads the certificate and key from `source` (making the development one if due).
    pub fn load(source: &CertificateSource) -> Result<ServerTls, CertificateError> {
        let loaded = source.load()?;
        let fingerprint = prlx_events::endpoint::trust::fingerprint(&loaded.chain[0]);
        let provider = prlx_events::endpoint::trust::provider();
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| CertificateError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(loaded.chain, loaded.key)
            .map_err(|e| match source {
                CertificateSource::Given { cert, key } => CertificateError::Config(format!(
                    "--tls-key {} does not go with --tls-cert {}: {e}",
                    key.display(),
                    cert.display()
                )),
                CertificateSource::Development { dir, .. } => CertificateError::Development {
                    dir: dir.display().to_string(),
                    reason: e.to_string(),
                },
            })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ServerTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            cert_path: loaded.cert_path,
            fingerprint,
            made_now: loaded.made_now,
        })
    }

    /// The certificate's file.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The certificate's SHA-256 fingerprint, `AB:CD:…`.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Logs which certificate is served (never the key).
    pub fn log_start(&self) {
        let how = if self.made_now {
            "made a development certificate"
        } else {
            "serving TLS with the certificate"
        };
        tracing::info!(
            "{how} {} (SHA-256 {}); clients pin it with --coordinator-cert {}",
            self.cert_path.display(),
            self.fingerprint,
            self.cert_path.display()
        );
    }

    /// The TLS side of an accepted connection, its handshake done within `within`; `None`
    /// when it failed, timed out or was plain HTTP (answered), the connection then closed.
    pub(super) async fn accept(
        &self,
        stream: TcpStream,
        remote: SocketAddr,
        within: Duration,
    ) -> Option<TlsStream<TcpStream>> {
        let handshake = async {
            let mut first = [0u8; 1];
            if stream.peek(&mut first).await.ok()? == 0 {
                return None;
            }
            // Every TLS connection opens with a handshake record (content type 22).
            if first[0] != 0x16 {
                answer_plain_http(stream, remote).await;
                return None;
            }
            match self.acceptor.accept(stream).await {
                Ok(tls) => Some(tls),
                Err(e) => {
                    tracing::debug!(%remote, error = %e, "TLS handshake failed");
                    None
                }
            }
        };
        match tokio::time::timeout(within, handshake).await {
            Ok(tls) => tls,
            Err(_) => {
                tracing::debug!(%remote, "no TLS handshake within {within:?}");
                None
            }
        }
    }
}

/// The one answer to plain HTTP on the TLS port, then the connection closed once the client
/// has stopped sending (closing with its request unread would reset the connection and
/// could lose the answer).
async fn answer_plain_http(mut stream: TcpStream, remote: SocketAddr) {
    tracing::debug!(%remote, "plain HTTP on the TLS port: answered 400 tls_required");
    let body = serde_json::json!({"error": {
        "code": "tls_required",
        "field": null,
        "message": "this coordinator speaks TLS: use https:// (and pin its certificate with \
                    --coordinator-cert)",
    }})
    .to_string();
    let head = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n",
        body.len()
    );
    if stream.write_all((head + &body).as_bytes()).await.is_err() {
        return;
    }
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let mut left: usize = 64 * 1024;
    let drain = async {
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}
