//! Reporting results and refusals: each finished job posted to the coordinator, retried while
//! it is unreachable or failing, given up on after [`REPORT_GIVE_UP`].

use std::time::Duration;

use prlx_events::NodeId;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::config::retry_backoff;
use crate::client::CoordinatorClient;
use crate::trace;
use crate::worker::Finished;

/// A result not delivered after this long of retrying is given up on (the coordinator has
/// long since re-dispatched the work).
const REPORT_GIVE_UP: Duration = Duration::from_secs(15 * 60);

/// Posts every finished job's report; ends when the workers are gone and every post is done.
pub(super) async fn report_results(
    client: CoordinatorClient,
    node: NodeId,
    mut done: mpsc::UnboundedReceiver<Finished>,
) {
    let mut posts = JoinSet::new();
    loop {
        tokio::select! {
            finished = done.recv() => match finished {
                Some(f) => {
                    posts.spawn(report_one(client.clone(), node, f));
                }
                None => break,
            },
            Some(_) = posts.join_next(), if !posts.is_empty() => {}
        }
    }
    while posts.join_next().await.is_some() {}
}

/// Posts one report until the coordinator answers 200 (recorded or duplicate) or refuses it.
async fn report_one(client: CoordinatorClient, node: NodeId, mut finished: Finished) {
    let path = format!("/v1/nodes/{}/{}", node.0, finished.report.endpoint());
    let (task, attempt) = (finished.task, finished.attempt);
    if let Some(trace) = &mut finished.trace {
        trace.mark("posting");
    }
    let started = tokio::time::Instant::now();
    let mut backoff = retry_backoff();
    let mut failures: u32 = 0;
    loop {
        let why = match client.post_json(&path, &finished.report).await {
            Ok(a) if a.status == 200 => {
                if let Some(trace) = &mut finished.trace {
                    trace.mark("reported");
                    trace::report(trace, format_args!("{task} attempt {attempt}"));
                }
                let outcome = a.json()["outcome"].as_str().unwrap_or("ok").to_owned();
                info!("reported {task} attempt {attempt}: {outcome}");
                return;
            }
            Ok(a) if a.status >= 500 => a.describe(),
            Ok(a) => {
                warn!(
                    "warning: the coordinator refused the report of {task} attempt {attempt}: {}",
                    a.describe()
                );
                return;
            }
            Err(e) => e.to_string(),
        };
        if started.elapsed() > REPORT_GIVE_UP {
            warn!(
                "warning: giving up on reporting {task} attempt {attempt} after {} s: {why}",
                REPORT_GIVE_UP.as_secs()
            );
            return;
        }
        if failures.is_multiple_of(10) {
            info!("reporting {task} attempt {attempt} failed ({why}); retrying");
        }
        failures += 1;
        backoff.pause().await;
    }
}
