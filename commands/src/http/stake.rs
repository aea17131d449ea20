//! `GET /v1/nodes/{id}/stake`: a node's stake view. Stake moves on the chain only
//! (`NodeStaking`); the coordinator's watcher records them.

use axum::extract::State;
use axum::Json;
use prlx_events::NodeId;

use super::body::*;
use super::extract::ApiPath;
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
