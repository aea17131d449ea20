//! The general path in the shell: what needs plaintext or the storage key. At intake the
//! parameters (the payload) are parsed and planned and each static input sealed; afterwards,
//! each housekeeping round releases the dependent sub-tasks whose deps have all returned (their
//! input built from the deps' validated results) and aggregates each task whose sub-tasks have
//! all returned, sealed to its client. `decide` checks each against the state.

use std::collections::{BTreeMap, BTreeSet};

use prlx_events::crypto::seal_to_public_key;
use prlx_events::event::{AggregateReturned, Sealed, SubtaskReleased};
use prlx_events::{Hash32, RequestId, TaskId};
use prlx_projections::coordinator::{RequestPhase, RequestStatus};
use prlx_workloads::{Plan, TaskSpec};

use crate::decide::{plan_params, Command, ParamProblem, PlannedInput, PlannedTask};

use super::reports::result_aad;
use super::{Coordinator, ShellError};

/// The plans of open tasks, parsed again from their sealed parameters on first use after a
/// restart; a task's entry goes when it settles.
#[derive(Debug, Default)]
pub(super) struct Plans {
    by_task: BTreeMap<RequestId, (TaskSpec, Plan)>,
    /// What the state looked like at the last scan, `(settled, next request id)`: nothing
    /// new to release or aggregate until one of them moves.
    scanned: Option<(u64, u64)>,
}

impl Coordinator {
    /// The segmenter at intake: `class`'s parameters (the payload, JSON) parsed and planned,
    /// each sub-task without deps sealed to the storage key; or the parameter at fault.
    pub(super) fn plan_task(
        &self,
        class: &str,
        model: &str,
        max_tokens: u32,
        payload: &[u8],
    ) -> Result<Box<PlannedTask>, ParamProblem> {
        let (_, plan) = plan_payload(class, model, max_tokens, payload)?;
        let subtasks = plan
            .subtasks
            .iter()
            .map(|s| PlannedInput {
                kind: s.kind.name().to_owned(),
                deps: s.deps.clone(),
                cost: s.cost,
                input: s.deps.is_empty().then(|| self.seal_payload(&s.input)),
            })
            .collect();
        Ok(Box::new(PlannedTask {
            class: class.to_owned(),
            digest: Hash32(plan.digest()),
            subtasks,
        }))
    }

    /// The releases and aggregates the open tasks are due, as commands for `decide`.
    pub(super) fn general_path_commands(&mut self) -> Result<Vec<Command>, ShellError> {
        let state = &self.fold.state;
        let now = (state.settled_total(), state.next_request_id);
        if self.plans.scanned == Some(now) {
            return Ok(Vec::new());
        }
        self.plans.scanned = Some(now);
        let open = state.open_tasks.clone();
        self.plans.by_task.retain(|id, _| open.contains(id));
        let mut commands = Vec::new();
        for task in open {
            commands.extend(self.task_commands(task)?);
        }
        Ok(commands)
    }

    fn task_commands(&mut self, task: RequestId) -> Result<Vec<Command>, ShellError> {
        let state = &self.fold.state;
        let Some(t) = state.requests.get(&task) else {
            return Ok(Vec::new());
        };
        let Some(ids) = t.plan.as_ref().map(|p| p.subtasks.clone()) else {
            return Ok(Vec::new());
        };
        if t.status != RequestStatus::Accepted || ids.is_empty() {
            return Ok(Vec::new());
        }
        // Which sub-tasks returned their result, and which wait for their deps.
        let mut done = BTreeSet::new();
        let mut blocked: Vec<(u32, RequestId)> = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            match state.requests.get(id) {
                Some(r) if r.status == RequestStatus::Completed => {
                    done.insert(i as u32);
                }
                Some(r) if matches!(r.phase(), RequestPhase::Blocked) => {
                    blocked.push((i as u32, *id))
                }
                _ => {}
            }
        }
        let all_done = done.len() == ids.len();
        if !all_done && blocked.is_empty() {
            return Ok(Vec::new());
        }
        self.ensure_plan(task)?;
        let mut commands = Vec::new();
        if all_done {
            let outputs = self.outputs(&ids, &done)?;
            commands.extend(self.aggregate(task, &ids, outputs)?);
            return Ok(commands);
        }
        let (_, plan) = &self.plans.by_task[&task];
        let plan = plan.clone();
        for (index, id) in blocked {
            let deps = plan.get(index).map(|s| s.deps.clone()).unwrap_or_default();
            if !deps.iter().all(|d| done.contains(d)) {
                continue;
            }
            let wanted: BTreeSet<u32> = deps.iter().copied().collect();
            let outputs = self.outputs(&ids, &wanted)?;
            let inputs = deps.iter().map(|d| Hash32::of(&outputs[d])).collect();
            match prlx_workloads::input_for(&plan, index, &outputs) {
                Ok(input) => {
                    let (payload_hash, sealed_payload) = self.seal_payload(&input);
                    commands.push(Command::ReleaseSubtask(Box::new(SubtaskReleased {
                        request_id: id,
                        task,
                        subtask: index,
                        inputs,
                        payload_hash,
                        sealed_payload,
                    })));
                }
                // Validated outputs that do not make an input (the nodes agreed on output
                // the library refuses): the task cannot go on, and fails, refunded.
                Err(e) => {
                    tracing::error!(%task, index, "cannot build the input of a sub-task: {e}");
                    commands.push(Command::FailTask {
                        task,
                        reason: format!("the input of sub-task {index}: {e}"),
                    });
                    break;
                }
            }
        }
        Ok(commands)
    }

    /// The task's spec and plan, parsed again from its sealed parameters if not cached.
    fn ensure_plan(&mut self, task: RequestId) -> Result<(), ShellError> {
        if self.plans.by_task.contains_key(&task) {
            return Ok(());
        }
        let t = &self.fold.state.requests[&task];
        let class = t.plan.as_ref().map(|p| p.class.clone()).unwrap_or_default();
        let payload = self
            .open_payload(&t.payload_hash, &t.sealed_payload)
            .map_err(|e| key_error(format!("parameters of task {task} do not open: {e}")))?;
        let planned = plan_payload(&class, &t.model, t.max_tokens, &payload)
            .map_err(|p| key_error(format!("task {task} no longer plans: {}", p.reason)))?;
        self.plans.by_task.insert(task, planned);
        Ok(())
    }

    /// The validated outputs of the sub-tasks `wanted` (indexes into `ids`), opened.
    fn outputs(
        &self,
        ids: &[RequestId],
        wanted: &BTreeSet<u32>,
    ) -> Result<BTreeMap<u32, Vec<u8>>, ShellError> {
        let mut out = BTreeMap::new();
        for &i in wanted {
            let id = ids[i as usize];
            let result = self.fold.state.requests[&id]
                .returned_result()
                .ok_or_else(|| key_error(format!("sub-task {id} returned no result")))?;
            let bytes = self
                .key
                .open(
                    &result_aad(TaskId::whole(id), result.attempt),
                    &result.sealed_result,
                )
                .map_err(|e| key_error(format!("result of sub-task {id} does not open: {e}")))?;
            out.insert(i, bytes);
        }
        Ok(out)
    }

    fn aggregate(
        &self,
        task: RequestId,
        ids: &[RequestId],
        outputs: BTreeMap<u32, Vec<u8>>,
    ) -> Result<Option<Command>, ShellError> {
        let (spec, _) = &self.plans.by_task[&task];
        let results = outputs.values().map(|o| Hash32::of(o)).collect();
        debug_assert_eq!(outputs.len(), ids.len());
        let output = match prlx_workloads::aggregate(spec, &outputs) {
            Ok(output) => output,
            Err(e) => {
                tracing::error!(%task, "cannot aggregate the task's validated results: {e}");
                return Ok(Some(Command::FailTask {
                    task,
                    reason: format!("the aggregate: {e}"),
                }));
            }
        };
        if output.len() > prlx_workloads::MAX_TASK_OUTPUT_BYTES {
            return Ok(Some(Command::FailTask {
                task,
                reason: format!(
                    "the aggregate of {} bytes is more than the {} a task's output may have",
                    output.len(),
                    prlx_workloads::MAX_TASK_OUTPUT_BYTES
                ),
            }));
        }
        let t = &self.fold.state.requests[&task];
        let client = prlx_events::crypto::parse_public_key_pem(&t.client_pubkey)
            .map_err(|e| key_error(format!("client key of task {task}: {e}")))?;
        let sealed = seal_to_public_key(
            &client,
            &task.0.to_be_bytes(),
            &output,
            &mut rsa::rand_core::OsRng,
        );
        Ok(Some(Command::ReturnAggregate(Box::new(
            AggregateReturned {
                request_id: task,
                sealed_for_client: Sealed(sealed),
                output_hash: Hash32::of(&output),
                results,
            },
        ))))
    }
}

/// A task's payload (its parameters, JSON) checked and planned: at intake, and again after a
/// restart from the sealed copy.
fn plan_payload(
    class: &str,
    model: &str,
    max_tokens: u32,
    payload: &[u8],
) -> Result<(TaskSpec, Plan), ParamProblem> {
    let params: serde_json::Value = serde_json::from_slice(payload).map_err(|e| ParamProblem {
        field: "prompt".into(),
        reason: format!("a general-path task's prompt holds its parameters as JSON: {e}"),
    })?;
    plan_params(class, model, max_tokens, &params)
}

fn key_error(reason: String) -> ShellError {
    ShellError::Key {
        path: "storage key".into(),
        reason,
    }
}
