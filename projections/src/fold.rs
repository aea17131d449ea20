//! The fold driver shared by every projection.

use std::collections::BTreeMap;

use prlx_events::log::Offset;
use prlx_events::Envelope;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A read model built by folding envelopes in log order.
pub trait Projection: Default + Clone + PartialEq + Serialize + DeserializeOwned {
    /// Names the snapshot file.
    const NAME: &'static str;
    /// Bumped whenever `apply` changes meaning; a snapshot of another fold version is rebuilt.
    const FOLD_VERSION: u32;

    /// Folds one event. On `Err` the state must be unchanged: check first, then mutate.
    fn apply(&mut self, env: &Envelope) -> Result<(), FoldError>;
}

/// An event that this state cannot follow: the log and the fold disagree. Never skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{event_type}{}: {reason}", field.as_deref().map(|f| format!(".{f}")).unwrap_or_default())]
pub struct FoldError {
    pub event_type: &'static str,
    /// The payload field that disagrees (`payouts[2].amount`), when the fold can tell; the
    /// auditor reports it beside the offset.
    pub field: Option<String>,
    pub reason: String,
}

impl FoldError {
    pub fn new(env: &Envelope, reason: impl Into<String>) -> Self {
        Self {
            event_type: env.event.type_name(),
            field: None,
            reason: reason.into(),
        }
    }

    /// A fold error that names the payload field at fault, e.g. `payouts[2].amount`.
    pub fn at_field(env: &Envelope, field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            ..Self::new(env, reason)
        }
    }
}

/// A fold error with the offset it happened at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at offset {offset}: {error}")]
pub struct FoldAtError {
    pub offset: Offset,
    #[source]
    pub error: FoldError,
}

/// Whether an event was folded or dropped as a redelivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fed {
    Applied,
    Duplicate,
}

/// A projection plus where it stands in the log.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Fold<S> {
    pub state: S,
    /// The offset of the last record fed, `None` before the first.
    pub last_offset: Option<Offset>,
    /// Highest sequence seen per producer: a record at or below it is a redelivery (a retried
    /// append whose first try did land) and is dropped, so nothing is applied twice.
    pub producers: BTreeMap<String, u64>,
    pub duplicates_dropped: u64,
}

impl<S: Projection> Fold<S> {
    /// The offset to read from next.
    pub fn next_offset(&self) -> Offset {
        self.last_offset.map_or(0, |o| o + 1)
    }

    /// Feeds the record at `offset`. Offsets must increase; the backend may skip some.
    pub fn feed(&mut self, offset: Offset, env: &Envelope) -> Result<Fed, FoldAtError> {
        let at = |error| FoldAtError { offset, error };
        if self.last_offset.is_some_and(|last| offset <= last) {
            return Err(at(FoldError::new(
                env,
                format!("offset {offset} fed after {}", self.last_offset.unwrap()),
            )));
        }
        let h = &env.header;
        // One lookup per event, and no `String` clone but for a producer's first event.
        let seen = self.producers.get_mut(&h.producer);
        if seen.as_deref().is_some_and(|&seen| h.sequence <= seen) {
            self.last_offset = Some(offset);
            self.duplicates_dropped += 1;
            return Ok(Fed::Duplicate);
        }
        self.state.apply(env).map_err(at)?;
        match seen {
            Some(seen) => *seen = h.sequence,
            None => {
                self.producers.insert(h.producer.clone(), h.sequence);
            }
        }
        self.last_offset = Some(offset);
        Ok(Fed::Applied)
    }
}

impl<S: Projection> Fold<S> {
    /// Applies an event that this process is appending now, before its offset is known (a
    /// pipelining writer decides the next command while earlier appends are in flight). The
    /// offset catches up with [`Fold::advance`] once the append is durable.
    pub fn apply_own(&mut self, env: &Envelope) -> Result<(), FoldError> {
        self.state.apply(env)?;
        let h = &env.header;
        match self.producers.get_mut(&h.producer) {
            Some(seen) => *seen = h.sequence,
            None => {
                self.producers.insert(h.producer.clone(), h.sequence);
            }
        }
        Ok(())
    }

    /// Records that everything through `last` is durable and folded.
    pub fn advance(&mut self, last: Offset) {
        self.last_offset = Some(self.last_offset.map_or(last, |o| o.max(last)));
    }
}

/// The style's functional form: `apply(state, &event) -> Result<state, FoldError>`.
pub fn apply<S: Projection>(mut state: S, env: &Envelope) -> Result<S, FoldError> {
    state.apply(env)?;
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prlx_events::event::CreditsDeposited;
    use prlx_events::{AccountId, Header};

    fn envelope() -> Envelope {
        let header = Header {
            event_id: Default::default(),
            recorded_at: chrono::DateTime::UNIX_EPOCH,
            producer: "p".into(),
            sequence: 0,
            correlation_id: None,
            causation_id: None,
            prev: None,
        };
        let deposit = CreditsDeposited {
            account: AccountId("a".into()),
            tx_ref: "t".into(),
            amount: 1,
            chain: None,
        };
        Envelope::new(header, deposit)
    }

    #[test]
    fn a_fold_error_names_its_field_when_it_has_one() {
        let env = envelope();
        let plain = FoldError::new(&env, "credited twice");
        assert_eq!(plain.field, None);
        assert_eq!(plain.to_string(), "CreditsDeposited: credited twice");
        let at = FoldError::at_field(&env, "amount", "recorded 2, recomputed 1");
        assert_eq!(at.field.as_deref(), Some("amount"));
        assert_eq!(
            at.to_string(),
            "CreditsDeposited.amount: recorded 2, recomputed 1"
        );
    }
}
