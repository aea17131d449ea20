//! The log's hash chain as the shell sees it (`docs/adr/08-hash-chain.md`): recovered from the
//! last record at start, and sealed every so many records or seconds. The encoder thread links
//! the records and fills in each seal's chain value and signature; the shell only decides when
//! a seal is due and stages a placeholder at the end of a batch, so it is numbered, stamped
//! and folded like any other record.

use chrono::{DateTime, Utc};
use prlx_events::chain::Chain;
use prlx_events::event::{LogSealed, Sealed};
use prlx_events::log::{LogError, LogReader, Offset};
use prlx_events::{Event, Hash32};

use super::{Coordinator, ShellError};

/// How often the coordinator seals the log. What a seal bounds: records deleted from the tail
/// after the last seal are the one change the chain cannot show, so at most `records` records
/// or `interval_seconds` of log time (while the log grows) are exposed that way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealPolicy {
    pub records: u64,
    pub interval_seconds: i64,
}

/// The coordinator's default: a seal (one RSA signature) per 1,000 records or per minute.
pub const SEAL_POLICY: SealPolicy = SealPolicy {
    records: 1_000,
    interval_seconds: 60,
};

/// Records and time since the last seal this process wrote.
#[derive(Debug, Clone, Copy)]
pub(super) struct SealClock {
    policy: SealPolicy,
    unsealed: u64,
    /// When the last seal was staged (or the first batch after start).
    since: Option<DateTime<Utc>>,
}

impl Default for SealClock {
    fn default() -> Self {
        Self {
            policy: SEAL_POLICY,
            unsealed: 0,
            since: None,
        }
    }
}

/// A seal as the shell stages it; the encoder, which alone knows the chain value, fills in the
/// head and the signature.
fn placeholder() -> Event {
    LogSealed {
        head: Hash32([0; 32]),
        signature: Sealed(Vec::new()),
    }
    .into()
}

/// The chain of the log whose last record is at `last` (as the fold found it).
pub(super) async fn chain_after<R: LogReader>(
    reader: &R,
    last: Option<Offset>,
) -> Result<Chain, LogError> {
    let Some(last) = last else {
        return Ok(Chain::after(None));
    };
    let record = reader.read(last, 1).await?;
    Ok(Chain::after(record.first().map(|r| r.payload.as_slice())))
}

impl Coordinator {
    /// Seals by `policy` instead of [`SEAL_POLICY`] (tests seal every few records).
    pub fn with_seal_policy(mut self, policy: SealPolicy) -> Self {
        self.seals.policy = policy;
        self
    }

    /// `events`, with a seal placeholder after them when one is due: after
    /// [`SealPolicy::records`] records or [`SealPolicy::interval_seconds`] since the last.
    /// Only with a signing key (without one nothing could be signed).
    pub(super) fn seal_if_due(&mut self, mut events: Vec<Event>, now: DateTime<Utc>) -> Vec<Event> {
        let sealed_already = matches!(events.last(), Some(Event::LogSealed(_)));
        if self.signing_key.is_none() || events.is_empty() || sealed_already {
            return events;
        }
        let clock = &mut self.seals;
        let since = *clock.since.get_or_insert(now);
        clock.unsealed += events.len() as u64;
        let due = clock.unsealed >= clock.policy.records
            || (now - since).num_seconds() >= clock.policy.interval_seconds;
        if due {
            clock.unsealed = 0;
            clock.since = Some(now);
            events.push(placeholder());
        }
        events
    }

    /// Seals what this process wrote since its last seal, if anything, and waits until the
    /// seal is durable: at a clean shutdown, so that the tail is not left open to a cut. After
    /// a crash the records since the last seal stay unsealed until the next process seals.
    pub async fn seal_now(&mut self) -> Result<(), ShellError> {
        if self.signing_key.is_none() || self.seals.unsealed == 0 {
            return Ok(());
        }
        self.seals.unsealed = 0;
        let now = self.stamp_time();
        self.seals.since = Some(now);
        let range = self.stage_events(vec![placeholder()], now)?.await?;
        self.durable_through(&range);
        Ok(())
    }
}
