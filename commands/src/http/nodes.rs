//! `/v1/nodes`: registration, signed heartbeats, result reports and refusals, the node list.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use base64::Engine as _;
use chrono::Utc;
use prlx_events::crypto::{node_id_of, parse_public_key_pem, public_key_pem};
use prlx_events::event::{NodeRegistered, RefusalReason, RejectionCode, Sealed};
use prlx_events::protocol::{RefusalReport, ResultReport};
use prlx_events::{NodeId, RequestId};

use crate::actor::{CoordinatorHandle, Intake};
use crate::decide::{Command, Rejection, SignedHeartbeat};
use crate::shell::Outcome;
use crate::shell::{check_registration, HeartbeatRefused};

use super::body::*;
use super::extract::{ApiJson, ApiPath};
use super::state::Api;
use crate::error::{AppError, ErrorBody};

#[utoipa::path(
    post,
    path = "/v1/nodes",
    tag = "nodes",
    request_body = RegisterNodeBody,
    responses(
        (status = 201, description = "Registered", body = NodeRegisteredBody),
        (status = 200, description = "Already registered with the same parameters", body = NodeRegisteredBody),
        (status = 400, description = "`malformed_request` (naming the field: a model outside the catalog or below its tier, a model hash missing or not the catalog's, an `operator` not lowercase 0x-hex), `tier_out_of_range`", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: no signature, or not the key's over this registration (`signature`), or a stale time (`signed_at`)", body = ErrorBody),
        (status = 409, description = "`node_already_registered` with other parameters", body = ErrorBody),
        (status = 503, description = "`coordinator_unavailable`", body = ErrorBody),
    ),
)]
/// Register a node.
///
/// Signed by the key it registers, over every parameter, the operator and a time near the
/// coordinator's clock (see [`RegisterNodeBody`]): registering a key you do not hold, or a
/// captured registration once its time is old or with anything changed, gets 401 and records
/// nothing. Its models must be the catalog's, each with the catalog's file hash.
pub(super) async fn register_node(
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
    if body.stake != 0 {
        return Err(AppError::malformed(
            "stake",
            "a node's stake is what NodeStaking holds for its id: register with 0 and bond on chain",
        ));
    }
    let mut model_hashes = BTreeMap::new();
    for (model, hex) in body.model_hashes {
        let hash = hex.parse().map_err(|_| {
            AppError::malformed("model_hashes", "each must be 64 hex characters (a SHA-256)")
        })?;
        model_hashes.insert(model, hash);
    }
    let signature = body
        .signature
        .map(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|_| AppError::malformed("signature", "must be base64"))
        })
        .transpose()?;
    let registration = NodeRegistered {
        node_id,
        // Re-encoded, so the log holds one spelling of each key.
        public_key_pem: public_key_pem(&key),
        hardware_tier: body.hardware_tier,
        models: body.models,
        slots: body.slots,
        stake: 0,
        execution_class: body.execution_class.into(),
        model_hashes,
        operator: body.operator,
        signed_at: body.signed_at,
        signature: signature.map(Sealed),
    };
    // The shell's clock, only to bound how old a signed time may be; never recorded.
    check_registration(&registration, Utc::now().timestamp()).map_err(|refused| {
        AppError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            Some(refused.field()),
            refused.to_string(),
        )
    })?;
    let command = Command::RegisterNode(Box::new(registration));
    let answer = Json(NodeRegisteredBody {
        node_id: node_id.0.to_hex(),
    });
    match coordinator.execute_command(command).await? {
        Outcome::Appended(_) => Ok((StatusCode::CREATED, answer)),
        // Only a submission comes to an earlier request.
        Outcome::Unchanged | Outcome::EarlierRequest { .. } => Ok((StatusCode::OK, answer)),
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
pub(super) async fn node_heartbeat(
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
    let (pem, recorded) = api
        .coordinator
        .read_state(move |s| {
            let node = s.nodes.get(&node_id)?;
            Some((node.public_key_pem.clone(), node.heartbeat_at))
        })
        .await?
        .ok_or_else(|| {
            Rejection::new(
                RejectionCode::UnknownNode,
                Some("node_id"),
                format!("{node_id} is not registered"),
            )
        })?;
    // The shell's clock, only to bound how old a signed time may be; never recorded.
    let now = Utc::now().timestamp();
    api.heartbeats
        .check(node_id, &pem, recorded, body.at, &signature, now)
        .map_err(|refused| match refused {
            HeartbeatRefused::RegisteredKey { .. } => AppError::internal(refused.to_string()),
            _ => AppError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                refused.field(),
                refused.to_string(),
            ),
        })?;
    match api
        .coordinator
        .execute_command(Command::Heartbeat {
            node_id,
            signed: SignedHeartbeat {
                at: body.at,
                signature,
            },
            // Replaced by the shell with the time it records the heartbeat at.
            now: Utc::now(),
        })
        .await?
    {
        Outcome::Appended(_) | Outcome::Unchanged | Outcome::EarlierRequest { .. } => {
            Ok(StatusCode::NO_CONTENT)
        }
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
        (status = 400, description = "`malformed_request`, or `report_refused` (a signature that is not the node's over this report's sealed result, an unknown request or epoch): nothing recorded", body = ErrorBody),
        (status = 404, description = "`unknown_node`: no dispatch of this attempt to this node", body = ErrorBody),
        (status = 503, description = "`coordinator_unavailable`", body = ErrorBody),
    ),
)]
pub(super) async fn submit_result(
    State(coordinator): State<CoordinatorHandle>,
    ApiPath(id): ApiPath,
    ApiJson(body): ApiJson<ResultReportBody>,
) -> Result<Json<ReportOutcome>, AppError> {
    use base64::Engine as _;
    let node = parse_node_id(&id)?;
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
    let intake = Intake::Report {
        node,
        report: Box::new(report),
    };
    report_outcome(&coordinator, intake).await
}

#[utoipa::path(
    post,
    path = "/v1/nodes/{id}/refusals",
    tag = "nodes",
    params(("id" = String, Path, description = "The node id, 64 hex characters")),
    request_body = RefusalReportBody,
    responses(
        (status = 200, description = "Recorded with what follows (the request re-queued or failed), or a duplicate", body = ReportOutcome),
        (status = 400, description = "`malformed_request` (a `reason` that does not add up against the request and the catalog), or `report_refused` (bad signature, unknown request)", body = ErrorBody),
        (status = 404, description = "`unknown_node`: no open dispatch of this attempt to this node, or its deadline passed", body = ErrorBody),
        (status = 503, description = "`coordinator_unavailable`", body = ErrorBody),
    ),
)]
/// Decline a dispatch the node cannot run.
///
/// Signed by the node's registered key over the task, the attempt and the reason (see
/// [`RefusalReportBody`]); an unsigned one is refused and records nothing. A refusal is a
/// failed dispatch that does not lower the node's standing: the request goes to a node it has
/// not tried, and fails, refunded in full, once a second node of the same model file declines.
pub(super) async fn submit_refusal(
    State(coordinator): State<CoordinatorHandle>,
    ApiPath(id): ApiPath,
    ApiJson(body): ApiJson<RefusalReportBody>,
) -> Result<Json<ReportOutcome>, AppError> {
    let node = parse_node_id(&id)?;
    let reason: RefusalReason = serde_json::from_value(body.reason)
        .map_err(|e| AppError::malformed("reason", format!("must be a refusal reason: {e}")))?;
    let report = RefusalReport {
        request_id: RequestId(body.request_id),
        attempt: body.attempt,
        reason,
        signature: base64::engine::general_purpose::STANDARD
            .decode(&body.signature)
            .map_err(|_| AppError::malformed("signature", "must be base64"))?,
    };
    let intake = Intake::Refusal {
        node,
        report: Box::new(report),
    };
    report_outcome(&coordinator, intake).await
}

/// Sends a node's report (a result or a refusal) to the actor and shapes its answer: 200
/// `recorded` or `duplicate`; a report that proves nothing about the node is 400
/// `report_refused`, and nothing is recorded.
async fn report_outcome(
    coordinator: &CoordinatorHandle,
    intake: Intake,
) -> Result<Json<ReportOutcome>, AppError> {
    let (outcome, ()) = coordinator.execute(intake, |_, _| ()).await?;
    match outcome {
        Outcome::Appended(_) => Ok(Json(ReportOutcome {
            outcome: "recorded".into(),
        })),
        Outcome::Unchanged | Outcome::EarlierRequest { .. } => Ok(Json(ReportOutcome {
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
pub(super) async fn list_nodes(
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
                    refusals: n.refusals,
                })
                .collect()
        })
        .await?;
    Ok(Json(nodes))
}

pub(super) fn parse_node_id(id: &str) -> Result<NodeId, AppError> {
    id.parse()
        .map_err(|_| AppError::malformed("node_id", "must be a node id: 64 hex characters"))
}
