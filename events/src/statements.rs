//! The statements signatures are over: what a node signs (heartbeats, registrations, results,
//! refusals) and what the coordinator signs (session grants, log seals). Each starts with a
//! domain tag of its own and uses fixed widths or length prefixes, so no two statements, of
//! one kind or of two, share bytes. Signing and verifying them is [`crate::crypto`]'s.

use crate::event::RefusalReason;
use crate::ids::{Hash32, NodeId, RequestId, TaskId};

/// What a node signs to say it is up: a domain tag, its node id (32 bytes) and the time it
/// signed (Unix seconds, i64 BE). The coordinator takes each time once and only near its own
/// clock, so a captured heartbeat cannot keep an offline node in the pool (or earning).
pub fn heartbeat_statement(node: NodeId, unix_seconds: i64) -> Vec<u8> {
    let mut m = b"prlx/heartbeat/v1\0".to_vec();
    m.extend_from_slice(&node.to_bytes());
    m.extend_from_slice(&unix_seconds.to_be_bytes());
    m
}

/// What a node signs to register: a domain tag, its node id (32 bytes), then what it registers
/// as recorded: tier (u8), slots (u32 BE), its models in order, its execution class in normal
/// form (device, driver, runtime), its model hashes by model name (name and 32 bytes each),
/// its operator address (empty for none), and the time it signed (Unix seconds, i64 BE). Each
/// list is counted and each string length-prefixed (u32 BE), so no two registrations share
/// bytes. Signing all of it means a captured signature registers nothing else: not another
/// operator (who would be paid), another tier or other models.
pub fn registration_statement(n: &crate::event::NodeRegistered, unix_seconds: i64) -> Vec<u8> {
    fn put(m: &mut Vec<u8>, s: &str) {
        m.extend_from_slice(&(s.len() as u32).to_be_bytes());
        m.extend_from_slice(s.as_bytes());
    }
    let mut m = b"prlx/registration/v1\0".to_vec();
    m.extend_from_slice(&n.node_id.to_bytes());
    m.push(n.hardware_tier);
    m.extend_from_slice(&n.slots.to_be_bytes());
    m.extend_from_slice(&(n.models.len() as u32).to_be_bytes());
    for model in &n.models {
        put(&mut m, model);
    }
    // The coordinator records the class in normal form; the node signs that form, so the
    // auditor verifies the record as it is.
    let class = n
        .execution_class
        .normalised()
        .unwrap_or_else(|_| n.execution_class.clone());
    for part in [&class.device, &class.driver, &class.runtime] {
        put(&mut m, part);
    }
    m.extend_from_slice(&(n.model_hashes.len() as u32).to_be_bytes());
    for (model, hash) in &n.model_hashes {
        put(&mut m, model);
        m.extend_from_slice(&hash.0);
    }
    put(&mut m, n.operator.as_deref().unwrap_or(""));
    m.extend_from_slice(&unix_seconds.to_be_bytes());
    m
}

/// What a node signs for a result: a domain tag, then request id (u64 BE), task id (16 bytes),
/// node id (32 bytes), attempt (u32 BE), the PoE (32 bytes) and the SHA-256 of the sealed
/// result exactly as the node sends it (32 bytes). Binding all of them means a signature cannot
/// be replayed for another request, task, node or attempt, nor moved onto another ciphertext:
/// whoever captured a report can resend it, but not make the node answer for different bytes.
/// `sealed` is [`Hash32::of`] the `sealed_result` of the report.
pub fn result_statement(
    request: RequestId,
    task: TaskId,
    node: NodeId,
    attempt: u32,
    poe: Hash32,
    sealed: Hash32,
) -> Vec<u8> {
    let mut m = result_fields(b"prlx/result/v2\0", request, task, node, attempt, poe);
    m.extend_from_slice(&sealed.0);
    m
}

/// The result statement before v2: the same fields without the ciphertext's hash. No live path
/// accepts it any more (a v1 signature can be moved onto any ciphertext); the auditor still
/// verifies it on records written before the coordinator recorded that hash
/// (`ResultSubmitted::ciphertext_hash` absent).
pub fn result_statement_v1(
    request: RequestId,
    task: TaskId,
    node: NodeId,
    attempt: u32,
    poe: Hash32,
) -> Vec<u8> {
    result_fields(b"prlx/result/v1\0", request, task, node, attempt, poe)
}

/// `tag`, then the fields both result statements share, fixed widths.
fn result_fields(
    tag: &[u8],
    request: RequestId,
    task: TaskId,
    node: NodeId,
    attempt: u32,
    poe: Hash32,
) -> Vec<u8> {
    let mut m = attempt_fields(tag, request, task, node, attempt);
    m.extend_from_slice(&poe.0);
    m
}

/// `tag`, then request id (u64 BE), task id (16 bytes), node id (32 bytes), attempt (u32 BE):
/// what names one attempt, in every statement a node signs about one.
fn attempt_fields(
    tag: &[u8],
    request: RequestId,
    task: TaskId,
    node: NodeId,
    attempt: u32,
) -> Vec<u8> {
    let mut m = tag.to_vec();
    m.extend_from_slice(&request.0.to_be_bytes());
    m.extend_from_slice(&task.to_bytes());
    m.extend_from_slice(&node.to_bytes());
    m.extend_from_slice(&attempt.to_be_bytes());
    m
}

/// What a node signs to decline a dispatch: a domain tag of its own (so a refusal signature
/// never passes as a result's, nor a result's as a refusal's), request id (u64 BE), task id
/// (16 bytes), node id (32 bytes), attempt (u32 BE), then the reason: a code byte and its
/// numbers (`ContextExceeded`'s three u32 BE, `OutputTooLarge`'s two u64 BE). Fixed widths per
/// code, so no two statements share bytes.
pub fn refusal_statement(
    request: RequestId,
    task: TaskId,
    node: NodeId,
    attempt: u32,
    reason: &RefusalReason,
) -> Vec<u8> {
    let mut m = attempt_fields(b"prlx/refusal/v1\0", request, task, node, attempt);
    match reason {
        RefusalReason::ContextExceeded {
            prompt_tokens,
            max_tokens,
            context,
        } => {
            m.push(1);
            for n in [prompt_tokens, max_tokens, context] {
                m.extend_from_slice(&n.to_be_bytes());
            }
        }
        RefusalReason::OutputTooLarge { bytes, limit } => {
            m.push(2);
            for n in [bytes, limit] {
                m.extend_from_slice(&n.to_be_bytes());
            }
        }
    }
    m
}

/// What the coordinator signs to seal the log: a domain tag and the chain value (the SHA-256
/// of the last record sealed, which links every record before it; `docs/adr/08-hash-chain.md`).
pub fn seal_statement(head: Hash32) -> Vec<u8> {
    let mut m = b"prlx/log-seal/v1\0".to_vec();
    m.extend_from_slice(&head.0);
    m
}

/// What the coordinator signs to grant `wrapped` (a session key) to `node` for `epoch`.
pub fn grant_statement(node: NodeId, epoch: u64, wrapped: &[u8]) -> Vec<u8> {
    let mut m = b"prlx/session-grant/v1\0".to_vec();
    m.extend_from_slice(&node.to_bytes());
    m.extend_from_slice(&epoch.to_be_bytes());
    m.extend_from_slice(wrapped);
    m
}
