//! Spending consent at intake: every submission, whichever door it comes through, carries the
//! account's EIP-712 signature over what it asks for (`prlx_chain::consent`), or a delegate's
//! with the account's signed delegation. The signatures are recovered here, before the actor
//! (recovering a key is the costliest check of a submission, and handlers run it in
//! parallel); `decide` then requires that the signer is the account charged or its delegate
//! within the delegation's limit and life, and the auditor checks the signatures again from
//! the record.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, OnceLock};

use alloy::primitives::{Address, B256};
use alloy::sol_types::Eip712Domain;
use prlx_chain::consent as eip712;
use prlx_chain::consent_batch;
use prlx_chain::record::hex0x;
use prlx_events::event::{Consent, ConsentBatch, Delegation};
use prlx_events::Hash32;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The deployment every submission is signed for: its chain id and its CreditEscrow. A
/// coordinator without a chain uses chain 31337 and the zero address (it credits nothing, so
/// nothing signed for it can be charged anyway).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsentDomain {
    pub chain_id: u64,
    pub escrow: Address,
}

impl Default for ConsentDomain {
    fn default() -> Self {
        ConsentDomain {
            chain_id: prlx_chain::devchain::DEV_CHAIN_ID,
            escrow: Address::ZERO,
        }
    }
}

/// `GET /v1/consent`: what a client signs under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConsentDomainBody {
    /// The EIP-712 domain's name.
    #[schema(example = "ParalleliX coordinator")]
    pub name: String,
    #[schema(example = "1")]
    pub version: String,
    pub chain_id: u64,
    /// The CreditEscrow, lowercase 0x-hex.
    pub verifying_contract: String,
    /// The signed struct, as EIP-712 encodes its type.
    pub primary_type: String,
    /// What an account signs to let a delegate key sign its submissions (the body's
    /// `delegation`), as EIP-712 encodes its type.
    pub delegation_type: String,
    /// What a reader signs for `Authorization: Bearer 0xACCOUNT.EXPIRES_AT.0xSIGNATURE`
    /// (`GET /v1/accounts/{account}`, `GET /v1/requests/{id}`), as EIP-712 encodes its type.
    pub read_access_type: String,
    /// What a signer signs to consent to a batch of submissions at once (the body's
    /// `consent_batch`), as EIP-712 encodes its type.
    pub batch_type: String,
    /// What an account signs to revoke a delegation (`POST /v1/delegations/revocations`),
    /// as EIP-712 encodes its type.
    pub revocation_type: String,
}

/// A delegation a submission is signed under: the account's signature over the EIP-712
/// `Delegation(address account, address delegate, uint64 spendingLimit, uint64 expiresAt)`
/// (domain: `GET /v1/consent`; `account`: the submission's `credit_account`). With it the
/// submission's `signature` is the delegate's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DelegationBody {
    /// The delegate's address, 0x-hex (any case).
    pub delegate: String,
    /// Credits that may be reserved and charged under it in all; a refund gives its credits
    /// back.
    pub spending_limit: u64,
    /// Unix seconds: a submission recorded at or after it is refused (`delegation_expired`).
    pub expires_at: u64,
    /// The account's signature (65 bytes, 0x-hex).
    pub signature: String,
}

impl ConsentDomain {
    /// The EIP-712 domain.
    pub fn eip712(&self) -> Eip712Domain {
        eip712::domain(self.chain_id, self.escrow)
    }

    /// What `GET /v1/consent` answers.
    pub fn body(&self) -> ConsentDomainBody {
        use alloy::sol_types::SolStruct;
        ConsentDomainBody {
            name: "ParalleliX coordinator".into(),
            version: "1".into(),
            chain_id: self.chain_id,
            verifying_contract: hex0x(self.escrow.as_slice()),
            primary_type: eip712::Submission::eip712_encode_type().into_owned(),
            delegation_type: eip712::Delegation::eip712_encode_type().into_owned(),
            read_access_type: eip712::ReadAccess::eip712_encode_type().into_owned(),
            batch_type: consent_batch::SubmissionBatch::eip712_encode_type().into_owned(),
            revocation_type: eip712::DelegationRevocation::eip712_encode_type().into_owned(),
        }
    }
}

pub use prlx_chain::consent::priority_name;

/// A submission's place in a batch its `signature` covers: the signer signed the EIP-712
/// `SubmissionBatch(bytes32 root, uint32 count)` once for the whole batch, and `root` is what
/// this submission's `Submission` struct hash at `index` and `proof` give
/// (`prlx_chain::consent_batch`: pairs are `keccak256(left ‖ right)`, a last node without a
/// partner moves up alone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConsentBatchBody {
    /// This submission's place in the batch, from 0.
    pub index: u32,
    /// How many submissions the batch holds (1 to 65,536).
    pub count: u32,
    /// The sibling hashes on the path from this submission to the root, from the leaves up:
    /// each 64 lowercase hex characters.
    pub proof: Vec<String>,
}

impl ConsentBatchBody {
    /// The batch as the log records it; `Err((field, reason))` for a proof hash that is not
    /// one.
    fn recorded(&self) -> Result<ConsentBatch, (&'static str, String)> {
        let proof = self
            .proof
            .iter()
            .enumerate()
            .map(|(i, h)| {
                h.parse::<Hash32>().map_err(|_| {
                    (
                        "consent_batch.proof",
                        format!("hash {i} must be 64 lowercase hex characters"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(ConsentBatch {
            index: self.index,
            count: self.count,
            proof,
        })
    }
}

/// Checks `signature` over `fields` (over the batch `batch` places it in, if any; and the
/// delegation's over its terms, if the submission came with one) and says who made them: the
/// consent to record. An account that is not an address is refused naming `credit_account`,
/// a batch whose shape does not hold naming `consent_batch` (or `consent_batch.proof`), a
/// signature that does not decode or recover naming `signature` or `delegation.signature`,
/// a delegate that is not an address naming `delegation.delegate` (`(field, reason)`);
/// whether the signers may charge the account is `decide`'s question.
pub fn consent_of(
    fields: &eip712::SubmissionFields<'_>,
    domain: &ConsentDomain,
    signature: &str,
    delegation: Option<&DelegationBody>,
    batch: Option<&ConsentBatchBody>,
) -> Result<Consent, (&'static str, String)> {
    let batch = batch.map(|b| b.recorded().map(Box::new)).transpose()?;
    let delegation = delegation
        .map(|d| delegation_of(fields.account, d, domain))
        .transpose()?;
    let proof: Vec<B256> = batch
        .iter()
        .flat_map(|b| &b.proof)
        .map(|h| h.0.into())
        .collect();
    let place = batch.as_deref().map(|b| consent_batch::Place {
        index: b.index,
        count: b.count,
        proof: &proof,
    });
    let hash = consent_batch::signed_hash(fields, place, &domain.eip712().separator()).map_err(
        |e| match e {
            consent_batch::SignedHashError::Account(_) => (
                "credit_account",
                "must be the account's 0x address (the one its deposits name)".to_owned(),
            ),
            consent_batch::SignedHashError::Batch(e) => ("consent_batch", e.to_string()),
        },
    )?;
    let signer = recover_once(hash, signature).map_err(|e| {
        let what = if batch.is_some() {
            "EIP-712 SubmissionBatch over the root this submission's proof gives"
        } else {
            "EIP-712 typed data"
        };
        ("signature", format!("{e} ({what}, see GET /v1/consent)"))
    })?;
    Ok(Consent {
        signer: hex0x(signer.as_slice()),
        signature: signature.to_ascii_lowercase(),
        chain_id: domain.chain_id,
        verifying_contract: hex0x(domain.escrow.as_slice()),
        delegation,
        batch,
    })
}

/// Recovers `signature`'s signer over `hash`, remembering the last [`RECOVERED_KEPT`] answers:
/// a batch's signature and a delegation's come with many submissions, and a recovery is the
/// costliest check of one. A recovery is a function of `(hash, signature)`, so a remembered
/// answer is the answer; what a caller sends can only evict entries, never change one.
fn recover_once(hash: B256, signature: &str) -> Result<Address, eip712::ConsentError> {
    let key = (hash, signature.to_ascii_lowercase());
    if let Some(signer) = recovered().lock().expect("not poisoned").get(&key) {
        return Ok(signer);
    }
    let signer = eip712::recover(hash, signature)?;
    recovered().lock().expect("not poisoned").keep(key, signer);
    Ok(signer)
}

/// How many recovered signers the door remembers.
const RECOVERED_KEPT: usize = 4_096;

/// The door's memory of recovered signers, oldest first out.
#[derive(Default)]
struct Recovered {
    signers: BTreeMap<(B256, String), Address>,
    order: VecDeque<(B256, String)>,
}

impl Recovered {
    fn get(&self, key: &(B256, String)) -> Option<Address> {
        self.signers.get(key).copied()
    }

    fn keep(&mut self, key: (B256, String), signer: Address) {
        if self.signers.insert(key.clone(), signer).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > RECOVERED_KEPT {
            if let Some(old) = self.order.pop_front() {
                self.signers.remove(&old);
            }
        }
    }
}

/// One memory for every door of the process (HTTP handlers and the Kafka intake run on
/// several threads): a pure memo, so sharing it changes no answer.
fn recovered() -> &'static Mutex<Recovered> {
    static RECOVERED: OnceLock<Mutex<Recovered>> = OnceLock::new();
    RECOVERED.get_or_init(Mutex::default)
}

/// A delegation as `prlx-client delegate` writes it for the delegate: the account and the
/// deployment it is signed for, and what a submission carries (`delegation`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegationFile {
    pub account: String,
    pub chain_id: u64,
    /// The CreditEscrow, 0x-hex.
    pub verifying_contract: String,
    #[serde(flatten)]
    pub delegation: DelegationBody,
}

impl DelegationFile {
    /// `Err` saying why when it was signed for another deployment than `domain`.
    pub fn check_domain(&self, domain: &ConsentDomain) -> Result<(), String> {
        let contract = hex0x(domain.escrow.as_slice());
        if domain.chain_id == self.chain_id
            && contract.eq_ignore_ascii_case(&self.verifying_contract)
        {
            return Ok(());
        }
        Err(format!(
            "signed for chain {} and escrow {}; the coordinator takes chain {} and escrow \
             {contract}",
            self.chain_id, self.verifying_contract, domain.chain_id
        ))
    }
}

/// Recovers who signed delegation `d` of `account`: the delegation to record.
fn delegation_of(
    account: &str,
    d: &DelegationBody,
    domain: &ConsentDomain,
) -> Result<Delegation, (&'static str, String)> {
    let terms = eip712::DelegationFields {
        account,
        delegate: &d.delegate,
        spending_limit: d.spending_limit,
        expires_at: d.expires_at,
    };
    eip712::address(&d.delegate).map_err(|_| {
        (
            "delegation.delegate",
            "must be the delegate key's 0x address".to_owned(),
        )
    })?;
    let hash = terms.hash(&domain.eip712()).map_err(|_| {
        (
            "credit_account",
            "must be the account's 0x address (the one its deposits name)".to_owned(),
        )
    })?;
    let signer = recover_once(hash, &d.signature).map_err(|e| {
        (
            "delegation.signature",
            format!("{e} (EIP-712 Delegation, see GET /v1/consent)"),
        )
    })?;
    Ok(Delegation {
        signer: hex0x(signer.as_slice()),
        delegate: d.delegate.to_ascii_lowercase(),
        spending_limit: d.spending_limit,
        expires_at: d.expires_at,
        signature: d.signature.to_ascii_lowercase(),
        hash: prlx_events::Hash32(hash.0),
    })
}

/// `key`'s delegation of `account`'s spending to `delegate`, as a submission carries it.
pub fn sign_delegation(
    key: &alloy::signers::local::PrivateKeySigner,
    account: &str,
    delegate: &str,
    spending_limit: u64,
    expires_at: u64,
    domain: &ConsentDomain,
) -> Result<DelegationBody, eip712::ConsentError> {
    let terms = eip712::DelegationFields {
        account,
        delegate,
        spending_limit,
        expires_at,
    };
    Ok(DelegationBody {
        delegate: delegate.to_ascii_lowercase(),
        spending_limit,
        expires_at,
        signature: eip712::sign(key, terms.hash(&domain.eip712())?),
    })
}

/// Signs `s` with `key` as its account would (the tour and the tests build submissions in
/// process): fills in its consent. A submission without an idempotency key signs the empty
/// one.
pub fn sign_submission(
    s: &mut crate::decide::Submission,
    key: &alloy::signers::local::PrivateKeySigner,
    domain: &ConsentDomain,
) {
    let fields = submission_fields(s);
    let signature = match fields.hash(&domain.eip712()) {
        Ok(hash) => eip712::sign(key, hash),
        // Not an address: nothing can recover to it; left unsigned, refused by `decide`.
        Err(_) => return,
    };
    // The signer is known: no need to recover it (intake does, from what a client sends).
    s.consent = Some(Consent {
        signer: hex0x(key.address().as_slice()),
        signature,
        chain_id: domain.chain_id,
        verifying_contract: hex0x(domain.escrow.as_slice()),
        delegation: None,
        batch: None,
    });
}

/// Signs `s` with `delegate_key` under `delegation`, the account's, as a delegate would: the
/// consent intake records, both signers recovered.
pub fn sign_submission_as_delegate(
    s: &mut crate::decide::Submission,
    delegate_key: &alloy::signers::local::PrivateKeySigner,
    delegation: &DelegationBody,
    domain: &ConsentDomain,
) -> Result<(), (&'static str, String)> {
    sign_submission(s, delegate_key, domain);
    let Some(signature) = s.consent.as_ref().map(|c| c.signature.clone()) else {
        return Err(("credit_account", "not an address".into()));
    };
    let fields = submission_fields(s);
    s.consent = Some(consent_of(
        &fields,
        domain,
        &signature,
        Some(delegation),
        None,
    )?);
    Ok(())
}

/// Signs `batch` with `key` once, as its accounts' key (or their delegate's) would sign a
/// batch: each submission's consent carries its place in the batch. `Err` when one's account
/// is not an address or the batch is empty or past `MAX_BATCH`. Delegations, if any, are
/// left as they are (a delegate signs the batch under each submission's own).
pub fn sign_batch(
    batch: &mut [crate::decide::Submission],
    key: &alloy::signers::local::PrivateKeySigner,
    domain: &ConsentDomain,
) -> Result<(), (&'static str, String)> {
    let leaves = batch
        .iter()
        .map(|s| submission_fields(s).leaf())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ("credit_account", e.to_string()))?;
    let (signature, proofs) = consent_batch::sign_batch(key, &leaves, &domain.eip712())
        .map_err(|e| ("consent_batch", e.to_string()))?;
    let count = leaves.len() as u32;
    for (index, (s, proof)) in batch.iter_mut().zip(proofs).enumerate() {
        let delegation = s.consent.take().and_then(|c| c.delegation);
        s.consent = Some(Consent {
            signer: hex0x(key.address().as_slice()),
            signature: signature.clone(),
            chain_id: domain.chain_id,
            verifying_contract: hex0x(domain.escrow.as_slice()),
            delegation,
            batch: Some(Box::new(ConsentBatch {
                index: index as u32,
                count,
                proof: proof.into_iter().map(|h| Hash32(h.0)).collect(),
            })),
        });
    }
    Ok(())
}

/// The signed fields of `s`.
fn submission_fields(s: &crate::decide::Submission) -> eip712::SubmissionFields<'_> {
    eip712::SubmissionFields {
        account: &s.credit_account.0,
        idempotency_key: s.idempotency_key.as_deref().unwrap_or(""),
        workload_class: &s.workload_class,
        model: &s.model,
        hardware_tier: s.hardware_tier,
        priority: priority_name(s.priority),
        deadline_seconds: s.deadline_seconds,
        max_tokens: s.max_tokens,
        payload_hash: s.payload_hash.0,
        client_pubkey: &s.client_pubkey,
    }
}
