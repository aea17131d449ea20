//! A coordinator ready to take submissions, and submission bodies, for the intake tests and
//! the intake benchmark.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use prlx_commands::actor::{self, CoordinatorHandle};
use prlx_commands::decide::Command;
use prlx_commands::kafka_intake::KafkaIntakeConfig;
use prlx_commands::shell::Coordinator;
use prlx_commands::testkit::fixtures::{catalog, model};
use prlx_events::event::{CatalogModel, CatalogPublished};
use prlx_events::log::LogUrl;
use prlx_events::seal::StorageKey;
use prlx_events::Hash32;

/// The account every body of [`submission_body`] charges.
pub const ACCOUNT_NAME: &str = "parallelix-ai";

/// A coordinator on a file log in `dir` with one model, `chat`, in its catalog and credit on
/// [`ACCOUNT_NAME`] for many thousands of submissions. No nodes: requests wait in the queue.
pub async fn chat_coordinator(dir: &Path) -> (CoordinatorHandle, LogUrl) {
    let url = LogUrl::parse(&format!("file://{}", dir.display())).unwrap();
    (chat_coordinator_on(&url).await, url)
}

/// [`chat_coordinator`] on the log at `url` (a Kafka log, say), which may hold one already:
/// the catalog and the deposit are recorded once.
pub async fn chat_coordinator_on(url: &LogUrl) -> CoordinatorHandle {
    let coord = Coordinator::open(url, "intake-test", StorageKey::from_bytes([5; 32]))
        .await
        .unwrap();
    let fresh = coord.state().catalog.is_none();
    let (handle, _task) = actor::spawn(coord);
    if !fresh {
        return handle;
    }
    handle
        .execute_command(Command::PublishCatalog(CatalogPublished {
            max_tier: 3,
            max_deadline_seconds: 3600,
            ..catalog(vec![CatalogModel {
                max_tokens_limit: 64,
                ..model("chat", Hash32([1; 32]))
            }])
        }))
        .await
        .unwrap();
    handle
        .execute_command(Command::DepositCredits {
            account: prlx_commands::testkit::accounts::account(ACCOUNT_NAME),
            tx_ref: "tx-1".into(),
            amount: 1_000_000_000,
        })
        .await
        .unwrap();
    handle
}

/// The JSON body of a submission of `prompt` for `chat`, answered to `client_pem`, signed by
/// the account for the record key `reference` (its idempotency key).
pub fn submission_body(prompt: &str, client_pem: &str, reference: &str) -> String {
    class_body("ai.inference", prompt, client_pem, reference)
}

/// [`submission_body`] of workload class `class`: for a general-path class, `prompt` holds
/// the task's parameters as JSON text.
pub fn class_body(class: &str, prompt: &str, client_pem: &str, reference: &str) -> String {
    let body = serde_json::json!({
        "workload_class": class,
        "model": "chat",
        "hardware_tier": 1,
        "priority": "standard",
        "deadline_seconds": 600,
        "credit_account": prlx_commands::testkit::accounts::address(ACCOUNT_NAME),
        "client_pubkey": client_pem,
        "prompt": prompt,
        "max_tokens": 8,
        "payload_hash": Hash32::of(prompt.as_bytes()).to_hex(),
    });
    let mut signed = prlx_commands::testkit::intake::signed(
        body,
        reference,
        &prlx_commands::consent::ConsentDomain::default(),
    );
    // The record's key is the reference; the body need not repeat it.
    signed.as_object_mut().unwrap().remove("idempotency_key");
    signed.to_string()
}

/// [`submission_body`] signed by the test account named `delegate` instead, carrying the
/// account's `delegation` to it.
pub fn delegated_body(
    prompt: &str,
    client_pem: &str,
    reference: &str,
    delegate: &str,
    delegation: &prlx_commands::consent::DelegationBody,
) -> String {
    let mut body: serde_json::Value =
        serde_json::from_str(&submission_body(prompt, client_pem, reference)).unwrap();
    body.as_object_mut().unwrap().remove("signature");
    let mut signed = prlx_commands::testkit::intake::delegated(
        body,
        reference,
        delegate,
        delegation,
        &prlx_commands::consent::ConsentDomain::default(),
    );
    signed.as_object_mut().unwrap().remove("idempotency_key");
    signed.to_string()
}

/// Topics and a consumer group no earlier run used.
pub fn fresh_intake_config(bootstrap: &str) -> KafkaIntakeConfig {
    let unique = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    KafkaIntakeConfig {
        bootstrap: bootstrap.to_owned(),
        submissions_topic: format!("prlx-test-submissions-{unique}"),
        replies_topic: format!("prlx-test-replies-{unique}"),
        group_id: format!("prlx-test-intake-{unique}"),
        transactional: false,
    }
}
