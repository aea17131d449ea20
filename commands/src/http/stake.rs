//! `/v1/nodes/{id}/stake` and `/unstake`: stake moves and a node's stake view.

use axum::extract::State;
use axum::Json;
use prlx_events::NodeId;

use crate::decide::Command;
use crate::settle::SettlementCommand;
use crate::shell::Outcome;

use super::body::*;
use super::extract::{ApiJson, ApiPath};
use super::nodes::parse_node_id;
use super::state::Api;
use crate::error::{AppError, ErrorBody};

/// A node's stake: the history (returns) first, then the state. The state answers only once
/// everything it reflects is durable, so it is at least as new as the history: an amount in
/// the middle of being returned can be missing for a moment, never counted twice.
pub(super) async fn stake_view(api: &Api, node_id: NodeId) -> Result<StakeBody, AppError> {
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
pub(super) async fn move_stake(
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
pub(super) async fn deposit_stake(
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
pub(super) async fn request_unstake(
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
pub(super) async fn get_stake(
    State(api): State<Api>,
    ApiPath(id): ApiPath,
) -> Result<Json<StakeBody>, AppError> {
    let node_id = parse_node_id(&id)?;
    Ok(Json(stake_view(&api, node_id).await?))
}
