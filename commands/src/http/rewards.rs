//! `/v1/rewards`: the policy, the mode, settled epochs.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;

use crate::actor::CoordinatorHandle;

use super::body::*;
use super::extract::ApiQuery;
use super::state::History;
use crate::error::{AppError, ErrorBody};

#[utoipa::path(
    get,
    path = "/v1/rewards",
    tag = "rewards",
    responses((status = 200, description = "The reward policy, mode and next epoch", body = RewardsBody)),
)]
/// Where settlement stands: the policy, the mode and the next epoch to settle.
pub(super) async fn get_rewards(
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
pub(super) async fn list_epochs(
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
