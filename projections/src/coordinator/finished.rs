//! Settled requests leave the hot state: the state keeps a request while its work is open,
//! and for [`FINISHED_WINDOW`] settlements after it settles, then retires it (with its
//! idempotency key). What a reader or a retry needs of it later is its [`RequestSummary`],
//! which the coordinator writes to its request index (`prlx-commands` `index`) once the
//! settling events are durable: the window only has to outlast that write.
//!
//! Retirement is part of the fold (it happens at the same record in every fold of the log), so
//! a snapshot and a full replay still agree, and the state's size no longer grows with history.

use prlx_events::event::Priority;
use prlx_events::{AccountId, Hash32, RequestId};
use serde::{Deserialize, Serialize};

use crate::coordinator::lifecycle::{RequestPhase, RequestStatus};
use crate::coordinator::state::CoordinatorState;
use crate::coordinator::views::{RequestView, ReturnedResult};

/// How many settled requests the hot state keeps after they settle. Reads and retries of a
/// request within this many settlements are answered from memory; older ones from the index.
/// The coordinator writes a settled request to its index as soon as its events are durable, a
/// few group commits later: 4096 settlements is ~80 ms at the file log's peak, and the shell
/// still waits for the index when it has fallen behind (`index::RequestIndex::wait_for`).
pub const FINISHED_WINDOW: usize = 4096;

/// What a settled request's readers and retries need: its status, money, result, and the
/// fields a retry under the same idempotency key must repeat. Built from its record
/// ([`RequestView::summary`]), stored in the request index for when it has left the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestSummary {
    pub request_id: RequestId,
    pub account: AccountId,
    pub status: RequestStatus,
    /// `queued`, `running`, `validating` or `done`.
    pub stage: String,
    pub price: u64,
    pub reserved: u64,
    pub charged: u64,
    pub model: String,
    pub hardware_tier: u8,
    pub priority: Priority,
    pub attempts: u32,
    pub max_tokens: u32,
    pub deadline_seconds: u32,
    pub payload_hash: Hash32,
    /// The validation's conclusion, as the API names it (`not_sampled`, `confirmed`, ...).
    pub validation: Option<String>,
    pub idempotency_key: Option<String>,
    pub result: Option<ReturnedResult>,
    /// Its place among settlements (1 for the first request the log settled): the index
    /// holds every request up to the one it last wrote, so the shell can tell whether a
    /// request that left the state is in it yet.
    pub settled_seq: Option<u64>,
    /// A general-path task's sub-tasks, by index (empty for any other request).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subtasks: Vec<RequestId>,
    /// A general-path sub-task's task and index there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtask_of: Option<(RequestId, u32)>,
}

impl RequestView {
    /// Its summary as a reader sees it now.
    pub fn summary(&self, id: RequestId) -> RequestSummary {
        let stage = if self.validating() {
            "validating"
        } else if matches!(self.phase(), RequestPhase::Split) {
            // A task's work is its sub-tasks'.
            "running"
        } else if self.queued.is_some() || matches!(self.phase(), RequestPhase::Blocked) {
            "queued"
        } else if self.running.is_some() {
            "running"
        } else {
            "done"
        };
        RequestSummary {
            request_id: id,
            account: self.account.clone(),
            status: self.status,
            stage: stage.into(),
            price: self.price,
            reserved: self.reserved,
            charged: self.charged,
            model: self.model.clone(),
            hardware_tier: self.hardware_tier,
            priority: self.priority,
            attempts: self.attempts,
            max_tokens: self.max_tokens,
            deadline_seconds: self.deadline_seconds,
            payload_hash: self.payload_hash,
            validation: self.outcome().map(|o| o.as_str().to_owned()),
            idempotency_key: self.idempotency_key.clone(),
            result: self.result.clone(),
            settled_seq: self.settled_seq,
            subtasks: self
                .plan
                .as_ref()
                .map(|p| p.subtasks.clone())
                .unwrap_or_default(),
            subtask_of: self.subtask_of.as_ref().map(|of| (of.task, of.index)),
        }
    }
}

impl CoordinatorState {
    /// Request `id` just settled (entered `Completed` or `Failed`): it takes the next place
    /// in the window, and the oldest settled request beyond the window retires.
    pub(super) fn settled(&mut self, id: RequestId) {
        self.settled_total += 1;
        if let Some(req) = self.requests.get_mut(&id) {
            req.settled_seq = Some(self.settled_total);
            // Settled, it is dispatched and sealed to its client no more: its prompt and the
            // client's key only weigh on the window (and on every snapshot).
            req.sealed_payload = prlx_events::event::Sealed(Vec::new());
            req.client_pubkey = String::new();
        }
        self.finished.push_back(id);
        self.open_tasks.remove(&id);
        let held = self.held_subtasks.remove(&id).unwrap_or_default();
        for sub in held {
            self.retire(sub);
        }
        while self.finished.len() > FINISHED_WINDOW {
            let Some(old) = self.finished.pop_front() else {
                break;
            };
            self.retire(old);
        }
    }

    /// Takes a settled request out of the state, with its idempotency key.
    fn retire(&mut self, id: RequestId) {
        let task = self.requests.get(&id).and_then(|r| r.subtask_of.as_ref());
        if let Some(task) = task.map(|of| of.task) {
            if self
                .requests
                .get(&task)
                .is_some_and(|t| !settles(t.phase()))
            {
                self.held_subtasks.entry(task).or_default().push(id);
                return;
            }
        }
        let Some(req) = self.requests.remove(&id) else {
            return;
        };
        if let Some(key) = &req.idempotency_key {
            if let Some(keys) = self.idempotency.get_mut(&req.account) {
                keys.remove(key);
                if keys.is_empty() {
                    self.idempotency.remove(&req.account);
                }
            }
        }
    }

    /// How many requests the log has settled so far; those up to `settled_total() -
    /// FINISHED_WINDOW` have left the state.
    pub fn settled_total(&self) -> u64 {
        self.settled_total
    }

    /// The settlement sequence up to which requests have left the state (0: none yet).
    pub fn retired_through(&self) -> u64 {
        self.settled_total.saturating_sub(FINISHED_WINDOW as u64)
    }

    /// The summary of request `id` while the state holds it.
    pub fn summary(&self, id: RequestId) -> Option<RequestSummary> {
        Some(self.requests.get(&id)?.summary(id))
    }
}

/// Whether `phase` settles a request.
pub(super) fn settles(phase: &RequestPhase) -> bool {
    matches!(phase, RequestPhase::Completed(_) | RequestPhase::Failed(_))
}
