//! The coordinator's HTTP intake: `fn app(handle) -> Router`, its DTOs and its one error type.
//!
//! Handlers never hold the coordinator: they parse and check what they can without state,
//! then send a command or a read to the actor ([`crate::actor`]) and shape its answer. Every
//! error, whether the core's rejection, a body that does not parse, a body over the limit or a
//! failure of ours, is one [`AppError`] with one body: `{"error": {"code", "field", "message"}}`.
//!
//! Rejections (the request is wrong) are 4xx; failures (we could not do it: the log refused an
//! append) are 503 and worth a retry against a restarted coordinator.
//!
//! The prompt of a submission is hashed and sealed inside the actor and never written anywhere
//! in plaintext: no handler logs a body, and no error message quotes the prompt.
//!
//! Heartbeats are signed by the node's registered key (a forged one could keep an offline node
//! in the pool and earning uptime). No endpoint credits an account or moves stake: credits come
//! from `CreditEscrow` deposits and stake from `NodeStaking`, both read off the chain by the
//! coordinator's watcher (`crate::chain_watch`); the API only shows them.
//!
//! # Layout
//! - `state`: what the handlers share (the actor, the reward history, the heartbeat guard).
//! - `extract`: the JSON, query and path extractors whose rejections name the field.
//! - `body`: the bodies handlers take and answer.
//! - `requests`, `accounts`, `nodes`, `stake`, `rewards`, `ops`: the handlers, by resource.
//! - `reader`: who may read an account's balance and requests (a read-access token).
//! - `guard`: the transport checks in front of them (Host, Origin, JSON bodies, rate,
//!   request time), and [`TransportOptions`].
//! - `rate`: the per-caller rate limiter.
//! - `serve`: the server, with its connection limit and header read timeout.
//! - `tls`: TLS on the listener (the server configuration, each connection's handshake), over
//!   `certificate`: the operator's certificate files, or the development certificate made on
//!   first start.
//! - The error answer is [`crate::error`]; submission parsing, shared with the Kafka intake,
//!   is [`crate::submission`].

mod accounts;
mod body;
mod certificate;
mod extract;
mod guard;
mod nodes;
mod ops;
pub mod rate;
mod reader;
mod requests;
mod rewards;
mod serve;
mod stake;
mod state;
mod tls;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
use axum::Router;
use prlx_events::log::AnyReader;
use prlx_projections::Fold;

use crate::actor::CoordinatorHandle;

use self::accounts::*;
use self::nodes::*;
use self::ops::*;
use self::requests::*;
use self::rewards::*;
use self::stake::*;
use self::state::{Api, History};
use crate::shell::HeartbeatGuard;

/// The largest request body accepted, in bytes. A sealed payload is about 4/3 of the prompt
/// on the log, so this keeps every accepted record well under the file log's 8 MiB limit.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The longest `Idempotency-Key` accepted.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// The router over `handle`, with the default body limit. `log` reads the coordinator's log
/// (`Coordinator::writer().reader()`): the reward history is served from the durable log, since
/// the coordinator's state keeps only what the next settlement needs.
pub fn app(handle: CoordinatorHandle, log: AnyReader) -> Router {
    app_with_body_limit(handle, log, MAX_BODY_BYTES)
}

/// The router over `handle`; bodies over `max_body_bytes` get 413.
pub fn app_with_body_limit(
    handle: CoordinatorHandle,
    log: AnyReader,
    max_body_bytes: usize,
) -> Router {
    let api = Api {
        coordinator: handle,
        history: Arc::new(History {
            log,
            fold: tokio::sync::Mutex::new(Fold::default()),
        }),
        heartbeats: Arc::new(HeartbeatGuard::default()),
    };
    Router::new()
        .route("/v1/requests", post(submit_request))
        .route("/v1/requests/{id}", get(get_request))
        .route("/v1/accounts/{account}", get(get_account))
        .route("/v1/accounts/{account}/delegations", get(list_delegations))
        .route("/v1/quote", get(quote))
        .route("/v1/quote/task", post(quote_task))
        .route("/v1/consent", get(consent_domain))
        .route("/v1/delegations/revocations", post(revoke_delegation))
        .route("/v1/nodes", post(register_node).get(list_nodes))
        .route("/v1/nodes/{id}/heartbeat", post(node_heartbeat))
        .route("/v1/nodes/{id}/results", post(submit_result))
        .route("/v1/nodes/{id}/refusals", post(submit_refusal))
        .route("/v1/nodes/{id}/stake", get(get_stake))
        .route("/v1/rewards", get(get_rewards))
        .route("/v1/rewards/epochs", get(list_epochs))
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi_json))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn(guard::require_json_body))
        .with_state(api)
}

pub use self::certificate::{subject_names as dev_cert_names, CertificateError, CertificateSource};
pub use self::guard::{
    guarded, HostAllowList, TransportOptions, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_RATE_LIMIT, DEFAULT_REQUEST_TIMEOUT,
};
pub use self::ops::openapi;
pub use self::rate::RateLimit;
pub use self::serve::{serve, Connections};
pub use self::tls::ServerTls;
