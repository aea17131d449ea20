//! Spending consent at intake: every submission, whichever door it comes through, carries the
//! account's EIP-712 signature over what it asks for (`prlx_chain::consent`). The signature is
//! checked here, before the actor (recovering a key is the costliest check of a submission, and
//! handlers run it in parallel); `decide` then requires that the signer is the account charged,
//! and the auditor checks the signature again from the record.

use alloy::primitives::Address;
use alloy::sol_types::Eip712Domain;
use prlx_chain::consent as eip712;
use prlx_chain::record::hex0x;
use prlx_events::event::Consent;
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
        }
    }
}

pub use prlx_chain::consent::priority_name;

/// Checks `signature` over `fields` and says who made it: the consent to record. An account
/// that is not an address is refused naming `credit_account`, a signature that does not
/// decode or recover naming `signature` (`(field, reason)`); whether the signer may charge the account is
/// `decide`'s question.
pub fn consent_of(
    fields: &eip712::SubmissionFields<'_>,
    domain: &ConsentDomain,
    signature: &str,
) -> Result<Consent, (&'static str, String)> {
    let signer = match fields.signer(&domain.eip712(), signature) {
        Ok(signer) => signer,
        Err(eip712::ConsentError::Address(_)) => {
            return Err((
                "credit_account",
                "must be the account's 0x address (the one its deposits name)".into(),
            ))
        }
        Err(e) => {
            return Err((
                "signature",
                format!("{e} (EIP-712 typed data, see GET /v1/consent)"),
            ))
        }
    };
    Ok(Consent {
        signer: hex0x(signer.as_slice()),
        signature: signature.to_ascii_lowercase(),
        chain_id: domain.chain_id,
        verifying_contract: hex0x(domain.escrow.as_slice()),
        delegation: None,
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
    let fields = eip712::SubmissionFields {
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
    };
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
    });
}
