//! The HTTP intake's fixtures: a catalog of one model, a submission body for it, and the table
//! of every way to get that body rejected, for the tests that drive `app()` in process and
//! those that send the same bodies to a real `prlx-coordinator serve`.

use std::sync::OnceLock;

use axum::http::StatusCode;
use prlx_events::crypto::public_key_pem;
use prlx_events::Hash32;
use serde_json::{json, Value};

/// One model, min tier 2 of 4, price `100 + 3 * max_tokens`, at most 64 tokens, in its
/// context of 8192 (SmolLM2-135M's).
pub const CATALOG: &str = r#"{
    "models": [{
        "model": "oss-chat-v1",
        "sha256": "413d91283462e82c40ec82d694437f7a972d0dc0d2bcc980f2dbd96afc1b426e",
        "min_tier": 2,
        "base_price": 100,
        "per_token_price": 3,
        "max_tokens_limit": 64,
        "context_length": 8192
    }],
    "max_tier": 4,
    "min_deadline_seconds": 5,
    "max_deadline_seconds": 600
}"#;

/// A submission rejected: (body, status, code, field, recorded on the log by the core).
pub type RejectionCase = (Value, StatusCode, &'static str, &'static str, bool);

/// A key generated once per test process (RSA key generation is slow): the client's, and a
/// node's where a test registers one.
pub fn client_key() -> &'static rsa::RsaPrivateKey {
    static KEY: OnceLock<rsa::RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap())
}

/// The public key of [`client_key`], PEM.
pub fn client_pem() -> &'static str {
    static PEM: OnceLock<String> = OnceLock::new();
    PEM.get_or_init(|| public_key_pem(&client_key().to_public_key()))
}

/// The lowercase hex SHA-256 of `s`, as a client sends it in `payload_hash`.
pub fn sha256_hex(s: &str) -> String {
    Hash32::of(s.as_bytes()).to_hex()
}

/// A valid submission of `prompt` for [`CATALOG`]'s model at tier 3, charged to the test
/// account named `account` ([`super::accounts`]; an `0x` address is taken as it is), not
/// signed yet: the sender adds the idempotency key and signs ([`signed`]).
pub fn submission(account: &str, prompt: &str) -> Value {
    let account = if account.starts_with("0x") || account.is_empty() {
        account.to_owned()
    } else {
        super::accounts::address(account)
    };
    json!({
        "workload_class": "ai.inference",
        "model": "oss-chat-v1",
        "hardware_tier": 3,
        "priority": "standard",
        "deadline_seconds": 60,
        "credit_account": account,
        "client_pubkey": client_pem(),
        "prompt": prompt,
        "max_tokens": 10,
        "payload_hash": sha256_hex(prompt),
    })
}

/// `body` as it is sent: with `key` as its idempotency key and, unless it carries a
/// `signature` already (a case about the signature), signed for `domain` by its account.
pub fn signed(mut body: Value, key: &str, domain: &crate::consent::ConsentDomain) -> Value {
    body["idempotency_key"] = json!(key);
    if body.get("signature").is_none() {
        super::accounts::sign_body(&mut body, domain);
    }
    if body.get("signature").is_none() {
        // Nothing to sign (a field the case breaks is missing or malformed): a signature
        // that recovers to no one, so the case is refused for its own field first.
        body["signature"] = json!(format!("0x{}", "00".repeat(65)));
    }
    body
}

/// Every submission rejection of a [`submission`] to account `ai` under [`CATALOG`], each
/// body to be sent [`signed`] (the cases about the signature carry theirs).
pub fn rejection_cases() -> Vec<RejectionCase> {
    let ok = submission("ai", "hello");
    let with = |field: &str, value: Value| {
        let mut s = ok.clone();
        s[field] = value;
        s
    };
    let without = |field: &str| {
        let mut s = ok.clone();
        s.as_object_mut().unwrap().remove(field);
        s
    };
    use StatusCode as S;
    // (body, status, code, field, recorded on the log by the core)
    vec![
        (
            without("prompt"),
            S::BAD_REQUEST,
            "malformed_request",
            "prompt",
            false,
        ),
        (
            without("payload_hash"),
            S::BAD_REQUEST,
            "malformed_request",
            "payload_hash",
            false,
        ),
        (
            with("max_tokens", json!("ten")),
            S::BAD_REQUEST,
            "malformed_request",
            "max_tokens",
            false,
        ),
        (
            with("hardware_tier", json!(300)),
            S::BAD_REQUEST,
            "malformed_request",
            "hardware_tier",
            false,
        ),
        (
            with("priority", json!("urgent")),
            S::BAD_REQUEST,
            "malformed_request",
            "priority",
            false,
        ),
        (
            with("client_pubkey", json!("not a key")),
            S::BAD_REQUEST,
            "malformed_request",
            "client_pubkey",
            false,
        ),
        (
            with("payload_hash", json!("abc")),
            S::BAD_REQUEST,
            "malformed_request",
            "payload_hash",
            false,
        ),
        (
            // With the empty prompt's own hash: without the check it would be accepted.
            {
                let mut s = with("prompt", json!(""));
                s["payload_hash"] = json!(sha256_hex(""));
                s
            },
            S::BAD_REQUEST,
            "malformed_request",
            "prompt",
            false,
        ),
        (
            with("credit_account", json!("")),
            S::BAD_REQUEST,
            "malformed_request",
            "credit_account",
            false,
        ),
        (
            with("payload_hash", json!(sha256_hex("other"))),
            S::BAD_REQUEST,
            "payload_hash_mismatch",
            "payload_hash",
            true,
        ),
        (
            with("workload_class", json!("ai.training")),
            S::BAD_REQUEST,
            "unknown_workload_class",
            "workload_class",
            true,
        ),
        (
            with("model", json!("gpt-omega")),
            S::BAD_REQUEST,
            "unknown_model",
            "model",
            true,
        ),
        (
            with("hardware_tier", json!(1)),
            S::BAD_REQUEST,
            "tier_out_of_range",
            "hardware_tier",
            true,
        ),
        (
            with("hardware_tier", json!(5)),
            S::BAD_REQUEST,
            "tier_out_of_range",
            "hardware_tier",
            true,
        ),
        (
            with("deadline_seconds", json!(1)),
            S::BAD_REQUEST,
            "deadline_out_of_range",
            "deadline_seconds",
            true,
        ),
        (
            with("max_tokens", json!(0)),
            S::BAD_REQUEST,
            "malformed_request",
            "max_tokens",
            true,
        ),
        (
            with("max_tokens", json!(65)),
            S::BAD_REQUEST,
            "malformed_request",
            "max_tokens",
            true,
        ),
        (
            with("credit_account", json!("nobody")),
            S::BAD_REQUEST,
            "malformed_request",
            "credit_account",
            false,
        ),
        (
            with("credit_account", json!(super::accounts::address("nobody"))),
            S::PAYMENT_REQUIRED,
            "insufficient_credit",
            "credit_account",
            true,
        ),
        (
            with("signature", json!(null)),
            S::BAD_REQUEST,
            "malformed_request",
            "signature",
            false,
        ),
        (
            with("signature", json!(format!("0x{}", "00".repeat(65)))),
            S::BAD_REQUEST,
            "malformed_request",
            "signature",
            false,
        ),
        (
            // Signed by someone else's key: charging the account is not theirs to consent to.
            with("signature", json!(foreign_signature(&ok))),
            S::FORBIDDEN,
            "unauthorized",
            "signature",
            true,
        ),
    ]
}

/// Asserts that `body`, answered with `got`, is the one error body with `status`, `code` and
/// `field`, and a message.
#[track_caller]
pub fn assert_error_body(
    got: StatusCode,
    body: &Value,
    status: StatusCode,
    code: &str,
    field: Option<&str>,
) {
    assert_eq!(
        (
            got,
            body["error"]["code"].as_str(),
            body["error"]["field"].as_str()
        ),
        (status, Some(code), field),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// `body` signed by the key of the account named `stranger` instead of its own, with the
/// idempotency key the rejection cases are sent with.
fn foreign_signature(body: &Value) -> String {
    let mut body = body.clone();
    body["idempotency_key"] = json!(REJECTION_KEY);
    super::accounts::sign_body_as(
        &mut body,
        &super::accounts::key("stranger"),
        &crate::consent::ConsentDomain::default(),
    );
    body["signature"].as_str().unwrap_or_default().to_owned()
}

/// The idempotency key the rejection cases are sent with.
pub const REJECTION_KEY: &str = "rejection-case";

/// The file hash [`CATALOG`] gives `oss-chat-v1`.
pub const CATALOG_MODEL_SHA256: &str =
    "413d91283462e82c40ec82d694437f7a972d0dc0d2bcc980f2dbd96afc1b426e";

/// A `POST /v1/nodes` body for `key` serving [`CATALOG`]'s model with its file at `tier`:
/// one slot, on CPU, no operator; sign it with [`signed_registration`].
pub fn registration_body(key: &rsa::RsaPublicKey, tier: u8) -> Value {
    serde_json::json!({
        "public_key_pem": public_key_pem(key), "hardware_tier": tier,
        "models": ["oss-chat-v1"], "slots": 1,
        "model_hashes": {"oss-chat-v1": CATALOG_MODEL_SHA256},
        "execution_class": {"device": "cpu", "driver": "-", "runtime": "onnxruntime-1.22.0"},
    })
}

/// `body`, a `POST /v1/nodes` body, signed by `key` (the key it registers) at `signed_at`
/// (Unix seconds), as `prlx-node run` signs its registration: `signed_at` and `signature`
/// set over the statement of what the body says.
pub fn signed_registration_at(key: &rsa::RsaPrivateKey, mut body: Value, signed_at: i64) -> Value {
    use base64::Engine as _;
    use prlx_events::event::{ExecutionClass, NodeRegistered};
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let class = &body["execution_class"];
    let mut n = NodeRegistered {
        node_id: prlx_events::crypto::node_id_of(&key.to_public_key()),
        public_key_pem: String::new(),
        hardware_tier: body["hardware_tier"].as_u64().unwrap_or(0) as u8,
        models: body["models"]
            .as_array()
            .map(|m| m.iter().map(text).collect())
            .unwrap_or_default(),
        slots: body["slots"].as_u64().unwrap_or(0) as u32,
        stake: 0,
        execution_class: ExecutionClass {
            device: text(&class["device"]),
            driver: text(&class["driver"]),
            runtime: text(&class["runtime"]),
        },
        model_hashes: body["model_hashes"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.parse().ok()?)))
                    .collect()
            })
            .unwrap_or_default(),
        operator: body["operator"].as_str().map(str::to_owned),
        signed_at: None,
        signature: None,
    };
    prlx_events::crypto::sign_registration(key, &mut n, signed_at, &mut rsa::rand_core::OsRng);
    body["signed_at"] = signed_at.into();
    body["signature"] = base64::engine::general_purpose::STANDARD
        .encode(&n.signature.expect("just signed").0)
        .into();
    body
}

/// `body` signed by `key` now (see [`signed_registration_at`]).
pub fn signed_registration(key: &rsa::RsaPrivateKey, body: Value) -> Value {
    signed_registration_at(key, body, chrono::Utc::now().timestamp())
}

/// A `POST /v1/nodes/{id}/heartbeat` body of `node` signed by `key` now, as `prlx-node run`
/// heartbeats: a signed node takes no work before its first.
pub fn signed_heartbeat(key: &rsa::RsaPrivateKey, node: prlx_events::NodeId) -> Value {
    use base64::Engine as _;
    let at = chrono::Utc::now().timestamp();
    let statement = prlx_events::crypto::heartbeat_statement(node, at);
    let signature = prlx_events::crypto::sign(key, &statement, &mut rsa::rand_core::OsRng);
    json!({"at": at, "signature": base64::engine::general_purpose::STANDARD.encode(signature)})
}

/// `body` as a delegate sends it: with `key` as its idempotency key, signed by the test
/// account named `delegate`, carrying the account's `delegation`.
pub fn delegated(
    mut body: Value,
    key: &str,
    delegate: &str,
    delegation: &crate::consent::DelegationBody,
    domain: &crate::consent::ConsentDomain,
) -> Value {
    body["idempotency_key"] = json!(key);
    super::accounts::sign_body_as(&mut body, &super::accounts::key(delegate), domain);
    body["delegation"] = serde_json::to_value(delegation).expect("a delegation is JSON");
    body
}
