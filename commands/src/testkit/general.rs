//! A general-path task's honest history, for the fold's tests and the auditor's fuzzing: a
//! word count in two map shards and one reduce (task 0; sub-tasks 1 and 2 independent, 3
//! depending on both), on a catalog model `chat` with two nodes, decided step by step with
//! `decide` as the shell would.

use prlx_events::event::*;
use prlx_events::{Hash32, RequestId};

use super::fixtures::{self, completion, model, registered, t, unsigned_submission};
use super::{decide_at, dispatch_next, History};
use crate::decide::{Command, Completion, PlannedInput, PlannedTask};

pub const CLASS: &str = "mapreduce.wordcount";

pub fn params() -> Vec<u8> {
    serde_json::json!({"text": "a b a c b a", "map_shards": 2, "fan_in": 2})
        .to_string()
        .into_bytes()
}

/// The shell's plan of [`params`], each static input "sealed" as itself (the fold never
/// opens a seal).
pub fn planned() -> PlannedTask {
    let spec = prlx_workloads::parse(CLASS, &serde_json::from_slice(&params()).unwrap()).unwrap();
    let plan = prlx_workloads::plan(&spec);
    PlannedTask {
        class: CLASS.into(),
        digest: Hash32(plan.digest()),
        subtasks: plan
            .subtasks
            .iter()
            .map(|s| PlannedInput {
                kind: s.kind.name().into(),
                deps: s.deps.clone(),
                cost: s.cost,
                input: s
                    .deps
                    .is_empty()
                    .then(|| (Hash32::of(&s.input), Sealed(s.input.clone()))),
            })
            .collect(),
    }
}

pub fn submit() -> Command {
    let mut s = unsigned_submission("chat", &params());
    s.workload_class = CLASS.into();
    s.idempotency_key = Some("task-1".into());
    s.plan = Some(Ok(Box::new(planned())));
    Command::SubmitRequest(Box::new(s.signed()))
}

pub fn result_of(id: u64) -> Hash32 {
    Hash32([id as u8 + 0x50; 32])
}

/// Sub-task `id`'s verified result from `node`, not sampled.
pub fn complete(h: &mut History, id: u64, node: prlx_events::NodeId, at: i64) {
    decide_at(
        h,
        t(at),
        Command::CompleteTask(Box::new(Completion {
            result_hash: result_of(id),
            now: t(at),
            ..completion(RequestId(id), node, 0)
        })),
    );
}

pub fn release() -> Command {
    Command::ReleaseSubtask(Box::new(SubtaskReleased {
        request_id: RequestId(3),
        task: RequestId(0),
        subtask: 2,
        inputs: vec![result_of(1), result_of(2)],
        payload_hash: Hash32::of(b"reduce input"),
        sealed_payload: Sealed(b"reduce input".to_vec()),
    }))
}

pub fn aggregate() -> Command {
    Command::ReturnAggregate(Box::new(AggregateReturned {
        request_id: RequestId(0),
        sealed_for_client: Sealed(vec![7]),
        output_hash: Hash32::of(b"a 3\nb 2\nc 1\n"),
        results: vec![result_of(1), result_of(2), result_of(3)],
    }))
}

/// The base (catalog, credit, two nodes) and the task accepted at t(1).
pub fn accepted() -> History {
    let mut h: History = vec![
        fixtures::catalog(vec![model("chat", Hash32([1; 32]))]).into(),
        fixtures::deposited(1_000_000).into(),
        registered(1).into(),
        registered(2).into(),
    ]
    .into();
    decide_at(&mut h, t(10), submit());
    h
}

/// The two maps dispatched and returned.
pub fn maps_returned() -> History {
    let mut h = accepted();
    let a = dispatch_next(&mut h, t(11));
    let b = dispatch_next(&mut h, t(11));
    assert_ne!(a, b, "the two maps go to the two nodes");
    complete(&mut h, 1, a, 12);
    complete(&mut h, 2, b, 13);
    h
}

/// The whole honest history: the reduce released, run, and the aggregate returned.
pub fn honest() -> History {
    let mut h = maps_returned();
    decide_at(&mut h, t(14), release());
    let node = dispatch_next(&mut h, t(15));
    complete(&mut h, 3, node, 16);
    decide_at(&mut h, t(17), aggregate());
    h
}
