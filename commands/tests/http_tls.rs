//! TLS on the HTTP door (docs/security.md, "TLS"), through real sockets on loopback: a client
//! pinning the coordinator's certificate is served; one pinning another certificate, or
//! trusting only the system's roots, is refused at the handshake; plain HTTP to the TLS port
//! is told to use https; a handshake that never comes or is garbage costs only its own
//! connection and slot; given certificate files are served, or refused naming the flag.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use prlx_commands::client::request;
use prlx_commands::http::{
    dev_cert_names, serve, CertificateSource, Connections, ServerTls, TransportOptions,
};
use prlx_events::endpoint::{ConnectError, Endpoint};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The development certificate made in `dir`.
fn dev_tls(dir: &Path) -> ServerTls {
    let names = dev_cert_names("127.0.0.1".parse().unwrap(), &[]);
    ServerTls::load(&CertificateSource::Development {
        dir: dir.to_owned(),
        names,
    })
    .unwrap()
}

/// A server with nothing but `GET /healthz` on a loopback port, with `tls` and the transport
/// `configure` sets; stops when the sender is dropped.
async fn serve_loopback(
    tls: Option<ServerTls>,
    configure: impl FnOnce(&mut TransportOptions),
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut options = TransportOptions::for_listener(addr);
    options.tls = tls;
    configure(&mut options);
    let router = Router::new().route(
        "/healthz",
        get(|| async { axum::Json(json!({"status": "ok"})) }),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let connections = Connections::new(&options);
        serve(&listener, router, &connections, async {
            let _ = stopped.await;
        })
        .await;
    });
    (addr, stop)
}

fn https(addr: SocketAddr, pin: &Path) -> Endpoint {
    Endpoint::new(&format!("https://{addr}"), Some(pin)).unwrap()
}

async fn health(endpoint: &Endpoint) -> Result<(u16, Value), String> {
    request(endpoint, "GET", "/healthz", None, None)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn only_a_client_pinning_the_coordinators_certificate_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dev_tls(&dir.path().join("tls"));
    let (addr, _stop) = serve_loopback(Some(tls.clone()), |_| {}).await;

    let pinned = https(addr, tls.cert_path());
    assert_eq!(health(&pinned).await.unwrap().0, 200);

    // Another coordinator's development certificate, just as self-signed and with the same
    // names: refused at the handshake, nothing asked.
    let other = dev_tls(&dir.path().join("other"));
    assert_ne!(other.fingerprint(), tls.fingerprint());
    let refused = https(addr, other.cert_path()).connect().await.unwrap_err();
    assert!(matches!(refused, ConnectError::Refused { .. }), "{refused}");
    assert!(!refused.is_retryable());
    let message = refused.to_string();
    assert!(
        message.contains(&format!(
            "the coordinator's certificate (SHA-256 {}) is not the pinned one (--coordinator-cert)",
            tls.fingerprint()
        )),
        "{message}"
    );

    // Without a pin, a development certificate is trusted by no system's roots.
    match Endpoint::new(&format!("https://{addr}"), None) {
        Ok(unpinned) => {
            let refused = unpinned.connect().await.unwrap_err().to_string();
            assert!(refused.contains("UnknownIssuer"), "{refused}");
            assert!(refused.contains("--coordinator-cert"), "{refused}");
        }
        // A machine with no roots at all says so.
        Err(e) => assert!(e.to_string().contains("--coordinator-cert"), "{e}"),
    }
    // The server still serves the pinned client after the refusals.
    assert_eq!(health(&pinned).await.unwrap().0, 200);
}

#[tokio::test]
async fn plain_http_to_the_tls_port_is_told_to_use_https_and_costs_only_its_connection() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dev_tls(dir.path());
    let (addr, _stop) = serve_loopback(Some(tls.clone()), |_| {}).await;

    let plain = Endpoint::new(&format!("http://{addr}"), None).unwrap();
    let (status, body) = health(&plain).await.unwrap();
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "tls_required", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("https://"),
        "{body}"
    );

    // A handshake record that is garbage: the connection is closed, nothing answered.
    let mut garbage = TcpStream::connect(addr).await.unwrap();
    garbage
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), garbage.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server closed the garbage connection");
    assert!(
        buf.is_empty() || buf[0] == 0x15,
        "at most a TLS alert: {buf:?}"
    );

    assert_eq!(health(&https(addr, tls.cert_path())).await.unwrap().0, 200);
}

#[tokio::test]
async fn a_handshake_that_never_comes_is_closed_after_the_header_timeout_freeing_its_slot() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dev_tls(dir.path());
    let timeout = Duration::from_millis(300);
    let (addr, _stop) = serve_loopback(Some(tls.clone()), |o| {
        o.header_read_timeout = timeout;
        o.max_connections = 1;
    })
    .await;

    // Connects, says nothing, holds the only slot.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let pinned = https(addr, tls.cert_path());
    // Waits in the backlog until the silent connection is closed.
    let (status, _) = tokio::time::timeout(Duration::from_secs(10), health(&pinned))
        .await
        .expect("served once the silent connection was closed")
        .unwrap();
    assert_eq!(status, 200);
    assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());
    let mut byte = [0u8; 1];
    assert_eq!(silent.read(&mut byte).await.unwrap_or(0), 0, "closed");
}

#[tokio::test]
async fn an_https_client_of_a_plain_server_is_told_it_may_be_plain() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dev_tls(dir.path());
    let (addr, _stop) = serve_loopback(None, |_| {}).await;
    let refused = https(addr, tls.cert_path()).connect().await.unwrap_err();
    let message = refused.to_string();
    assert!(message.contains("--plain-http"), "{message}");
    assert!(!refused.is_retryable());
}

/// A certificate and its key, as an operator's files would be (the key mode 0600).
fn write_given(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["coordinator.example".to_owned()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    (cert_path, key_path)
}

#[tokio::test]
async fn given_certificate_files_are_served_or_refused_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_given(dir.path(), "a");
    let tls = ServerTls::load(&CertificateSource::Given {
        cert: cert.clone(),
        key: key.clone(),
    })
    .unwrap();
    assert_eq!(tls.cert_path(), cert);
    let (addr, _stop) = serve_loopback(Some(tls), |_| {}).await;
    // Pinned byte for byte: its name (coordinator.example) need not be the address.
    assert_eq!(health(&https(addr, &cert)).await.unwrap().0, 200);

    let (_, other_key) = write_given(dir.path(), "b");
    let load = |cert: &Path, key: &Path| {
        ServerTls::load(&CertificateSource::Given {
            cert: cert.to_owned(),
            key: key.to_owned(),
        })
        .unwrap_err()
        .to_string()
    };
    let mismatched = load(&cert, &other_key);
    assert!(mismatched.starts_with("--tls-key "), "{mismatched}");
    assert!(
        mismatched.contains("does not go with --tls-cert"),
        "{mismatched}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let readable = load(&cert, &key);
    assert!(readable.starts_with("--tls-key "), "{readable}");
    assert!(readable.contains("let others read it"), "{readable}");
    let not_pem = load(&key, &other_key);
    assert!(not_pem.starts_with("--tls-cert "), "{not_pem}");
}
