//! The general path in `decide`: a task's price and plan at intake, a dependent sub-task's
//! release, the task's aggregate, and a failed sub-task failing its task.
//!
//! The shell does what needs the storage key or plaintext (parsing the parameters, planning,
//! sealing inputs, opening results, aggregating, sealing to the client) and hands the results
//! in; `decide` checks them against the state so a stale or forged command records nothing.

use prlx_events::event::*;
use prlx_events::{Event, Hash32, RequestId};
use prlx_projections::coordinator::{RequestStatus, RequestView};
use prlx_projections::pricing::subtask_price;
use prlx_projections::CoordinatorState;

use crate::decide::command::{ParamProblem, PlannedTask, Submission};
use crate::decide::rejection::known_request;
use crate::decide::rejection::Rejection;

/// The task's price, the sum of its sub-tasks', with each one's share; the plan's problems
/// (from the shell's parse) as the rejection naming the parameter.
pub(super) fn price(
    state: &CoordinatorState,
    s: &Submission,
) -> Result<(u64, Vec<u64>), Rejection> {
    let plan = match &s.plan {
        Some(Ok(plan)) => plan,
        Some(Err(p)) => {
            return Err(Rejection::new(
                RejectionCode::MalformedRequest,
                Some(&p.field),
                p.reason.clone(),
            ))
        }
        None => {
            return Err(Rejection::new(
                RejectionCode::MalformedRequest,
                Some("params"),
                "a general-path task needs its parameters planned",
            ))
        }
    };
    plan_price(
        state,
        &s.model,
        s.priority,
        plan.subtasks.iter().map(|sub| (sub.kind.clone(), sub.cost)),
    )
}

/// A general-path task's parameters checked and planned (pure: the same parameters always
/// give the same plan): `class`'s own bounds, and for `batch.inference` the request's model
/// and `max_tokens`, which the catalog checked and the account signed (a shard asks for no
/// other model and no more tokens). The problem names the parameter (`params.FIELD`).
pub fn plan_params(
    class: &str,
    model: &str,
    max_tokens: u32,
    params: &serde_json::Value,
) -> Result<(prlx_workloads::TaskSpec, prlx_workloads::Plan), ParamProblem> {
    let spec = prlx_workloads::parse(class, params).map_err(|e| ParamProblem {
        field: match e.field_name() {
            Some(f) => format!("params.{f}"),
            None => "workload_class".into(),
        },
        reason: e.to_string(),
    })?;
    if let prlx_workloads::TaskSpec::BatchInference(b) = &spec {
        if b.model() != model {
            return Err(ParamProblem {
                field: "params.model".into(),
                reason: format!("must be the request's model {model:?}"),
            });
        }
        if b.max_tokens() > max_tokens {
            return Err(ParamProblem {
                field: "params.max_tokens".into(),
                reason: format!("must be at most the request's max_tokens {max_tokens}"),
            });
        }
    }
    let plan = prlx_workloads::plan(&spec);
    Ok((spec, plan))
}

/// The price of `plan` for `model` at `priority`, the sum of its sub-tasks', with each one's
/// share (what `decide` reserves, and `POST /v1/quote/task` answers).
pub fn plan_price(
    state: &CoordinatorState,
    model: &str,
    priority: Priority,
    subtasks: impl IntoIterator<Item = (String, u64)>,
) -> Result<(u64, Vec<u64>), Rejection> {
    let model = state.catalog_model(model).ok_or_else(|| {
        Rejection::new(
            RejectionCode::UnknownModel,
            Some("model"),
            format!("{model:?} is not in the catalog"),
        )
    })?;
    let mut shares = Vec::new();
    let mut total: u64 = 0;
    for (kind, cost) in subtasks {
        let share = subtask_price(model, priority, &kind, cost).ok_or_else(|| {
            Rejection::new(
                RejectionCode::MalformedRequest,
                Some("params"),
                format!("sub-task {} ({kind}) cannot be priced", shares.len()),
            )
        })?;
        total = total.checked_add(share).ok_or_else(|| {
            Rejection::new(
                RejectionCode::MalformedRequest,
                Some("params"),
                "the task's price overflows",
            )
        })?;
        shares.push(share);
    }
    Ok((total, shares))
}

/// The plan's event for task `task`, its sub-tasks taking the ids after it.
pub(super) fn planned(task: RequestId, plan: &PlannedTask, shares: &[u64]) -> Event {
    SubtasksPlanned {
        request_id: task,
        class: plan.class.clone(),
        plan_digest: plan.digest,
        subtasks: plan
            .subtasks
            .iter()
            .zip(shares)
            .enumerate()
            .map(|(i, (sub, &price))| PlannedSubtask {
                subtask: i as u32,
                request_id: RequestId(task.0 + 1 + i as u64),
                kind: sub.kind.clone(),
                depends_on: sub.deps.clone(),
                cost: sub.cost,
                price,
                payload_hash: sub.input.as_ref().map(|(h, _)| *h),
                sealed_payload: sub.input.as_ref().map(|(_, s)| s.clone()),
            })
            .collect(),
    }
    .into()
}

pub(super) fn release(
    state: &CoordinatorState,
    r: SubtaskReleased,
) -> Result<Vec<Event>, Rejection> {
    let req = known_request(state, r.request_id)?;
    let Some(of) = &req.subtask_of else {
        return Err(bad(
            "request_id",
            format!("{} is not a sub-task", r.request_id),
        ));
    };
    if (of.task, of.index) != (r.task, r.subtask) {
        return Err(bad(
            "task",
            format!("{} is another task's sub-task", r.request_id),
        ));
    }
    if !matches!(
        req.phase(),
        prlx_projections::coordinator::RequestPhase::Blocked
    ) {
        // Released already (or failed with its task): nothing to do.
        return Ok(vec![]);
    }
    let task = known_request(state, of.task)?;
    let inputs = dep_results(state, task, &of.deps)
        .ok_or_else(|| bad("request_id", "a dep has not returned its result yet"))?;
    if inputs != r.inputs {
        return Err(bad("inputs", "not the deps' validated results"));
    }
    Ok(vec![r.into()])
}

pub(super) fn aggregate(
    state: &CoordinatorState,
    a: AggregateReturned,
) -> Result<Vec<Event>, Rejection> {
    let task = known_request(state, a.request_id)?;
    let Some(plan) = &task.plan else {
        return Err(bad("request_id", format!("{} is not a task", a.request_id)));
    };
    if task.status != RequestStatus::Accepted {
        return Ok(vec![]); // settled already
    }
    let all: Vec<u32> = (0..plan.subtasks.len() as u32).collect();
    let results = dep_results(state, task, &all)
        .ok_or_else(|| bad("request_id", "a sub-task has not returned its result yet"))?;
    if results != a.results {
        return Err(bad("results", "not the sub-tasks' validated results"));
    }
    let charge = task.price.min(task.reserved);
    let mut events: Vec<Event> = vec![
        a.clone().into(),
        CreditsCharged {
            account: task.account.clone(),
            request_id: a.request_id,
            amount: charge,
        }
        .into(),
    ];
    if task.reserved > charge {
        events.push(
            CreditsRefunded {
                account: task.account.clone(),
                request_id: a.request_id,
                amount: task.reserved - charge,
            }
            .into(),
        );
    }
    Ok(events)
}

/// The returned results' hashes of `task`'s sub-tasks `indexes`, if every one has returned.
fn dep_results(
    state: &CoordinatorState,
    task: &RequestView,
    indexes: &[u32],
) -> Option<Vec<Hash32>> {
    let plan = task.plan.as_ref()?;
    indexes
        .iter()
        .map(|&i| {
            let sub = state.requests.get(plan.subtasks.get(i as usize)?)?;
            (sub.status == RequestStatus::Completed)
                .then(|| sub.returned_hash())
                .flatten()
        })
        .collect()
}

/// The shell could not combine a task's validated results: the task fails, refunded, with
/// its sub-tasks that have not started.
pub(super) fn fail(
    state: &CoordinatorState,
    task: RequestId,
    reason: String,
) -> Result<Vec<Event>, Rejection> {
    let t = known_request(state, task)?;
    if t.plan.is_none() {
        return Err(bad("task", format!("{task} is not a general-path task")));
    }
    if t.status != RequestStatus::Accepted {
        return Ok(vec![]);
    }
    Ok(task_fails(
        state,
        task,
        None,
        FailureCause::OutputsRefused,
        format!("its sub-tasks' results do not combine: {reason}"),
    ))
}

/// When sub-task `failed` fails, its task fails with it (refunded in full) and so do its
/// siblings that have not started (waiting on deps, or queued); those running finish and
/// settle on their own.
pub(super) fn task_fails_with(state: &CoordinatorState, failed: RequestId) -> Vec<Event> {
    let Some(of) = state
        .requests
        .get(&failed)
        .and_then(|r| r.subtask_of.as_ref())
    else {
        return vec![];
    };
    match state.requests.get(&of.task) {
        Some(task) if task.status == RequestStatus::Accepted => task_fails(
            state,
            of.task,
            Some(failed),
            FailureCause::SubtaskFailed,
            format!("its sub-task {} ({}) failed", of.index, failed),
        ),
        _ => vec![],
    }
}

/// `task_id` fails for `cause`, refunded, with its sub-tasks that have not started but
/// `failed` (already failing in this decision).
fn task_fails(
    state: &CoordinatorState,
    task_id: RequestId,
    failed: Option<RequestId>,
    cause: FailureCause,
    reason: String,
) -> Vec<Event> {
    let task = &state.requests[&task_id];
    let mut events = super::failure::failed_and_refunded(state, task_id, cause, reason);
    let siblings = task.plan.as_ref().map(|p| p.subtasks.as_slice());
    for &id in siblings.unwrap_or_default() {
        // Not started: waiting for its deps, or queued (a phase of an accepted request).
        let waiting = Some(id) != failed
            && state.requests.get(&id).is_some_and(|r| {
                use prlx_projections::coordinator::RequestPhase::*;
                matches!(r.phase(), Blocked | Queued(_))
            });
        if waiting {
            events.push(
                RequestFailed {
                    request_id: id,
                    reason: format!("its task {task_id} failed"),
                    cause: Some(FailureCause::SubtaskFailed),
                }
                .into(),
            );
        }
    }
    events
}

fn bad(field: &str, message: impl Into<String>) -> Rejection {
    Rejection::new(RejectionCode::MalformedRequest, Some(field), message)
}
