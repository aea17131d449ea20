//! Fault drills: a node that misbehaves on purpose, so the coordinator's validation can be
//! tested against real node processes (`prlx-node run --fault KIND`).
//!
//! Each [`Fault`] makes one defect and only that one: the rest of the report is built
//! exactly as an honest node builds it ([`crate::commit::commit_result`]), so a test that
//! sees the coordinator catch the report knows which check caught it. Every alteration is
//! deterministic (no randomness beyond the signature's salt and the sealing nonce), so two
//! nodes with the same drill make the same wrong result where the drill says they should.
//!
//! The honest path never touches this module: without `--fault` the workers hold no
//! [`FaultDrill`] and call `commit_result` directly.

use std::sync::Mutex;

use prlx_events::crypto::result_statement;
use prlx_events::protocol::{ResultBody, ResultReport};
use prlx_events::{Hash32, NodeId, RequestId, TaskId};
use rsa::rand_core::CryptoRngCore;

use crate::commit::{commit_result, commit_with_poe_of, Identity, Job};

/// What a faulty node does wrong. The names are the `--fault` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Fault {
    /// Runs the model, then alters the result (its text and one token id) and commits to
    /// and signs the altered result honestly: a valid PoE and signature over a wrong output.
    /// Every node with this drill makes the same wrong result, so two of them agree.
    WrongResult,
    /// Like wrong-result, but the alteration names this node: no two faulty nodes agree
    /// (the no-majority case).
    WrongResultUnique,
    /// The correct result, correctly signed, but its PoE is computed over another node id,
    /// so it does not match SHA-256(task_id || result || node_id).
    BadPoe,
    /// The correct result and PoE, but the signature is one this node made earlier for
    /// another task (for its first task, a signature over another request id).
    ReplaySignature,
    /// Takes dispatches and never runs or reports them.
    Silent,
}

impl Fault {
    /// The `--fault` value naming it.
    pub fn name(self) -> &'static str {
        match self {
            Fault::WrongResult => "wrong-result",
            Fault::WrongResultUnique => "wrong-result-unique",
            Fault::BadPoe => "bad-poe",
            Fault::ReplaySignature => "replay-signature",
            Fault::Silent => "silent",
        }
    }

    /// What the drill does, for the warning a node prints at start.
    pub fn describe(self) -> &'static str {
        match self {
            Fault::WrongResult => {
                "reports a deliberately altered result (the same on every wrong-result node) \
                 under a valid PoE and signature"
            }
            Fault::WrongResultUnique => {
                "reports a deliberately altered result, different on every node, under a \
                 valid PoE and signature"
            }
            Fault::BadPoe => "reports correct results whose PoE is computed over another node id",
            Fault::ReplaySignature => {
                "reports correct results signed with a signature made for another task"
            }
            Fault::Silent => "takes dispatches and never runs or reports them",
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the text of an altered result ends with, so a wrong result that reaches a client is
/// recognisable in a test.
pub const WRONG_RESULT_MARK: &str = "[fault drill]";

/// The wrong result of the wrong-result drills: the text gets [`WRONG_RESULT_MARK`] (with
/// `unique_to`'s id when given) and the last token id flips its lowest bit (a token 0 is
/// appended to an empty list). Deterministic: the same input gives the same wrong result.
pub fn altered_result(result: &ResultBody, unique_to: Option<NodeId>) -> ResultBody {
    let mut wrong = result.clone();
    wrong.text = match unique_to {
        None => format!("{} {WRONG_RESULT_MARK}", result.text),
        Some(node) => format!("{} {WRONG_RESULT_MARK} {}", result.text, node.0.to_hex()),
    };
    match wrong.token_ids.last_mut() {
        Some(last) => *last ^= 1,
        None => wrong.token_ids.push(0),
    }
    wrong
}

/// The node id the bad-poe drill computes its PoE over: derived from the real one by a named
/// hash, so it is never the node's own id yet always the same for the same node.
pub fn decoy_node(node: NodeId) -> NodeId {
    let mut bytes = b"prlx/fault-drill/decoy-node\0".to_vec();
    bytes.extend_from_slice(&node.to_bytes());
    NodeId(Hash32::of(&bytes))
}

/// The request a replay-signature node signs for when it has no earlier signature to replay:
/// the top bit flipped, so it is never the request at hand.
pub fn decoy_request(request: RequestId) -> RequestId {
    RequestId(request.0 ^ (1 << 63))
}

/// A fault drill as the workers hold it: the fault and what it must remember between tasks.
#[derive(Debug)]
pub struct FaultDrill {
    fault: Fault,
    /// replay-signature: the honest signature of the previous report, to put on the next.
    previous_signature: Mutex<Option<Vec<u8>>>,
}

impl FaultDrill {
    pub fn new(fault: Fault) -> FaultDrill {
        FaultDrill {
            fault,
            previous_signature: Mutex::new(None),
        }
    }

    pub fn fault(&self) -> Fault {
        self.fault
    }

    /// Whether jobs are run and reported at all (everything but `silent`).
    pub fn reports(&self) -> bool {
        self.fault != Fault::Silent
    }

    /// Builds the defective report for `result` of `job`. `silent` never reaches here (the
    /// worker drops its jobs); asked anyway, it reports honestly rather than panic.
    pub fn commit(
        &self,
        identity: &Identity,
        job: &Job,
        result: &ResultBody,
        token_count: u32,
        rng: &mut impl CryptoRngCore,
    ) -> ResultReport {
        match self.fault {
            Fault::WrongResult => commit_result(
                identity,
                job,
                &altered_result(result, None),
                token_count,
                rng,
            ),
            Fault::WrongResultUnique => commit_result(
                identity,
                job,
                &altered_result(result, Some(identity.node)),
                token_count,
                rng,
            ),
            Fault::BadPoe => commit_bad_poe(identity, job, result, token_count, rng),
            Fault::ReplaySignature => {
                let mut report = commit_result(identity, job, result, token_count, rng);
                let honest = report.signature.clone();
                let mut previous = self
                    .previous_signature
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                report.signature = match previous.replace(honest) {
                    Some(earlier) => earlier,
                    None => {
                        let other = decoy_request(job.task.request);
                        let statement = result_statement(
                            other,
                            TaskId::whole(other),
                            identity.node,
                            job.attempt,
                            report.poe,
                            Hash32::of(&report.sealed_result),
                        );
                        identity.sign(&statement)
                    }
                };
                report
            }
            Fault::Silent => commit_result(identity, job, result, token_count, rng),
        }
    }
}

/// An honest report but for the PoE, which commits over [`decoy_node`]; the signature is the
/// node's own, over the statement with that PoE, so it verifies.
fn commit_bad_poe(
    identity: &Identity,
    job: &Job,
    result: &ResultBody,
    token_count: u32,
    rng: &mut impl CryptoRngCore,
) -> ResultReport {
    commit_with_poe_of(
        identity,
        job,
        &result.canonical_bytes(),
        token_count,
        decoy_node(identity.node),
        rng,
    )
}

impl FaultDrill {
    /// The defective report of a general-path sub-task's `output`: a wrong output (one byte
    /// appended, or the node's id for a unique one), or a PoE over another node's id. Drills
    /// about signatures are inference-only; a sub-task gets an honest report under them.
    pub fn commit_output(
        &self,
        identity: &Identity,
        job: &Job,
        output: &[u8],
        rng: &mut impl CryptoRngCore,
    ) -> ResultReport {
        let mut altered = output.to_vec();
        match self.fault {
            Fault::WrongResult => altered.push(0),
            Fault::WrongResultUnique => altered.extend_from_slice(&identity.node.to_bytes()),
            Fault::BadPoe => {
                return commit_with_poe_of(identity, job, output, 0, decoy_node(identity.node), rng)
            }
            _ => {}
        }
        crate::commit::commit_output(identity, job, &altered, rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn every_fault_is_named_as_clap_parses_it() {
        for fault in Fault::value_variants() {
            assert_eq!(Fault::from_str(fault.name(), false), Ok(*fault));
        }
    }

    #[test]
    fn the_decoys_are_never_the_originals() {
        let node = NodeId(Hash32([9; 32]));
        assert_ne!(decoy_node(node), node);
        assert_eq!(decoy_node(node), decoy_node(node));
        for r in [0, 1, u64::MAX] {
            assert_ne!(decoy_request(RequestId(r)), RequestId(r));
        }
    }
}
