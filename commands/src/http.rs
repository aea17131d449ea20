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
//! in the pool and earning uptime). Stake and unstake are not authenticated yet, so anyone who
//! can reach the API can move a registered node's stake weighting: bind the API to loopback or
//! put it behind an authenticating proxy.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRef, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use prlx_events::crypto::{node_id_of, parse_public_key_pem, public_key_pem};
use prlx_events::event::{
    ExecutionClass, IntakeSource, NodeRegistered, Priority, RejectionCode, RewardEpochSettled,
    RewardMode, Sealed,
};
use prlx_events::log::AnyReader;
use prlx_events::protocol::ResultReport;
use prlx_events::{AccountId, Envelope, Event, Hash32, NodeId, RequestId};
use prlx_projections::snapshot::catch_up;
use prlx_projections::{CoordinatorState, Fold, FoldError, Projection};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::actor::{ActorError, CoordinatorHandle, Intake};
use crate::decide::{self, Command, Rejection, Submission};
use crate::settle::SettlementCommand;
use crate::shell::Outcome;

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
        heartbeats: Arc::new(std::sync::Mutex::new(BTreeMap::new())),
    };
    Router::new()
        .route("/v1/requests", post(submit_request))
        .route("/v1/requests/{id}", get(get_request))
        .route("/v1/accounts/{account}", get(get_account))
        .route("/v1/accounts/{account}/deposits", post(deposit_credits))
        .route("/v1/quote", get(quote))
        .route("/v1/nodes", post(register_node).get(list_nodes))
        .route("/v1/nodes/{id}/heartbeat", post(node_heartbeat))
        .route("/v1/nodes/{id}/results", post(submit_result))
        .route("/v1/nodes/{id}/stake", post(deposit_stake).get(get_stake))
        .route("/v1/nodes/{id}/unstake", post(request_unstake))
        .route("/v1/rewards", get(get_rewards))
        .route("/v1/rewards/epochs", get(list_epochs))
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi_json))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(api)
}

/// What the handlers share: the actor, and the reward history read from the log.
#[derive(Debug, Clone)]
struct Api {
    coordinator: CoordinatorHandle,
    history: Arc<History>,
    /// The signed time of each node's last accepted heartbeat: a heartbeat must be newer.
    /// Kept in memory only: after a restart a heartbeat captured in the last
    /// [`HEARTBEAT_SKEW_SECONDS`] could be replayed once, which the skew bound keeps short.
    heartbeats: Arc<std::sync::Mutex<BTreeMap<NodeId, i64>>>,
}

/// How far a heartbeat's signed time may be from the coordinator's clock.
pub const HEARTBEAT_SKEW_SECONDS: i64 = 120;

/// A node's signed heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatBody {
    /// When the node signed it, Unix seconds; within 120 s of the coordinator's clock and
    /// later than the node's last accepted heartbeat.
    pub at: i64,
    /// Base64 RSA-PSS-SHA256 signature by the node's registered key over
    /// `"prlx/heartbeat/v1\0" || node id (32 bytes) || at (i64 BE)`.
    pub signature: String,
}

impl FromRef<Api> for CoordinatorHandle {
    fn from_ref(api: &Api) -> Self {
        api.coordinator.clone()
    }
}

impl FromRef<Api> for Arc<History> {
    fn from_ref(api: &Api) -> Self {
        api.history.clone()
    }
}

/// [`RewardHistory`] folded from the log, caught up on each read.
#[derive(Debug)]
struct History {
    log: AnyReader,
    fold: tokio::sync::Mutex<Fold<RewardHistory>>,
}

impl History {
    /// Catches up with the durable end of the log and answers `f` from the history.
    async fn read<T>(&self, f: impl FnOnce(&RewardHistory) -> T) -> Result<T, AppError> {
        let mut fold = self.fold.lock().await;
        catch_up(&mut fold, &self.log).await.map_err(|e| {
            AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "coordinator_unavailable",
                None,
                format!("reading the reward history from the log: {e}"),
            )
        })?;
        Ok(f(&fold.state))
    }
}

/// What settlement has done, as the log records it: the settled epochs in order and the stake
/// returned to each node. The coordinator's state drops an epoch's details once it is closed
/// and counts no returns, so this read model follows the log instead. It holds durable records
/// only; the coordinator's fold has already checked every one of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardHistory {
    pub epochs: Vec<RewardEpochSettled>,
    pub returned: BTreeMap<NodeId, u64>,
}

impl Projection for RewardHistory {
    const NAME: &'static str = "reward-history";
    const FOLD_VERSION: u32 = 1;

    fn apply(&mut self, env: &Envelope) -> Result<(), FoldError> {
        match &env.event {
            Event::RewardEpochSettled(s) => self.epochs.push(s.clone()),
            Event::StakeReturned(r) => {
                let sum = self.returned.entry(r.node_id).or_default();
                *sum = sum.saturating_add(r.amount);
            }
            _ => {}
        }
        Ok(())
    }
}

/// The OpenAPI document of this API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT). The handlers are installed here, before the
/// future is first polled, so a signal that arrives early is not lost to the default action.
pub fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Errors.

/// The body of every error: `{"error": {"code", "field", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable snake_case code. The core's rejection codes (`insufficient_credit`,
    /// `malformed_request`, `payload_hash_mismatch`, `unknown_workload_class`, `unknown_model`,
    /// `tier_out_of_range`, `deadline_out_of_range`, `unknown_node`, `node_already_registered`,
    /// `invalid_amount`) plus the HTTP layer's own: `unknown_request`, `unknown_account`,
    /// `payload_too_large`, `unsupported_media_type`, `not_found`, `method_not_allowed`,
    /// `coordinator_unavailable`, `internal`.
    pub code: String,
    /// The request field at fault (a JSON path such as `execution_class.device`), if one is.
    pub field: Option<String>,
    /// Words for a person.
    pub message: String,
}

/// Every error the HTTP layer answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppError {
    pub status: StatusCode,
    pub code: Cow<'static, str>,
    pub field: Option<String>,
    pub message: String,
}

impl AppError {
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        field: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            field: field.map(str::to_owned),
            message: message.into(),
        }
    }

    /// `400 malformed_request` on `field`.
    pub fn malformed(field: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            code_name(RejectionCode::MalformedRequest),
            Some(field),
            message,
        )
    }

    fn not_found(code: &'static str, field: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, Some(field), message)
    }

    fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", None, message)
    }
}

/// The wire name of a rejection code, as the event log writes it.
pub fn code_name(code: RejectionCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .expect("RejectionCode serializes as a string")
}

/// The HTTP status of a rejection by the core.
pub fn rejection_status(code: RejectionCode) -> StatusCode {
    match code {
        RejectionCode::InsufficientCredit => StatusCode::PAYMENT_REQUIRED,
        RejectionCode::NodeAlreadyRegistered => StatusCode::CONFLICT,
        RejectionCode::UnknownNode => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl From<Rejection> for AppError {
    fn from(r: Rejection) -> Self {
        Self {
            status: rejection_status(r.code),
            code: code_name(r.code).into(),
            field: r.field,
            message: r.message,
        }
    }
}

impl From<ActorError> for AppError {
    fn from(e: ActorError) -> Self {
        match e {
            ActorError::Stopped | ActorError::Failed(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "coordinator_unavailable",
                None,
                e.to_string(),
            ),
            ActorError::NoAnswer => Self::internal(e.to_string()),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.into_owned(),
                field: self.field,
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

async fn no_route(method: Method, uri: Uri) -> AppError {
    AppError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        None,
        format!("no route for {method} {}", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> AppError {
    AppError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        None,
        format!("{} does not take {method}", uri.path()),
    )
}

// ---------------------------------------------------------------------------------------------
// Extractors whose rejections are AppErrors that name the field.

/// A JSON body. A body that does not decode is `400 malformed_request` naming the field at
/// fault (a missing field, a wrong type, a bad enum value); one over the limit is `413`.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let json = ct
                .to_str()
                .ok()
                .and_then(|ct| ct.split(';').next())
                .is_some_and(|m| {
                    let m = m.trim().to_ascii_lowercase();
                    m == "application/json"
                        || (m.starts_with("application/") && m.ends_with("+json"))
                });
            if !json {
                return Err(AppError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    None,
                    "the body must be application/json",
                ));
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(body_error)?;
        decode_json(&bytes).map(ApiJson)
    }
}

fn body_error(e: BytesRejection) -> AppError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            None,
            "the body is over the size limit",
        )
    } else {
        AppError::new(
            StatusCode::BAD_REQUEST,
            code_name(RejectionCode::MalformedRequest),
            None,
            format!("could not read the body: {}", e.body_text()),
        )
    }
}

/// Decodes JSON, naming the field at fault on error.
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        decode_error(&path, message)
    })?;
    de.end()
        .map_err(|e| decode_error(".", format!("after the JSON value: {e}")))?;
    Ok(value)
}

/// A query string, decoded like [`ApiJson`].
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|e| {
                let path = e.path().to_string();
                decode_error(&path, e.into_inner().to_string())
            })
    }
}

/// One path segment as text; the handler parses it and names it on error.
#[derive(Debug, Clone)]
pub struct ApiPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ApiPath {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e| {
                AppError::new(
                    StatusCode::BAD_REQUEST,
                    code_name(RejectionCode::MalformedRequest),
                    None,
                    e.body_text(),
                )
            })
    }
}

/// serde reports a missing field at the path of the struct that lacks it, with the name only
/// in the message; put the two together so `field` always names the field itself.
fn decode_error(path: &str, message: String) -> AppError {
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name);
    let field = match (path, missing) {
        (".", Some(name)) => Some(name.to_owned()),
        (".", None) => None,
        (path, Some(name)) => Some(format!("{path}.{name}")),
        (path, None) => Some(path.to_owned()),
    };
    AppError {
        status: StatusCode::BAD_REQUEST,
        code: code_name(RejectionCode::MalformedRequest).into(),
        field,
        message,
    }
}

// ---------------------------------------------------------------------------------------------
// DTOs. The event types stay free of HTTP concerns; these map onto them.

/// How urgent a request is; scales its price (low 80%, standard 100%, high 150%).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PriorityParam {
    Low,
    Standard,
    High,
}

impl From<PriorityParam> for Priority {
    fn from(p: PriorityParam) -> Self {
        match p {
            PriorityParam::Low => Priority::Low,
            PriorityParam::Standard => Priority::Standard,
            PriorityParam::High => Priority::High,
        }
    }
}

impl From<Priority> for PriorityParam {
    fn from(p: Priority) -> Self {
        match p {
            Priority::Low => PriorityParam::Low,
            Priority::Standard => PriorityParam::Standard,
            Priority::High => PriorityParam::High,
        }
    }
}

/// An inference request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SubmitRequestBody {
    /// The workload class; `ai.inference` is the only one served.
    #[schema(example = "ai.inference")]
    pub workload_class: String,
    /// A model reference from the published catalog.
    #[schema(example = "oss-chat-v1")]
    pub model: String,
    /// The hardware tier to run on: at least the model's `min_tier`, at most the catalog's
    /// `max_tier`.
    pub hardware_tier: u8,
    pub priority: PriorityParam,
    /// Seconds the client will wait, within the catalog's deadline bounds.
    pub deadline_seconds: u32,
    /// The credit account charged; it must have the price available.
    pub credit_account: String,
    /// The client's RSA public key (PEM, SPKI) that the result is sealed to.
    pub client_pubkey: String,
    /// The prompt. It is sealed to the coordinator's storage key on arrival and never stored
    /// or logged in plaintext.
    pub prompt: String,
    /// At most the model's `max_tokens_limit`.
    pub max_tokens: u32,
    /// The lowercase hex SHA-256 (64 characters) of the UTF-8 bytes of `prompt`. The
    /// coordinator hashes the prompt it received and refuses the request with
    /// `payload_hash_mismatch` when they differ.
    #[schema(example = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")]
    pub payload_hash: String,
}

/// A submission the coordinator accepted and reserved credit for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SubmissionAccepted {
    pub request_id: u64,
    /// Always `accepted`.
    #[schema(example = "accepted")]
    pub status: String,
    /// The price reserved, in credit minor units.
    pub price: u64,
}

/// Where a request stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RequestStatusBody {
    pub request_id: u64,
    /// `accepted`, `completed`, `failed` (more states arrive with scheduling).
    #[schema(example = "accepted")]
    pub status: String,
    pub price: u64,
    /// Credit held for it now.
    pub reserved: u64,
    /// Credit charged for it so far.
    pub charged: u64,
    pub model: String,
    pub hardware_tier: u8,
    pub priority: PriorityParam,
    /// Dispatches so far (a re-dispatch after a missed deadline or a bad result adds one).
    pub attempts: u32,
    /// `queued`, `running`, `validating` or `done`: where the work is. `validating`: a result
    /// is in, its commitment checked, and the request was drawn for redundant execution; the
    /// result is released once a replica confirms it (or a majority of three decides).
    #[schema(example = "running")]
    pub stage: String,
    /// When completed: the result sealed to `client_pubkey` (base64; RSA-OAEP-SHA256-wrapped
    /// AES-256-GCM key, AAD = the request id as u64 big-endian) and its proof-of-execution.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<ResultBodyOut>,
}

/// A returned result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResultBodyOut {
    /// Base64 of the sealed result.
    pub sealed_for_client: String,
    /// `SHA-256(task_id || result || node_id)`, hex.
    pub poe: String,
    /// The node that produced it, 64 hex characters.
    pub node_id: String,
}

/// What a node reports for a dispatch (`prlx_events::protocol::ResultReport`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResultReportBody {
    pub request_id: u64,
    pub attempt: u32,
    pub epoch: u64,
    /// Base64 of the canonical result sealed under the node's session key.
    pub sealed_result: String,
    /// Hex `SHA-256(task_id || result || node_id)`.
    pub poe: String,
    /// Base64 RSA-PSS-SHA256 signature over the result statement.
    pub signature: String,
    pub token_count: u32,
}

/// What became of a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReportOutcome {
    /// `recorded`: the result and its verdict are on the log; `duplicate`: already recorded.
    pub outcome: String,
}

/// A deposit observed on-chain.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DepositBody {
    /// The on-chain transaction; one `tx_ref` credits once, whatever the account.
    pub tx_ref: String,
    /// In credit minor units; positive.
    pub amount: u64,
}

/// An account after a deposit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DepositResult {
    pub account: String,
    pub balance: u64,
    pub reserved: u64,
    pub available: u64,
    /// False when this `tx_ref` had already been credited: nothing changed.
    pub credited: bool,
}

/// A credit account. Amounts are in credit minor units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccountBody {
    pub account: String,
    pub balance: u64,
    /// Held for requests in flight.
    pub reserved: u64,
    /// `balance - reserved`: what new requests may use.
    pub available: u64,
}

/// What a request would cost.
#[derive(Debug, Clone, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QuoteQuery {
    /// A model reference from the catalog.
    pub model: String,
    pub hardware_tier: u8,
    /// `low`, `standard` (the default) or `high`.
    #[param(value_type = Option<String>)]
    pub priority: Option<PriorityParam>,
    pub max_tokens: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuoteBody {
    pub model: String,
    /// What a submission with these parameters is charged, in credit minor units.
    pub price: u64,
}

/// What two honest nodes must share to produce the same bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExecutionClassBody {
    #[schema(example = "cpu-x86_64-avx2")]
    pub device: String,
    pub driver: String,
    #[schema(example = "onnxruntime-1.22.0")]
    pub runtime: String,
}

impl From<ExecutionClassBody> for ExecutionClass {
    fn from(e: ExecutionClassBody) -> Self {
        ExecutionClass {
            device: e.device,
            driver: e.driver,
            runtime: e.runtime,
        }
    }
}

impl From<&ExecutionClass> for ExecutionClassBody {
    fn from(e: &ExecutionClass) -> Self {
        ExecutionClassBody {
            device: e.device.clone(),
            driver: e.driver.clone(),
            runtime: e.runtime.clone(),
        }
    }
}

/// An operator node joining the pool.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RegisterNodeBody {
    /// The node's RSA public key, PEM (SPKI). Its SHA-256 fingerprint is the node id.
    pub public_key_pem: String,
    pub hardware_tier: u8,
    /// Catalog models the node serves.
    pub models: Vec<String>,
    /// Tasks it runs at once.
    pub slots: u32,
    pub stake: u64,
    pub execution_class: ExecutionClassBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeRegisteredBody {
    /// SHA-256 of the public key's SPKI DER, 64 lowercase hex characters.
    pub node_id: String,
}

/// A node as the coordinator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeBody {
    pub node_id: String,
    pub hardware_tier: u8,
    pub models: Vec<String>,
    pub slots: u32,
    pub stake: u64,
    pub execution_class: ExecutionClassBody,
    #[schema(value_type = String, format = DateTime)]
    pub registered_at: DateTime<Utc>,
    /// Log time of the last heartbeat (of the registration, before any).
    #[schema(value_type = String, format = DateTime)]
    pub last_heartbeat: DateTime<Utc>,
    pub in_pool: bool,
    pub draining: bool,
    /// Standing in basis points (10000 = full).
    pub standing_bp: u32,
}

/// Stake to add to, or take out of, a node's reward weighting.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StakeAmountBody {
    /// In minor units; positive. An unstake may not exceed what is staked.
    pub amount: u64,
}

/// A node's stake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StakeBody {
    pub node_id: String,
    /// What weights its uptime rewards now: registered plus deposited, minus unstaked.
    pub staked: u64,
    /// Unstaked amounts waiting for their cooldown, oldest first; each is returned whole at
    /// its `available_at` (stake is never seized).
    pub pending: Vec<PendingUnstakeBody>,
    /// Stake returned to it so far, after cooldowns.
    pub returned: u64,
    /// Uptime rewards paid to it over every settled epoch.
    pub rewards_paid: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PendingUnstakeBody {
    pub amount: u64,
    /// When the cooldown ends; the coordinator records the return at its next tick after.
    #[schema(value_type = String, format = DateTime)]
    pub available_at: DateTime<Utc>,
}

/// `bootstrap` (the Operator Rewards bucket unlocks linearly) or `steady_state` (a share of
/// the credits charged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RewardModeParam {
    Bootstrap,
    SteadyState,
}

impl From<RewardMode> for RewardModeParam {
    fn from(m: RewardMode) -> Self {
        match m {
            RewardMode::Bootstrap => RewardModeParam::Bootstrap,
            RewardMode::SteadyState => RewardModeParam::SteadyState,
        }
    }
}

/// Where settlement stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RewardsBody {
    /// The published reward policy (the fields of the `RewardPolicyPublished` event, see
    /// `docs/settlement.md`); null before one is published, and then nothing is earned.
    #[schema(value_type = Option<Object>)]
    pub policy: Option<serde_json::Value>,
    /// The mode the epoch in progress settles in, unless it is changed before the epoch ends.
    pub mode: RewardModeParam,
    /// The next epoch to settle (the one in progress, or one that ended a moment ago).
    pub next_epoch: u64,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_epoch_starts_at: Option<DateTime<Utc>>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_epoch_ends_at: Option<DateTime<Utc>>,
    /// The operators' pool the last settled epoch could not pay out; it joins the next pool.
    pub carried: u64,
}

/// Settled epochs from `from` on.
#[derive(Debug, Clone, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EpochsQuery {
    /// The first epoch to list (default 0).
    pub from: Option<u64>,
    /// At most this many epochs (default and maximum 1000).
    pub limit: Option<u32>,
}

/// The most epochs one listing returns.
pub const MAX_EPOCHS_LISTED: u32 = 1000;

/// One settled reward epoch (the `RewardEpochSettled` event). Amounts are in minor units and
/// add up exactly: `income + carried_in = pool + treasury + infra` and
/// `pool = sum(payouts.amount) + carried_over`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RewardEpochBody {
    pub epoch: u64,
    #[schema(value_type = String, format = DateTime)]
    pub starts_at: DateTime<Utc>,
    /// Exclusive.
    #[schema(value_type = String, format = DateTime)]
    pub ends_at: DateTime<Utc>,
    pub mode: RewardModeParam,
    /// Bootstrap: what the bucket unlocked. Steady state: the credits charged in the epoch.
    pub income: u64,
    pub carried_in: u64,
    /// What operators shared.
    pub pool: u64,
    pub treasury: u64,
    pub infra: u64,
    /// A u128, as a decimal string (JSON numbers lose precision past 2^53 in many clients).
    #[schema(example = "5400")]
    pub total_weight: String,
    /// One per node that earned an uptime slot, in node id order.
    pub payouts: Vec<PayoutBody>,
    pub carried_over: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PayoutBody {
    pub node_id: String,
    /// Uptime slots it earned in the epoch.
    pub verified_slots: u64,
    /// Sum over those slots of stake x tier weight; a u128 as a decimal string.
    pub weight: String,
    pub amount: u64,
}

impl From<&RewardEpochSettled> for RewardEpochBody {
    fn from(e: &RewardEpochSettled) -> Self {
        RewardEpochBody {
            epoch: e.epoch,
            starts_at: e.starts_at,
            ends_at: e.ends_at,
            mode: e.mode.into(),
            income: e.income,
            carried_in: e.carried_in,
            pool: e.pool,
            treasury: e.treasury,
            infra: e.infra,
            total_weight: e.total_weight.to_string(),
            payouts: e
                .payouts
                .iter()
                .map(|p| PayoutBody {
                    node_id: p.node_id.0.to_hex(),
                    verified_slots: p.verified_slots,
                    weight: p.weight.to_string(),
                    amount: p.amount,
                })
                .collect(),
            carried_over: e.carried_over,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HealthBody {
    #[schema(example = "ok")]
    pub status: String,
    /// One past the offset of the last record the coordinator has applied.
    pub log_end: u64,
}

// ---------------------------------------------------------------------------------------------
// Handlers.

#[utoipa::path(
    post,
    path = "/v1/requests",
    tag = "requests",
    request_body = SubmitRequestBody,
    params(
        ("Idempotency-Key" = Option<String>, Header,
            description = "Makes a retry safe: a second submission with the same key for the same \
                credit account returns the first one's request id and reserves nothing more. \
                1 to 255 visible ASCII characters."),
    ),
    responses(
        (status = 202, description = "Accepted; the price is reserved", body = SubmissionAccepted),
        (status = 400, description = "`malformed_request` (naming the field), `payload_hash_mismatch`, \
            `unknown_workload_class`, `unknown_model`, `tier_out_of_range`, `deadline_out_of_range`", body = ErrorBody),
        (status = 402, description = "`insufficient_credit`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 503, description = "`coordinator_unavailable`", body = ErrorBody),
    ),
)]
async fn submit_request(
    State(coordinator): State<CoordinatorHandle>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SubmitRequestBody>,
) -> Result<(StatusCode, Json<SubmissionAccepted>), AppError> {
    let idempotency_key = idempotency_key(&headers)?;
    let (submission, payload) = submission_from_body(body, idempotency_key, IntakeSource::Http)?;
    let accepted = submit(&coordinator, submission, payload).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// Checks a submission body as intake does (the same for HTTP and the Kafka submissions
/// topic) and builds the core's [`Submission`] and the payload bytes.
pub fn submission_from_body(
    body: SubmitRequestBody,
    idempotency_key: Option<String>,
    source: IntakeSource,
) -> Result<(Submission, Vec<u8>), AppError> {
    if body.credit_account.is_empty() {
        return Err(AppError::malformed("credit_account", "must not be empty"));
    }
    parse_public_key_pem(&body.client_pubkey).map_err(|e| {
        AppError::malformed(
            "client_pubkey",
            format!("must be an RSA public key in PEM (SPKI): {e}"),
        )
    })?;
    let payload_hash: Hash32 = body.payload_hash.parse().map_err(|_| {
        AppError::malformed(
            "payload_hash",
            "must be the lowercase hex SHA-256 of the prompt's UTF-8 bytes (64 characters)",
        )
    })?;
    let submission = Submission {
        idempotency_key,
        source,
        workload_class: body.workload_class,
        model: body.model,
        hardware_tier: body.hardware_tier,
        priority: body.priority.into(),
        deadline_seconds: body.deadline_seconds,
        max_tokens: body.max_tokens,
        credit_account: AccountId(body.credit_account),
        client_pubkey: body.client_pubkey,
        payload_hash,
        // Filled in by the actor, which holds the storage key.
        computed_payload_hash: Hash32([0; 32]),
        sealed_payload: Sealed(Vec::new()),
    };
    Ok((submission, body.prompt.into_bytes()))
}

/// Submits through the actor and answers once the outcome is durable: the request accepted
/// (or, for a retry with the same idempotency key, the request the first try created), or
/// the rejection.
pub async fn submit(
    coordinator: &CoordinatorHandle,
    submission: Submission,
    payload: Vec<u8>,
) -> Result<SubmissionAccepted, AppError> {
    submit_enqueued(coordinator, submission, payload)
        .await?
        .await
}

/// As [`submit`], in two steps: this returns once the submission is in the coordinator's
/// queue (so one enqueued after it is decided after it); the future gives the answer.
pub async fn submit_enqueued(
    coordinator: &CoordinatorHandle,
    submission: Submission,
    payload: Vec<u8>,
) -> Result<
    impl std::future::Future<Output = Result<SubmissionAccepted, AppError>> + Send + 'static,
    AppError,
> {
    let answer_of = SubmissionAnswer::of(&submission);
    let intake = Intake::Submission {
        submission: Box::new(submission),
        payload,
    };
    let answer = coordinator
        .enqueue(intake, move |outcome, state| {
            answer_of.answer(outcome, state)
        })
        .await?;
    Ok(async move { answer.await?.1 })
}

/// Computes a submission's answer from what it came to and the state right after it, in the
/// actor's turn (so "which request did this create" is never answered from a later state).
#[derive(Debug, Clone)]
pub struct SubmissionAnswer {
    account: AccountId,
    idempotency_key: Option<String>,
}

impl SubmissionAnswer {
    pub fn of(submission: &Submission) -> Self {
        Self {
            account: submission.credit_account.clone(),
            idempotency_key: submission.idempotency_key.clone(),
        }
    }

    pub fn answer(
        &self,
        outcome: &Outcome,
        state: &CoordinatorState,
    ) -> Result<SubmissionAccepted, AppError> {
        let id = match outcome {
            Outcome::Rejected { rejection, .. } => return Err(rejection.clone().into()),
            // A retry: the key names the request the first try created.
            Outcome::Unchanged => self
                .idempotency_key
                .as_deref()
                .and_then(|key| state.request_for_key(&self.account, key)),
            // Answered in the same turn as the append: the newest request is this one.
            Outcome::Appended(_) => state.next_request_id.checked_sub(1).map(RequestId),
            Outcome::Refused(_) => None,
        };
        match id.and_then(|id| state.requests.get(&id).map(|r| (id, r.price))) {
            Some((id, price)) => Ok(SubmissionAccepted {
                request_id: id.0,
                status: "accepted".into(),
                price,
            }),
            None => Err(AppError::internal(format!(
                "submission came to {outcome:?} but no request is recorded for it"
            ))),
        }
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, AppError> {
    const NAME: &str = "Idempotency-Key";
    let Some(value) = headers.get(NAME) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| {
            !k.is_empty()
                && k.len() <= MAX_IDEMPOTENCY_KEY_LEN
                && k.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or_else(|| {
            AppError::malformed(
                NAME,
                format!("must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"),
            )
        })?;
    Ok(Some(key.to_owned()))
}

#[utoipa::path(
    get,
    path = "/v1/requests/{id}",
    tag = "requests",
    params(("id" = u64, Path, description = "The request id returned at submission")),
    responses(
        (status = 200, body = RequestStatusBody),
        (status = 400, description = "`malformed_request`: the id is not a number", body = ErrorBody),
        (status = 404, description = "`unknown_request`", body = ErrorBody),
    ),
)]
async fn get_request(
    State(coordinator): State<CoordinatorHandle>,
    ApiPath(id): ApiPath,
) -> Result<Json<RequestStatusBody>, AppError> {
    let id: u64 = id
        .parse()
        .map_err(|_| AppError::malformed("request_id", format!("{id:?} is not a request id")))?;
    coordinator
        .read_state(move |state| {
            let r = state.requests.get(&RequestId(id))?;
            Some(RequestStatusBody {
                request_id: id,
                status: serde_json::to_value(r.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                price: r.price,
                reserved: r.reserved,
                charged: r.charged,
                model: r.model.clone(),
                hardware_tier: r.hardware_tier,
                priority: r.priority.into(),
                attempts: r.attempts,
                stage: if r.validating() {
                    "validating"
                } else if r.queued.is_some() {
                    "queued"
                } else if r.running.is_some() {
                    "running"
                } else {
                    "done"
                }
                .into(),
                result: r.result.as_ref().map(|res| ResultBodyOut {
                    sealed_for_client: base64::engine::general_purpose::STANDARD
                        .encode(&res.sealed_for_client.0),
                    poe: res.poe.to_hex(),
                    node_id: res.node.0.to_hex(),
                }),
            })
        })
        .await?
        .map(Json)
        .ok_or_else(|| {
            AppError::not_found("unknown_request", "request_id", format!("no request {id}"))
        })
}

#[utoipa::path(
    post,
    path = "/v1/accounts/{account}/deposits",
    tag = "accounts",
    params(("account" = String, Path, description = "The credit account to credit")),
    request_body = DepositBody,
    responses(
        (status = 200, description = "Credited, or already credited (`credited: false`)", body = DepositResult),
        (status = 400, description = "`malformed_request` (empty `tx_ref`), `invalid_amount`", body = ErrorBody),
        (status = 503, description = "`coordinator_unavailable`", body = ErrorBody),
    ),
)]
async fn deposit_credits(
    State(coordinator): State<CoordinatorHandle>,
    ApiPath(account): ApiPath,
    ApiJson(body): ApiJson<DepositBody>,
) -> Result<Json<DepositResult>, AppError> {
    let account = AccountId(account);
    let command = Command::DepositCredits {
        account: account.clone(),
        tx_ref: body.tx_ref,
        amount: body.amount,
    };
    let (outcome, view) = coordinator
        .execute(Intake::Command(command), move |_, state| {
            account_body(state, &account)
        })
        .await?;
    let credited = match outcome {
        Outcome::Appended(_) => true,
        Outcome::Unchanged => false,
        Outcome::Rejected { rejection, .. } => return Err(rejection.into()),
        Outcome::Refused(m) => return Err(AppError::internal(m)),
    };
    let view = view.ok_or_else(|| AppError::internal("the account is not recorded"))?;
    Ok(Json(DepositResult {
        account: view.account,
        balance: view.balance,
        reserved: view.reserved,
        available: view.available,
        credited,
    }))
}

fn account_body(state: &CoordinatorState, account: &AccountId) -> Option<AccountBody> {
    state.accounts.get(account).map(|a| AccountBody {
        account: account.0.clone(),
        balance: a.balance,
        reserved: a.reserved,
        available: a.available(),
    })
}

#[utoipa::path(
    get,
    path = "/v1/accounts/{account}",
    tag = "accounts",
    params(("account" = String, Path, description = "The credit account")),
    responses(
        (status = 200, body = AccountBody),
        (status = 404, description = "`unknown_account`: never credited", body = ErrorBody),
    ),
)]
async fn get_account(
    State(coordinator): State<CoordinatorHandle>,
    ApiPath(account): ApiPath,
) -> Result<Json<AccountBody>, AppError> {
    let id = AccountId(account);
    let lookup = id.clone();
    coordinator
        .read_state(move |state| account_body(state, &lookup))
        .await?
        .map(Json)
        .ok_or_else(|| {
            AppError::not_found("unknown_account", "account", format!("no account {id}"))
        })
}

#[utoipa::path(
    get,
    path = "/v1/quote",
    tag = "requests",
    params(QuoteQuery),
    responses(
        (status = 200, description = "The price a submission with these parameters is charged", body = QuoteBody),
        (status = 400, description = "`malformed_request` (naming the parameter), `unknown_model`, `tier_out_of_range`", body = ErrorBody),
    ),
)]
async fn quote(
    State(coordinator): State<CoordinatorHandle>,
    ApiQuery(q): ApiQuery<QuoteQuery>,
) -> Result<Json<QuoteBody>, AppError> {
    coordinator
        .read_state(move |state| {
            let price = quote_price(
                state,
                &q.model,
                q.hardware_tier,
                q.priority.unwrap_or(PriorityParam::Standard).into(),
                q.max_tokens,
            )?;
            Ok(Json(QuoteBody {
                model: q.model,
                price,
            }))
        })
        .await?
}

/// The price `decide` would charge, with the checks it makes on these parameters, in its order.
fn quote_price(
    state: &CoordinatorState,
    model: &str,
    tier: u8,
    priority: Priority,
    max_tokens: u32,
) -> Result<u64, AppError> {
    Ok(decide::quote(state, model, tier, priority, max_tokens)?)
}

#[utoipa::path(
    post,
    path = "/v1/nodes",
    tag = "nodes",
    request_body = RegisterNodeBody,
    responses(
        (status = 201, description = "Registered", body = NodeRegisteredBody),
        (status = 200, description = "Already registered with the same parameters", body = NodeRegisteredBody),
        (status = 400, description = "`malformed_request` (naming the field), `tier_out_of_range`", body = ErrorBody),
        (status = 409, description = "`node_already_registered` with other parameters", body = ErrorBody),
        (status = 503, description = "`coordinator_unavailable`", body = ErrorBody),
    ),
)]
async fn register_node(
    State(coordinator): State<CoordinatorHandle>,
    ApiJson(body): ApiJson<RegisterNodeBody>,
) -> Result<(StatusCode, Json<NodeRegisteredBody>), AppError> {
    let key = parse_public_key_pem(&body.public_key_pem).map_err(|e| {
        AppError::malformed(
            "public_key_pem",
            format!("must be an RSA public key in PEM (SPKI): {e}"),
        )
    })?;
    let node_id = node_id_of(&key);
    let command = Command::RegisterNode(Box::new(NodeRegistered {
        node_id,
        // Re-encoded, so the log holds one spelling of each key.
        public_key_pem: public_key_pem(&key),
        hardware_tier: body.hardware_tier,
        models: body.models,
        slots: body.slots,
        stake: body.stake,
        execution_class: body.execution_class.into(),
    }));
    let answer = Json(NodeRegisteredBody {
        node_id: node_id.0.to_hex(),
    });
    match coordinator.execute_command(command).await? {
        Outcome::Appended(_) => Ok((StatusCode::CREATED, answer)),
        Outcome::Unchanged => Ok((StatusCode::OK, answer)),
        Outcome::Rejected { rejection, .. } => Err(AppError::from(rejection)),
        Outcome::Refused(m) => Err(AppError::internal(m)),
    }
}

#[utoipa::path(
    post,
    path = "/v1/nodes/{id}/heartbeat",
    tag = "nodes",
    params(("id" = String, Path, description = "The node id, 64 hex characters")),
    request_body = HeartbeatBody,
    responses(
        (status = 204, description = "Recorded"),
        (status = 400, description = "`malformed_request`: not a node id, or a body without `at` or a base64 `signature`", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: the signature is not the node's (`signature`), or the time is stale or not later than the last one (`at`)", body = ErrorBody),
        (status = 404, description = "`unknown_node`", body = ErrorBody),
        (status = 503, description = "`coordinator_unavailable`", body = ErrorBody),
    ),
)]
/// Record that a node is up.
///
/// Signed by the node's registered key over its id and the time (see [`HeartbeatBody`]); a
/// forged, stale or replayed heartbeat gets 401 and records nothing.
async fn node_heartbeat(
    State(api): State<Api>,
    ApiPath(id): ApiPath,
    ApiJson(body): ApiJson<HeartbeatBody>,
) -> Result<StatusCode, AppError> {
    let node_id: NodeId = id
        .parse()
        .map_err(|_| AppError::malformed("node_id", "must be a node id: 64 hex characters"))?;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(&body.signature)
        .map_err(|_| AppError::malformed("signature", "must be base64"))?;
    let pem = api
        .coordinator
        .read_state(move |s| s.nodes.get(&node_id).map(|n| n.public_key_pem.clone()))
        .await?
        .ok_or_else(|| {
            Rejection::new(
                RejectionCode::UnknownNode,
                Some("node_id"),
                format!("{node_id} is not registered"),
            )
        })?;
    let unauthenticated = |field: &str, message: &str| {
        AppError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            Some(field),
            message.to_owned(),
        )
    };
    // The shell's clock, only to bound how old a signed time may be; never recorded.
    let now = Utc::now().timestamp();
    if (body.at - now).abs() > HEARTBEAT_SKEW_SECONDS {
        return Err(unauthenticated(
            "at",
            "the signed time is more than 120 s from the coordinator's clock",
        ));
    }
    let key = prlx_events::crypto::parse_public_key_pem(&pem)
        .map_err(|e| AppError::internal(format!("registered key of {node_id}: {e}")))?;
    let statement = prlx_events::crypto::heartbeat_statement(node_id, body.at);
    if !prlx_events::crypto::verify(&key, &statement, &signature) {
        return Err(unauthenticated(
            "signature",
            "not a signature by the node's registered key over this heartbeat",
        ));
    }
    {
        let mut last = api.heartbeats.lock().unwrap_or_else(|p| p.into_inner());
        match last.get(&node_id) {
            Some(&seen) if body.at <= seen => {
                return Err(unauthenticated(
                    "at",
                    "not later than the node's last accepted heartbeat (a replay)",
                ))
            }
            _ => last.insert(node_id, body.at),
        };
    }
    match api
        .coordinator
        .execute_command(Command::Heartbeat { node_id })
        .await?
    {
        Outcome::Appended(_) | Outcome::Unchanged => Ok(StatusCode::NO_CONTENT),
        Outcome::Rejected { rejection, .. } => Err(rejection.into()),
        Outcome::Refused(m) => Err(AppError::internal(m)),
    }
}

#[utoipa::path(
    post,
    path = "/v1/nodes/{id}/results",
    tag = "nodes",
    params(("id" = String, Path, description = "The node id, 64 hex characters")),
    request_body = ResultReportBody,
    responses(
        (status = 200, description = "Recorded with its verdict, or a duplicate", body = ReportOutcome),
        (status = 400, description = "`malformed_request`, or `report_refused` (bad signature, unknown request or epoch)", body = ErrorBody),
        (status = 404, description = "`unknown_node`: no dispatch of this attempt to this node", body = ErrorBody),
        (status = 503, description = "`coordinator_unavailable`", body = ErrorBody),
    ),
)]
async fn submit_result(
    State(coordinator): State<CoordinatorHandle>,
    ApiPath(id): ApiPath,
    ApiJson(body): ApiJson<ResultReportBody>,
) -> Result<Json<ReportOutcome>, AppError> {
    use base64::Engine as _;
    let node: NodeId = id
        .parse()
        .map_err(|_| AppError::malformed("node_id", "must be a node id: 64 hex characters"))?;
    let b64 = |field: &str, v: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(v)
            .map_err(|_| AppError::malformed(field, "must be base64"))
    };
    let report = ResultReport {
        request_id: RequestId(body.request_id),
        attempt: body.attempt,
        epoch: body.epoch,
        sealed_result: b64("sealed_result", &body.sealed_result)?,
        poe: body
            .poe
            .parse()
            .map_err(|_| AppError::malformed("poe", "must be 64 hex characters"))?,
        signature: b64("signature", &body.signature)?,
        token_count: body.token_count,
    };
    let (outcome, ()) = coordinator
        .execute(
            Intake::Report {
                node,
                report: Box::new(report),
            },
            |_, _| (),
        )
        .await?;
    match outcome {
        Outcome::Appended(_) => Ok(Json(ReportOutcome {
            outcome: "recorded".into(),
        })),
        Outcome::Unchanged => Ok(Json(ReportOutcome {
            outcome: "duplicate".into(),
        })),
        Outcome::Rejected { rejection, .. } => Err(rejection.into()),
        Outcome::Refused(why) => Err(AppError::new(
            StatusCode::BAD_REQUEST,
            "report_refused",
            Some("signature"),
            why,
        )),
    }
}

#[utoipa::path(
    get,
    path = "/v1/nodes",
    tag = "nodes",
    responses((status = 200, description = "Every registered node, by id", body = [NodeBody])),
)]
async fn list_nodes(
    State(coordinator): State<CoordinatorHandle>,
) -> Result<Json<Vec<NodeBody>>, AppError> {
    let nodes = coordinator
        .read_state(|state| {
            state
                .nodes
                .iter()
                .map(|(id, n)| NodeBody {
                    node_id: id.0.to_hex(),
                    hardware_tier: n.hardware_tier,
                    models: n.models.iter().cloned().collect(),
                    slots: n.slots,
                    stake: n.stake,
                    execution_class: (&n.execution_class).into(),
                    registered_at: n.registered_at,
                    last_heartbeat: n.last_heartbeat,
                    in_pool: n.in_pool,
                    draining: n.draining,
                    standing_bp: n.standing_bp,
                })
                .collect()
        })
        .await?;
    Ok(Json(nodes))
}

fn parse_node_id(id: &str) -> Result<NodeId, AppError> {
    id.parse()
        .map_err(|_| AppError::malformed("node_id", "must be a node id: 64 hex characters"))
}

/// A node's stake: the history (returns) first, then the state. The state answers only once
/// everything it reflects is durable, so it is at least as new as the history: an amount in
/// the middle of being returned can be missing for a moment, never counted twice.
async fn stake_view(api: &Api, node_id: NodeId) -> Result<StakeBody, AppError> {
    let returned = api
        .history
        .read(|h| h.returned.get(&node_id).copied().unwrap_or(0))
        .await?;
    api.coordinator
        .read_state(move |state| {
            let op = state.rewards.operators.get(&node_id)?;
            Some(StakeBody {
                node_id: node_id.0.to_hex(),
                staked: op.stake,
                pending: op
                    .unbonding
                    .iter()
                    .map(|u| PendingUnstakeBody {
                        amount: u.amount,
                        available_at: u.available_at,
                    })
                    .collect(),
                returned,
                rewards_paid: op.paid,
            })
        })
        .await?
        .ok_or_else(|| {
            AppError::not_found(
                "unknown_node",
                "node_id",
                format!("{node_id} is not registered"),
            )
        })
}

/// Runs a stake movement and answers with the node's stake after it.
async fn move_stake(
    api: &Api,
    node_id: NodeId,
    command: SettlementCommand,
) -> Result<Json<StakeBody>, AppError> {
    match api
        .coordinator
        .execute_command(Command::Settlement(command))
        .await?
    {
        Outcome::Appended(_) | Outcome::Unchanged => Ok(Json(stake_view(api, node_id).await?)),
        Outcome::Rejected { rejection, .. } => Err(rejection.into()),
        Outcome::Refused(m) => Err(AppError::internal(m)),
    }
}

#[utoipa::path(
    post,
    path = "/v1/nodes/{id}/stake",
    tag = "rewards",
    params(("id" = String, Path, description = "The node id, 64 hex characters")),
    request_body = StakeAmountBody,
    responses(
        (status = 200, description = "Recorded; the node's stake after it", body = StakeBody),
        (status = 400, description = "`malformed_request` (naming the field), `invalid_amount` (0, or the stake would overflow)", body = ErrorBody),
        (status = 404, description = "`unknown_node`", body = ErrorBody),
        (status = 503, description = "`coordinator_unavailable`", body = ErrorBody),
    ),
)]
/// Add stake to a node.
///
/// Stake observed on-chain joins the node's reward weighting from the next uptime slot it
/// earns.
///
/// Not authenticated: node requests are not signed yet, so anyone who can reach the API can
/// call this for any registered node.
async fn deposit_stake(
    State(api): State<Api>,
    ApiPath(id): ApiPath,
    ApiJson(body): ApiJson<StakeAmountBody>,
) -> Result<Json<StakeBody>, AppError> {
    let node_id = parse_node_id(&id)?;
    let command = SettlementCommand::DepositStake {
        node_id,
        amount: body.amount,
    };
    move_stake(&api, node_id, command).await
}

#[utoipa::path(
    post,
    path = "/v1/nodes/{id}/unstake",
    tag = "rewards",
    params(("id" = String, Path, description = "The node id, 64 hex characters")),
    request_body = StakeAmountBody,
    responses(
        (status = 200, description = "Recorded; the node's stake after it", body = StakeBody),
        (status = 400, description = "`malformed_request` (naming the field; `policy` when no reward policy is published), `invalid_amount` (0, or more than staked)", body = ErrorBody),
        (status = 404, description = "`unknown_node`", body = ErrorBody),
        (status = 503, description = "`coordinator_unavailable`", body = ErrorBody),
    ),
)]
/// Unstake from a node.
///
/// `amount` leaves the node's reward weighting at once and is returned whole after the
/// policy's cooldown (`pending` in the answer says when).
///
/// Not authenticated: node requests are not signed yet, so anyone who can reach the API can
/// call this for any registered node.
async fn request_unstake(
    State(api): State<Api>,
    ApiPath(id): ApiPath,
    ApiJson(body): ApiJson<StakeAmountBody>,
) -> Result<Json<StakeBody>, AppError> {
    let node_id = parse_node_id(&id)?;
    let command = SettlementCommand::RequestUnstake {
        node_id,
        amount: body.amount,
    };
    move_stake(&api, node_id, command).await
}

#[utoipa::path(
    get,
    path = "/v1/nodes/{id}/stake",
    tag = "rewards",
    params(("id" = String, Path, description = "The node id, 64 hex characters")),
    responses(
        (status = 200, body = StakeBody),
        (status = 400, description = "`malformed_request`: not a node id", body = ErrorBody),
        (status = 404, description = "`unknown_node`", body = ErrorBody),
        (status = 503, description = "`coordinator_unavailable`", body = ErrorBody),
    ),
)]
/// A node's stake: staked, waiting for its cooldown, returned, and rewards paid.
async fn get_stake(
    State(api): State<Api>,
    ApiPath(id): ApiPath,
) -> Result<Json<StakeBody>, AppError> {
    let node_id = parse_node_id(&id)?;
    Ok(Json(stake_view(&api, node_id).await?))
}

#[utoipa::path(
    get,
    path = "/v1/rewards",
    tag = "rewards",
    responses((status = 200, description = "The reward policy, mode and next epoch", body = RewardsBody)),
)]
/// Where settlement stands: the policy, the mode and the next epoch to settle.
async fn get_rewards(
    State(coordinator): State<CoordinatorHandle>,
) -> Result<Json<RewardsBody>, AppError> {
    let body = coordinator
        .read_state(|state| {
            let r = &state.rewards;
            let bounds = r.epoch_bounds(r.next_epoch);
            RewardsBody {
                policy: r.policy.as_ref().and_then(|p| serde_json::to_value(p).ok()),
                mode: r.mode().into(),
                next_epoch: r.next_epoch,
                next_epoch_starts_at: bounds.map(|b| b.0),
                next_epoch_ends_at: bounds.map(|b| b.1),
                carried: r.carried,
            }
        })
        .await?;
    Ok(Json(body))
}

#[utoipa::path(
    get,
    path = "/v1/rewards/epochs",
    tag = "rewards",
    params(EpochsQuery),
    responses(
        (status = 200, description = "Settled epochs from `from` on, in order, with every payout", body = [RewardEpochBody]),
        (status = 400, description = "`malformed_request` naming `from` or `limit`", body = ErrorBody),
        (status = 503, description = "`coordinator_unavailable`: the log could not be read", body = ErrorBody),
    ),
)]
/// Settled reward epochs with every payout, as recorded on the log.
async fn list_epochs(
    State(history): State<Arc<History>>,
    ApiQuery(q): ApiQuery<EpochsQuery>,
) -> Result<Json<Vec<RewardEpochBody>>, AppError> {
    let limit = q.limit.unwrap_or(MAX_EPOCHS_LISTED);
    if limit == 0 || limit > MAX_EPOCHS_LISTED {
        return Err(AppError::malformed(
            "limit",
            format!("must be 1 to {MAX_EPOCHS_LISTED}"),
        ));
    }
    let from = q.from.unwrap_or(0);
    let epochs = history
        .read(|h| {
            // Epochs are recorded in order from 0, so epoch k is at index k.
            let start = usize::try_from(from)
                .unwrap_or(usize::MAX)
                .min(h.epochs.len());
            h.epochs[start..]
                .iter()
                .take(limit as usize)
                .map(RewardEpochBody::from)
                .collect()
        })
        .await?;
    Ok(Json(epochs))
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses(
        (status = 200, description = "The coordinator is serving", body = HealthBody),
        (status = 503, description = "`coordinator_unavailable`", body = ErrorBody),
    ),
)]
async fn healthz(
    State(coordinator): State<CoordinatorHandle>,
) -> Result<Json<HealthBody>, AppError> {
    let log_end = coordinator.read(|fold| fold.next_offset()).await?;
    Ok(Json(HealthBody {
        status: "ok".into(),
        log_end,
    }))
}

#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "This document")),
)]
async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi())
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ParalleliX coordinator",
        description = "Intake of the ParalleliX coordinator. Every accepted or rejected submission, \
            deposit and node registration is an event on the coordinator's log.\n\n\
            Errors have one body: `{\"error\": {\"code\", \"field\", \"message\"}}`. 4xx means the \
            request is wrong and a retry will not help; 503 means the coordinator could not do it.\n\n\
            A submission's `payload_hash` is the lowercase hex SHA-256 of the UTF-8 bytes of its \
            `prompt`. The prompt is sealed to the coordinator's storage key on arrival and is never \
            stored or logged in plaintext.\n\n\
            Amounts are integers in credit minor units.\n\n\
            Heartbeats are signed by the node's registered key. `/v1/nodes/{id}/stake` and \
            `/unstake` are not authenticated yet: bind the API to loopback or put it behind an \
            authenticating proxy."
    ),
    paths(
        submit_request,
        get_request,
        quote,
        deposit_credits,
        get_account,
        register_node,
        list_nodes,
        node_heartbeat,
        submit_result,
        deposit_stake,
        request_unstake,
        get_stake,
        get_rewards,
        list_epochs,
        healthz,
        openapi_json,
    ),
    components(schemas(ErrorBody, ErrorDetail, PriorityParam, RewardModeParam))
)]
struct ApiDoc;
