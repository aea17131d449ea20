//! The simulated core: `decide` and the fold, stamped with the simulated clock as the shell
//! stamps with the wall clock, its restarts from snapshots, and the checks after each step.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use prlx_commands::decide::{decide, Command, Rejection};
use prlx_events::{AccountId, Envelope, Event, Header};
use prlx_projections::coordinator::RequestStatus;
use prlx_projections::snapshot::{Snapshot, FORMAT_VERSION};
use prlx_projections::{CoordinatorState, Fold, Projection};

use super::witness::Witness;

/// The core, stamped with the simulated clock and folded as the shell would.
pub(super) struct Core {
    pub(super) fold: Fold<CoordinatorState>,
    pub(super) log: Vec<Envelope>,
    pub(super) now: DateTime<Utc>,
    pub(super) deposited: u64,
    pub(super) charged: u64,
    pub(super) witness: Witness,
}

impl Core {
    /// Folds one decision's events, stamped with one time and one batch, as the shell does.
    pub(super) fn apply(&mut self, events: Vec<Event>) -> Result<(), String> {
        let batch = uuid::Uuid::from_u128(self.log.len() as u128 + 1);
        for event in events {
            match &event {
                Event::CreditsDeposited(d) => self.deposited += d.amount,
                Event::CreditsCharged(c) => self.charged += c.amount,
                _ => {}
            }
            let seq = self.log.len() as u64;
            let env = Envelope::new(
                Header {
                    event_id: uuid::Uuid::from_u128(u128::from(seq) + 1),
                    recorded_at: self.now,
                    producer: "sim".into(),
                    sequence: seq,
                    correlation_id: Some(batch),
                    causation_id: None,
                    prev: None,
                },
                event,
            );
            self.fold
                .feed(seq, &env)
                .map_err(|e| format!("the core's own event does not fold: {e}"))?;
            self.witness
                .watch(&env)
                .map_err(|e| format!("offset {seq}: {e}"))?;
            self.log.push(env);
        }
        Ok(())
    }

    /// Decides and applies; a refusal is an answer, not a failure.
    pub(super) fn run(&mut self, command: Command) -> Result<Result<(), Rejection>, String> {
        match decide(&self.fold.state, command) {
            Ok(events) => self.apply(events).map(Ok),
            Err(r) => Ok(Err(r)),
        }
    }
}

/// Restarts the core: its fold is replaced by the one `snapshot` restores plus the log from
/// the snapshot's offset on, as the shell does at start, and deciding goes on from it. The
/// restored fold must be the one the core had.
pub(super) fn restart(core: &mut Core, snapshot: &[u8]) -> Result<(), String> {
    let snap: Snapshot<CoordinatorState> =
        serde_json::from_slice(snapshot).map_err(|e| format!("snapshot does not read: {e}"))?;
    if snap.format_version != FORMAT_VERSION || snap.fold_version != CoordinatorState::FOLD_VERSION
    {
        return Err("the snapshot has another version".into());
    }
    let mut fold = snap.fold;
    let from = fold.next_offset();
    for (offset, env) in core.log.iter().enumerate().skip(from as usize) {
        fold.feed(offset as u64, env)
            .map_err(|e| format!("the log's tail does not fold on the snapshot: {e}"))?;
    }
    if fold != core.fold {
        return Err(format!(
            "restarting from the snapshot at offset {from} and {} records of tail gives \
             another state",
            core.log.len() as u64 - from
        ));
    }
    core.fold = fold;
    Ok(())
}

/// The money invariants, after every step.
pub(super) fn check(core: &Core) -> Result<(), String> {
    let st = &core.fold.state;
    let held: u64 = st.accounts.values().map(|a| a.balance).sum();
    if held != core.deposited - core.charged {
        return Err(format!(
            "accounts hold {held}, but {} was deposited and {} charged",
            core.deposited, core.charged
        ));
    }
    let mut reserved_by: BTreeMap<&AccountId, u64> = BTreeMap::new();
    for (id, r) in &st.requests {
        match r.status {
            RequestStatus::Accepted => *reserved_by.entry(&r.account).or_default() += r.reserved,
            RequestStatus::Completed if r.charged != r.price || r.reserved != 0 => {
                return Err(format!(
                    "completed request {id}: price {}, charged {}, still reserved {}",
                    r.price, r.charged, r.reserved
                ))
            }
            RequestStatus::Failed if r.reserved != 0 || r.charged != 0 => {
                return Err(format!(
                    "failed request {id}: charged {}, still reserved {}",
                    r.charged, r.reserved
                ))
            }
            _ => {}
        }
    }
    for (account, a) in &st.accounts {
        let open = reserved_by.get(account).copied().unwrap_or(0);
        if a.reserved != open || a.reserved > a.balance {
            return Err(format!(
                "account {account}: balance {}, reserved {}, open requests hold {open}",
                a.balance, a.reserved
            ));
        }
    }
    Ok(())
}

/// A snapshot restores to the same state, and re-folding the whole log from scratch does too.
pub(super) fn check_replays(core: &Core) -> Result<(), String> {
    let bytes = serde_json::to_vec(&Snapshot::of(&core.fold)).map_err(|e| e.to_string())?;
    let snap: Snapshot<CoordinatorState> =
        serde_json::from_slice(&bytes).map_err(|e| format!("snapshot does not read: {e}"))?;
    if snap.fold.state != core.fold.state {
        return Err("the snapshot restores to another state".into());
    }
    let mut again = Fold::<CoordinatorState>::default();
    for (offset, env) in core.log.iter().enumerate() {
        again
            .feed(offset as u64, env)
            .map_err(|e| format!("re-folding the log fails: {e}"))?;
    }
    if again.state != core.fold.state {
        return Err("re-folding the log gives another state".into());
    }
    Ok(())
}
