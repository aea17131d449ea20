//! A job and the report it becomes: the canonical result body of a generation, the
//! proof-of-execution over it, the node's signature and the sealing under the session key;
//! or, for work the engine cannot run, the node's signed refusal.
//!
//! Both the honest path ([`crate::worker`]) and the fault drills ([`crate::fault`]) build
//! reports here, so a drill differs from an honest node only in the one defect it makes.

use chrono::{DateTime, Utc};
use prlx_events::crypto::{
    node_id_of, proof_of_execution, refusal_statement, result_statement, seal_message, Direction,
    SessionKey,
};
use prlx_events::event::RefusalReason;
use prlx_events::protocol::{DispatchBody, RefusalReport, ResultBody, ResultReport};
use prlx_events::seal::NONCE_LEN;
use prlx_events::signer::Signer;
use prlx_events::{Hash32, NodeId, TaskId};
use rsa::rand_core::CryptoRngCore;
use rsa::RsaPrivateKey;

use crate::engine::Generation;
use crate::trace::JobTrace;

/// The node's identity: what its workers sign with.
pub struct Identity {
    pub node: NodeId,
    /// For opening session grants (RSA-OAEP, once per epoch).
    pub key: RsaPrivateKey,
    /// The same key parsed once for signing: a signature per result is on the hot path, and
    /// the `rsa` crate takes milliseconds for each at 3072 bits (see `prlx_events::signer`).
    signer: Signer,
}

impl Identity {
    /// The identity of `key`: its node id and its signer.
    pub fn new(key: RsaPrivateKey) -> Identity {
        Identity {
            node: node_id_of(&key.to_public_key()),
            signer: Signer::new(&key),
            key,
        }
    }

    /// The node's RSA-PSS-SHA256 signature over `statement`, as `crypto::verify` checks it,
    /// salted from the operating system's randomness.
    pub fn sign(&self, statement: &[u8]) -> Vec<u8> {
        self.signer
            .sign(statement, &aws_lc_rs::rand::SystemRandom::new())
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Identity")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// An opened dispatch, ready to run.
#[derive(Debug, Clone)]
pub struct Job {
    pub task: TaskId,
    pub attempt: u32,
    pub epoch: u64,
    pub session: SessionKey,
    pub body: DispatchBody,
    pub deadline_at: DateTime<Utc>,
    /// The phase trace, with `PRLX_NODE_TRACE` set ([`crate::trace`]); `None` otherwise.
    pub trace: Option<JobTrace>,
}

/// Why a result body could not be built from a generation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the engine reported a model SHA-256 that is not 64 hex characters: {0:?}")]
pub struct BadModelHash(String);

/// The canonical result of a generation: what the PoE commits to and replicas compare.
pub fn result_body(generation: &Generation) -> Result<ResultBody, BadModelHash> {
    let model_sha256: Hash32 = generation
        .model_sha256
        .parse()
        .map_err(|_| BadModelHash(generation.model_sha256.clone()))?;
    Ok(ResultBody {
        text: generation.text.clone(),
        token_ids: generation.token_ids.clone(),
        model_sha256,
        decoding: generation.decoding.to_owned(),
        stopped_at_eos: generation.stopped_at_eos,
    })
}

/// Commits to `result` for `job` and builds the report: PoE over the canonical bytes, the
/// bytes sealed under the session key in the `Result` direction, and the node's signature over
/// the result statement, which covers the sealed bytes' hash (so it is made last).
pub fn commit_result(
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
        identity.node,
        rng,
    )
}

/// [`commit_result`] for a general-path sub-task: its output bytes are the result.
pub fn commit_output(
    identity: &Identity,
    job: &Job,
    output: &[u8],
    rng: &mut impl CryptoRngCore,
) -> ResultReport {
    commit_with_poe_of(identity, job, output, 0, identity.node, rng)
}

/// [`commit_result`] with the PoE computed over `poe_node`: the node's own id for an honest
/// report; the `bad-poe` fault drill passes another.
pub(crate) fn commit_with_poe_of(
    identity: &Identity,
    job: &Job,
    bytes: &[u8],
    token_count: u32,
    poe_node: NodeId,
    rng: &mut impl CryptoRngCore,
) -> ResultReport {
    let poe = proof_of_execution(job.task, bytes, poe_node);
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let sealed_result = seal_message(
        &job.session,
        Direction::Result,
        job.task,
        identity.node,
        job.attempt,
        job.epoch,
        nonce,
        bytes,
    );
    let statement = result_statement(
        job.task.request,
        job.task,
        identity.node,
        job.attempt,
        poe,
        Hash32::of(&sealed_result),
    );
    let signature = identity.sign(&statement);
    ResultReport {
        request_id: job.task.request,
        attempt: job.attempt,
        epoch: job.epoch,
        sealed_result,
        poe,
        signature,
        token_count,
    }
}

/// The node's signed refusal of `job` for `reason`: no result, nothing sealed (a refusal
/// carries nothing secret), only the signature over the refusal statement.
pub fn commit_refusal(identity: &Identity, job: &Job, reason: RefusalReason) -> RefusalReport {
    let statement = refusal_statement(
        job.task.request,
        job.task,
        identity.node,
        job.attempt,
        &reason,
    );
    RefusalReport {
        request_id: job.task.request,
        attempt: job.attempt,
        signature: identity.sign(&statement),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prlx_events::crypto::{open_message, verify};
    use prlx_events::RequestId;
    use rsa::rand_core::OsRng;

    #[test]
    fn a_committed_result_checks_out_the_way_the_coordinator_checks_it() {
        let key = RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
        let public = key.to_public_key();
        let identity = Identity::new(key);
        let node = identity.node;
        let session = SessionKey::generate(&mut OsRng);
        let task = TaskId::whole(RequestId(42));
        let job = Job {
            task,
            attempt: 1,
            epoch: 3,
            session: session.clone(),
            body: DispatchBody {
                request_id: RequestId(42),
                model: "tiny-test-v1".into(),
                prompt: "p".into(),
                max_tokens: 4,
                subtask: None,
            },
            deadline_at: Utc::now(),
            trace: None,
        };
        let result = ResultBody {
            text: "abc".into(),
            token_ids: vec![97, 98, 99],
            model_sha256: Hash32([5; 32]),
            decoding: "greedy".into(),
            stopped_at_eos: false,
        };
        let report = commit_result(&identity, &job, &result, 3, &mut OsRng);
        assert_eq!(
            (report.request_id, report.attempt, report.epoch),
            (RequestId(42), 1, 3)
        );
        let opened = open_message(
            &session,
            Direction::Result,
            task,
            node,
            1,
            3,
            &report.sealed_result,
        )
        .unwrap();
        assert_eq!(opened, result.canonical_bytes());
        assert_eq!(report.poe, proof_of_execution(task, &opened, node));
        let statement = result_statement(
            RequestId(42),
            task,
            node,
            1,
            report.poe,
            Hash32::of(&report.sealed_result),
        );
        assert!(verify(&public, &statement, &report.signature));
        // The signature is over these sealed bytes and no others.
        let mut altered = report.sealed_result.clone();
        altered[0] ^= 1;
        let moved = result_statement(
            RequestId(42),
            task,
            node,
            1,
            report.poe,
            Hash32::of(&altered),
        );
        assert!(!verify(&public, &moved, &report.signature));
        // Sealed as a result, so it cannot pass as a dispatch.
        assert!(open_message(
            &session,
            Direction::Dispatch,
            task,
            node,
            1,
            3,
            &report.sealed_result
        )
        .is_err());
        // The identity's Debug never shows the key.
        assert!(!format!("{identity:?}").contains("RsaPrivateKey"));
    }

    #[test]
    fn a_refusal_is_signed_over_the_task_attempt_and_reason() {
        let key = RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
        let public = key.to_public_key();
        let identity = Identity::new(key);
        let node = identity.node;
        let task = TaskId::whole(RequestId(7));
        let job = Job {
            task,
            attempt: 2,
            epoch: 1,
            session: SessionKey::generate(&mut OsRng),
            body: DispatchBody {
                request_id: RequestId(7),
                model: "tiny-test-v1".into(),
                prompt: "p".into(),
                max_tokens: 4095,
                subtask: None,
            },
            deadline_at: Utc::now(),
            trace: None,
        };
        let reason = RefusalReason::ContextExceeded {
            prompt_tokens: 9,
            max_tokens: 4095,
            context: 4096,
        };
        let report = commit_refusal(&identity, &job, reason.clone());
        assert_eq!((report.request_id, report.attempt), (RequestId(7), 2));
        let statement = refusal_statement(RequestId(7), task, node, 2, &reason);
        assert!(verify(&public, &statement, &report.signature));
    }

    #[test]
    fn a_malformed_model_hash_is_an_error_not_a_zero_hash() {
        let generation = Generation {
            token_ids: vec![],
            text: String::new(),
            prompt_tokens: 1,
            generated_tokens: 0,
            stopped_at_eos: true,
            eos_token_id: Some(2),
            model_sha256: "zz".into(),
            decoding: "greedy",
            timing: Default::default(),
        };
        assert!(result_body(&generation).is_err());
    }
}
