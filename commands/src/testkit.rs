//! Given/When/Then for decisions: `given(events).when(command).then_expect(events)`.
//!
//! The given events are folded with the real projection (so a history the fold would refuse
//! fails the test loudly), then `decide` runs once.

use chrono::{TimeZone, Utc};
use prlx_events::event::RejectionCode;
use prlx_events::{Envelope, Event, Header};
use prlx_projections::{CoordinatorState, Fold};
use uuid::Uuid;

use crate::decide::{decide, Command, Rejection};

/// Wraps events in headers with a fixed clock and dense sequence, for tests.
pub fn envelopes(events: impl IntoIterator<Item = Event>) -> Vec<Envelope> {
    events
        .into_iter()
        .enumerate()
        .map(|(i, event)| {
            Envelope::new(
                Header {
                    event_id: Uuid::from_u128(i as u128 + 1),
                    recorded_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
                        + chrono::Duration::seconds(i as i64),
                    producer: "testkit".into(),
                    sequence: i as u64,
                    correlation_id: None,
                    causation_id: None,
                },
                event,
            )
        })
        .collect()
}

#[derive(Debug)]
pub struct Given {
    state: CoordinatorState,
}

pub fn given(history: impl IntoIterator<Item = Event>) -> Given {
    let mut fold = Fold::<CoordinatorState>::default();
    for (i, env) in envelopes(history).iter().enumerate() {
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
