//! The accounts' consents to their charges, as the auditor checks them from the record: which
//! secp256k1 signatures must recover to whom, over which EIP-712 hash (a submission's own, a
//! batch's whose root the recorded proof gives, a delegation's), and which of those were
//! already handed to the verifiers.
//!
//! A batch's signature and a delegation's come with many requests; recovering each distinct
//! `(hash, signature, signer)` once is the same verdict for all of them (a recovery is a
//! function of the hash and the signature), and a bad one is still found at its first record,
//! which is the first divergence it causes. The memory is bounded (the last
//! [`REMEMBERED`] recoveries): past it a signature is recovered again, never skipped.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use alloy::primitives::B256;
use alloy::sol_types::Eip712Domain;
use prlx_chain::consent::{address, domain, revocation_hash, DelegationFields, SubmissionFields};
use prlx_chain::consent_batch::{signed_hash, Place, SignedHashError};
use prlx_events::event::{Consent, RequestAccepted};

/// How many recoveries the auditor remembers as handed out.
const REMEMBERED: usize = 4_096;

/// How many deployments' separators the auditor keeps.
const DOMAINS_KEPT: usize = 16;

/// One recovery to verify: `signature` over `hash` must recover to `signer`.
pub(crate) struct Recovery {
    pub signer: String,
    pub hash: Vec<u8>,
    pub signature: String,
    /// The delegation's signature (else the consent's own).
    pub delegation: bool,
}

/// A consent that cannot be checked or names the wrong signer: `(field, message)`.
pub(crate) type Problem = (&'static str, String);

/// The recoveries already handed out, oldest first out.
#[derive(Default)]
pub(crate) struct Consents {
    /// Each deployment's EIP-712 domain and its separator, computed once.
    domains: BTreeMap<(u64, String), (Eip712Domain, B256)>,
    handed: BTreeSet<(Vec<u8>, String, String)>,
    order: VecDeque<(Vec<u8>, String, String)>,
    /// Recoveries not made again because an earlier record's covered them.
    pub reused: u64,
}

impl Consents {
    /// An accepted request's consent: the signer must be the account charged, or the
    /// delegate of the delegation recorded with it, and the signature its key's over the
    /// request's typed data (or its batch's) under the recorded domain; a delegation must be
    /// the account's signature over its terms, recorded under the hash they give. The
    /// recoveries still to make go to `out`, what is wrong to `problems`.
    pub fn take(
        &mut self,
        r: &RequestAccepted,
        c: &Consent,
        out: &mut Vec<Recovery>,
        problems: &mut Vec<Problem>,
    ) {
        let fields = SubmissionFields {
            account: &r.credit_account.0,
            idempotency_key: r.idempotency_key.as_deref().unwrap_or(""),
            workload_class: &r.workload_class,
            model: &r.model,
            hardware_tier: r.hardware_tier,
            priority: prlx_chain::consent::priority_name(r.priority),
            deadline_seconds: r.deadline_seconds,
            max_tokens: r.max_tokens,
            payload_hash: r.payload_hash.0,
            client_pubkey: &r.client_pubkey,
        };
        let unchecked = |e: String| ("consent", format!("not a consent that can be checked: {e}"));
        let (domain, separator) = match self.domain(c.chain_id, &c.verifying_contract) {
            Ok(known) => known,
            Err(e) => return problems.push(unchecked(e.to_string())),
        };
        let signer = c
            .delegation
            .as_ref()
            .map_or(&r.credit_account.0, |d| &d.delegate);
        let proof: Vec<B256> = c
            .batch
            .iter()
            .flat_map(|b| &b.proof)
            .map(|h| h.0.into())
            .collect();
        let place = c.batch.as_deref().map(|b| Place {
            index: b.index,
            count: b.count,
            proof: &proof,
        });
        let hash = signed_hash(&fields, place, &separator).map_err(|e| match e {
            SignedHashError::Account(e) => unchecked(e.to_string()),
            SignedHashError::Batch(e) => (
                "consent.batch",
                format!("not a batch place that can be checked: {e}"),
            ),
        });
        match hash {
            Ok(hash) if c.signer == *signer => {
                self.hand_out(&c.signer, hash.to_vec(), &c.signature, false, out)
            }
            Ok(_) => problems.push((
                "consent.signer",
                format!(
                    "signed by {}, not by the account charged ({}) or its delegate",
                    c.signer, r.credit_account
                ),
            )),
            Err(problem) => problems.push(problem),
        }
        let Some(d) = &c.delegation else { return };
        let terms = DelegationFields {
            account: &r.credit_account.0,
            delegate: &d.delegate,
            spending_limit: d.spending_limit,
            expires_at: d.expires_at,
        };
        match terms.hash(&domain) {
            Ok(hash) if hash.0 != d.hash.0 => problems.push((
                "consent.delegation.hash",
                format!(
                    "recorded {}, but the delegation's terms give {}",
                    d.hash,
                    prlx_events::Hash32(hash.0)
                ),
            )),
            Ok(_) if d.signer != r.credit_account.0 => problems.push((
                "consent.delegation.signer",
                format!(
                    "the delegation is signed by {}, not by the account charged ({})",
                    d.signer, r.credit_account
                ),
            )),
            Ok(hash) => self.hand_out(&d.signer, hash.to_vec(), &d.signature, true, out),
            Err(e) => problems.push((
                "consent.delegation",
                format!("not a delegation that can be checked: {e}"),
            )),
        }
    }

    /// A revocation: the hash its recorded terms give must be the one recorded, and the
    /// signature the account's over the revocation (the fold checks that the recorded
    /// signer is the account).
    pub fn take_revocation(
        &mut self,
        r: &prlx_events::event::DelegationRevoked,
        out: &mut Vec<Recovery>,
        problems: &mut Vec<Problem>,
    ) {
        let unchecked = |e: String| {
            (
                "delegation",
                format!("not a revocation that can be checked: {e}"),
            )
        };
        let (domain, _) = match self.domain(r.chain_id, &r.verifying_contract) {
            Ok(known) => known,
            Err(e) => return problems.push(unchecked(e.to_string())),
        };
        let terms = DelegationFields {
            account: &r.account.0,
            delegate: &r.delegate,
            spending_limit: r.spending_limit,
            expires_at: r.expires_at,
        };
        let hash = match terms.hash(&domain) {
            Ok(h) if h.0 != r.delegation.0 => {
                return problems.push((
                    "delegation",
                    format!(
                        "recorded {}, but the delegation's terms give {}",
                        r.delegation,
                        prlx_events::Hash32(h.0)
                    ),
                ))
            }
            Ok(h) => h,
            Err(e) => return problems.push(unchecked(e.to_string())),
        };
        match revocation_hash(&r.account.0, hash.0, &domain) {
            Ok(signed) => self.hand_out(&r.signer, signed.to_vec(), &r.signature, false, out),
            Err(e) => problems.push(unchecked(e.to_string())),
        }
    }

    /// The EIP-712 domain of a deployment and its separator, computed once for each of the
    /// first [`DOMAINS_KEPT`] (a log names one deployment or a few; a hostile one naming many
    /// cannot grow the auditor with them).
    fn domain(
        &mut self,
        chain_id: u64,
        contract: &str,
    ) -> Result<(Eip712Domain, B256), prlx_chain::consent::ConsentError> {
        let key = (chain_id, contract.to_owned());
        if let Some(known) = self.domains.get(&key) {
            return Ok(known.clone());
        }
        let d = domain(chain_id, address(contract)?);
        let known = (d.clone(), d.separator());
        if self.domains.len() < DOMAINS_KEPT {
            self.domains.insert(key, known.clone());
        }
        Ok(known)
    }

    /// Queues the recovery unless the same one is already queued.
    fn hand_out(
        &mut self,
        signer: &str,
        hash: Vec<u8>,
        signature: &str,
        delegation: bool,
        out: &mut Vec<Recovery>,
    ) {
        let key = (hash, signature.to_owned(), signer.to_owned());
        if self.handed.contains(&key) {
            self.reused += 1;
            return;
        }
        out.push(Recovery {
            signer: key.2.clone(),
            hash: key.0.clone(),
            signature: key.1.clone(),
            delegation,
        });
        self.handed.insert(key.clone());
        self.order.push_back(key);
        while self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.handed.remove(&old);
            }
        }
    }
}
