//! What the handlers share: the actor, the reward history read from the log, and the
//! heartbeat guard.

use std::sync::Arc;

use axum::extract::FromRef;
use axum::http::StatusCode;
use prlx_events::log::AnyReader;
use prlx_projections::snapshot::catch_up;
use prlx_projections::{Fold, RewardHistory};

use crate::actor::CoordinatorHandle;

use crate::error::AppError;
use crate::shell::HeartbeatGuard;

/// What the handlers share: the actor, and the reward history read from the log.
#[derive(Debug, Clone)]
pub(super) struct Api {
    pub(super) coordinator: CoordinatorHandle,
    pub(super) history: Arc<History>,
    /// Checks signed heartbeats and remembers each node's last accepted time.
    pub(super) heartbeats: Arc<HeartbeatGuard>,
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
pub(super) struct History {
    pub(super) log: AnyReader,
    pub(super) fold: tokio::sync::Mutex<Fold<RewardHistory>>,
}

impl History {
    /// Catches up with the durable end of the log and answers `f` from the history.
    pub(super) async fn read<T>(&self, f: impl FnOnce(&RewardHistory) -> T) -> Result<T, AppError> {
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
