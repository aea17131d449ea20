//! When a node may decline a dispatch, and when declines fail the request: the rules that
//! `decide` and the fold share, so the auditor re-derives every refusal's consequence.
//!
//! A refusal is the node's word that it cannot run the work. It is taken only when its
//! numbers add up against the request and the catalog, and it does not count against the
//! node's standing (an honest node cannot run a prompt too long for its context). So that no
//! single node can fail a client's request by declining it, a request fails on refusals only
//! once a second node that serves the same model file declines it too: the file, not the
//! node, cannot run it.

use prlx_events::event::RefusalReason;
use prlx_events::NodeId;

use crate::coordinator::{CoordinatorState, RequestView};

/// What is wrong with `reason` as a refusal of `req`, if anything: the numbers must be the
/// request's, the catalog's context (when it declares one), and must not fit.
pub fn reason_problem(
    state: &CoordinatorState,
    req: &RequestView,
    reason: &RefusalReason,
) -> Option<String> {
    match *reason {
        RefusalReason::ContextExceeded {
            prompt_tokens,
            max_tokens,
            context,
        } => {
            if max_tokens != req.max_tokens {
                return Some(format!(
                    "max_tokens {max_tokens} is not the request's {}",
                    req.max_tokens
                ));
            }
            let declared = state
                .catalog_model(&req.model)
                .map_or(0, |m| m.context_length);
            if declared > 0 && context != declared {
                return Some(format!(
                    "context {context} is not the catalog's context_length {declared} of {}",
                    req.model
                ));
            }
            if u64::from(prompt_tokens) + u64::from(max_tokens) <= u64::from(context) {
                return Some(format!(
                    "a prompt of {prompt_tokens} tokens plus max_tokens {max_tokens} fits a \
                     context of {context}"
                ));
            }
            None
        }
        RefusalReason::OutputTooLarge { bytes, limit } => {
            if req.subtask_of.is_none() {
                return Some("only a general-path sub-task has an output limit".into());
            }
            let max = prlx_workloads::MAX_OUTPUT_BYTES as u64;
            if limit != max {
                return Some(format!("limit {limit} is not the protocol's {max}"));
            }
            if bytes <= limit {
                return Some(format!("an output of {bytes} bytes fits the limit {limit}"));
            }
            None
        }
    }
}

/// The node other than `node` that already declined `req` and serves the same model file for
/// it, if any: `node`'s refusal then fails the request. Nodes that reported no model hash
/// (registered before nodes reported them) match no one: nothing shows they run one file.
pub fn same_file_refuser(
    state: &CoordinatorState,
    req: &RequestView,
    node: NodeId,
) -> Option<NodeId> {
    let file = |n: &NodeId| {
        state
            .nodes
            .get(n)
            .and_then(|v| v.model_hashes.get(&req.model))
    };
    let mine = file(&node)?;
    req.refused
        .keys()
        .find(|other| **other != node && file(other) == Some(mine))
        .copied()
}

/// Whether refusals failed `req`: two nodes of one model file declined it before any result
/// of it verified (what `RequestFailed{cause: refused}` must show).
pub fn failed_by_refusals(state: &CoordinatorState, req: &RequestView) -> bool {
    req.results.is_empty()
        && req
            .refused
            .keys()
            .any(|n| same_file_refuser(state, req, *n).is_some())
}
