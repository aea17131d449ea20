//! Revoking a delegation at the door (`POST /v1/delegations/revocations`): the account signs
//! the EIP-712 `DelegationRevocation(address account, bytes32 delegation)` under the
//! deployment's domain, naming the delegation by its terms (whose hash the door derives, as
//! a submission's delegation is named); the door recovers who signed, and `decide` records
//! the revocation only when that is the account. After it, no submission signed under the
//! delegation is accepted, and its delegate no longer reads the account.

use prlx_chain::consent as eip712;
use prlx_chain::record::hex0x;
use prlx_events::event::DelegationRevoked;
use prlx_events::{AccountId, Hash32};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::consent::{ConsentDomain, DelegationBody};

/// `POST /v1/delegations/revocations`: the delegation's terms, as the account signed them
/// (`prlx-client delegate` wrote them), and the account's signature over the revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RevocationBody {
    /// The account whose delegation it is, 0x-hex.
    pub account: String,
    /// The delegate's address, 0x-hex.
    pub delegate: String,
    pub spending_limit: u64,
    /// Unix seconds.
    pub expires_at: u64,
    /// The account's signature (65 bytes, 0x-hex) over the EIP-712
    /// `DelegationRevocation(address account, bytes32 delegation)`, `delegation` being the
    /// delegation's EIP-712 hash (domain and types: `GET /v1/consent`).
    pub signature: String,
}

/// What a revocation came to: the delegation's hash, and `revoked`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RevocationAnswer {
    /// The delegation's EIP-712 hash (hex), as requests under it record it.
    pub delegation: String,
    #[schema(example = "revoked")]
    pub status: String,
}

/// The revocation `body` asks for, its signer recovered: `Err((field, reason))` when an
/// address is not one or the signature does not recover. Whether the signer is the account
/// is `decide`'s question.
pub fn revocation_of(
    body: &RevocationBody,
    domain: &ConsentDomain,
) -> Result<DelegationRevoked, (&'static str, String)> {
    let account = body.account.to_ascii_lowercase();
    let delegate = body.delegate.to_ascii_lowercase();
    eip712::address(&account)
        .map_err(|_| ("account", "must be the account's 0x address".to_owned()))?;
    eip712::address(&delegate).map_err(|_| {
        (
            "delegate",
            "must be the delegate key's 0x address".to_owned(),
        )
    })?;
    let typed = domain.eip712();
    let terms = eip712::DelegationFields {
        account: &account,
        delegate: &delegate,
        spending_limit: body.spending_limit,
        expires_at: body.expires_at,
    };
    let delegation = terms
        .hash(&typed)
        .map_err(|e| ("delegate", e.to_string()))?;
    let hash = eip712::revocation_hash(&account, delegation.0, &typed)
        .map_err(|e| ("account", e.to_string()))?;
    let signer = eip712::recover(hash, &body.signature).map_err(|e| {
        (
            "signature",
            format!("{e} (EIP-712 DelegationRevocation, see GET /v1/consent)"),
        )
    })?;
    Ok(DelegationRevoked {
        account: AccountId(account),
        delegation: Hash32(delegation.0),
        delegate,
        spending_limit: body.spending_limit,
        expires_at: body.expires_at,
        signer: hex0x(signer.as_slice()),
        signature: body.signature.to_ascii_lowercase(),
        chain_id: domain.chain_id,
        verifying_contract: hex0x(domain.escrow.as_slice()),
    })
}

/// `key`'s revocation of `account`'s delegation `d`, as `POST /v1/delegations/revocations`
/// takes it.
pub fn sign_revocation(
    key: &alloy::signers::local::PrivateKeySigner,
    account: &str,
    d: &DelegationBody,
    domain: &ConsentDomain,
) -> Result<RevocationBody, eip712::ConsentError> {
    let typed = domain.eip712();
    let terms = eip712::DelegationFields {
        account,
        delegate: &d.delegate,
        spending_limit: d.spending_limit,
        expires_at: d.expires_at,
    };
    let delegation = terms.hash(&typed)?;
    let hash = eip712::revocation_hash(account, delegation.0, &typed)?;
    Ok(RevocationBody {
        account: account.to_ascii_lowercase(),
        delegate: d.delegate.clone(),
        spending_limit: d.spending_limit,
        expires_at: d.expires_at,
        signature: eip712::sign(key, hash),
    })
}
