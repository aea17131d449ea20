//! Test accounts: chain addresses with their keys, so a test signs its submissions as the
//! account would (every submission carries the account's EIP-712 signature). An account is
//! named in a test (`"ai"`, `"other"`); its key is derived from the name, so the same name is
//! the same address in every test and process.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use alloy::signers::local::PrivateKeySigner;
use prlx_chain::consent::sign;
use prlx_chain::record::hex0x;
use prlx_events::{AccountId, Hash32};
use serde_json::{json, Value};

use crate::consent::ConsentDomain;

fn known() -> &'static Mutex<BTreeMap<String, PrivateKeySigner>> {
    static KNOWN: OnceLock<Mutex<BTreeMap<String, PrivateKeySigner>>> = OnceLock::new();
    KNOWN.get_or_init(Default::default)
}

/// The key of the account named `name`.
pub fn key(name: &str) -> PrivateKeySigner {
    let secret = Hash32::of(format!("prlx test account {name}").as_bytes());
    let key = PrivateKeySigner::from_bytes(&secret.0.into()).expect("a SHA-256 is a valid key");
    known()
        .lock()
        .unwrap()
        .insert(hex0x(key.address().as_slice()), key.clone());
    key
}

/// The address (lowercase 0x-hex) of the account named `name`.
pub fn address(name: &str) -> String {
    hex0x(key(name).address().as_slice())
}

/// The account named `name`.
pub fn account(name: &str) -> AccountId {
    AccountId(address(name))
}

/// The key of a known test account's address (one named through [`key`], [`address`] or
/// [`account`], or made known by [`know`]).
pub fn key_of_address(address: &str) -> Option<PrivateKeySigner> {
    known()
        .lock()
        .unwrap()
        .get(&address.to_ascii_lowercase())
        .cloned()
}

/// Makes `key` the one [`sign_body`] signs for its address with (a dev chain's client key).
pub fn know(key: &PrivateKeySigner) {
    known()
        .lock()
        .unwrap()
        .insert(hex0x(key.address().as_slice()), key.clone());
}

/// Signs a `POST /v1/requests` body for `domain` as its `credit_account` would, over its own
/// fields and its `idempotency_key`: the body's `signature`. A body whose account is not a
/// known account's address (empty, not an address, a stranger) keeps what it has: such a
/// body is refused before or at its signature.
pub fn sign_body(body: &mut Value, domain: &ConsentDomain) {
    let account = body["credit_account"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let Some(key) = known().lock().unwrap().get(&account).cloned() else {
        return;
    };
    sign_body_as(body, &key, domain);
}

/// Signs a `POST /v1/requests` body for `domain` with `key`, whoever's account it charges.
pub fn sign_body_as(body: &mut Value, key: &PrivateKeySigner, domain: &ConsentDomain) {
    if let Some(Ok(hash)) = with_body_fields(body, |f| f.hash(&domain.eip712())) {
        body["signature"] = json!(sign(key, hash));
    }
}

/// Signs `bodies` (`POST /v1/requests` bodies with their idempotency keys) once, as a batch,
/// with `key`: each gets the batch's `signature` and its `consent_batch`.
pub fn sign_bodies_as_batch(bodies: &mut [Value], key: &PrivateKeySigner, domain: &ConsentDomain) {
    let leaves: Vec<_> = bodies
        .iter()
        .map(|b| {
            with_body_fields(b, |f| f.leaf())
                .and_then(Result::ok)
                .expect("a body with an account address and a payload hash")
        })
        .collect();
    let (signature, proofs) = prlx_chain::consent_batch::sign_batch(key, &leaves, &domain.eip712())
        .expect("1 to MAX_BATCH bodies");
    let count = leaves.len() as u32;
    for (index, (body, proof)) in bodies.iter_mut().zip(proofs).enumerate() {
        body["signature"] = json!(signature);
        body["consent_batch"] = json!({
            "index": index,
            "count": count,
            "proof": proof.iter().map(|h| Hash32(h.0).to_string()).collect::<Vec<_>>(),
        });
    }
}

/// `f` of the signed fields of a `POST /v1/requests` body (`None` when its payload hash is
/// not one).
fn with_body_fields<T>(
    body: &Value,
    f: impl FnOnce(&prlx_chain::consent::SubmissionFields<'_>) -> T,
) -> Option<T> {
    let field = |name: &str| body[name].as_str().unwrap_or_default().to_owned();
    let account = field("credit_account").to_ascii_lowercase();
    let payload_hash: Hash32 = field("payload_hash").parse().ok()?;
    let fields = prlx_chain::consent::SubmissionFields {
        account: &account,
        idempotency_key: &field("idempotency_key"),
        workload_class: &field("workload_class"),
        model: &field("model"),
        hardware_tier: body["hardware_tier"]
            .as_u64()
            .and_then(|t| u8::try_from(t).ok())
            .unwrap_or(0),
        priority: &field("priority"),
        deadline_seconds: body["deadline_seconds"]
            .as_u64()
            .and_then(|d| u32::try_from(d).ok())
            .unwrap_or(0),
        max_tokens: body["max_tokens"]
            .as_u64()
            .and_then(|m| u32::try_from(m).ok())
            .unwrap_or(0),
        payload_hash: payload_hash.0,
        client_pubkey: &field("client_pubkey"),
    };
    Some(f(&fields))
}

/// The delegation of `account`'s spending to `delegate` (test accounts by name), up to
/// `spending_limit` until `expires_at` (Unix seconds), signed under `domain` by the account
/// named `by`: the account itself, or for a forged one someone else.
pub fn delegation(
    by: &str,
    account: &str,
    delegate: &str,
    spending_limit: u64,
    expires_at: u64,
    domain: &ConsentDomain,
) -> crate::consent::DelegationBody {
    crate::consent::sign_delegation(
        &key(by),
        &address(account),
        &address(delegate),
        spending_limit,
        expires_at,
        domain,
    )
    .expect("test accounts are addresses")
}

/// `Authorization` for reading `account` (a 0x address), signed by the test account named
/// `signer` under `domain`, expiring `ttl` seconds from now.
pub fn read_token(signer: &str, account: &str, ttl: u64, domain: &ConsentDomain) -> String {
    let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
    read_token_as(&key(signer), account, now + ttl, domain)
}

/// `Authorization` for reading `account` (a 0x address) until `expires_at`, signed by `key`.
pub fn read_token_as(
    key: &PrivateKeySigner,
    account: &str,
    expires_at: u64,
    domain: &ConsentDomain,
) -> String {
    let account = account.parse().expect("a 0x address");
    prlx_chain::read_access::ReadToken::sign(key, account, expires_at, &domain.eip712()).to_header()
}
