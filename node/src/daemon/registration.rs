//! Registering with the coordinator: what the node declares about itself, signed by its key
//! over a fresh statement, retried until the coordinator answers.

use std::collections::BTreeMap;

use prlx_events::crypto::{node_id_of, sign_registration};
use prlx_events::event::{ExecutionClass, NodeRegistered};
use prlx_events::Hash32;
use rsa::RsaPrivateKey;
use serde::Serialize;
use tracing::info;

use super::config::{retry_backoff, DaemonError};
use crate::client::CoordinatorClient;

/// What the node declares about itself at `POST /v1/nodes`, before it is signed.
#[derive(Debug, Clone, Serialize)]
pub struct Registration {
    pub public_key_pem: String,
    pub hardware_tier: u8,
    pub models: Vec<String>,
    pub slots: u32,
    pub execution_class: ExecutionClass,
    /// The SHA-256 of each model file it loaded, by model: replicas are compared among nodes
    /// that run the same file.
    pub model_hashes: BTreeMap<String, Hash32>,
    /// The chain address that stakes for this node and is paid its rewards; `None`: the node
    /// is never paid (no bond counts for it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
}

/// A [`Registration`] signed by the node's key, as sent: the coordinator takes it only with a
/// signature over every field and a time near its clock, so it is signed again for each try.
#[derive(Debug, Clone, Serialize)]
pub struct SignedRegistration {
    #[serde(flatten)]
    pub registration: Registration,
    pub signed_at: i64,
    /// Base64 RSA-PSS-SHA256 over [`prlx_events::crypto::registration_statement`].
    pub signature: String,
}

impl Registration {
    /// This registration signed by `key` (the key it registers) now.
    pub fn sign(&self, key: &RsaPrivateKey) -> SignedRegistration {
        use base64::Engine as _;
        let mut n = NodeRegistered {
            node_id: node_id_of(&key.to_public_key()),
            public_key_pem: self.public_key_pem.clone(),
            hardware_tier: self.hardware_tier,
            models: self.models.clone(),
            slots: self.slots,
            stake: 0,
            execution_class: self.execution_class.clone(),
            model_hashes: self.model_hashes.clone(),
            operator: self.operator.clone(),
            signed_at: None,
            signature: None,
        };
        let at = chrono::Utc::now().timestamp();
        sign_registration(key, &mut n, at, &mut rsa::rand_core::OsRng);
        SignedRegistration {
            registration: self.clone(),
            signed_at: at,
            signature: base64::engine::general_purpose::STANDARD
                .encode(n.signature.map(|s| s.0).unwrap_or_default()),
        }
    }
}

/// Registers, retrying while the coordinator is unreachable or failing. Returns the status
/// (201 new, 200 already registered with the same parameters).
pub(super) async fn register(
    client: &CoordinatorClient,
    registration: &Registration,
    key: &RsaPrivateKey,
) -> Result<u16, DaemonError> {
    let mut backoff = retry_backoff();
    let mut failures: u32 = 0;
    loop {
        // Signing takes milliseconds, once per try: a try every few seconds at most.
        let signed = registration.sign(key);
        let why = match client.post_json("/v1/nodes", &signed).await {
            Ok(a) if a.status == 200 || a.status == 201 => return Ok(a.status),
            Ok(a) if a.status >= 500 => a.describe(),
            Ok(a) => return Err(DaemonError::Registration(a.describe())),
            Err(e) if e.is_retryable_call() => e.to_string(),
            Err(e) => return Err(e.into()),
        };
        if failures.is_multiple_of(10) {
            info!("registration not done yet ({why}); retrying");
        }
        failures += 1;
        backoff.pause().await;
    }
}
