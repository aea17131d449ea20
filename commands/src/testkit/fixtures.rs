//! Builders of what the coordinator's tests, benches and golden logs start from: a catalog and
//! its models, node registrations, deposits, accepted requests, a reward policy,
//! submissions, completions and refusals.
//!
//! Each builder fills every field with one plain value, said in its doc. A test that relies on
//! another value says so where it builds the event, with struct update syntax:
//! `CatalogPublished { max_tier: 3, ..catalog(vec![model("chat", Hash32([1; 32]))]) }`.

use chrono::{DateTime, TimeZone, Utc};
use prlx_events::event::{
    CatalogModel, CatalogPublished, CreditsDeposited, CreditsReserved, ExecutionClass,
    IntakeSource, NodeHeartbeat, NodeRegistered, Priority, RefusalReason, RequestAccepted,
    RewardPolicyPublished, Sealed,
};
use prlx_events::{AccountId, Event, Hash32, NodeId, RequestId};

use crate::decide::{Command, Completion, Refusal, SignedHeartbeat, Submission, INFERENCE};

/// The tests' clock: `secs` seconds after 2026-01-01T00:00:00Z, where [`envelopes`] starts
/// recording.
///
/// [`envelopes`]: super::envelopes
pub fn t(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(secs)
}

/// The credit account `ai`: the address of the test account of that name
/// ([`super::accounts`]), whose key signs [`submission`].
pub fn account() -> AccountId {
    super::accounts::account("ai")
}

/// Node `n`: the id whose 32 bytes are all `n`.
pub fn node(n: u8) -> NodeId {
    NodeId(Hash32([n; 32]))
}

/// A model `name` with the file `sha256`: any tier runs it, a request costs 10 plus 1 a
/// token, of at most 100 tokens, in a context of 4096 tokens.
pub fn model(name: &str, sha256: Hash32) -> CatalogModel {
    CatalogModel {
        model: name.into(),
        sha256,
        min_tier: 1,
        base_price: 10,
        per_token_price: 1,
        max_tokens_limit: 100,
        context_length: 4096,
        tier_floors_tps: Vec::new(),
    }
}

/// A catalog of `models`: tiers 1 to 5, deadlines of 1 to 600 s, and for the rest what a
/// catalog file that names none of it gets (reputation weighs 100%, 3 attempts, the default
/// validation policy, nodes lapse after 30 s without a heartbeat, a request waits in the
/// queue at most 600 s after its acceptance).
pub fn catalog(models: Vec<CatalogModel>) -> CatalogPublished {
    CatalogPublished {
        models,
        max_tier: 5,
        min_deadline_seconds: 1,
        max_deadline_seconds: 600,
        reputation_weight_pct: 100,
        max_attempts: 3,
        validation: Default::default(),
        node_timeout_seconds: 30,
        queue_timeout_seconds: 600,
    }
}

/// A CPU execution class (driver `none`) of `runtime`, in normal form when `runtime` is (an
/// `onnxruntime-` version).
pub fn cpu(runtime: &str) -> ExecutionClass {
    ExecutionClass {
        device: "cpu".into(),
        driver: "none".into(),
        runtime: runtime.into(),
    }
}

/// The registration of `node_id` with `public_key_pem`: tier 1, serving `chat` (no model
/// hash reported), one slot, a stake of 100, on `cpu("onnxruntime-1.32")`.
pub fn registration(node_id: NodeId, public_key_pem: String) -> NodeRegistered {
    NodeRegistered {
        node_id,
        public_key_pem,
        hardware_tier: 1,
        models: vec!["chat".into()],
        slots: 1,
        stake: 100,
        execution_class: cpu("onnxruntime-1.32"),
        model_hashes: Default::default(),
        operator: None,
        signed_at: None,
        signature: None,
    }
}

/// `n` reporting the file every test catalog gives `chat` (`[1; 32]`): a registration decided
/// under a catalog must report the catalog's file for each model it serves.
pub fn with_chat_file(n: NodeRegistered) -> NodeRegistered {
    NodeRegistered {
        model_hashes: [("chat".to_owned(), Hash32([1; 32]))].into(),
        ..n
    }
}

/// The [`registration`] of [`node`]`(n)` with the placeholder key `key-{n}` (the fold does not
/// parse keys; `decide` does, so a registration decided needs a real one).
pub fn registered(n: u8) -> NodeRegistered {
    registration(node(n), format!("key-{n}"))
}

/// `amount` deposited on [`account`] by transaction `t`.
pub fn deposited(amount: u64) -> CreditsDeposited {
    CreditsDeposited {
        account: account(),
        tx_ref: "t".into(),
        amount,
        chain: None,
    }
}

/// Request `id` as accepted over HTTP without an idempotency key: `chat` at tier 1, standard
/// priority, a 30 s deadline, 5 tokens, charged to [`account`] at a price of 15, with a
/// placeholder payload hash and sealed payload.
pub fn request_accepted(id: u64) -> RequestAccepted {
    RequestAccepted {
        request_id: RequestId(id),
        idempotency_key: None,
        source: IntakeSource::Http,
        workload_class: INFERENCE.into(),
        model: "chat".into(),
        hardware_tier: 1,
        priority: Priority::Standard,
        deadline_seconds: 30,
        max_tokens: 5,
        credit_account: account(),
        client_pubkey: String::new(),
        payload_hash: Hash32([9; 32]),
        sealed_payload: Sealed(vec![7; 8]),
        price: 15,
        consent: None,
    }
}

/// `accepted` followed by the reservation of its price on its account, as `decide` records
/// an accepted submission.
pub fn accepted_and_reserved(accepted: RequestAccepted) -> Vec<Event> {
    let reserved = CreditsReserved {
        account: accepted.credit_account.clone(),
        request_id: accepted.request_id,
        amount: accepted.price,
    };
    vec![accepted.into(), reserved.into()]
}

/// Ten-minute epochs of ten one-minute slots; a supply of 1_000_000 whose 25% bucket
/// (250_000) unlocks over 3 epochs; 85/10/5; tier t weighs t; a 900 s cooldown.
pub fn reward_policy() -> RewardPolicyPublished {
    RewardPolicyPublished {
        epoch_seconds: 600,
        uptime_slot_seconds: 60,
        total_supply: 1_000_000,
        unlock_epochs: 3,
        unstake_cooldown_seconds: 900,
        ..RewardPolicyPublished::default()
    }
}

/// A submission of `payload` for `model` over HTTP without an idempotency key: tier 1,
/// standard priority, a 60 s deadline, 16 tokens, charged to [`account`], no client key, the
/// payload's hash as sent and as computed, nothing sealed. The shell's
/// `Coordinator::submission` replaces the computed hash and the sealed payload with its own.
pub fn submission(model: &str, payload: &[u8]) -> Submission {
    unsigned_submission(model, payload).signed()
}

/// [`submission`] before its account signs it (no consent).
pub fn unsigned_submission(model: &str, payload: &[u8]) -> Submission {
    Submission {
        idempotency_key: None,
        source: IntakeSource::Http,
        workload_class: INFERENCE.into(),
        model: model.into(),
        hardware_tier: 1,
        priority: Priority::Standard,
        deadline_seconds: 60,
        max_tokens: 16,
        credit_account: account(),
        client_pubkey: String::new(),
        payload_hash: Hash32::of(payload),
        earlier: None,
        plan: None,
        computed_payload_hash: Hash32::of(payload),
        sealed_payload: Sealed(Vec::new()),
        consent: None,
        now: t(0),
    }
}

impl Submission {
    /// This submission with a consent naming its account as the signer but no real
    /// signature: `decide` checks only who signed (the door recovers the key, the auditor
    /// checks it again), so a simulation of the core that never meets either can skip the
    /// ~1 ms of secp256k1 a debug build spends per request. Never for a log an auditor reads.
    pub fn consented_unchecked(mut self) -> Submission {
        self.consent = Some(prlx_events::event::Consent {
            signer: self.credit_account.0.clone(),
            signature: String::from("0x-unchecked"),
            chain_id: 0,
            verifying_contract: String::new(),
            delegation: None,
            batch: None,
        });
        self
    }

    /// This submission signed by the test key named `delegate`, under `delegation` (see
    /// [`super::accounts::delegation`]) and the default domain, as a delegate's door would
    /// record it: both signers recovered.
    pub fn delegated(
        mut self,
        delegate: &str,
        delegation: &crate::consent::DelegationBody,
    ) -> Submission {
        crate::consent::sign_submission_as_delegate(
            &mut self,
            &super::accounts::key(delegate),
            delegation,
            &crate::consent::ConsentDomain::default(),
        )
        .unwrap_or_else(|(field, why)| panic!("{field}: {why}"));
        self
    }

    /// This submission signed by its account's test key ([`super::accounts`]), under the
    /// default domain: a test that changes a signed field signs again.
    pub fn signed(mut self) -> Submission {
        let key = super::accounts::key_of_address(&self.credit_account.0);
        if let Some(key) = key {
            crate::consent::sign_submission(
                &mut self,
                &key,
                &crate::consent::ConsentDomain::default(),
            );
        }
        self
    }
}

/// `node`'s report of `attempt` of `request`, its commitment checked: placeholder seals, PoE
/// (`[3; 32]`), ciphertext hash (`[6; 32]`) and result hash (`[5; 32]`), 3 tokens, no
/// sampling seed, decided at `t(0)` (the dispatch's time in these tests, so before its
/// deadline).
pub fn completion(request: RequestId, node: NodeId, attempt: u32) -> Completion {
    Completion {
        request,
        node,
        attempt,
        sealed_result: Sealed(vec![1]),
        poe: Hash32([3; 32]),
        signature: Sealed(vec![2]),
        ciphertext_hash: Hash32([6; 32]),
        token_count: 3,
        commitment: Ok(()),
        result_hash: Hash32([5; 32]),
        sealed_for_client: Sealed(vec![4]),
        seed: None,
        earlier: None,
        now: t(0),
    }
}

/// The reason of [`refusal`]: a prompt of 4092 tokens plus the 5 tokens of
/// [`request_accepted`] exceed the 4096-token context of [`model`].
pub fn context_exceeded() -> RefusalReason {
    RefusalReason::ContextExceeded {
        prompt_tokens: 4092,
        max_tokens: 5,
        context: 4096,
    }
}

/// `node`'s refusal of `attempt` of `request` for [`context_exceeded`], with a placeholder
/// signature (the shell verifies it before `decide`), decided at `t(0)`, no result to release.
pub fn refusal(request: RequestId, node: NodeId, attempt: u32) -> Refusal {
    Refusal {
        request,
        node,
        attempt,
        reason: context_exceeded(),
        signature: Sealed(vec![6]),
        now: t(0),
        release: None,
    }
}

/// Node `node`'s heartbeat signed and recorded at `at`. The signature is a placeholder: the
/// fold requires one and the auditor verifies it against the node's key, which the decision
/// tests do not have.
pub fn heartbeat(node: NodeId, at: DateTime<Utc>) -> Command {
    Command::Heartbeat {
        node_id: node,
        signed: SignedHeartbeat {
            at: at.timestamp(),
            signature: vec![7; 4],
        },
        now: at,
    }
}

/// The event [`heartbeat`] records.
pub fn heartbeat_recorded(node: NodeId, at: DateTime<Utc>) -> NodeHeartbeat {
    NodeHeartbeat {
        node_id: node,
        at: Some(at.timestamp()),
        signature: Some(Sealed(vec![7; 4])),
    }
}

/// The place on chain 31337 of the `i`-th event a test observes: block `i`, at one contract.
pub fn chain_place(i: u64) -> prlx_events::event::ChainRef {
    prlx_events::event::ChainRef {
        chain_id: 31337,
        contract: format!("0x{}", "77".repeat(20)),
        block_number: i,
        block_hash: format!("0x{i:064x}"),
        tx_hash: format!("0x{:064x}", i + 1000),
        log_index: 0,
    }
}
