//! The coordinator's HTTP address as its clients reach it (`prlx-node`, `prlx-client`, the
//! tests): `https://HOST[:PORT]` (the default of `prlx-coordinator serve`) or `http://HOST:PORT`
//! (a coordinator serving `--plain-http` behind a TLS-terminating proxy), what https trusts
//! (a pinned certificate, or the system's roots: see `trust`), and the connection.
//!
//! The HTTP exchange itself is the caller's (hyper's connection-level client over a
//! [`Stream`]); this module ends where the bytes start to flow.
//!
//! # Layout
//! - this file: [`Endpoint`] (parse, connect), [`Stream`], the errors.
//! - [`trust`]: the client configurations (pinned, system roots) and certificate fingerprints.

pub mod trust;

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Why an address or the trust given with it cannot be used: a configuration error, never
/// worth a retry.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error(
        "coordinator URL {url:?}: {reason} (expected https://HOST[:PORT], or http://HOST:PORT \
         for a coordinator serving --plain-http)"
    )]
    BadUrl { url: String, reason: &'static str },
    #[error("--coordinator-cert {path}: {reason}")]
    Pin { path: String, reason: String },
    #[error(
        "--coordinator-cert {path}: a pinned certificate needs an https:// coordinator URL, \
         not {url}"
    )]
    PinOverPlainHttp { path: String, url: String },
    #[error(
        "no trusted certificates in the system's store ({reason}): pin the coordinator's \
         certificate with --coordinator-cert FILE"
    )]
    NoSystemRoots { reason: String },
    #[error("TLS configuration: {0}")]
    Tls(String),
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Nothing answered, or the connection broke during the handshake: worth a retry.
    #[error("cannot reach the coordinator at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: io::Error,
    },
    /// The TLS handshake was refused (a certificate not trusted, a server that does not
    /// speak TLS): the same again would fail the same way.
    #[error("TLS handshake with {url} failed: {reason}")]
    Refused { url: String, reason: String },
}

impl ConnectError {
    /// Whether the same connection may succeed later (the coordinator may be restarting).
    pub fn is_retryable(&self) -> bool {
        matches!(self, ConnectError::Unreachable { .. })
    }
}

/// The coordinator's address and, for https, what its certificate must be.
#[derive(Clone)]
pub struct Endpoint {
    url: String,
    /// What requests name in `Host`: the URL's `HOST[:PORT]` as written.
    authority: String,
    /// What is connected to: `HOST:PORT`, the port defaulted by the scheme.
    address: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Endpoint {
    /// Parses `https://HOST[:PORT]` or `http://HOST[:PORT]` (a trailing `/` is allowed; a path
    /// is not). For https, `pin` is the PEM file of the only certificates trusted (see
    /// [`trust`]); without one, the system's roots. A pin with an http:// URL is refused:
    /// it would protect nothing.
    pub fn new(url: &str, pin: Option<&Path>) -> Result<Endpoint, EndpointError> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(bad_url(url, "neither https:// nor http://"));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = split_authority(authority).map_err(|reason| bad_url(url, reason))?;
        let port = port.unwrap_or(if tls { 443 } else { 80 });
        let address = match host.contains(':') {
            true => format!("[{host}]:{port}"),
            false => format!("{host}:{port}"),
        };
        let tls = match (tls, pin) {
            (false, Some(path)) => {
                return Err(EndpointError::PinOverPlainHttp {
                    path: path.display().to_string(),
                    url: url.to_owned(),
                })
            }
            (false, None) => None,
            (true, pin) => {
                let config = match pin {
                    Some(path) => trust::pinned_config(path)?,
                    None => trust::system_config()?,
                };
                let name = ServerName::try_from(host.to_owned())
                    .map_err(|_| bad_url(url, "the host is not a DNS name or an IP address"))?;
                Some((TlsConnector::from(Arc::new(config)), name))
            }
        };
        Ok(Endpoint {
            url: format!(
                "{}://{authority}",
                if tls.is_some() { "https" } else { "http" }
            ),
            authority: authority.to_owned(),
            address,
            tls,
        })
    }

    /// `HOST[:PORT]` as the URL gives it: what the `Host` header says.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// `https://HOST[:PORT]` or `http://HOST[:PORT]`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// A new connection, its TLS handshake done.
    pub async fn connect(&self) -> Result<Stream, ConnectError> {
        let unreachable = |source| ConnectError::Unreachable {
            url: self.url.clone(),
            source,
        };
        let tcp = TcpStream::connect(&self.address)
            .await
            .map_err(unreachable)?;
        // Requests are small and answered at once: never hold a segment back.
        tcp.set_nodelay(true).map_err(unreachable)?;
        let Some((connector, name)) = &self.tls else {
            return Ok(Stream::Plain(tcp));
        };
        match connector.connect(name.clone(), tcp).await {
            Ok(tls) => Ok(Stream::Tls(Box::new(tls))),
            Err(e) => Err(self.handshake_error(e)),
        }
    }

    /// A handshake error as a refusal, when it is the TLS library's verdict, or as a broken
    /// connection.
    fn handshake_error(&self, e: io::Error) -> ConnectError {
        let verdict = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        let Some(verdict) = verdict else {
            return ConnectError::Unreachable {
                url: self.url.clone(),
                source: e,
            };
        };
        let hint = match verdict {
            rustls::Error::InvalidMessage(_) => {
                " (does the coordinator serve plain HTTP, --plain-http? then use http://)"
            }
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => {
                " (a coordinator with its development certificate: pin it with \
                 --coordinator-cert FILE, the cert.pem of its TLS directory)"
            }
            _ => "",
        };
        let verdict = match verdict {
            // Ours (a certificate that is not the pinned one) says it in words.
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
                other.to_string()
            }
            verdict => verdict.to_string(),
        };
        ConnectError::Refused {
            url: self.url.clone(),
            reason: format!("{verdict}{hint}"),
        }
    }
}

fn bad_url(url: &str, reason: &'static str) -> EndpointError {
    EndpointError::BadUrl {
        url: url.to_owned(),
        reason,
    }
}

/// `HOST[:PORT]` or `[IPv6][:PORT]` into the host (without brackets) and the port.
fn split_authority(authority: &str) -> Result<(&str, Option<u16>), &'static str> {
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return Err("needs exactly HOST[:PORT] after the scheme");
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => {
            let (host, after) = rest.split_once(']').ok_or("an IPv6 host without its ]")?;
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':').ok_or("junk after ]")?)),
            }
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Err("no host");
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().map_err(|_| "the port is not a number")?),
        None => None,
    };
    Ok((host, port))
}

/// A connection to the coordinator: plain TCP or TLS over it.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_schemes_and_refuses_the_rest() {
        let plain = Endpoint::new("http://127.0.0.1:8080/", None).unwrap();
        assert_eq!(
            (plain.authority(), plain.url(), plain.is_tls()),
            ("127.0.0.1:8080", "http://127.0.0.1:8080", false)
        );
        assert_eq!(plain.address, "127.0.0.1:8080");
        let v6 = Endpoint::new("http://[::1]:9", None).unwrap();
        assert_eq!(
            (v6.authority(), v6.address.as_str()),
            ("[::1]:9", "[::1]:9")
        );
        assert_eq!(
            Endpoint::new("http://c.example", None).unwrap().address,
            "c.example:80"
        );
        for url in [
            "127.0.0.1:8080",
            "ftp://c:1",
            "http://",
            "http://c:1/v1",
            "http://u@c:1",
            "http://c:port",
            "http://[::1",
            "http://:80",
        ] {
            let err = Endpoint::new(url, None).unwrap_err();
            assert!(matches!(err, EndpointError::BadUrl { .. }), "{url}: {err}");
        }
    }

    #[test]
    fn a_pin_over_plain_http_is_refused() {
        let err = Endpoint::new("http://127.0.0.1:1", Some(Path::new("cert.pem"))).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--coordinator-cert cert.pem: a pinned certificate needs an https://"),
            "{err}"
        );
    }
}
