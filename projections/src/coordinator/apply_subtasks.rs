//! The fold's arms of the general path (issue 18): a task's plan, a dependent sub-task's
//! release, and the task's aggregate.
//!
//! A task is a request of a general class (`prlx-workloads` `Class`). Its acceptance owes its
//! plan in the same batch ([`Owed::Plan`]); the plan allocates one request per sub-task, each
//! run, proven and validated by the same machinery as an inference request. The fold checks
//! what it can without the sealed inputs: the graph's shape, the dense ids, every sub-task's
//! price and their sum against the task's, that a dependent sub-task is released only after
//! every dep returned a validated result (and names those results), and that the aggregate
//! names every sub-task's validated result, in order.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use prlx_events::event::{AggregateReturned, SubtaskReleased, SubtasksPlanned};
use prlx_events::{Envelope, Hash32, RequestId};

use crate::coordinator::batch::Owed;
use crate::coordinator::lifecycle::{RequestPhase, RequestStatus, Transition, ValidationOutcome};
use crate::coordinator::state::CoordinatorState;
use crate::coordinator::views::{RequestView, ReturnedResult, SubtaskOf, TaskPlan};
use crate::fold::FoldError;
use crate::pricing::subtask_price;
use crate::scheduler::queue::QueueEntry;

/// The node id an aggregate is returned under: no one node produced it.
pub const AGGREGATOR: prlx_events::NodeId = prlx_events::NodeId(Hash32([0; 32]));

/// Whether `class` names a general-path workload class (else the request is inference).
pub fn is_general(class: &str) -> bool {
    prlx_workloads::Class::from_name(class).is_some()
}

impl CoordinatorState {
    pub(super) fn fold_planned(
        &mut self,
        env: &Envelope,
        p: &SubtasksPlanned,
        at: DateTime<Utc>,
    ) -> Result<(), FoldError> {
        let fail = |why: String| Err(FoldError::new(env, format!("{}: {why}", p.request_id)));
        self.batch.check_owed(env, Owed::Plan(p.request_id))?;
        let task = self.request(env, p.request_id)?.clone();
        match &task.plan {
            Some(plan) if plan.subtasks.is_empty() && plan.class == p.class => {}
            Some(plan) if plan.class != p.class => {
                return fail(format!(
                    "plan of class {:?} for a task of class {:?}",
                    p.class, plan.class
                ))
            }
            _ => return fail("is not a task awaiting its plan".into()),
        }
        if p.subtasks.is_empty() || p.subtasks.len() > prlx_workloads::MAX_SUBTASKS {
            return fail(format!(
                "a plan has 1..={} sub-tasks, not {}",
                prlx_workloads::MAX_SUBTASKS,
                p.subtasks.len()
            ));
        }
        let Some(model) = self.catalog_model(&task.model).cloned() else {
            return fail(format!("model {:?} is not in the catalog", task.model));
        };
        let mut total: u64 = 0;
        let first = self.next_request_id;
        for (position, s) in p.subtasks.iter().enumerate() {
            let expected_id = first + position as u64;
            if s.subtask as usize != position || s.request_id.0 != expected_id {
                return fail(format!(
                    "sub-task at position {position} is {} with request {}, expected {position} with {expected_id}",
                    s.subtask, s.request_id
                ));
            }
            if s.depends_on.windows(2).any(|w| w[0] >= w[1])
                || s.depends_on.iter().any(|&d| d >= s.subtask)
            {
                return fail(format!(
                    "sub-task {} must list earlier deps, ascending, once each",
                    s.subtask
                ));
            }
            if s.depends_on.is_empty() != (s.sealed_payload.is_some() && s.payload_hash.is_some()) {
                return fail(format!(
                    "sub-task {} carries its input if and only if it has no deps",
                    s.subtask
                ));
            }
            let priced = subtask_price(&model, task.priority, &s.kind, s.cost);
            if priced != Some(s.price) {
                return fail(format!(
                    "sub-task {} ({}, cost {}): price recorded {}, the catalog gives {priced:?}",
                    s.subtask, s.kind, s.cost, s.price
                ));
            }
            total = total.saturating_add(s.price);
        }
        if total != task.price {
            return fail(format!(
                "the task's price {} is not the sum of its sub-tasks' prices {total}",
                task.price
            ));
        }
        self.batch.discharge(Owed::Plan(p.request_id));
        let mut ids = Vec::with_capacity(p.subtasks.len());
        for s in &p.subtasks {
            let mut child = RequestView {
                price: s.price,
                reserved: 0,
                charged: 0,
                accepted_at: at,
                payload_hash: s.payload_hash.unwrap_or(Hash32([0; 32])),
                sealed_payload: s
                    .sealed_payload
                    .clone()
                    .unwrap_or(prlx_events::event::Sealed(Vec::new())),
                client_pubkey: String::new(),
                delegation: None,
                idempotency_key: None,
                plan: None,
                subtask_of: Some(SubtaskOf {
                    task: p.request_id,
                    index: s.subtask,
                    kind: s.kind.clone(),
                    deps: s.depends_on.clone(),
                }),
                ..RequestView::fresh(&task)
            };
            let first = if s.depends_on.is_empty() {
                RequestPhase::Queued(child.queue_entry(s.request_id))
            } else {
                RequestPhase::Blocked
            };
            child.enter(first);
            self.requests.insert(s.request_id, child);
            self.index_phase(s.request_id);
            ids.push(s.request_id);
        }
        self.next_request_id = first + p.subtasks.len() as u64;
        if let Some(plan) = self.request_mut(env, p.request_id)?.plan.as_mut() {
            plan.digest = p.plan_digest;
            plan.subtasks = ids;
        }
        Ok(())
    }

    pub(super) fn fold_released(
        &mut self,
        env: &Envelope,
        r: &SubtaskReleased,
        at: DateTime<Utc>,
    ) -> Result<(), FoldError> {
        let fail = |why: String| Err(FoldError::new(env, format!("{}: {why}", r.request_id)));
        let req = self.request(env, r.request_id)?;
        let Some(of) = req.subtask_of.clone() else {
            return fail("is not a sub-task".into());
        };
        if (of.task, of.index) != (r.task, r.subtask) {
            return fail(format!(
                "is sub-task {} of {}, not {} of {}",
                of.index, of.task, r.subtask, r.task
            ));
        }
        let siblings = self.subtasks_of(env, of.task)?;
        let mut inputs = Vec::with_capacity(of.deps.len());
        for &d in &of.deps {
            let dep = siblings
                .get(d as usize)
                .and_then(|id| self.requests.get(id));
            match dep.filter(|d| d.status == RequestStatus::Completed) {
                Some(dep) => inputs.push(dep.returned_hash()),
                None => return fail(format!("released before its dep {d} returned its result")),
            }
        }
        if inputs
            .iter()
            .map(|h| h.as_ref())
            .ne(r.inputs.iter().map(Some))
        {
            return fail("its inputs are not its deps' validated results".into());
        }
        // Its admission bound, and its place in the queue, run from its release: it could
        // not be queued before.
        let entry = QueueEntry::new(
            req.priority,
            at + chrono::Duration::seconds(i64::from(req.deadline_seconds)),
            r.request_id,
        );
        // Checked against the table before anything moves.
        let next = self.next_phase(env, r.request_id, &Transition::Released(entry))?;
        let req = self.request_mut(env, r.request_id)?;
        req.accepted_at = at;
        req.payload_hash = r.payload_hash;
        req.sealed_payload = r.sealed_payload.clone();
        self.enter(env, r.request_id, next)?;
        Ok(())
    }

    pub(super) fn fold_aggregated(
        &mut self,
        env: &Envelope,
        a: &AggregateReturned,
    ) -> Result<(), FoldError> {
        let fail = |why: String| Err(FoldError::new(env, format!("{}: {why}", a.request_id)));
        let subtasks = self.subtasks_of(env, a.request_id)?;
        if subtasks.is_empty() {
            return fail("is not a planned task".into());
        }
        let mut outcome = ValidationOutcome::Confirmed;
        let mut results = Vec::with_capacity(subtasks.len());
        for (i, id) in subtasks.iter().enumerate() {
            let sub = self.request(env, *id)?;
            let (RequestStatus::Completed, Some(o)) = (sub.status, sub.outcome()) else {
                return fail(format!(
                    "aggregated before its sub-task {i} returned a result"
                ));
            };
            outcome = weakest(outcome, o);
            results.push(sub.returned_hash());
        }
        if results
            .iter()
            .map(|h| h.as_ref())
            .ne(a.results.iter().map(Some))
        {
            return fail("its results are not its sub-tasks' validated results, in order".into());
        }
        self.advance(env, a.request_id, &Transition::Aggregated(outcome))?;
        self.request_mut(env, a.request_id)?.result = Some(ReturnedResult {
            sealed_for_client: a.sealed_for_client.clone(),
            poe: a.output_hash,
            node: AGGREGATOR,
        });
        self.batch.owe(Owed::Charge(a.request_id));
        Ok(())
    }

    /// A task's sub-tasks' request ids, by index (empty for a request that is no task).
    pub(super) fn subtasks_of(
        &self,
        env: &Envelope,
        task: RequestId,
    ) -> Result<Vec<RequestId>, FoldError> {
        Ok(self
            .request(env, task)?
            .plan
            .as_ref()
            .map(|p| p.subtasks.clone())
            .unwrap_or_default())
    }

    /// Whether the task of `req` (itself, or the task it is a sub-task of) has a failed
    /// sub-task, or (for a sub-task) has failed itself: the cause `SubtaskFailed` re-derived.
    pub(super) fn task_has_failed_subtask(&self, req: &RequestView) -> bool {
        let task = match &req.subtask_of {
            Some(of) => self.requests.get(&of.task),
            None => Some(req),
        };
        let task_failed =
            req.subtask_of.is_some() && task.is_some_and(|t| t.status == RequestStatus::Failed);
        task_failed || self.any_subtask(task, RequestStatus::Failed)
    }

    /// Whether task `req` has a sub-task that returned its result: the cause
    /// `OutputsRefused` re-derived as far as the fold can (it cannot open the results).
    pub(super) fn task_has_returned_subtask(&self, req: &RequestView) -> bool {
        req.subtask_of.is_none() && self.any_subtask(Some(req), RequestStatus::Completed)
    }

    fn any_subtask(&self, task: Option<&RequestView>, status: RequestStatus) -> bool {
        task.and_then(|t| t.plan.as_ref()).is_some_and(|p| {
            p.subtasks
                .iter()
                .any(|id| self.requests.get(id).is_some_and(|r| r.status == status))
        })
    }
}

/// The weaker of two validation outcomes: a task is as confirmed as its least confirmed
/// sub-task.
fn weakest(a: ValidationOutcome, b: ValidationOutcome) -> ValidationOutcome {
    use ValidationOutcome::*;
    let rank = |o| match o {
        Confirmed => 0,
        NotSampled => 1,
        Unconfirmed => 2,
        NoMajority => 3,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

impl RequestView {
    /// A record of `task`'s model, tier, priority, account and deadline, with no work done:
    /// what a sub-task starts from.
    fn fresh(task: &RequestView) -> RequestView {
        RequestView {
            account: task.account.clone(),
            model: task.model.clone(),
            hardware_tier: task.hardware_tier,
            priority: task.priority,
            price: 0,
            reserved: 0,
            charged: 0,
            phase: RequestPhase::Blocked,
            status: RequestStatus::Accepted,
            accepted_at: task.accepted_at,
            deadline_seconds: task.deadline_seconds,
            payload_hash: Hash32([0; 32]),
            sealed_payload: prlx_events::event::Sealed(Vec::new()),
            attempts: 0,
            tried: BTreeSet::new(),
            queued: None,
            running: None,
            max_tokens: task.max_tokens,
            client_pubkey: String::new(),
            result: None,
            failures: 0,
            results: Vec::new(),
            replica_class: None,
            refused: Default::default(),
            delegation: None,
            idempotency_key: None,
            settled_seq: None,
            subtask_of: None,
            plan: None,
        }
    }

    /// A task's record at acceptance: split, its plan to follow in the same batch.
    pub(super) fn into_task(mut self, class: &str) -> RequestView {
        self.plan = Some(TaskPlan {
            class: class.to_owned(),
            digest: Hash32([0; 32]),
            subtasks: Vec::new(),
        });
        self
    }
}
