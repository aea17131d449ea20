//! `decide(&state, command) -> Result<events, Rejection>`: the coordinator's pure core.
//!
//! Everything from outside (the payload's computed hash, the sealed payload, the time) is
//! looked up by the shell and put into the command, so it lands in the events and replay needs
//! no clock. A rejection is the request being wrong (a 4xx), never a failure of ours.

use prlx_events::event::*;
use prlx_events::{AccountId, Event, Hash32, NodeId, RequestId};
use prlx_projections::CoordinatorState;

/// The only workload class of the live path. General-path classes arrive with their issue.
pub const INFERENCE: &str = "ai.inference";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    PublishCatalog(CatalogPublished),
    DepositCredits {
        account: AccountId,
        tx_ref: String,
        amount: u64,
    },
    SubmitRequest(Box<Submission>),
    RegisterNode(Box<NodeRegistered>),
    Heartbeat {
        node_id: NodeId,
    },
}

/// A submission whose JSON already parsed (the shell rejects malformed bodies, naming the
/// field) and whose payload the shell hashed and sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    pub idempotency_key: Option<String>,
    pub source: IntakeSource,
    pub workload_class: String,
    pub model: String,
    pub hardware_tier: u8,
    pub priority: Priority,
    pub deadline_seconds: u32,
    pub max_tokens: u32,
    pub credit_account: AccountId,
    pub client_pubkey: String,
    /// The hash the client sent.
    pub payload_hash: Hash32,
    /// The hash of the payload bytes the coordinator received.
    pub computed_payload_hash: Hash32,
    pub sealed_payload: Sealed,
}

/// Why a command was refused: a code, the field at fault, and words for a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}{}: {message}", field.as_deref().map(|f| format!(" ({f})")).unwrap_or_default())]
pub struct Rejection {
    pub code: RejectionCode,
    pub field: Option<String>,
    pub message: String,
}

impl Rejection {
    pub fn new(code: RejectionCode, field: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            code,
            field: field.map(str::to_owned),
            message: message.into(),
        }
    }

    /// The audit record of this rejection. It carries no request id: none was allocated.
    pub fn to_event(&self, idempotency_key: Option<String>, source: IntakeSource) -> Event {
        RequestRejected {
            idempotency_key,
            source,
            code: self.code,
            field: self.field.clone(),
            message: self.message.clone(),
        }
        .into()
    }
}

/// `task_price`: `(base_price + per_token_price * max_tokens) * priority%`, rounded up.
/// `None` when it does not fit in u64.
pub fn task_price(model: &CatalogModel, priority: Priority, max_tokens: u32) -> Option<u64> {
    let percent: u64 = match priority {
        Priority::Low => 80,
        Priority::Standard => 100,
        Priority::High => 150,
    };
    let base = model
        .per_token_price
        .checked_mul(u64::from(max_tokens))?
        .checked_add(model.base_price)?;
    Some(base.checked_mul(percent)?.div_ceil(100))
}

pub fn decide(state: &CoordinatorState, command: Command) -> Result<Vec<Event>, Rejection> {
    match command {
        Command::PublishCatalog(c) => {
            if c.min_deadline_seconds == 0 || c.min_deadline_seconds > c.max_deadline_seconds {
                return Err(Rejection::new(
                    RejectionCode::MalformedRequest,
                    Some("min_deadline_seconds"),
                    "deadline bounds must satisfy 0 < min <= max",
                ));
            }
            Ok(vec![c.into()])
        }
        Command::DepositCredits {
            account,
            tx_ref,
            amount,
        } => {
            if tx_ref.is_empty() {
                return Err(Rejection::new(
                    RejectionCode::MalformedRequest,
                    Some("tx_ref"),
                    "must not be empty",
                ));
            }
            if amount == 0 {
                return Err(Rejection::new(
                    RejectionCode::InvalidAmount,
                    Some("amount"),
                    "must be positive",
                ));
            }
            // The same on-chain transaction observed twice credits once: the repeat is a no-op.
            if state.deposits.contains(&tx_ref) {
                return Ok(vec![]);
            }
            let balance = state.accounts.get(&account).map_or(0, |a| a.balance);
            if balance.checked_add(amount).is_none() {
                return Err(Rejection::new(
                    RejectionCode::InvalidAmount,
                    Some("amount"),
                    "balance would overflow",
                ));
            }
            Ok(vec![CreditsDeposited {
                account,
                tx_ref,
                amount,
            }
            .into()])
        }
        Command::SubmitRequest(s) => submit(state, *s),
        Command::RegisterNode(n) => {
            if let Some(existing) = state.nodes.get(&n.node_id) {
                // Registering again with the same facts is a retry; with other facts a conflict.
                let same = existing.hardware_tier == n.hardware_tier
                    && existing.slots == n.slots
                    && existing.execution_class == n.execution_class
                    && existing
                        .models
                        .iter()
                        .eq(n.models.iter().collect::<std::collections::BTreeSet<_>>());
                return if same {
                    Ok(vec![])
                } else {
                    Err(Rejection::new(
                        RejectionCode::NodeAlreadyRegistered,
                        Some("public_key"),
                        format!("{} is registered with other parameters", n.node_id),
                    ))
                };
            }
            if n.slots == 0 {
                return Err(Rejection::new(
                    RejectionCode::MalformedRequest,
                    Some("slots"),
                    "must be at least 1",
                ));
            }
            if n.models.is_empty() {
                return Err(Rejection::new(
                    RejectionCode::MalformedRequest,
                    Some("models"),
                    "must name a model",
                ));
            }
            if let Some(max) = state.catalog.as_ref().map(|c| c.max_tier) {
                if n.hardware_tier == 0 || n.hardware_tier > max {
                    return Err(Rejection::new(
                        RejectionCode::TierOutOfRange,
                        Some("hardware_tier"),
                        format!("must be 1..={max}"),
                    ));
                }
            }
            Ok(vec![Event::NodeRegistered(*n)])
        }
        Command::Heartbeat { node_id } => {
            if !state.nodes.contains_key(&node_id) {
                return Err(Rejection::new(
                    RejectionCode::UnknownNode,
                    Some("node_id"),
                    format!("{node_id} is not registered"),
                ));
            }
            Ok(vec![NodeHeartbeat { node_id }.into()])
        }
    }
}

fn submit(state: &CoordinatorState, s: Submission) -> Result<Vec<Event>, Rejection> {
    use RejectionCode::*;
    if let Some(key) = &s.idempotency_key {
        if state.request_for_key(&s.credit_account, key).is_some() {
            // A retry: nothing new; the shell answers with the request already accepted.
            return Ok(vec![]);
        }
    }
    if s.workload_class != INFERENCE {
        return Err(Rejection::new(
            UnknownWorkloadClass,
            Some("workload_class"),
            format!(
                "{:?} is not a known workload class (known: {INFERENCE})",
                s.workload_class
            ),
        ));
    }
    let catalog = state.catalog.as_ref().ok_or_else(|| {
        Rejection::new(
            UnknownModel,
            Some("model"),
            "no model catalog has been published",
        )
    })?;
    let model = state.catalog_model(&s.model).ok_or_else(|| {
        Rejection::new(
            UnknownModel,
            Some("model"),
            format!("{:?} is not in the catalog", s.model),
        )
    })?;
    if s.hardware_tier < model.min_tier || s.hardware_tier > catalog.max_tier {
        return Err(Rejection::new(
            TierOutOfRange,
            Some("hardware_tier"),
            format!(
                "{} needs a tier in {}..={}",
                s.model, model.min_tier, catalog.max_tier
            ),
        ));
    }
    if s.deadline_seconds < catalog.min_deadline_seconds
        || s.deadline_seconds > catalog.max_deadline_seconds
    {
        return Err(Rejection::new(
            DeadlineOutOfRange,
            Some("deadline_seconds"),
            format!(
                "must be {}..={}",
                catalog.min_deadline_seconds, catalog.max_deadline_seconds
            ),
        ));
    }
    if s.max_tokens == 0 || s.max_tokens > model.max_tokens_limit {
        return Err(Rejection::new(
            MalformedRequest,
            Some("max_tokens"),
            format!("must be 1..={}", model.max_tokens_limit),
        ));
    }
    if s.payload_hash != s.computed_payload_hash {
        return Err(Rejection::new(
            PayloadHashMismatch,
            Some("payload_hash"),
            "does not match the SHA-256 of the payload bytes received",
        ));
    }
    let price = task_price(model, s.priority, s.max_tokens)
        .ok_or_else(|| Rejection::new(MalformedRequest, Some("max_tokens"), "price overflows"))?;
    let available = state
        .accounts
        .get(&s.credit_account)
        .map_or(0, |a| a.available());
    if price > available {
        return Err(Rejection::new(
            InsufficientCredit,
            Some("credit_account"),
            format!(
                "price {price} exceeds the {available} available to {}",
                s.credit_account
            ),
        ));
    }
    let request_id = RequestId(state.next_request_id);
    Ok(vec![
        RequestAccepted {
            request_id,
            idempotency_key: s.idempotency_key,
            source: s.source,
            workload_class: s.workload_class,
            model: s.model,
            hardware_tier: s.hardware_tier,
            priority: s.priority,
            deadline_seconds: s.deadline_seconds,
            max_tokens: s.max_tokens,
            credit_account: s.credit_account.clone(),
            client_pubkey: s.client_pubkey,
            payload_hash: s.payload_hash,
            sealed_payload: s.sealed_payload,
            price,
        }
        .into(),
        CreditsReserved {
            account: s.credit_account,
            request_id,
            amount: price,
        }
        .into(),
    ])
}
