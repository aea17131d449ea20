//! Intake decisions: the catalog, credit deposits, submissions.

use prlx_events::event::*;
use prlx_events::{AccountId, Event, RequestId};
use prlx_projections::coordinator::apply_subtasks::is_general;
use prlx_projections::coordinator::delegation::{
    expiry_problem, limit_problem, revoked_problem, signer_problem, ConsentProblem,
};
use prlx_projections::CoordinatorState;

use crate::decide::command::{StakeObservation, Submission, INFERENCE};
use crate::decide::limits;
use crate::decide::pricing::quote;
use crate::decide::rejection::Rejection;

pub(super) fn publish_catalog(c: CatalogPublished) -> Result<Vec<Event>, Rejection> {
    if c.min_deadline_seconds == 0 || c.min_deadline_seconds > c.max_deadline_seconds {
        return Err(Rejection::new(
            RejectionCode::MalformedRequest,
            Some("min_deadline_seconds"),
            "deadline bounds must satisfy 0 < min <= max",
        ));
    }
    if c.queue_timeout_seconds == 0 {
        return Err(Rejection::new(
            RejectionCode::MalformedRequest,
            Some("queue_timeout_seconds"),
            "must be at least 1: every request waits in the queue for a moment",
        ));
    }
    Ok(vec![c.into()])
}

/// A deposit the chain watcher observed: credited `amount_wei / CREDIT_UNIT_WEI` credits,
/// once per (chain, transaction, log index).
pub(super) fn observe_deposit(
    state: &CoordinatorState,
    account: AccountId,
    chain: ChainDeposit,
) -> Result<Vec<Event>, Rejection> {
    // The fold's rule: one spelling of every hash and address.
    use prlx_projections::coordinator::{hex_problem, place_problem};
    if let Some((field, why)) = place_problem(&chain.place)
        .or_else(|| hex_problem("chain.payer", &chain.payer, 20))
        .or_else(|| hex_problem("account", &account.0, 20))
    {
        return Err(Rejection::new(
            RejectionCode::MalformedRequest,
            Some(field),
            why,
        ));
    }
    let credits = chain.credits().ok_or_else(|| {
        Rejection::new(
            RejectionCode::InvalidAmount,
            Some("amount_wei"),
            "not a decimal amount, or more credits than a u64 holds",
        )
    })?;
    if credits == 0 {
        return Err(Rejection::new(
            RejectionCode::InvalidAmount,
            Some("amount_wei"),
            format!("below one credit ({CREDIT_UNIT_WEI} minor units of PRLX)"),
        ));
    }
    let tx_ref = chain.tx_ref();
    deposit(state, account, tx_ref, credits, Some(chain))
}

/// Whether the chain event at `place` was applied already: its key is in the window's, or it
/// is from below the window, where the watcher (reading in chain order) applied everything
/// when it read the block. Observed again, it is a no-op.
pub(super) fn seen_on_chain(state: &CoordinatorState, place: &ChainRef) -> bool {
    place.block_number < state.chain_floor() || state.chain_seen.contains(&place.key())
}

/// A change of a node's bond the chain watcher observed: recorded once per chain event, the
/// node's stake becoming what stays bonded (also for a node not registered yet).
pub(super) fn observe_stake(
    state: &CoordinatorState,
    o: StakeObservation,
) -> Result<Vec<Event>, Rejection> {
    let StakeObservation {
        node_id,
        staker,
        change,
        amount_wei,
        bonded_wei,
        chain,
    } = o;
    if seen_on_chain(state, &chain) {
        return Ok(vec![]);
    }
    let before = state.chain_stakes.get(&node_id);
    let bonded_wei = match (bonded_wei, before) {
        (Some(b), _) => b,
        (None, Some(b)) => b.bonded_wei.clone(),
        (None, None) => {
            return Err(Rejection::new(
                RejectionCode::UnknownNode,
                Some("node_id"),
                "a withdrawal for a node with no bond observed",
            ))
        }
    };
    let stake = wei_to_units(&bonded_wei).ok_or_else(|| {
        Rejection::new(
            RejectionCode::InvalidAmount,
            Some("bonded_wei"),
            "not a decimal amount, or more units than a u64 holds",
        )
    })?;
    let event = ChainStakeChanged {
        node_id,
        staker,
        change,
        amount_wei,
        bonded_wei,
        stake,
        chain,
    };
    if let Some((field, why)) = prlx_projections::coordinator::chain_stake_problem(before, &event) {
        return Err(Rejection::new(
            RejectionCode::InvalidAmount,
            Some(field),
            why,
        ));
    }
    Ok(vec![event.into()])
}

pub(super) fn deposit(
    state: &CoordinatorState,
    account: AccountId,
    tx_ref: String,
    amount: u64,
    chain: Option<ChainDeposit>,
) -> Result<Vec<Event>, Rejection> {
    limits::within("account", &account.0, limits::MAX_NAME_BYTES)?;
    limits::within("tx_ref", &tx_ref, limits::MAX_REFERENCE_BYTES)?;
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
    // The same on-chain transaction observed twice credits once: the repeat is a no-op. One
    // from below the deposit window was credited when the watcher read its block (it reads in
    // chain order), though its reference has left the state: a no-op too.
    let below_window = chain
        .as_ref()
        .is_some_and(|c| c.place.block_number < state.chain_floor());
    if below_window || state.deposits.contains(&tx_ref) {
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
        chain,
    }
    .into()])
}

pub(super) fn submit(state: &CoordinatorState, s: Submission) -> Result<Vec<Event>, Rejection> {
    use RejectionCode::*;
    limits::within(
        "credit_account",
        &s.credit_account.0,
        limits::MAX_NAME_BYTES,
    )?;
    limits::within("model", &s.model, limits::MAX_NAME_BYTES)?;
    limits::within("workload_class", &s.workload_class, limits::MAX_NAME_BYTES)?;
    limits::within("client_pubkey", &s.client_pubkey, limits::MAX_KEY_PEM_BYTES)?;
    if let Some(key) = &s.idempotency_key {
        limits::within("idempotency_key", key, limits::MAX_REFERENCE_BYTES)?;
    }
    // The account's consent: the signature intake checked must be the account's own key, or
    // its delegate's under a delegation the account signed.
    let Some(consent) = &s.consent else {
        return Err(Rejection::new(
            Unauthorized,
            Some("signature"),
            "a submission must carry the account's signature (EIP-712)",
        ));
    };
    if let Some(p) = signer_problem(&s.credit_account, consent) {
        return Err(refused(p));
    }
    if let Some(key) = &s.idempotency_key {
        // The request made under this key: in the state, or (settled and retired) as the
        // shell found it in the request index.
        let earlier = state
            .request_for_key(&s.credit_account, key)
            .and_then(|id| state.summary(id))
            .or_else(|| s.earlier.as_deref().cloned());
        if let Some(earlier) = earlier {
            // A retry asks for the same thing and gets the request already accepted; the
            // same key for something else is a client's mistake, not a retry.
            if let Some(field) = differs_from(&earlier, &s) {
                return Err(Rejection::new(
                    IdempotencyConflict,
                    Some("Idempotency-Key"),
                    format!(
                        "already used by request {} with another {field}",
                        earlier.request_id.0
                    ),
                ));
            }
            return Ok(vec![]);
        }
    }
    // A retry above gets its request whatever became of the delegation since; a new request
    // must be made while it lives.
    let delegation = consent.delegation.as_ref();
    if let Some(p) = delegation.and_then(|d| {
        expiry_problem(d, s.now).or_else(|| revoked_problem(state, &s.credit_account, d))
    }) {
        return Err(refused(p));
    }
    let general = is_general(&s.workload_class);
    if s.workload_class != INFERENCE && !general {
        return Err(Rejection::new(
            UnknownWorkloadClass,
            Some("workload_class"),
            format!(
                "{:?} is not a known workload class (known: {INFERENCE}, {})",
                s.workload_class,
                prlx_workloads::KNOWN_CLASSES.join(", ")
            ),
        ));
    }
    // The model, tier and max_tokens are checked the same for every class: a general task
    // runs on the named model's pool, and its inferences (batch) are bounded by max_tokens.
    let mut price = quote(state, &s.model, s.hardware_tier, s.priority, s.max_tokens)?;
    let mut shares = Vec::new();
    if general {
        (price, shares) = super::general::price(state, &s)?;
    }
    let catalog = state.catalog.as_ref().expect("quote checked the catalog");
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
    if s.payload_hash != s.computed_payload_hash {
        return Err(Rejection::new(
            PayloadHashMismatch,
            Some("payload_hash"),
            "does not match the SHA-256 of the payload bytes received",
        ));
    }
    if let Some(p) = delegation.and_then(|d| limit_problem(state, &s.credit_account, d, price)) {
        return Err(refused(p));
    }
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
    let plan = match (&s.plan, general) {
        (Some(Ok(plan)), true) => Some(super::general::planned(request_id, plan, &shares)),
        _ => None,
    };
    let mut events = vec![
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
            consent: s.consent,
        }
        .into(),
        CreditsReserved {
            account: s.credit_account,
            request_id,
            amount: price,
        }
        .into(),
    ];
    events.extend(plan);
    Ok(events)
}

fn refused(p: ConsentProblem) -> Rejection {
    Rejection::new(p.code, Some(p.field), p.reason)
}

/// The first field in which `s` asks for something else than the request `r` its key created.
fn differs_from(
    r: &prlx_projections::coordinator::RequestSummary,
    s: &Submission,
) -> Option<&'static str> {
    if r.model != s.model {
        Some("model")
    } else if r.hardware_tier != s.hardware_tier {
        Some("hardware_tier")
    } else if r.priority != s.priority {
        Some("priority")
    } else if r.max_tokens != s.max_tokens {
        Some("max_tokens")
    } else if r.deadline_seconds != s.deadline_seconds {
        Some("deadline_seconds")
    } else if r.payload_hash != s.payload_hash {
        Some("payload_hash")
    } else {
        None
    }
}
