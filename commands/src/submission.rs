//! Submissions, the same for every door (HTTP `POST /v1/requests` and the Kafka submissions
//! topic): the body, its checks, the core's [`Submission`] built from it, the trip through the
//! actor and the answer computed in the actor's turn.

use prlx_events::crypto::parse_public_key_pem;
use prlx_events::event::{IntakeSource, Priority, Sealed};
use prlx_events::{AccountId, Hash32, RequestId};
use prlx_projections::CoordinatorState;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::actor::{CoordinatorHandle, Intake};
use crate::consent::{consent_of, priority_name, ConsentDomain};
use crate::decide::Submission;
use crate::shell::Outcome;

use crate::error::AppError;

/// How urgent a request is; scales its price (low 80%, standard 100%, high 150%).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PriorityParam {
    Low,
    Standard,
    High,
}

impl From<PriorityParam> for Priority {
    fn from(p: PriorityParam) -> Self {
        match p {
            PriorityParam::Low => Priority::Low,
            PriorityParam::Standard => Priority::Standard,
            PriorityParam::High => Priority::High,
        }
    }
}

impl From<Priority> for PriorityParam {
    fn from(p: Priority) -> Self {
        match p {
            Priority::Low => PriorityParam::Low,
            Priority::Standard => PriorityParam::Standard,
            Priority::High => PriorityParam::High,
        }
    }
}

/// An inference request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SubmitRequestBody {
    /// The workload class: `ai.inference`, or a general-path class (`batch.inference`,
    /// `mapreduce.wordcount`, `render.tiles`, `sweep.epidemic`), whose parameters are the
    /// `prompt`, as JSON text.
    #[schema(example = "ai.inference")]
    pub workload_class: String,
    /// A model reference from the published catalog.
    #[schema(example = "oss-chat-v1")]
    pub model: String,
    /// The hardware tier to run on: at least the model's `min_tier`, at most the catalog's
    /// `max_tier`.
    pub hardware_tier: u8,
    pub priority: PriorityParam,
    /// Seconds the client will wait, within the catalog's deadline bounds.
    pub deadline_seconds: u32,
    /// The credit account charged; it must have the price available.
    pub credit_account: String,
    /// The client's RSA public key (PEM, SPKI) that the result is sealed to.
    pub client_pubkey: String,
    /// The prompt, not empty; for a general-path class, its parameters as JSON text. It is
    /// sealed to the coordinator's storage key on arrival and never stored or logged in
    /// plaintext.
    pub prompt: String,
    /// At most the model's `max_tokens_limit`.
    pub max_tokens: u32,
    /// The lowercase hex SHA-256 (64 characters) of the UTF-8 bytes of `prompt`. The
    /// coordinator hashes the prompt it received and refuses the request with
    /// `payload_hash_mismatch` when they differ.
    #[schema(example = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")]
    pub payload_hash: String,
    /// The request's idempotency key, as an alternative to the `Idempotency-Key` header (over
    /// HTTP the two must agree when both are given; on the Kafka topic it must be the
    /// record's reference, if given). It is part of what is signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The account's consent: its key's signature (65 bytes, 0x-hex) over the EIP-712 typed
    /// data `Submission` of this request under the domain `GET /v1/consent` gives (account,
    /// idempotency key, workload class, model, tier, priority, deadline, max tokens, the
    /// prompt's SHA-256 and the SHA-256 of `client_pubkey`). Without it nothing is charged.
    /// With a `delegation`, the delegate's signature instead.
    pub signature: String,
    /// When a delegate key signs instead of the account's: the account's delegation to it,
    /// with a spending limit and an expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegation: Option<crate::consent::DelegationBody>,
    /// When `signature` covers a batch of submissions signed at once: this one's place in
    /// it (the EIP-712 `SubmissionBatch` of `GET /v1/consent`'s `batch_type`). The door and
    /// the auditor recover each batch's signature once, not once per submission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_batch: Option<crate::consent::ConsentBatchBody>,
}

/// A submission the coordinator accepted and reserved credit for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SubmissionAccepted {
    pub request_id: u64,
    /// Always `accepted`.
    #[schema(example = "accepted")]
    pub status: String,
    /// The price reserved, in credit minor units.
    pub price: u64,
}

/// Checks a submission body as intake does (the same for HTTP and the Kafka submissions
/// topic) and builds the core's [`Submission`] and the payload bytes.
///
/// The signature is checked here against `domain`: the submission carries who made it. The
/// idempotency key (HTTP's `Idempotency-Key`, the Kafka record's reference) is part of what is
/// signed, so it is required: a replayed signature names the same key, and gets the request
/// the first one created.
pub fn submission_from_body(
    mut body: SubmitRequestBody,
    idempotency_key: Option<String>,
    source: IntakeSource,
    domain: &ConsentDomain,
) -> Result<(Submission, Vec<u8>), AppError> {
    if body.credit_account.is_empty() {
        return Err(AppError::malformed("credit_account", "must not be empty"));
    }
    // Nothing to run: a node would refuse it after the credits were reserved and the request
    // dispatched, so it is declined here, before anything is recorded.
    if body.prompt.is_empty() {
        return Err(AppError::malformed("prompt", "must not be empty"));
    }
    let idempotency_key = match (idempotency_key, body.idempotency_key.take()) {
        (Some(door), Some(field)) if door != field => {
            return Err(AppError::malformed(
                "idempotency_key",
                "differs from the Idempotency-Key the request came with",
            ))
        }
        (Some(key), _) | (None, Some(key)) => Some(key),
        (None, None) => None,
    };
    let Some(key) = idempotency_key.as_deref() else {
        return Err(AppError::malformed(
            "Idempotency-Key",
            "required (the header, or the body's idempotency_key): it is part of what the \
             account signs",
        ));
    };
    parse_public_key_pem(&body.client_pubkey).map_err(|e| {
        AppError::malformed(
            "client_pubkey",
            format!("must be an RSA public key in PEM (SPKI): {e}"),
        )
    })?;
    let payload_hash: Hash32 = body.payload_hash.parse().map_err(|_| {
        AppError::malformed(
            "payload_hash",
            "must be the lowercase hex SHA-256 of the prompt's UTF-8 bytes (64 characters)",
        )
    })?;
    let priority: prlx_events::event::Priority = body.priority.into();
    let fields = prlx_chain::consent::SubmissionFields {
        account: &body.credit_account,
        idempotency_key: key,
        workload_class: &body.workload_class,
        model: &body.model,
        hardware_tier: body.hardware_tier,
        priority: priority_name(priority),
        deadline_seconds: body.deadline_seconds,
        max_tokens: body.max_tokens,
        payload_hash: payload_hash.0,
        client_pubkey: &body.client_pubkey,
    };
    let consent = consent_of(
        &fields,
        domain,
        &body.signature,
        body.delegation.as_ref(),
        body.consent_batch.as_ref(),
    )
    .map_err(|(field, why)| AppError::malformed(field, why))?;
    let submission = Submission {
        idempotency_key,
        source,
        workload_class: body.workload_class,
        model: body.model,
        hardware_tier: body.hardware_tier,
        priority,
        deadline_seconds: body.deadline_seconds,
        max_tokens: body.max_tokens,
        // One spelling per account: the address in lowercase, as deposits credit it.
        credit_account: AccountId(body.credit_account.to_ascii_lowercase()),
        client_pubkey: body.client_pubkey,
        payload_hash,
        // Filled in by the actor, which holds the storage key.
        earlier: None,
        plan: None,
        computed_payload_hash: Hash32([0; 32]),
        sealed_payload: Sealed(Vec::new()),
        consent: Some(consent),
        // Set by the shell to the time it records the decision at.
        now: chrono::DateTime::UNIX_EPOCH,
    };
    Ok((submission, body.prompt.into_bytes()))
}

/// Submits through the actor and answers once the outcome is durable: the request accepted
/// (or, for a retry with the same idempotency key, the request the first try created), or
/// the rejection.
pub async fn submit(
    coordinator: &CoordinatorHandle,
    submission: Submission,
    payload: Vec<u8>,
) -> Result<SubmissionAccepted, AppError> {
    submit_enqueued(coordinator, submission, payload)
        .await?
        .await
}

/// As [`submit`], in two steps: this returns once the submission is in the coordinator's
/// queue (so one enqueued after it is decided after it); the future gives the answer.
pub async fn submit_enqueued(
    coordinator: &CoordinatorHandle,
    submission: Submission,
    payload: Vec<u8>,
) -> Result<
    impl std::future::Future<Output = Result<SubmissionAccepted, AppError>> + Send + 'static,
    AppError,
> {
    let answer_of = SubmissionAnswer::of(&submission);
    let intake = Intake::Submission {
        submission: Box::new(submission),
        payload,
    };
    let answer = coordinator
        .enqueue(intake, move |outcome, state| {
            answer_of.answer(outcome, state)
        })
        .await?;
    Ok(async move { answer.await?.1 })
}

/// Computes a submission's answer from what it came to and the state right after it, in the
/// actor's turn (so "which request did this create" is never answered from a later state).
#[derive(Debug, Clone)]
pub struct SubmissionAnswer {
    account: AccountId,
    idempotency_key: Option<String>,
}

impl SubmissionAnswer {
    pub fn of(submission: &Submission) -> Self {
        Self {
            account: submission.credit_account.clone(),
            idempotency_key: submission.idempotency_key.clone(),
        }
    }

    pub fn answer(
        &self,
        outcome: &Outcome,
        state: &CoordinatorState,
    ) -> Result<SubmissionAccepted, AppError> {
        let id = match outcome {
            Outcome::Rejected { rejection, .. } => return Err(rejection.clone().into()),
            // A retry: the key names the request the first try created.
            Outcome::Unchanged => self
                .idempotency_key
                .as_deref()
                .and_then(|key| state.request_for_key(&self.account, key)),
            // Answered in the same turn as the append: the request its key names (a
            // general-path task's sub-tasks take the ids after it), else the newest.
            Outcome::Appended(_) => self
                .idempotency_key
                .as_deref()
                .and_then(|key| state.request_for_key(&self.account, key))
                .or_else(|| state.next_request_id.checked_sub(1).map(RequestId)),
            Outcome::Refused(_) => None,
            Outcome::EarlierRequest { request_id, price } => {
                return Ok(SubmissionAccepted {
                    request_id: request_id.0,
                    status: "accepted".into(),
                    price: *price,
                })
            }
        };
        match id.and_then(|id| state.requests.get(&id).map(|r| (id, r.price))) {
            Some((id, price)) => Ok(SubmissionAccepted {
                request_id: id.0,
                status: "accepted".into(),
                price,
            }),
            None => Err(AppError::internal(format!(
                "submission came to {outcome:?} but no request is recorded for it"
            ))),
        }
    }
}
