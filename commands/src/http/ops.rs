//! Operations: `/healthz`, `/openapi.json`, and the answers for no route and a wrong method.

use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::Json;
use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::actor::CoordinatorHandle;

use super::body::*;
use crate::error::{AppError, ErrorBody, ErrorDetail};
use crate::submission::PriorityParam;

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses(
        (status = 200, description = "The coordinator is serving", body = HealthBody),
        (status = 503, description = "`coordinator_unavailable`", body = ErrorBody),
    ),
)]
pub(super) async fn healthz(
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
pub(super) async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi())
}

pub(super) async fn no_route(method: Method, uri: Uri) -> AppError {
    AppError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        None,
        format!("no route for {method} {}", uri.path()),
    )
}

pub(super) async fn method_not_allowed(method: Method, uri: Uri) -> AppError {
    AppError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        None,
        format!("{} does not take {method}", uri.path()),
    )
}

/// The OpenAPI document of this API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Declares the transport checks' answers ([`super::guard`]) on every operation, since every
/// request passes them before its handler.
struct TransportResponses;

impl Modify for TransportResponses {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let answer = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                    )
                    .build(),
            )
        };
        let common = [
            ("403", "`forbidden_host` or `forbidden_origin` (naming the header): refused by the Host or Origin check"),
            ("408", "`request_timeout`: not complete within the request timeout"),
            ("429", "`rate_limited`: over this caller's rate; `Retry-After` says when to try again"),
        ];
        for (path, item) in doc.paths.paths.iter_mut() {
            for (op, posts) in [(&mut item.get, false), (&mut item.post, true)] {
                let Some(op) = op else { continue };
                let mut answers = common.to_vec();
                // Health checks skip the Host and Origin check (for load balancers).
                answers.retain(|(status, _)| !(path == "/healthz" && *status == "403"));
                if posts {
                    answers.push((
                        "415",
                        "`unsupported_media_type`: the body is not sent as application/json",
                    ));
                }
                for (status, description) in answers {
                    op.responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| answer(description));
                }
            }
        }
    }
}

/// Declares the read-access token (`super::reader`) as the `read_access` scheme, which the
/// reads of an account's balance and requests require.
struct ReadAccessScheme;

impl Modify for ReadAccessScheme {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("0xACCOUNT.EXPIRES_AT.0xSIGNATURE")
            .description(Some(
                "A read-access token: the EIP-712 `ReadAccess(address account, uint64 \
                 expiresAt)` under the domain of `GET /v1/consent`, signed by the account's key \
                 or by a delegate's whose delegation a request was accepted under and has not \
                 expired, written `0xACCOUNT.EXPIRES_AT.0xSIGNATURE`. It must not have expired \
                 and must expire within an hour of the coordinator's clock. Missing or invalid: \
                 401 `unauthenticated`; a signer that may not read the account: 403 \
                 `unauthorized`.",
            ))
            .build();
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme("read_access", SecurityScheme::Http(scheme));
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ParalleliX coordinator",
        description = "Intake of the ParalleliX coordinator. Every accepted or rejected submission, \
            chain deposit and node registration is an event on the coordinator's log.\n\n\
            Errors have one body: `{\"error\": {\"code\", \"field\", \"message\"}}`. 4xx means the \
            request is wrong and a retry will not help; 503 means the coordinator could not do it.\n\n\
            A submission's `payload_hash` is the lowercase hex SHA-256 of the UTF-8 bytes of its \
            `prompt`. The prompt is sealed to the coordinator's storage key on arrival and is never \
            stored or logged in plaintext.\n\n\
            Amounts are integers in credit minor units.\n\n\
            Submissions carry the account's EIP-712 signature in the body (`signature`), or a \
            delegate's with the account's signed `delegation`. An account's balance and \
            requests are read with a read-access token (`Authorization: Bearer`, the \
            `read_access` scheme).\n\n\
            Heartbeats are signed by the node's registered key. Nothing here credits an account \
            or moves stake: credits are deposits into the CreditEscrow contract and stake is \
            what the NodeStaking contract holds, both read from the chain by the coordinator.\n\n\
            Every request passes the transport checks first (docs/security.md): a `Host` the \
            coordinator is served as (else 403 `forbidden_host`), no `Origin` unless allowed \
            (403 `forbidden_origin`), a JSON `Content-Type` on every POST (415 \
            `unsupported_media_type`), a per-caller rate (429 `rate_limited` with \
            `Retry-After`) and a time limit (408 `request_timeout`)."
    ),
    modifiers(&TransportResponses, &ReadAccessScheme),
    paths(
        super::requests::submit_request,
        super::requests::get_request,
        super::accounts::quote,
        super::accounts::quote_task,
        super::accounts::get_account,
        super::accounts::consent_domain,
        super::accounts::revoke_delegation,
        super::accounts::list_delegations,
        super::nodes::register_node,
        super::nodes::list_nodes,
        super::nodes::node_heartbeat,
        super::nodes::submit_result,
        super::nodes::submit_refusal,
        super::stake::get_stake,
        super::rewards::get_rewards,
        super::rewards::list_epochs,
        healthz,
        openapi_json,
    ),
    components(schemas(ErrorBody, ErrorDetail, PriorityParam, RewardModeParam))
)]
struct ApiDoc;
