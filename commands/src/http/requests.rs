//! `/v1/requests`: submit a request, read its status and result.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use base64::Engine as _;
use prlx_events::event::IntakeSource;
use prlx_events::RequestId;
use prlx_projections::coordinator::RequestSummary;

use crate::actor::CoordinatorHandle;

use super::body::*;
use super::extract::{ApiJson, ApiPath};
use super::reader::{may_read, Reader};
use super::MAX_IDEMPOTENCY_KEY_LEN;
use crate::error::{AppError, ErrorBody};
use crate::submission::{submission_from_body, submit, SubmissionAccepted, SubmitRequestBody};

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
pub(super) async fn submit_request(
    State(coordinator): State<CoordinatorHandle>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SubmitRequestBody>,
) -> Result<(StatusCode, Json<SubmissionAccepted>), AppError> {
    let idempotency_key = idempotency_key(&headers)?;
    let domain = coordinator.consent_domain();
    let (submission, payload) =
        submission_from_body(body, idempotency_key, IntakeSource::Http, &domain)?;
    let accepted = submit(&coordinator, submission, payload).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, AppError> {
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
    description = "A request's status and, once released, its result sealed to the client's \
        key. Only for its credit account: the account's read-access token, or a delegate's \
        (docs/security.md, \"Reads\").",
    params(("id" = u64, Path, description = "The request id returned at submission")),
    security(("read_access" = [])),
    responses(
        (status = 200, body = RequestStatusBody),
        (status = 400, description = "`malformed_request`: the id is not a number", body = ErrorBody),
        (status = 401, description = "`unauthenticated` (`Authorization`): no read-access token, or one that is malformed, expired, lives over an hour or does not recover", body = ErrorBody),
        (status = 403, description = "`unauthorized` (`Authorization`): the token's signer may not read its account", body = ErrorBody),
        (status = 404, description = "`unknown_request`: no such request of the token's account (another account's request is answered the same)", body = ErrorBody),
    ),
)]
pub(super) async fn get_request(
    State(coordinator): State<CoordinatorHandle>,
    reader: Reader,
    ApiPath(id): ApiPath,
) -> Result<Json<RequestStatusBody>, AppError> {
    let id: u64 = id
        .parse()
        .map_err(|_| AppError::malformed("request_id", format!("{id:?} is not a request id")))?;
    let not_found =
        || AppError::not_found("unknown_request", "request_id", format!("no request {id}"));
    let account = reader.account.clone();
    let (summary, retired_through, issued) = coordinator
        .read_state(move |state| {
            may_read(state, &reader)?;
            Ok::<_, AppError>((
                state.summary(RequestId(id)),
                state.retired_through(),
                id < state.next_request_id,
            ))
        })
        .await??;
    let summary = match summary {
        Some(s) => Some(s),
        // Settled and retired from the state: the request index has it, once it holds every
        // settlement the state has let go of.
        None if issued => match coordinator.index() {
            Some(index) => {
                index
                    .wait_for(retired_through, INDEX_READ_WAIT)
                    .await
                    .map_err(AppError::unavailable)?;
                let store = index.index().clone();
                tokio::task::spawn_blocking(move || store.get(RequestId(id)))
                    .await
                    .map_err(|e| AppError::internal(e.to_string()))?
                    .map_err(|e| AppError::internal(e.to_string()))?
            }
            None => None,
        },
        None => None,
    };
    summary
        .filter(|s| s.account == account)
        .map(|s| Json(status_body(&s)))
        .ok_or_else(not_found)
}

/// How long a read waits for the request index to catch up with what the state retired.
const INDEX_READ_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

fn status_body(s: &RequestSummary) -> RequestStatusBody {
    RequestStatusBody {
        request_id: s.request_id.0,
        status: serde_json::to_value(s.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        price: s.price,
        reserved: s.reserved,
        charged: s.charged,
        model: s.model.clone(),
        hardware_tier: s.hardware_tier,
        priority: s.priority.into(),
        attempts: s.attempts,
        stage: s.stage.clone(),
        validation: s.validation.clone(),
        result: s.result.as_ref().map(|res| ResultBodyOut {
            sealed_for_client: base64::engine::general_purpose::STANDARD
                .encode(&res.sealed_for_client.0),
            poe: res.poe.to_hex(),
            node_id: res.node.0.to_hex(),
        }),
        subtasks: s.subtasks.iter().map(|id| id.0).collect(),
        task: s.subtask_of.map(|(task, _)| task.0),
        subtask: s.subtask_of.map(|(_, index)| index),
    }
}
