//! Registering with the coordinator: what the node declares about itself, retried until the
//! coordinator answers.

use std::collections::BTreeMap;

use prlx_events::event::ExecutionClass;
use prlx_events::Hash32;
use serde::Serialize;
use tracing::info;

use super::config::{retry_backoff, DaemonError};
use crate::client::CoordinatorClient;

/// What the node sends to `POST /v1/nodes`.
#[derive(Debug, Clone, Serialize)]
pub struct Registration {
    pub public_key_pem: String,
    pub hardware_tier: u8,
    pub models: Vec<String>,
    pub slots: u32,
    pub execution_class: ExecutionClass,
    /// The SHA-256 of each model file it loaded, by model: replicas are compared among nodes
    /// that run the same file.
    pub model_hashes: BTreeMap<String, Hash32>,
}

/// Registers, retrying while the coordinator is unreachable or failing. Returns the status
/// (201 new, 200 already registered with the same parameters).
pub(super) async fn register(
    client: &CoordinatorClient,
    registration: &Registration,
) -> Result<u16, DaemonError> {
    let mut backoff = retry_backoff();
    let mut failures: u32 = 0;
    loop {
        let why = match client.post_json("/v1/nodes", registration).await {
            Ok(a) if a.status == 200 || a.status == 201 => return Ok(a.status),
            Ok(a) if a.status >= 500 => a.describe(),
            Ok(a) => return Err(DaemonError::Registration(a.describe())),
            Err(e) if e.is_retryable_call() => e.to_string(),
            Err(e) => return Err(e.into()),
        };
        if failures.is_multiple_of(10) {
            info!("registration not done yet ({why}); retrying");
        }
        failures += 1;
        backoff.pause().await;
    }
}
