//! [`History`]: what a test folds, as the log records it: each event with the time it is
//! recorded at.
//!
//! The fold checks time (a dispatch's deadline runs from the time it is recorded at; a
//! deadline expires at or after it; a result counts only before it), so a history of decided
//! events must carry the times they were decided at, as the shell stamps them: every event of
//! one decision at the decision's `now`. [`History::record`] does that; [`History::push`] and
//! [`History::extend`] stamp facts one second after the event before, from [`t`]`(0)`.
//!
//! The fold also checks that a decision's events complete within their batch (an accepted
//! request is reserved in the same batch, ...), so each event carries its batch as the
//! coordinator writes it, a correlation id: one per [`History::record`] and per
//! [`History::extend`], and one per [`History::push`]ed fact.

use std::ops::Deref;

use chrono::{DateTime, Utc};
use prlx_events::{Envelope, Event, Header};
use uuid::Uuid;

use super::fixtures::t;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    events: Vec<Event>,
    times: Vec<DateTime<Utc>>,
    /// The batch of each event: its envelope's correlation id.
    batches: Vec<u64>,
    next_batch: u64,
}

impl History {
    pub fn new() -> Self {
        Self::default()
    }

    /// When the next fact is stamped: a second after the last event, or [`t`]`(0)`.
    pub fn next_time(&self) -> DateTime<Utc> {
        self.times
            .last()
            .map_or(t(0), |at| *at + chrono::Duration::seconds(1))
    }

    /// The time of the last event; [`t`]`(0)` for an empty history.
    pub fn last_time(&self) -> DateTime<Utc> {
        self.times.last().copied().unwrap_or(t(0))
    }

    /// Appends a fact at [`next_time`](Self::next_time).
    pub fn push(&mut self, event: Event) {
        self.extend([event]);
    }

    /// Appends facts in one batch, each a second after the one before.
    pub fn extend(&mut self, events: impl IntoIterator<Item = Event>) {
        let batch = self.open_batch();
        for e in events {
            let at = self.next_time();
            self.events.push(e);
            self.times.push(at);
            self.batches.push(batch);
        }
    }

    fn open_batch(&mut self) -> u64 {
        self.next_batch += 1;
        self.next_batch
    }

    /// Appends the events of one decision made at `at`, all stamped with it, as the shell
    /// does. Log time never goes back, so `at` must not be before the last event.
    #[track_caller]
    pub fn record(&mut self, at: DateTime<Utc>, events: impl IntoIterator<Item = Event>) {
        assert!(
            at >= self.last_time() || self.times.is_empty(),
            "a decision at {at} recorded after an event at {}: log time never goes back",
            self.last_time()
        );
        let batch = self.open_batch();
        for e in events {
            self.events.push(e);
            self.times.push(at);
            self.batches.push(batch);
        }
    }

    /// Replaces event `i`, keeping its time (a test that forges a record).
    pub fn replace(&mut self, i: usize, event: impl Into<Event>) {
        self.events[i] = event.into();
    }

    /// The events in headers with their times and a dense sequence.
    pub fn envelopes(&self) -> Vec<Envelope> {
        self.events
            .iter()
            .zip(&self.times)
            .zip(&self.batches)
            .enumerate()
            .map(|(i, ((event, at), batch))| {
                Envelope::new(
                    Header {
                        event_id: Uuid::from_u128(i as u128 + 1),
                        recorded_at: *at,
                        producer: "testkit".into(),
                        sequence: i as u64,
                        correlation_id: Some(Uuid::from_u128(u128::from(*batch))),
                        causation_id: None,
                        prev: None,
                    },
                    event.clone(),
                )
            })
            .collect()
    }
}

impl Deref for History {
    type Target = [Event];

    fn deref(&self) -> &[Event] {
        &self.events
    }
}

impl FromIterator<Event> for History {
    fn from_iter<I: IntoIterator<Item = Event>>(events: I) -> Self {
        let mut h = History::new();
        h.extend(events);
        h
    }
}

impl From<Vec<Event>> for History {
    fn from(events: Vec<Event>) -> Self {
        events.into_iter().collect()
    }
}

impl<const N: usize> From<[Event; N]> for History {
    fn from(events: [Event; N]) -> Self {
        events.into_iter().collect()
    }
}

impl From<&[Event]> for History {
    fn from(events: &[Event]) -> Self {
        events.iter().cloned().collect()
    }
}

impl From<&History> for History {
    fn from(h: &History) -> Self {
        h.clone()
    }
}
