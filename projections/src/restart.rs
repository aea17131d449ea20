//! Restarting a fold from its snapshot with the log's tail read meanwhile.
//!
//! A restart parses the snapshot (CPU: JSON of the hot state) and reads and decodes the tail
//! after it (a read from the middle of a segment, then CPU again); neither needs the other,
//! so the snapshot is parsed on a thread of its own while this task reads ahead from the
//! snapshot's last offset, peeked from the file's first bytes. The records read ahead are fed
//! only where a catch-up from the fold's next offset would have read them, so a wrong peek,
//! an unusable snapshot, or a read or decode that fails ahead changes nothing: the catch-up
//! after reads (and reports) what the read-ahead did not take.

use std::path::{Path, PathBuf};

use prlx_events::log::{LogReader, Offset};
use prlx_events::Envelope;

use crate::fold::{Fold, Projection};
use crate::snapshot::{catch_up, read_body, Snapshot, SnapshotError};

/// The most records decoded ahead; the read-ahead also stops once the snapshot is parsed.
const AHEAD_MAX: usize = 16_384;
/// Records per read while reading ahead: small, so a finished parse is noticed soon.
const AHEAD_CHUNK: usize = 512;

/// Records read and decoded while a snapshot was parsed.
#[derive(Debug, Default)]
pub struct ReadAhead {
    /// The offset the read started from: the records are every record from there on, in
    /// order, as far as they go.
    from: Offset,
    records: Vec<(Offset, Envelope)>,
}

impl ReadAhead {
    /// The record at `offset`, if it was read ahead.
    pub fn record(&self, offset: Offset) -> Option<&Envelope> {
        let i = self.records.partition_point(|(o, _)| *o < offset);
        self.records
            .get(i)
            .filter(|(o, _)| *o == offset)
            .map(|(_, e)| e)
    }

    /// Feeds `fold` the records a catch-up from its next offset would read first (none if the
    /// read began after that offset), calling `seen` after each as the catch-up does.
    pub fn feed_into<S: Projection>(
        self,
        fold: &mut Fold<S>,
        mut seen: impl FnMut(&Fold<S>, &Envelope),
    ) -> Result<(), SnapshotError> {
        let next = fold.next_offset();
        if self.from > next {
            return Ok(());
        }
        for (offset, env) in self.records.into_iter().filter(|(o, _)| *o >= next) {
            fold.feed(offset, &env)?;
            seen(fold, &env);
        }
        Ok(())
    }
}

/// The snapshot at `path` (as [`Snapshot::load_whole`]), and the log's records from the
/// snapshot's last offset on, read ahead while it was parsed.
pub async fn load_reading_ahead<S, R>(
    path: &Path,
    reader: &R,
) -> Result<(Option<Snapshot<S>>, ReadAhead), SnapshotError>
where
    S: Projection + Send + 'static,
    R: LogReader,
{
    let Some(body) = read_body(path)? else {
        return Ok((None, ReadAhead::default()));
    };
    let Some(from) = parse_from(&body) else {
        return Ok((Snapshot::decode(path, &body)?, ReadAhead::default()));
    };
    let owned: PathBuf = path.to_owned();
    let parse = std::thread::Builder::new()
        .name("prlx-snapshot-load".into())
        .spawn(move || Snapshot::<S>::decode(&owned, &body));
    let parse = match parse {
        Ok(handle) => handle,
        // No thread to be had: load first, read after, as without the read-ahead (the body
        // went with the closure the spawn dropped).
        Err(_) => return Ok((Snapshot::load_whole(path)?, ReadAhead::default())),
    };
    let mut ahead = ReadAhead {
        from,
        records: Vec::new(),
    };
    let mut next = from;
    // At least one chunk, however fast the parse: its first record is the one the snapshot's
    // origin is checked against, and every restart takes the same path.
    'read: loop {
        // A failed read or decode only ends the read-ahead; the catch-up meets it again.
        let Ok(records) = reader.read(next, AHEAD_CHUNK).await else {
            break;
        };
        if records.is_empty() {
            break;
        }
        for r in records {
            let Ok(env) = Envelope::decode(&r.payload) else {
                break 'read;
            };
            next = r.offset + 1;
            ahead.records.push((r.offset, env));
        }
        if parse.is_finished() || ahead.records.len() >= AHEAD_MAX {
            break;
        }
    }
    // The parse is done or close to it (the read-ahead stopped at the log's end, a cap or a
    // failure): waiting here is the rest of the snapshot's load.
    let snapshot = parse
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))?;
    Ok((snapshot, ahead))
}

/// Restores from the snapshot at `path` when it is usable, then folds the tail of the log:
/// the tail after the snapshot is read while the snapshot is parsed ([`load_reading_ahead`]).
pub async fn restore<S, R>(path: &Path, reader: &R) -> Result<Fold<S>, SnapshotError>
where
    S: Projection + Send + 'static,
    R: LogReader,
{
    let (snapshot, ahead) = load_reading_ahead::<S, R>(path, reader).await?;
    let mut fold = snapshot.map(|s| s.fold).unwrap_or_default();
    ahead.feed_into(&mut fold, |_, _| {})?;
    catch_up(&mut fold, reader).await?;
    Ok(fold)
}

/// Where the tail after the snapshot in `body` starts: its last offset, read from the
/// file's first bytes as [`Snapshot::save`] writes them (`{"format_version":N,"fold_version":N,
/// "last_offset":X,`; serde writes fields in declaration order), so the read can start before
/// the parse ends. From its last record, not after it, so the record that names the
/// snapshot's origin is read ahead too. `None` when it starts otherwise.
fn parse_from(head: &[u8]) -> Option<Offset> {
    let digits = |s: &[u8]| s.iter().take_while(|b| b.is_ascii_digit()).count();
    let rest = head.strip_prefix(b"{\"format_version\":")?;
    let rest = &rest[digits(rest)..];
    let rest = rest.strip_prefix(b",\"fold_version\":")?;
    let rest = &rest[digits(rest)..];
    let rest = rest.strip_prefix(b",\"last_offset\":")?;
    if rest.starts_with(b"null") {
        return Some(0);
    }
    let n = digits(rest);
    if n == 0 || !rest[n..].starts_with(b",") {
        return None;
    }
    std::str::from_utf8(&rest[..n]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fold::FoldError;
    use prlx_events::event::CreditsDeposited;
    use prlx_events::{AccountId, Header};
    use serde::{Deserialize, Serialize};

    /// A projection that only lists the sequences it folded.
    #[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
    struct Folded(Vec<u64>);

    impl Projection for Folded {
        const NAME: &'static str = "folded";
        const FOLD_VERSION: u32 = 1;
        fn apply(&mut self, env: &Envelope) -> Result<(), FoldError> {
            self.0.push(env.header.sequence);
            Ok(())
        }
    }

    /// The record at `offset` (its sequence is its offset).
    fn record(offset: Offset) -> (Offset, Envelope) {
        let header = Header {
            event_id: uuid::Uuid::from_u128(u128::from(offset) + 1),
            recorded_at: chrono::DateTime::UNIX_EPOCH,
            producer: "p".into(),
            sequence: offset,
            correlation_id: None,
            causation_id: None,
            prev: None,
        };
        let deposit = CreditsDeposited {
            account: AccountId("a".into()),
            tx_ref: format!("t{offset}"),
            amount: 1,
            chain: None,
        };
        (offset, Envelope::new(header, deposit))
    }

    fn fold_through(last: Offset) -> Fold<Folded> {
        let mut fold = Fold::<Folded>::default();
        for (offset, env) in (0..=last).map(record) {
            fold.feed(offset, &env).unwrap();
        }
        fold
    }

    /// Records read from the snapshot's last offset are fed from the fold's next offset on;
    /// a read that began after that offset feeds nothing (the catch-up reads it all).
    #[test]
    fn records_read_ahead_feed_the_fold_only_where_a_catch_up_would_start() {
        let ahead = |from: Offset, to: Offset| ReadAhead {
            from,
            records: (from..to).map(record).collect(),
        };
        let mut seen = Vec::new();
        let mut fold = fold_through(4);
        ahead(4, 9)
            .feed_into(&mut fold, |_, env| seen.push(env.header.sequence))
            .unwrap();
        assert_eq!(fold.state.0, (0..9).collect::<Vec<_>>());
        assert_eq!(seen, vec![5, 6, 7, 8]);
        assert_eq!(fold.next_offset(), 9);

        // The snapshot was not used: the fold starts at 0, and a read from 4 misses 0..4.
        let mut fresh = Fold::<Folded>::default();
        ahead(4, 9).feed_into(&mut fresh, |_, _| ()).unwrap();
        assert_eq!(fresh.next_offset(), 0);

        // The record the origin is checked against is there by offset, and only it.
        let a = ahead(4, 9);
        assert_eq!(a.record(4).map(|e| e.header.sequence), Some(4));
        assert!(a.record(3).is_none() && a.record(9).is_none());
    }

    #[test]
    fn the_tail_starts_at_the_last_offset_written_first() {
        let head = br#"{"format_version":1,"fold_version":12,"last_offset":105519,"fold":{"#;
        assert_eq!(parse_from(head), Some(105_519));
        let empty = br#"{"format_version":1,"fold_version":12,"last_offset":null,"fold":{"#;
        assert_eq!(parse_from(empty), Some(0));
        // Cut inside the number, another order, another shape: no hint.
        assert_eq!(
            parse_from(br#"{"format_version":1,"fold_version":12,"last_offset":10"#),
            None
        );
        assert_eq!(
            parse_from(br#"{"fold_version":12,"format_version":1,"last_offset":7,"#),
            None
        );
        assert_eq!(parse_from(b"{\n  \"format_version\": 1,"), None);
        assert_eq!(parse_from(b""), None);
    }
}
