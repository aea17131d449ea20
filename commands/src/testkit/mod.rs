//! What tests of the coordinator start from (feature `testkit`, and this crate's own tests;
//! not in a build of this package on its own): Given/When/Then for decisions,
//! `given(events).when(command).then_expect(events)`, and builders of the events, commands
//! and request bodies they are given.
//!
//! The given events are folded with the real projection (so a history the fold would refuse
//! fails the test loudly), then `decide` runs once.
//!
//! # Layout
//! - this module: [`given`], [`Given`], [`Then`] and [`envelopes`], on the clock
//!   [`fixtures::t`].
//! - [`history`]: a [`History`] records decided events at their decision's time, as the
//!   shell does, so the fold's time checks hold.
//! - [`accounts`]: test accounts as chain addresses with keys, and signing a submission body
//!   as its account.
//! - [`fixtures`]: catalogs, models, node registrations, deposits, accepted requests, a
//!   reward policy, submissions and completions, each with plain values a test overrides with
//!   struct update syntax.
//! - [`general`]: a general-path task's honest history (plan, maps, release, reduce,
//!   aggregate), decided step by step.
//! - [`app`]: the HTTP intake in process (`app()` over a coordinator on a fresh file log).
//! - [`intake`]: the HTTP intake's one-model catalog, a submission body for it, and every way
//!   to get that body rejected; shared by the in-process and the real-process tests.
//! - [`sampling`]: a sampled run for validation tests: nodes of named devices, an open
//!   sampling epoch under a known seed, dispatches and results decided with it.
//! - [`session`]: a node of the real shell as its daemon sees it (key, session from its
//!   grant, dispatches), for tests of what nodes report.
//! - [`settled`]: many requests accepted and settled through the shell, for tests of what
//!   happens once they leave the state's window.

pub mod accounts;
pub mod app;
pub mod fixtures;
pub mod general;
pub mod history;
pub mod intake;
pub mod sampling;
pub mod session;
pub mod settled;

pub use history::History;

use prlx_events::event::RejectionCode;
use prlx_events::{Envelope, Event};
use prlx_projections::{CoordinatorState, Fold};

use crate::decide::{decide, Command, Rejection};

/// Wraps events in headers recorded a second apart from [`fixtures::t`]`(0)`, with a dense
/// sequence, for tests.
pub fn envelopes(events: impl IntoIterator<Item = Event>) -> Vec<Envelope> {
    events.into_iter().collect::<History>().envelopes()
}

/// A history folded into the state a command is decided against.
#[derive(Debug)]
pub struct Given {
    state: CoordinatorState,
}

/// Folds `history` (facts a second apart, or a [`History`] with its decisions' times);
/// panics if the fold refuses it.
pub fn given(history: impl Into<History>) -> Given {
    let mut fold = Fold::<CoordinatorState>::default();
    for (i, env) in history.into().envelopes().iter().enumerate() {
        fold.feed(i as u64, env)
            .unwrap_or_else(|e| panic!("the given history does not fold: {e}"));
    }
    Given { state: fold.state }
}

impl Given {
    pub fn state(&self) -> &CoordinatorState {
        &self.state
    }

    pub fn when(self, command: Command) -> Then {
        let outcome = decide(&self.state, command);
        Then { outcome }
    }
}

/// What `decide` made of the command: events or a rejection, to assert on.
#[derive(Debug)]
pub struct Then {
    outcome: Result<Vec<Event>, Rejection>,
}

impl Then {
    #[track_caller]
    pub fn then_expect(self, expected: impl IntoIterator<Item = Event>) {
        let expected: Vec<Event> = expected.into_iter().collect();
        match self.outcome {
            Ok(events) => assert_eq!(events, expected, "decided events differ"),
            Err(r) => panic!("expected events {expected:?}, got rejection {r}"),
        }
    }

    #[track_caller]
    pub fn then_reject(self, code: RejectionCode, field: &str) -> Rejection {
        match self.outcome {
            Err(r) => {
                assert_eq!(
                    (r.code, r.field.as_deref()),
                    (code, Some(field)),
                    "rejection: {r}"
                );
                r
            }
            Ok(events) => panic!("expected rejection {code:?} on {field}, got events {events:?}"),
        }
    }

    /// The decided events, for assertions the two forms above do not cover.
    #[track_caller]
    pub fn events(self) -> Vec<Event> {
        self.outcome
            .unwrap_or_else(|r| panic!("expected events, got rejection {r}"))
    }
}

/// Decides the scheduler's next dispatch against `h` at `now` (no sampling epoch's seed, so
/// no replica), as the shell does, records it at `now`, and returns the node chosen. Panics
/// when nothing can be dispatched.
pub fn dispatch_next(h: &mut History, now: chrono::DateTime<chrono::Utc>) -> prlx_events::NodeId {
    let st = given(&*h).state;
    let choice = prlx_projections::scheduler::next_assignment(&st, None)
        .expect("a request to dispatch and a node to take it");
    let node = choice.node;
    let events = decide(
        &st,
        Command::Dispatch(Box::new(crate::decide::Dispatch {
            choice,
            sealed_work: prlx_events::event::Sealed(vec![1]),
            now,
            seed: None,
        })),
    )
    .unwrap_or_else(|r| panic!("the scheduler's own choice was refused: {r}"));
    h.record(now, events);
    node
}

/// Decides `command` on `h` folded and records its events at `at`; panics when it is
/// rejected. Returns the events.
#[track_caller]
pub fn decide_at(
    h: &mut History,
    at: chrono::DateTime<chrono::Utc>,
    command: Command,
) -> Vec<prlx_events::Event> {
    let state = fold(h).unwrap_or_else(|e| panic!("the history does not fold: {e}"));
    let events = decide(&state, command).unwrap_or_else(|r| panic!("rejected: {r}"));
    h.record(at, events.clone());
    events
}

/// The catalog of model `chat`, node 1 registered, and the [`fixtures::reward_policy`]
/// published at `t(-30)`, so that epoch 0 starts at `t(0)`.
pub fn one_node_under_the_reward_policy() -> History {
    let mut h = History::new();
    h.record(
        fixtures::t(-200),
        [fixtures::catalog(vec![fixtures::model("chat", prlx_events::Hash32([1; 32]))]).into()],
    );
    h.record(fixtures::t(-180), [fixtures::registered(1).into()]);
    decide_at(
        &mut h,
        fixtures::t(-30),
        Command::Settlement(crate::settle::SettlementCommand::PublishPolicy(
            fixtures::reward_policy(),
        )),
    );
    h
}

/// Decides and records at `now` every settlement due then ([`crate::settle::due_settlements`]);
/// returns the epochs settled.
pub fn settle_due(
    h: &mut History,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<prlx_events::event::RewardEpochSettled> {
    let state = fold(h).unwrap_or_else(|e| panic!("the history does not fold: {e}"));
    let mut settled = Vec::new();
    for command in crate::settle::due_settlements(&state, now) {
        for e in decide_at(h, now, Command::Settlement(command)) {
            if let prlx_events::Event::RewardEpochSettled(s) = e {
                settled.push(s);
            }
        }
    }
    settled
}

/// Folds `h` record by record, as the auditor does: the state, or the first refusal with its
/// offset.
pub fn fold(h: &History) -> Result<CoordinatorState, prlx_projections::fold::FoldAtError> {
    let mut fold = Fold::<CoordinatorState>::default();
    for (i, env) in h.envelopes().iter().enumerate() {
        fold.feed(i as u64, env)?;
    }
    Ok(fold.state)
}
