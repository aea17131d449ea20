//! A sampled run for validation tests: a one-model catalog with a chosen validation policy,
//! nodes of named devices, an open sampling epoch under the known [`SEED`], and steps that
//! decide and record dispatches and results with that seed, as the shell would.

use prlx_events::event::*;
use prlx_events::{Event, Hash32, NodeId, RequestId};
use prlx_projections::fold::FoldAtError;
use prlx_projections::scheduler::{next_assignment, Choice};
use prlx_projections::CoordinatorState;

use super::fixtures::{self, accepted_and_reserved, completion, cpu, model, registered};
use super::{given, History};
use crate::decide::{decide, Command, Completion, Dispatch};

/// The seed of sampling epoch 1.
pub const SEED: Hash32 = Hash32([42; 32]);

/// A catalog of the model `chat`, two attempts per request, and `policy`.
pub fn catalog(policy: ValidationPolicy) -> Event {
    CatalogPublished {
        max_attempts: 2,
        validation: policy,
        ..fixtures::catalog(vec![model("chat", Hash32([1; 32]))])
    }
    .into()
}

/// The [`registered`] node `n` on the CPU runtime `onnxruntime-1.22` of `device`.
pub fn node_of(n: u8, device: &str) -> Event {
    NodeRegistered {
        execution_class: ExecutionClass {
            device: device.into(),
            ..cpu("onnxruntime-1.22")
        },
        ..registered(n)
    }
    .into()
}

/// The catalog, 1_000 credits, `nodes`, sampling epoch 1 opened under [`SEED`], and
/// requests `0..requests` accepted, a second apart.
pub fn opened(policy: ValidationPolicy, nodes: Vec<Event>, requests: u64) -> History {
    let mut h: History = vec![catalog(policy), fixtures::deposited(1_000).into()].into();
    h.extend(nodes);
    h.push(
        SamplingSeedCommitted {
            epoch: 1,
            seed_hash: Hash32::of(&SEED.0),
            sealed_seed: None,
        }
        .into(),
    );
    for id in 0..requests {
        h.extend(accepted_and_reserved(fixtures::request_accepted(id)));
    }
    h
}

/// The state `h` folds to (panics if it does not fold).
pub fn state(h: &History) -> CoordinatorState {
    given(h).state().clone()
}

/// Decides the next dispatch (replicas drawn under [`SEED`]) a second after the last event
/// and records it; returns the choice.
pub fn dispatch(h: &mut History) -> Choice {
    let choice = next_assignment(&state(h), Some(&SEED)).expect("something to dispatch");
    let now = h.next_time();
    let events = decide(
        &state(h),
        Command::Dispatch(Box::new(Dispatch {
            choice: choice.clone(),
            sealed_work: Sealed(vec![1]),
            now,
            seed: Some(SEED),
        })),
    )
    .expect("the scheduler's own choice");
    h.record(now, events);
    choice
}

/// `node` returns `result` for its running attempt of `request` a second after the last
/// event, its commitment checked; records and returns the decided events.
pub fn complete(h: &mut History, request: RequestId, node: NodeId, result: &[u8]) -> Vec<Event> {
    let st = state(h);
    let attempt = st.requests[&request]
        .running
        .as_ref()
        .expect("a running dispatch")
        .attempt;
    let now = h.next_time();
    let events = decide(
        &st,
        Command::CompleteTask(Box::new(Completion {
            result_hash: Hash32::of(result),
            sealed_for_client: Sealed(result.to_vec()),
            seed: Some(SEED),
            now,
            ..completion(request, node, attempt)
        })),
    )
    .expect("a result for the running dispatch");
    h.record(now, events.clone());
    events
}

/// Reveals epoch 1's seed, a second after the last event.
pub fn reveal(h: &mut History) {
    h.push(
        SamplingSeedRevealed {
            epoch: 1,
            seed: SEED,
        }
        .into(),
    );
}

/// The first record of `h` the fold refuses, with its offset; `None` if all of it folds.
pub fn refused(h: &History) -> Option<FoldAtError> {
    super::fold(h).err()
}

/// The type names of `events`.
pub fn types(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(Event::type_name).collect()
}
