//! The evidence on the log, checked beside the fold (`docs/adr/08-hash-chain.md`): the
//! signatures the coordinator acted on (heartbeats, results, refusals, session grants, the
//! accounts' consents to their charges) and its own seals over the hash chain.
//!
//! Which key must have signed depends on the state at the record (a node's registered key, the
//! coordinator's published one), so the fold stage picks the key and the statement, in order;
//! the RSA verifications themselves (most of this module's cost; one [`PssVerifier`] per key,
//! ~35 µs each for 2048-bit keys instead of the `rsa` crate's ~180 µs) run on a pool of
//! threads, and their findings are merged by offset at the end, so the first divergence named
//! is the same whatever thread found it.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use prlx_events::crypto::{
    grant_statement, heartbeat_statement, parse_public_key_pem, refusal_statement,
    registration_statement, result_statement, result_statement_v1, seal_statement,
};
use prlx_events::event::ResultSubmitted;
use prlx_events::log::Offset;
use prlx_events::pss::PssVerifier;
use prlx_events::{Envelope, Event, NodeId, TaskId};
use prlx_projections::CoordinatorState;

use crate::consents::{Consents, Recovery};

/// A result, as the commitment that accepts it names it.
type ResultKey = (TaskId, u32, NodeId);

/// One signature to verify.
struct Check {
    offset: Offset,
    key: Key,
    statement: Vec<u8>,
    signature: Vec<u8>,
    what: Claim,
}

/// Who must have signed: an RSA key (nodes, the coordinator), or, for an account's consent,
/// the secp256k1 key of an address, recovered from the signature over the EIP-712 hash that
/// is the statement.
enum Key {
    Pss(Arc<PssVerifier>),
    Address(String),
}

impl Key {
    fn verify(&self, statement: &[u8], signature: &[u8]) -> bool {
        match self {
            Key::Pss(key) => key.verify(statement, signature),
            Key::Address(signer) => {
                let (Ok(hash), Ok(signature)) = (
                    <[u8; 32]>::try_from(statement),
                    std::str::from_utf8(signature),
                ) else {
                    return false;
                };
                prlx_chain::consent::recover(hash.into(), signature)
                    .is_ok_and(|a| prlx_chain::record::hex0x(a.as_slice()) == *signer)
            }
        }
    }
}

/// What a signature is evidence of, and what follows from a bad one.
#[derive(Clone, Copy)]
enum Claim {
    Heartbeat,
    /// A signed registration: the key it registers signed its parameters and operator.
    Registration,
    /// The coordinator records a refusal only once its signature verified: a bad one is
    /// always a divergence (it moved work on and may have failed a request).
    Refusal,
    Grant,
    Seal,
    /// An account's signature over the request charged to it, or its delegate's.
    Consent,
    /// An account's signature over the delegation a request was signed under.
    Delegation,
    /// An account's signature over its revocation of a delegation.
    Revocation,
    /// A result signed over its ciphertext's hash (statement v2): the coordinator records
    /// one only once its signature verified, so a bad one is always a divergence (it may have
    /// flagged the node or paid for the result).
    Result,
    /// A result recorded before v2 (statement v1): coordinators then recorded a report whose
    /// seal opened though its signature did not, and rejected its commitment, so a bad one
    /// is a divergence only where a commitment accepts the result.
    ResultV1(ResultKey),
}

/// A record whose evidence does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    pub offset: Offset,
    pub event_type: &'static str,
    pub field: &'static str,
    pub message: String,
}

/// What the evidence checks counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct EvidenceCounts {
    /// Signatures verified (heartbeats, results, refusals, grants, seals).
    pub signatures_verified: u64,
    /// Heartbeats recorded without their signed statement (written before heartbeats kept
    /// it): accepted, but their uptime is the coordinator's word.
    pub unverified_heartbeats: u64,
    /// Results recorded before results were signed over their ciphertext's hash: their
    /// signatures are verified against the v1 statement (task, attempt, PoE only).
    pub v1_results: u64,
    /// Registrations recorded without a signed statement (written before nodes signed
    /// theirs): accepted under the rules they were recorded with.
    pub unverified_registrations: u64,
    /// `LogSealed` records verified.
    pub seals: u64,
    /// Signatures that several records carry (a batch's consent, a delegation), verified at
    /// the first and not again.
    pub signatures_reused: u64,
    /// The offset of the last verified seal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seal: Option<Offset>,
}

/// Picks the checks in log order and hands them to the verifier pool.
pub(crate) struct Evidence {
    keys: BTreeMap<String, Arc<PssVerifier>>,
    pending: Vec<Check>,
    pool: Vec<(mpsc::SyncSender<Vec<Check>>, JoinHandle<Verified>)>,
    next_worker: usize,
    /// Found in the fold stage itself (a missing key, a seal that covers the wrong head).
    findings: Vec<Finding>,
    accepted: Vec<(Offset, ResultKey)>,
    /// The first result recorded with its ciphertext's hash: the version marker after which
    /// a v1 result is a divergence (an upgraded coordinator records no more of them).
    first_v2_result: Option<Offset>,
    consents: Consents,
    pub counts: EvidenceCounts,
}

/// What one verifier thread found.
#[derive(Default)]
struct Verified {
    findings: Vec<Finding>,
    bad_results: BTreeMap<ResultKey, Offset>,
    count: u64,
}

/// Checks handed to a worker at a time: enough to make the channel's cost negligible.
const CHUNK: usize = 256;

impl Evidence {
    pub fn start() -> Self {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let pool = (0..threads)
            .map(|i| {
                let (tx, rx) = mpsc::sync_channel::<Vec<Check>>(4);
                let worker = std::thread::Builder::new()
                    .name(format!("prlx-replay-verify-{i}"))
                    .spawn(move || verify_all(rx))
                    .expect("a verifier thread starts");
                (tx, worker)
            })
            .collect();
        Self {
            keys: BTreeMap::new(),
            pending: Vec::new(),
            pool,
            next_worker: 0,
            findings: Vec::new(),
            accepted: Vec::new(),
            first_v2_result: None,
            consents: Consents::default(),
            counts: EvidenceCounts::default(),
        }
    }

    /// Takes the evidence of `env` at `offset`, judged by `state` (the fold before it).
    pub fn take(&mut self, state: &CoordinatorState, offset: Offset, env: &Envelope) {
        match &env.event {
            Event::NodeHeartbeat(h) => match (h.at, &h.signature) {
                (Some(at), Some(sig)) => {
                    if let Some(key) = self.node_key(state, h.node_id) {
                        self.push(
                            offset,
                            key,
                            heartbeat_statement(h.node_id, at),
                            &sig.0,
                            Claim::Heartbeat,
                        );
                    }
                }
                _ => self.counts.unverified_heartbeats += 1,
            },
            Event::NodeRegistered(n) => match (n.signed_at, &n.signature) {
                // The key is the one registered here, not yet in the state.
                (Some(at), Some(sig)) => {
                    if let Some(key) = self.parsed(&n.public_key_pem) {
                        let statement = registration_statement(n, at);
                        self.push(offset, key, statement, &sig.0, Claim::Registration);
                    }
                }
                _ => self.counts.unverified_registrations += 1,
            },
            Event::ResultSubmitted(r) => self.take_result(state, offset, r),
            Event::DispatchRefused(r) => {
                if let Some(key) = self.node_key(state, r.node_id) {
                    let statement = refusal_statement(
                        r.task_id.request,
                        r.task_id,
                        r.node_id,
                        r.attempt,
                        &r.reason,
                    );
                    self.push(offset, key, statement, &r.signature.0, Claim::Refusal);
                }
            }
            Event::RequestAccepted(r) => {
                if let Some(c) = &r.consent {
                    self.take_consent(offset, r, c);
                }
            }
            Event::DelegationRevoked(r) => self.take_revocation(offset, r),
            Event::CommitmentVerified(c) => self
                .accepted
                .push((offset, (c.task_id, c.attempt, c.node_id))),
            Event::SessionKeyIssued(g) => {
                if let Some(key) = self.coordinator_key(state, offset, "SessionKeyIssued") {
                    let statement = grant_statement(g.node_id, g.epoch, &g.wrapped_key.0);
                    self.push(offset, key, statement, &g.signature.0, Claim::Grant);
                }
            }
            Event::LogSealed(s) => {
                self.counts.seals += 1;
                self.counts.last_seal = Some(offset);
                if env.header.prev != Some(s.head) {
                    self.findings.push(Finding {
                        offset,
                        event_type: "LogSealed",
                        field: "head",
                        message: "the seal does not cover the record before it (head differs from its link)".into(),
                    });
                } else if let Some(key) = self.coordinator_key(state, offset, "LogSealed") {
                    self.push(
                        offset,
                        key,
                        seal_statement(s.head),
                        &s.signature.0,
                        Claim::Seal,
                    );
                }
            }
            _ => {}
        }
    }

    /// Waits for the pool and answers the first finding, if any, before `before` (where the
    /// fold stopped, if it did).
    pub fn finish(mut self, before: Option<Offset>) -> (Option<Finding>, EvidenceCounts) {
        self.flush();
        let mut bad_results = BTreeMap::new();
        let mut findings = std::mem::take(&mut self.findings);
        for (tx, worker) in self.pool.drain(..) {
            drop(tx);
            let v = worker.join().expect("a verifier thread does not panic");
            findings.extend(v.findings);
            bad_results.extend(v.bad_results);
            self.counts.signatures_verified += v.count;
        }
        for (offset, key) in &self.accepted {
            if let Some(at) = bad_results.get(key) {
                findings.push(Finding {
                    offset: *offset,
                    event_type: "CommitmentVerified",
                    field: "node_id",
                    message: format!(
                        "accepts the result at offset {at}, whose signature is not the node's"
                    ),
                });
            }
        }
        let first = findings
            .into_iter()
            .filter(|f| before.is_none_or(|b| f.offset < b))
            .min_by_key(|f| f.offset);
        (first, self.counts)
    }

    /// An accepted request's consent (`consents`): its recoveries go to the pool, once per
    /// distinct signature.
    fn take_consent(
        &mut self,
        offset: Offset,
        r: &prlx_events::event::RequestAccepted,
        c: &prlx_events::event::Consent,
    ) {
        let (mut recoveries, mut problems) = (Vec::new(), Vec::new());
        self.consents.take(r, c, &mut recoveries, &mut problems);
        self.counts.signatures_reused = self.consents.reused;
        self.hand_over(offset, "RequestAccepted", recoveries, problems, |rec| {
            if rec.delegation {
                Claim::Delegation
            } else {
                Claim::Consent
            }
        });
    }

    /// A revocation: the delegation's hash derived from its recorded terms, and the
    /// account's signature over the revocation under the recorded domain.
    fn take_revocation(&mut self, offset: Offset, r: &prlx_events::event::DelegationRevoked) {
        let (mut recoveries, mut problems) = (Vec::new(), Vec::new());
        self.consents
            .take_revocation(r, &mut recoveries, &mut problems);
        self.counts.signatures_reused = self.consents.reused;
        self.hand_over(offset, "DelegationRevoked", recoveries, problems, |_| {
            Claim::Revocation
        });
    }

    /// The record at `offset`'s problems as findings, its recoveries to the pool.
    fn hand_over(
        &mut self,
        offset: Offset,
        event_type: &'static str,
        recoveries: Vec<Recovery>,
        problems: Vec<(&'static str, String)>,
        claim: impl Fn(&Recovery) -> Claim,
    ) {
        for (field, message) in problems {
            self.findings.push(Finding {
                offset,
                event_type,
                field,
                message,
            });
        }
        for rec in recoveries {
            let what = claim(&rec);
            self.pending.push(Check {
                offset,
                key: Key::Address(rec.signer),
                statement: rec.hash,
                signature: rec.signature.into_bytes(),
                what,
            });
            self.flush_if_full();
        }
    }

    /// A result's signature: over its ciphertext's hash where the record carries one, else
    /// over the v1 statement, which only records before the first v2 one may use.
    fn take_result(&mut self, state: &CoordinatorState, offset: Offset, r: &ResultSubmitted) {
        let (statement, claim) = match r.ciphertext_hash {
            Some(sealed) => {
                self.first_v2_result.get_or_insert(offset);
                let statement = result_statement(
                    r.task_id.request,
                    r.task_id,
                    r.node_id,
                    r.attempt,
                    r.poe,
                    sealed,
                );
                (statement, Claim::Result)
            }
            None => {
                if let Some(first) = self.first_v2_result {
                    self.findings.push(Finding {
                        offset,
                        event_type: "ResultSubmitted",
                        field: "ciphertext_hash",
                        message: format!(
                            "a result without its ciphertext's hash after the first one with it \
                             (offset {first}): its signature does not cover the sealed result"
                        ),
                    });
                    return;
                }
                self.counts.v1_results += 1;
                let statement =
                    result_statement_v1(r.task_id.request, r.task_id, r.node_id, r.attempt, r.poe);
                (
                    statement,
                    Claim::ResultV1((r.task_id, r.attempt, r.node_id)),
                )
            }
        };
        if let Some(key) = self.node_key(state, r.node_id) {
            self.push(offset, key, statement, &r.signature.0, claim);
        }
    }

    fn push(
        &mut self,
        offset: Offset,
        key: Arc<PssVerifier>,
        statement: Vec<u8>,
        sig: &[u8],
        what: Claim,
    ) {
        self.pending.push(Check {
            offset,
            key: Key::Pss(key),
            statement,
            signature: sig.to_vec(),
            what,
        });
        self.flush_if_full();
    }

    fn flush_if_full(&mut self) {
        if self.pending.len() >= CHUNK {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let chunk = std::mem::take(&mut self.pending);
        let (tx, _) = &self.pool[self.next_worker % self.pool.len()];
        self.next_worker += 1;
        // A worker only goes away by panicking, which `finish` reports.
        let _ = tx.send(chunk);
    }

    /// The registered key of `node`; a node the fold does not know is the fold's finding.
    fn node_key(&mut self, state: &CoordinatorState, node: NodeId) -> Option<Arc<PssVerifier>> {
        let pem = &state.nodes.get(&node)?.public_key_pem;
        self.parsed(pem)
    }

    /// The coordinator's published key; evidence signed before one is published is a finding.
    fn coordinator_key(
        &mut self,
        state: &CoordinatorState,
        offset: Offset,
        event_type: &'static str,
    ) -> Option<Arc<PssVerifier>> {
        let key = state
            .coordinator_key
            .as_deref()
            .and_then(|pem| self.parsed(pem));
        if key.is_none() {
            self.findings.push(Finding {
                offset,
                event_type,
                field: "signature",
                message: "signed by the coordinator, but no usable coordinator key is published before it".into(),
            });
        }
        key
    }

    fn parsed(&mut self, pem: &str) -> Option<Arc<PssVerifier>> {
        if let Some(k) = self.keys.get(pem) {
            return Some(k.clone());
        }
        let key = Arc::new(PssVerifier::new(&parse_public_key_pem(pem).ok()?));
        self.keys.insert(pem.to_owned(), key.clone());
        Some(key)
    }
}

fn verify_all(chunks: mpsc::Receiver<Vec<Check>>) -> Verified {
    let mut out = Verified::default();
    for chunk in chunks {
        for c in chunk {
            let ok = c.key.verify(&c.statement, &c.signature);
            out.count += 1;
            if ok {
                continue;
            }
            let (event_type, message) = match c.what {
                Claim::Heartbeat => (
                    "NodeHeartbeat",
                    "the heartbeat's signature is not the node's over its id and time",
                ),
                Claim::Registration => (
                    "NodeRegistered",
                    "the registration's signature is not the registered key's over its parameters, operator and time",
                ),
                Claim::Refusal => (
                    "DispatchRefused",
                    "the refusal's signature is not the node's over its task, attempt and reason",
                ),
                Claim::Grant => (
                    "SessionKeyIssued",
                    "the grant's signature is not the published coordinator key's",
                ),
                Claim::Seal => (
                    "LogSealed",
                    "the seal's signature is not the published coordinator key's over the chain",
                ),
                Claim::Consent => (
                    "RequestAccepted",
                    "the consent's signature is not the signer's (the account's, or the \
                     delegate's) over the request's typed data (or its batch's)",
                ),
                Claim::Delegation => (
                    "RequestAccepted",
                    "the delegation's signature is not the account's over its terms",
                ),
                Claim::Revocation => (
                    "DelegationRevoked",
                    "the revocation's signature is not the account's over the delegation's hash",
                ),
                Claim::Result => (
                    "ResultSubmitted",
                    "the result's signature is not the node's over its task, attempt, PoE and \
                     sealed result (the hash in ciphertext_hash)",
                ),
                Claim::ResultV1(key) => {
                    out.bad_results.insert(key, c.offset);
                    continue;
                }
            };
            let field = match c.what {
                Claim::Consent => "consent.signature",
                Claim::Delegation => "consent.delegation.signature",
                _ => "signature",
            };
            out.findings.push(Finding {
                offset: c.offset,
                event_type,
                field,
                message: message.into(),
            });
        }
    }
    out
}
