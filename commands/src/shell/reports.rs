//! What a node sends, checked before anything is recorded: its result report (signature over
//! the sealed bytes first, then seal and commitment), its refusal of a dispatch (signature)
//! and its heartbeat (signed by its registered key).

use prlx_events::event::Sealed;
use prlx_events::Hash32;
use rand::RngCore;

use std::collections::BTreeMap;

use prlx_events::crypto::{
    open_message, proof_of_execution, refusal_statement, result_statement, seal_to_public_key,
    verify, Direction,
};
use prlx_events::protocol::{RefusalReport, ResultReport};
use prlx_events::{NodeId, TaskId};

use crate::decide::{Command, Completion, Refusal};

use super::{Coordinator, ReportError};

impl Coordinator {
    /// Checks a node's result report and builds the command that records it. A report whose
    /// signature does not verify is refused here, whatever its seal says: anyone who saw a
    /// report can resend its ciphertext, so only the node's signature over these very sealed
    /// bytes (their hash is in the statement) proves the report is the node's and may change
    /// its standing. A signed report whose result does not open or does not match its PoE is
    /// the node's fault and goes to `decide` as a failed commitment.
    pub fn completion(
        &mut self,
        node: NodeId,
        report: &ResultReport,
    ) -> Result<Command, ReportError> {
        let req = self
            .fold
            .state
            .requests
            .get(&report.request_id)
            .ok_or(ReportError::UnknownRequest(report.request_id))?;
        let node_key = self.node_key(node)?;
        let task = TaskId::whole(report.request_id);
        let ciphertext_hash = Hash32::of(&report.sealed_result);
        let statement = result_statement(
            report.request_id,
            task,
            node,
            report.attempt,
            report.poe,
            ciphertext_hash,
        );
        if !verify(&node_key, &statement, &report.signature) {
            return Err(ReportError::BadSignature);
        }
        let client_pubkey = req.client_pubkey.clone();

        let (epoch, session) = self
            .session(node)
            .ok_or(ReportError::WrongEpoch(report.epoch))?;
        if epoch != report.epoch {
            return Err(ReportError::WrongEpoch(report.epoch));
        }
        let opened = open_message(
            &session,
            Direction::Result,
            task,
            node,
            report.attempt,
            epoch,
            &report.sealed_result,
        );
        // Signed, so whatever is wrong from here on is the node's doing. The checks in the
        // order of the protocol: the result opens, then the PoE matches.
        let (commitment, result) = match opened {
            Err(_) => (
                Err("the result does not open under the node's session key".to_owned()),
                Vec::new(),
            ),
            Ok(bytes) if proof_of_execution(task, &bytes, node) != report.poe => (
                Err("PoE does not match SHA-256(task_id || result || node_id)".to_owned()),
                bytes,
            ),
            Ok(bytes) => (Ok(()), bytes),
        };
        let mut rng = rsa::rand_core::OsRng;
        let mut nonce = [0u8; prlx_events::seal::NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let sealed_result = self
            .key
            .seal(nonce, &result_aad(task, report.attempt), &result);
        // The request's one earlier verified result, sealed to the client once: released in
        // place of this one if this does not check, or if it comes too late.
        let earlier = self.release_for_client(report.request_id);
        let sealed_for_client = match prlx_events::crypto::parse_public_key_pem(&client_pubkey) {
            Ok(client) if commitment.is_ok() => Sealed(seal_to_public_key(
                &client,
                &report.request_id.0.to_be_bytes(),
                &result,
                &mut rng,
            )),
            _ => earlier.clone().unwrap_or(Sealed(Vec::new())),
        };
        let seed = self.sampling_seed().ok().flatten();
        Ok(Command::CompleteTask(Box::new(Completion {
            request: report.request_id,
            node,
            attempt: report.attempt,
            sealed_result,
            poe: report.poe,
            signature: Sealed(report.signature.clone()),
            ciphertext_hash,
            token_count: report.token_count,
            commitment,
            result_hash: Hash32::of(&result),
            sealed_for_client,
            seed,
            earlier,
            // Set by `stage` to the time the completion is decided and stamped at.
            now: chrono::DateTime::<chrono::Utc>::MIN_UTC,
        })))
    }
}

impl Coordinator {
    /// Checks a node's refusal of a dispatch and builds the command that records it. Only a
    /// refusal signed by the node's registered key goes on: anyone may post one, and an
    /// unsigned one must neither move work on nor count against the node.
    pub fn refusal(&self, node: NodeId, report: &RefusalReport) -> Result<Command, ReportError> {
        if !self.fold.state.requests.contains_key(&report.request_id) {
            return Err(ReportError::UnknownRequest(report.request_id));
        }
        let node_key = self.node_key(node)?;
        let task = TaskId::whole(report.request_id);
        let statement = refusal_statement(
            report.request_id,
            task,
            node,
            report.attempt,
            &report.reason,
        );
        if !verify(&node_key, &statement, &report.signature) {
            return Err(ReportError::BadRefusalSignature);
        }
        Ok(Command::RefuseDispatch(Box::new(Refusal {
            request: report.request_id,
            node,
            attempt: report.attempt,
            reason: report.reason.clone(),
            signature: Sealed(report.signature.clone()),
            // Set by `stage` to the time the refusal is decided and stamped at.
            now: chrono::DateTime::<chrono::Utc>::MIN_UTC,
            release: self.release_for_client(report.request_id),
        })))
    }
}

impl Coordinator {
    /// The registered key of `node`, which its reports must be signed with; an unknown node
    /// (or one whose key does not parse) can prove nothing.
    fn node_key(&self, node: NodeId) -> Result<rsa::RsaPublicKey, ReportError> {
        let view = self
            .fold
            .state
            .nodes
            .get(&node)
            .ok_or(ReportError::UnknownNode(node))?;
        prlx_events::crypto::parse_public_key_pem(&view.public_key_pem)
            .map_err(|_| ReportError::UnknownNode(node))
    }
}

pub(super) fn result_aad(task: TaskId, attempt: u32) -> Vec<u8> {
    let mut aad = b"prlx/result-at-rest/v1/".to_vec();
    aad.extend_from_slice(&task.to_bytes());
    aad.extend_from_slice(&attempt.to_be_bytes());
    aad
}

/// How far a heartbeat's signed time may be from the coordinator's clock: the fold's rule.
pub use prlx_projections::coordinator::heartbeat::HEARTBEAT_SKEW_SECONDS;

/// Why a heartbeat was refused; nothing of it is recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeartbeatRefused {
    #[error("the signed time is more than 120 s from the coordinator's clock")]
    Stale,
    #[error("not a signature by the node's registered key over this heartbeat")]
    BadSignature,
    #[error("not later than the node's last accepted heartbeat (a replay)")]
    Replayed,
    /// The key on the log does not parse: ours to fix, not the node's fault.
    #[error("registered key of {node}: {reason}")]
    RegisteredKey { node: NodeId, reason: String },
}

impl HeartbeatRefused {
    /// The heartbeat's field at fault.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            HeartbeatRefused::Stale | HeartbeatRefused::Replayed => Some("at"),
            HeartbeatRefused::BadSignature => Some("signature"),
            HeartbeatRefused::RegisteredKey { .. } => None,
        }
    }
}

/// Checks signed heartbeats: by the node's registered key, over its id and a time near the
/// coordinator's clock and later than the node's last accepted one. Any door that takes
/// heartbeats (HTTP today) checks them here, beside the result reports.
///
/// A replay is refused against the later of two times: the one the log records for the node
/// (`heartbeat_at` in the state, which the caller passes as `recorded`), so a statement
/// captured before a restart or a failover is still refused after it, and the one this guard
/// accepted last, which covers a heartbeat accepted here whose record is still on its way to
/// the log. `decide` and the fold refuse the same replay again.
#[derive(Debug, Default)]
pub struct HeartbeatGuard {
    last: std::sync::Mutex<BTreeMap<NodeId, i64>>,
}

impl HeartbeatGuard {
    /// Accepts the heartbeat of `node` signed at `at` (Unix seconds) with `signature`, given
    /// the node's registered key `pem`, the signed time of its last heartbeat on the log
    /// (`recorded`) and the shell's clock `now` (read by the caller, only to bound how old a
    /// signed time may be; never recorded). On success `at` becomes the node's last accepted
    /// time.
    pub fn check(
        &self,
        node: NodeId,
        pem: &str,
        recorded: Option<i64>,
        at: i64,
        signature: &[u8],
        now: i64,
    ) -> Result<(), HeartbeatRefused> {
        if (at - now).abs() > HEARTBEAT_SKEW_SECONDS {
            return Err(HeartbeatRefused::Stale);
        }
        let key = prlx_events::crypto::parse_public_key_pem(pem).map_err(|e| {
            HeartbeatRefused::RegisteredKey {
                node,
                reason: e.to_string(),
            }
        })?;
        let statement = prlx_events::crypto::heartbeat_statement(node, at);
        if !prlx_events::crypto::verify(&key, &statement, signature) {
            return Err(HeartbeatRefused::BadSignature);
        }
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let seen = last.get(&node).copied().max(recorded);
        match seen {
            Some(seen) if at <= seen => Err(HeartbeatRefused::Replayed),
            _ => {
                last.insert(node, at);
                Ok(())
            }
        }
    }
}
