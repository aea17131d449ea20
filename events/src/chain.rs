//! The log's hash chain (`docs/adr/08-hash-chain.md`): every record written by a chaining
//! coordinator carries, in its header's `prev`, the SHA-256 of the record before it on the log,
//! byte for byte as stored (the first record of a log carries [`GENESIS`]). Removing, inserting
//! or reordering a record then breaks the link of the record after the change, however
//! consistently offsets, checksums and sequence numbers are rewritten; and a `LogSealed` record
//! signs the chain value, so rewriting the links as well takes the coordinator's key.
//!
//! The rule a reader checks ([`Links::check`]): a linked record must link to the record before
//! it, and once a record is linked every later one must be. Records before the first linked
//! one (logs written before the chain) are not covered.

use crate::ids::Hash32;

/// The `prev` of the first record of a log.
pub const GENESIS: Hash32 = Hash32([0; 32]);

/// The link a record carries when `before` (its bytes as on the log) is the record before it.
pub fn link_to(before: &[u8]) -> Hash32 {
    Hash32::of(before)
}

/// The writer's side: the `prev` the next record must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chain {
    head: Hash32,
}

impl Chain {
    /// The chain of a log whose last record is `last` (`None`: an empty log).
    pub fn after(last: Option<&[u8]>) -> Self {
        Self {
            head: last.map_or(GENESIS, link_to),
        }
    }

    /// The `prev` of the next record.
    pub fn head(&self) -> Hash32 {
        self.head
    }

    /// `record` (encoded with `prev` = [`Chain::head`]) is the next record on the log.
    pub fn push(&mut self, record: &[u8]) {
        self.head = link_to(record);
    }
}

/// Why a record breaks the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("does not link to the record before it (prev {found}, expected {expected})")]
    Broken { expected: Hash32, found: Hash32 },
    #[error("is the first record of the log but does not carry the genesis link (prev {found})")]
    NotFirst { found: Hash32 },
    #[error("carries no link, but the record before it did (the chain cannot stop)")]
    Unlinked,
}

/// The reader's side: what it knows of the record before the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Links {
    /// SHA-256 of the record before, and whether it was linked; `None` before the first record.
    before: Option<(Hash32, bool)>,
}

impl Links {
    /// Checking from the first record of the log.
    pub fn from_start() -> Self {
        Self { before: None }
    }

    /// Checking from the record after `before` (its bytes, and its `prev`).
    pub fn after(before: &[u8], before_prev: Option<Hash32>) -> Self {
        Self {
            before: Some((link_to(before), before_prev.is_some())),
        }
    }

    /// The link a record after the last one checked would carry: the SHA-256 of that record.
    pub fn head(&self) -> Option<Hash32> {
        self.before.map(|(h, _)| h)
    }

    /// Checks the next record, `bytes` as on the log with `prev` from its header, and moves on
    /// to it. Answers whether it is linked.
    pub fn check(&mut self, bytes: &[u8], prev: Option<Hash32>) -> Result<bool, LinkError> {
        self.check_linked(link_to(bytes), prev)
    }

    /// [`Links::check`] with the record's link (`link_to` of its bytes) already computed: the
    /// hashing, like decoding, can run on several threads, and only this step in order.
    pub fn check_linked(&mut self, link: Hash32, prev: Option<Hash32>) -> Result<bool, LinkError> {
        let checked = match (self.before, prev) {
            (None, Some(found)) if found != GENESIS => Err(LinkError::NotFirst { found }),
            (Some((expected, _)), Some(found)) if found != expected => {
                Err(LinkError::Broken { expected, found })
            }
            (Some((_, true)), None) => Err(LinkError::Unlinked),
            _ => Ok(prev.is_some()),
        };
        self.before = Some((link, prev.is_some()));
        checked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records as a chaining writer makes them: the link, then the body.
    fn chained(bodies: &[&str]) -> Vec<(Vec<u8>, Option<Hash32>)> {
        let mut chain = Chain::after(None);
        bodies
            .iter()
            .map(|b| {
                let prev = chain.head();
                let bytes = format!("{prev}:{b}").into_bytes();
                chain.push(&bytes);
                (bytes, Some(prev))
            })
            .collect()
    }

    fn first_break(records: &[(Vec<u8>, Option<Hash32>)]) -> Option<(usize, LinkError)> {
        let mut links = Links::from_start();
        records
            .iter()
            .enumerate()
            .find_map(|(i, (bytes, prev))| links.check(bytes, *prev).err().map(|e| (i, e)))
    }

    #[test]
    fn a_chained_log_checks_and_any_removal_insertion_or_swap_breaks_it_there() {
        let log = chained(&["a", "b", "c", "d", "e"]);
        assert_eq!(first_break(&log), None);
        for removed in 0..log.len() - 1 {
            let mut cut = log.clone();
            cut.remove(removed);
            let (at, _) = first_break(&cut).expect("a removal is caught");
            assert_eq!(at, removed, "removing {removed}");
        }
        let mut swapped = log.clone();
        swapped.swap(1, 2);
        assert_eq!(first_break(&swapped).map(|b| b.0), Some(1));
        let mut inserted = log.clone();
        inserted.insert(3, (b"forged".to_vec(), Some(link_to(&log[2].0))));
        assert_eq!(first_break(&inserted).map(|b| b.0), Some(4));
        let mut first_gone = log.clone();
        first_gone.remove(0);
        assert!(matches!(
            first_break(&first_gone),
            Some((0, LinkError::NotFirst { .. }))
        ));
    }

    #[test]
    fn the_chain_may_start_late_but_never_stop() {
        let mut log = vec![(b"old-1".to_vec(), None), (b"old-2".to_vec(), None)];
        let mut chain = Chain::after(Some(&log[1].0));
        for b in ["x", "y"] {
            let prev = chain.head();
            let bytes = format!("{prev}:{b}").into_bytes();
            chain.push(&bytes);
            log.push((bytes, Some(prev)));
        }
        assert_eq!(first_break(&log), None);
        // Resuming after a record: the same verdicts as from the start.
        let mut links = Links::after(&log[2].0, log[2].1);
        assert_eq!(links.check(&log[3].0, log[3].1), Ok(true));
        let mut stopped = log.clone();
        stopped.push((b"unlinked".to_vec(), None));
        assert_eq!(first_break(&stopped), Some((4, LinkError::Unlinked)));
        // A byte changed in a linked record breaks the link of the one after it.
        let mut edited = log.clone();
        let last = edited[2].0.len() - 1;
        edited[2].0[last] ^= 1;
        assert!(matches!(
            first_break(&edited),
            Some((3, LinkError::Broken { .. }))
        ));
    }
}
