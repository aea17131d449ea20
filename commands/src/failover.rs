//! `serve` under a lease: one coordinator process that is the log's writer while it holds the
//! lease (active) and answers `503` + `Retry-After` while it does not (standby). See
//! docs/adr/04-kafka-failover.md.
//!
//! The process keeps its HTTP port bound throughout and goes round one loop:
//! 1. **Standby**: every route answers `503 coordinator_unavailable` with `Retry-After`, so a
//!    load balancer's health check (`GET /healthz`) sends nobody here, and a client that
//!    arrives anyway retries.
//! 2. **Elected**: still answering 503, it opens the log's writer (on Kafka,
//!    `init_transactions` fences any earlier writer and aborts its open transaction), folds
//!    the log from the start and publishes what the bin asks (catalog, reward policy).
//! 3. **Active**: the usual router over the coordinator actor, until the lease is lost, the
//!    actor stops on a log failure (fenced, outcome unknown, broker gone too long), or a
//!    signal. On a lease loss or a log failure it stops taking connections, lets requests in
//!    flight finish (their answers are 503 once the actor is gone), drops the writer and goes
//!    back to 1. Nothing unanswered is lost: an answer leaves only once durable, and a
//!    client's retry with its `Idempotency-Key` finds what did land.
//!
//! After a log failure while still holding the lease it leaves the group and joins again,
//! so that another instance gets the lease if there is one: a process whose writer keeps
//! failing must not keep the lease to itself, nor fence back whoever fenced it.
//!
//! On a file log the lease is always held (the file lock refuses a second writer): the loop
//! runs once, and any failure ends the process, as before (crash-only; a supervisor restarts
//! it).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use prlx_events::log::Lease;
use prlx_projections::snapshot::SnapshotError;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use prlx_events::backoff::Backoff;

use crate::actor;
use crate::error::{ErrorBody, ErrorDetail};
use crate::http;
use crate::shell::{Coordinator, ShellError};

/// A task that runs beside the HTTP intake while this instance is active (the Kafka
/// submissions intake): told to stop, and awaited, when the instance steps down.
#[derive(Debug)]
pub struct ActiveTask {
    pub stop: watch::Sender<bool>,
    pub task: JoinHandle<()>,
}

impl ActiveTask {
    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// What a standby tells clients to wait before they try again, in seconds.
pub const RETRY_AFTER_SECONDS: u64 = 1;
/// Bounds of the pause between attempts to open the log while elected.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Why the coordinator could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The log could not be opened, read or appended to (the broker is away, another writer
    /// fenced this one): worth another try while elected.
    #[error("{0}")]
    Log(String),
    /// Anything else (a refused catalog, a bad key, a bad URL): another try would fail alike.
    #[error("{0}")]
    Fatal(String),
}

/// Why serving ended with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("opening the coordinator: {0}")]
    Open(String),
    #[error("the coordinator failed: {0}")]
    Failed(ShellError),
    #[error("the coordinator task panicked")]
    Panicked,
    #[error("serving HTTP: {0}")]
    Http(std::io::Error),
}

/// Whether a shell failure is the log's (a new writer, reopened, may carry on) rather than a
/// bug or a bad key, which would only fail again.
pub fn is_log_failure(e: &ShellError) -> bool {
    match e {
        ShellError::Log(e) | ShellError::Recover(SnapshotError::Log(e)) => e.is_retryable(),
        _ => false,
    }
}

/// The standby's answer to everything.
fn standby_app() -> Router {
    Router::new().fallback(standby)
}

async fn standby() -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: "coordinator_unavailable".into(),
            field: None,
            message: "this coordinator instance is a standby: it does not hold the log's lease \
                      (another instance is active, or this one is taking over); try again"
                .into(),
        },
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, RETRY_AFTER_SECONDS.to_string())],
        Json(body),
    )
        .into_response()
}

/// A standby server running on the listener until stopped.
struct Standby {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Standby {
    fn start(listener: &Arc<TcpListener>, connections: &http::Connections) -> Standby {
        let (stop, stopped) = oneshot::channel::<()>();
        let (listener, connections) = (listener.clone(), connections.clone());
        let task = tokio::spawn(async move {
            http::serve(&listener, standby_app(), &connections, async {
                let _ = stopped.await;
            })
            .await
        });
        Standby { stop, task }
    }

    async fn stop(self) -> Result<(), ServeError> {
        let _ = self.stop.send(());
        self.task.await.map_err(|_| ServeError::Panicked)
    }
}

async fn until_set(flag: &mut watch::Receiver<bool>) {
    if flag.wait_for(|set| *set).await.is_err() {
        std::future::pending::<()>().await
    }
}

/// Why the active phase ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepDown {
    Signal,
    ActorStopped,
    LeaseLost,
}

/// Serves on `listener` under `lease` until `shutdown` resolves; see the module docs. `open`
/// opens the coordinator (writer, recovery, what the log must carry) each time this process
/// is elected; `on_listening` is called once with the address, when the port first answers:
/// at once when the lease is elected (the standby answers), after the first open otherwise.
/// `transport` sets the checks and limits of the HTTP door, the standby's included.
pub async fn serve<O, F>(
    listener: TcpListener,
    transport: &http::TransportOptions,
    mut lease: Lease,
    mut open: O,
    on_listening: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send + 'static,
    mut on_active: impl FnMut(actor::CoordinatorHandle) -> Option<ActiveTask>,
) -> Result<(), ServeError>
where
    O: FnMut() -> F,
    F: Future<Output = Result<Coordinator, OpenError>>,
{
    let addr = listener.local_addr().map_err(ServeError::Http)?;
    let listener = Arc::new(listener);
    // One set of connection slots for the process: the standby's and the active server's.
    let connections = http::Connections::new(transport);
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
        // Keep the sender: a dropped one would read as "never".
        std::future::pending::<()>().await
    });
    let elected = lease.is_elected();
    let mut on_listening = Some(on_listening);
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    loop {
        // Standby (elected leases only): answer 503 until elected and opened.
        let standby = elected.then(|| Standby::start(&listener, &connections));
        if let Some(f) = on_listening.take_if(|_| elected) {
            f(addr);
        }
        if !lease.is_held() {
            tracing::info!("standby: waiting for the log's lease (answering 503 until then)");
        }
        let mut stopping = stop.clone();
        let acquired = tokio::select! {
            r = lease.acquired() => r,
            () = until_set(&mut stopping) => {
                if let Some(s) = standby { s.stop().await?; }
                return Ok(());
            }
        };
        if let Err(e) = acquired {
            // Out of the group (a rejoin failed): try again after a pause.
            tracing::warn!(error = %e, "the lease failed; joining the election again");
            pause(&mut backoff, &stop).await;
            if let Err(e) = lease.rejoin() {
                tracing::warn!(error = %e, "joining the election failed");
            }
            if let Some(s) = standby {
                s.stop().await?;
            }
            continue;
        }
        if elected {
            tracing::info!("elected: opening the log as its writer");
        }
        let opened = tokio::select! {
            r = open() => r,
            () = until_set(&mut stopping) => {
                if let Some(s) = standby { s.stop().await?; }
                return Ok(());
            }
        };
        let coordinator = match opened {
            Ok(c) => c,
            Err(OpenError::Log(why)) if elected => {
                tracing::warn!(
                    error = %why,
                    "opening the log failed; standing by, then trying again"
                );
                pause(&mut backoff, &stop).await;
                if let Err(e) = lease.rejoin() {
                    tracing::warn!(error = %e, "joining the election failed");
                }
                if let Some(s) = standby {
                    s.stop().await?;
                }
                continue;
            }
            Err(OpenError::Log(why) | OpenError::Fatal(why)) => {
                if let Some(s) = standby {
                    s.stop().await?;
                }
                return Err(ServeError::Open(why));
            }
        };
        backoff.reset();
        if let Some(s) = standby {
            s.stop().await?;
        }
        if let Some(f) = on_listening.take() {
            f(addr);
        }

        // Active.
        let history = coordinator.writer().reader();
        let (handle, actor) = actor::spawn(coordinator);
        if elected {
            tracing::info!("active: serving as the log's writer");
        }
        // Other doors (the Kafka intake) open only while active, and close before the actor.
        let side = on_active(handle.clone());
        let (why_tx, why_rx) = oneshot::channel();
        let actor_stopped = handle.clone();
        let mut signalled = stop.clone();
        let mut held = lease.holder();
        let router = http::guarded(http::app(handle.clone(), history), transport);
        http::serve(&listener, router, &connections, async move {
            let why = tokio::select! {
                () = until_set(&mut signalled) => StepDown::Signal,
                () = actor_stopped.stopped() => StepDown::ActorStopped,
                _ = held.wait_for(|held| !*held) => StepDown::LeaseLost,
            };
            match why {
                StepDown::Signal => {
                    tracing::info!("shutting down: finishing requests in flight")
                }
                StepDown::ActorStopped => {
                    tracing::warn!("the coordinator stopped; stepping down")
                }
                StepDown::LeaseLost => tracing::warn!(
                    "lost the log's lease: stepping down, finishing requests in flight"
                ),
            }
            let _ = why_tx.send(why);
        })
        .await;
        if let Some(side) = side {
            side.stop().await;
        }
        // Every handle is gone with the router: the actor drains its queue and ends, and
        // with it the writer.
        drop(handle);
        let ended = actor.await.map_err(|_| ServeError::Panicked)?;
        let why = why_rx.await.unwrap_or(StepDown::ActorStopped);
        match (why, ended) {
            (StepDown::Signal, Ok(())) => return Ok(()),
            (_, Err(e)) if !(elected && is_log_failure(&e)) => {
                return Err(ServeError::Failed(e));
            }
            (StepDown::Signal, Err(e)) => return Err(ServeError::Failed(e)),
            (StepDown::LeaseLost, ended) => {
                if let Err(e) = ended {
                    tracing::warn!(error = %e, "the writer stopped too");
                }
            }
            (StepDown::ActorStopped, ended) => {
                let why = ended
                    .err()
                    .map_or("it stopped".to_owned(), |e| e.to_string());
                tracing::warn!(
                    error = %why,
                    "the coordinator failed; leaving the election and joining again \
                     (another instance may take over)"
                );
                if let Err(e) = lease.rejoin() {
                    tracing::warn!(error = %e, "joining the election failed");
                }
            }
        }
    }
}

/// Takes the back-off's next pause, unless shutting down.
async fn pause(backoff: &mut Backoff, stop: &watch::Receiver<bool>) {
    let mut stopping = stop.clone();
    tokio::select! {
        () = backoff.pause() => {}
        () = until_set(&mut stopping) => {}
    }
}
