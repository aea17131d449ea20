//! Submissions' payloads: hashed and sealed to the storage key, the plaintext going no further.

use prlx_events::event::Sealed;
use prlx_events::Hash32;
use rand::RngCore;

use prlx_projections::coordinator::apply_subtasks::is_general;

use crate::decide::{Command, Submission};

use super::Coordinator;

impl Coordinator {
    /// Hashes and seals a payload for a [`Submission`]: the plaintext goes no further.
    pub fn seal_payload(&self, payload: &[u8]) -> (Hash32, Sealed) {
        let hash = Hash32::of(payload);
        let mut nonce = [0u8; prlx_events::seal::NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        (hash, self.key.seal(nonce, &payload_aad(&hash), payload))
    }

    /// Opens a payload sealed by [`Coordinator::seal_payload`] (for re-dispatch).
    pub fn open_payload(
        &self,
        hash: &Hash32,
        sealed: &Sealed,
    ) -> Result<Vec<u8>, prlx_events::seal::SealError> {
        self.key.open(&payload_aad(hash), sealed)
    }

    /// Builds the command for a submission whose payload arrived as bytes.
    pub fn submission(&self, mut s: Submission, payload: &[u8]) -> Command {
        let (computed, sealed) = self.seal_payload(payload);
        if is_general(&s.workload_class) {
            s.plan = Some(self.plan_task(&s.workload_class, &s.model, s.max_tokens, payload));
        }
        s.computed_payload_hash = computed;
        s.sealed_payload = sealed;
        Command::SubmitRequest(Box::new(s))
    }
}

/// The AAD binds a sealed payload to its hash, so a blob cannot be swapped into another record.
fn payload_aad(hash: &Hash32) -> Vec<u8> {
    let mut aad = b"prlx/payload/v1/".to_vec();
    aad.extend_from_slice(&hash.0);
    aad
}
