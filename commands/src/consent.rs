//! Spending consent at intake: every submission, whichever door it comes through, carries the
//! account's EIP-712 signature over what it asks for (`prlx_chain::consent`), or a delegate's
//! with the account's signed delegation. The signatures are recovered here, before the actor
//! (recovering a key is the costliest check of a submission, and handlers run it in
//! parallel); `decide` then requires that the signer is the account charged or its delegate
//! within the delegation's limit and life, and the auditor checks the signatures again from
//! the record.

use alloy::primitives::Address;
use alloy::sol_types::Eip712Domain;
use prlx_chain::consent as eip712;
use prlx_chain::record::hex0x;
use prlx_events::event::{Consent, Delegation};
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
        }
    }
}

pub use prlx_chain::consent::priority_name;

/// Checks `signature` over `fields` (and the delegation's over its terms, if the submission
/// came with one) and says who made them: the consent to record. An account that is not an
/// address is refused naming `credit_account`, a signature that does not decode or recover
/// naming `signature` or `delegation.signature`, a delegate that is not an address naming
/// `delegation.delegate` (`(field, reason)`); whether the signers may charge the account is
/// `decide`'s question.
pub fn consent_of(
    fields: &eip712::SubmissionFields<'_>,
    domain: &ConsentDomain,
    signature: &str,
    delegation: Option<&DelegationBody>,
) -> Result<Consent, (&'static str, String)> {
    let delegation = delegation
        .map(|d| delegation_of(fields.account, d, domain))
        .transpose()?;
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
        delegation,
    })
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
    let signer = eip712::recover(hash, &d.signature).map_err(|e| {
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
    s.consent = Some(consent_of(&fields, domain, &signature, Some(delegation))?);
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
