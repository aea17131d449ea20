//! Heartbeats: a signed heartbeat every interval, and registering again when the coordinator
//! no longer knows the node (a fresh log).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use chrono::Utc;
use serde::Serialize;
use tracing::{info, warn};

use super::registration::Registration;
use crate::client::CoordinatorClient;
use crate::commit::Identity;

/// A heartbeat signed by the node's key over its id and the time (the coordinator takes a
/// signed time once, and only near its own clock).
#[derive(Debug, Serialize)]
struct HeartbeatBody {
    at: i64,
    /// Base64.
    signature: String,
}

async fn signed_heartbeat(identity: &Arc<Identity>) -> HeartbeatBody {
    let identity = Arc::clone(identity);
    // RSA signing takes most of a millisecond: off the runtime's threads.
    tokio::task::spawn_blocking(move || {
        let at = Utc::now().timestamp();
        let statement = prlx_events::crypto::heartbeat_statement(identity.node, at);
        let signature = identity.sign(&statement);
        HeartbeatBody {
            at,
            signature: base64::engine::general_purpose::STANDARD.encode(signature),
        }
    })
    .await
    .expect("signing does not panic")
}

pub(super) async fn heartbeats(
    client: CoordinatorClient,
    identity: Arc<Identity>,
    registration: Registration,
    every: Duration,
) {
    let path = format!("/v1/nodes/{}/heartbeat", identity.node.0);
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate; registration just happened
    let mut failing = false;
    loop {
        ticker.tick().await;
        let body = signed_heartbeat(&identity).await;
        let problem = match client.post_json(&path, &body).await {
            Ok(a) if a.is_success() => None,
            Ok(a) if a.status == 404 => {
                // The coordinator does not know us (a fresh log): join again.
                info!("the coordinator does not know this node; registering again");
                let signed = registration.sign(&identity.key);
                match client.post_json("/v1/nodes", &signed).await {
                    Ok(r) if r.is_success() => None,
                    Ok(r) => Some(format!("registering again: {}", r.describe())),
                    Err(e) => Some(format!("registering again: {e}")),
                }
            }
            Ok(a) => Some(a.describe()),
            Err(e) => Some(e.to_string()),
        };
        match problem {
            Some(why) if !failing => {
                failing = true;
                warn!(
                    "warning: heartbeat failed ({why}); retrying every {} s",
                    every.as_secs()
                );
            }
            None if failing => {
                failing = false;
                info!("heartbeats delivered again");
            }
            _ => {}
        }
    }
}
