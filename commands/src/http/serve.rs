//! The HTTP/1 server under the router: a limit on open connections and a header read
//! timeout, which `axum::serve` has no setting for, and graceful shutdown.
//!
//! A connection over the limit is not accepted: it waits in the kernel's backlog until one
//! closes, so a flood of idle sockets cannot take every file descriptor. The header read
//! timeout closes a connection that has not sent a whole request head in time (a slowloris),
//! and with it an idle keep-alive connection, so idle clients do not hold slots forever.
//! With TLS, each connection's handshake runs in its own task within the same timeout
//! ([`super::tls`]), so a slow handshake neither stalls accepting nor holds a slot for long.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt as _;

use super::guard::TransportOptions;
use super::tls::ServerTls;

/// The connection slots, header timeout and TLS of one listener, shared by the servers that
/// take turns on it (the standby's and the active one's).
#[derive(Debug, Clone)]
pub struct Connections {
    slots: Arc<Semaphore>,
    header_read_timeout: Duration,
    tls: Option<ServerTls>,
}

impl Connections {
    pub fn new(options: &TransportOptions) -> Connections {
        Connections {
            slots: Arc::new(Semaphore::new(options.max_connections.max(1))),
            header_read_timeout: options.header_read_timeout,
            tls: options.tls.clone(),
        }
    }

    /// A free slot; waits (leaving the next connection in the backlog) when there is none.
    async fn slot(&self) -> OwnedSemaphorePermit {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return permit;
        }
        tracing::warn!("connection limit reached: new connections wait until one closes");
        match self.slots.clone().acquire_owned().await {
            Ok(permit) => permit,
            // The semaphore is never closed.
            Err(_) => std::future::pending().await,
        }
    }
}

/// Serves `router` on `listener` within `connections` until `shutdown` resolves, then stops
/// accepting and waits for the connections it holds to finish their requests. Each request
/// carries `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: &TcpListener,
    router: Router,
    connections: &Connections,
    shutdown: impl Future<Output = ()>,
) {
    let (stop_tx, stop) = watch::channel(false);
    // Each connection task holds a receiver; all gone means all finished.
    let (open_tx, open) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = next_connection(listener, connections) => accepted,
            () = &mut shutdown => break,
        };
        let (stream, remote, slot) = accepted;
        let task = Connection {
            router: router.clone(),
            header_read_timeout: connections.header_read_timeout,
            tls: connections.tls.clone(),
            stop: stop.clone(),
            open: open.clone(),
            _slot: slot,
        };
        tokio::spawn(task.run(stream, remote));
    }
    drop(open);
    let _ = stop_tx.send(true);
    open_tx.closed().await;
}

async fn next_connection(
    listener: &TcpListener,
    connections: &Connections,
) -> (TcpStream, SocketAddr, OwnedSemaphorePermit) {
    let slot = connections.slot().await;
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => return (stream, remote, slot),
            // Out of file descriptors and the like: pause, as axum's own listener does.
            Err(e) => {
                tracing::debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await
            }
        }
    }
}

/// One accepted connection, holding its slot until it closes.
struct Connection {
    router: Router,
    header_read_timeout: Duration,
    tls: Option<ServerTls>,
    stop: watch::Receiver<bool>,
    open: watch::Receiver<()>,
    _slot: OwnedSemaphorePermit,
}

impl Connection {
    async fn run(self, stream: TcpStream, remote: SocketAddr) {
        let Some(tls) = self.tls.clone() else {
            return self.serve_http(stream, remote).await;
        };
        // Answers are written as they come: no segment held back (TLS writes records).
        let _ = stream.set_nodelay(true);
        let mut stop = self.stop.clone();
        let stopping = async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        let accepted = tokio::select! {
            accepted = tls.accept(stream, remote, self.header_read_timeout) => accepted,
            // Nothing was asked on it yet: shutting down drops it.
            () = stopping => None,
        };
        if let Some(stream) = accepted {
            self.serve_http(stream, remote).await;
        }
    }

    async fn serve_http<S>(self, stream: S, remote: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = self
            .router
            .clone()
            .map_request(move |req: axum::http::Request<Incoming>| {
                let mut req = req.map(axum::body::Body::new);
                req.extensions_mut().insert(ConnectInfo(remote));
                req
            });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout);
        let conn =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let mut conn = std::pin::pin!(conn);
        let mut stop = self.stop.clone();
        let stopping = async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        let served = tokio::select! {
            served = conn.as_mut() => served,
            () = stopping => {
                // Finishes the request in progress, if any, then closes.
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = served {
            tracing::debug!(%remote, error = %e, "connection ended");
        }
        drop(self.open);
    }
}
