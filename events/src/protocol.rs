//! What travels between the coordinator and a node, inside the sealed envelopes of
//! [`crate::crypto`]: the dispatch body, the canonical result, and the node's reports (a
//! result, or a refusal of work it cannot run).

use serde::{Deserialize, Serialize};

use crate::event::RefusalReason;
use crate::ids::{Hash32, RequestId};

/// The work of one request, sealed under the node's session key: an inference request's
/// prompt, or a general-path sub-task's kind and input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchBody {
    pub request_id: RequestId,
    pub model: String,
    pub prompt: String,
    pub max_tokens: u32,
    /// Set for a general-path sub-task: the node runs the built-in kind over the input and
    /// returns its output bytes as the result (no code from a submitter ever runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtask: Option<SubtaskWork>,
}

/// A sub-task as a node runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskWork {
    /// The built-in kind (`prlx-workloads` `SubtaskKind`, e.g. `render.tile`).
    pub kind: String,
    /// Its canonical input bytes.
    #[serde(with = "crate::b64")]
    pub input: Vec<u8>,
}

/// A node's output. Its canonical bytes ([`ResultBody::canonical_bytes`]) are what the PoE
/// commits to and what redundant replicas are compared on: honest nodes of one execution class
/// decoding greedily produce the same bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultBody {
    pub text: String,
    pub token_ids: Vec<u32>,
    pub model_sha256: Hash32,
    /// e.g. `greedy`.
    pub decoding: String,
    pub stopped_at_eos: bool,
}

impl ResultBody {
    /// Compact JSON in field order: deterministic for a given value.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("plain data serializes")
    }
}

/// What a node posts to `POST /v1/nodes/{id}/results`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultReport {
    pub request_id: RequestId,
    pub attempt: u32,
    pub epoch: u64,
    /// The canonical result bytes sealed under the session key (direction `Result`).
    #[serde(with = "crate::b64")]
    pub sealed_result: Vec<u8>,
    pub poe: Hash32,
    /// RSA-PSS-SHA256 by the node over [`crate::crypto::result_statement`].
    #[serde(with = "crate::b64")]
    pub signature: Vec<u8>,
    pub token_count: u32,
}

/// What a node posts to `POST /v1/nodes/{id}/refusals` to decline a dispatch it holds. Not
/// sealed: it carries nothing secret, and the signature proves it is the node's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusalReport {
    pub request_id: RequestId,
    pub attempt: u32,
    pub reason: RefusalReason,
    /// RSA-PSS-SHA256 by the node over [`crate::crypto::refusal_statement`].
    #[serde(with = "crate::b64")]
    pub signature: Vec<u8>,
}
