//! Every idempotency key under which a request was accepted, for the whole replay.
//!
//! The coordinator's state keeps an account's keys only while their requests are in its
//! window (`FINISHED_WINDOW` settlements); after that its request index answers for them, so
//! the fold alone, like the state, catches a key accepted twice only inside the window. A
//! coordinator that accepted a key again after that (one that lost its index, or one that
//! replays an account's signed submission to charge it twice: the consent covers the key, so
//! it verifies again) would pass the fold. The auditor keeps every key it has seen instead:
//! 16 bytes of SHA-256 over account and key, and the offset where it was accepted, ~40 bytes
//! per request for the length of the replay. From a snapshot it knows the keys of the tail
//! and of the snapshot's window only.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use prlx_events::log::Offset;
use prlx_events::{Envelope, Event, Hash32};

#[derive(Debug, Default)]
pub(crate) struct AcceptedKeys {
    first: BTreeMap<[u8; 16], Offset>,
}

impl AcceptedKeys {
    /// Notes the key of a request accepted at `offset`; if it was accepted before, says where.
    pub(crate) fn accepted_again(&mut self, offset: Offset, env: &Envelope) -> Option<String> {
        let Event::RequestAccepted(r) = &env.event else {
            return None;
        };
        let key = r.idempotency_key.as_deref()?;
        let mut bytes = Vec::with_capacity(r.credit_account.0.len() + 1 + key.len());
        bytes.extend_from_slice(r.credit_account.0.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(key.as_bytes());
        let digest = Hash32::of(&bytes);
        let fingerprint: [u8; 16] = digest.0[..16].try_into().expect("16 of 32 bytes");
        match self.first.entry(fingerprint) {
            Entry::Vacant(slot) => {
                slot.insert(offset);
                None
            }
            Entry::Occupied(first) => Some(format!(
                "idempotency key {key:?} of account {} accepted again: first at offset {} \
                 (request ids are new, the consent is the same)",
                r.credit_account.0,
                first.get()
            )),
        }
    }
}
