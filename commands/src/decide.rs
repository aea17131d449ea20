//! `decide(&state, command) -> Result<events, Rejection>`: the coordinator's pure core.
//!
//! Everything from outside (the payload's computed hash, the sealed payload, the time) is
//! looked up by the shell and put into the command, so it lands in the events and replay needs
//! no clock. A rejection is the request being wrong (a 4xx), never a failure of ours.

use chrono::{DateTime, Utc};
use prlx_events::event::*;
use prlx_events::{AccountId, Event, Hash32, NodeId, RequestId, TaskId};
use prlx_projections::coordinator::RequestView;
use prlx_projections::scheduler::{next_assignment, Choice};
use prlx_projections::validation::{compare, peer_exists, sampled, standing_bp, Comparison};
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
    /// Record the scheduler's next decision and its dispatch. The shell computed `choice` with
    /// [`next_assignment`] and sealed the work for that node; decide checks both against the
    /// state, so a stale or tampered choice is refused.
    Dispatch(Box<Dispatch>),
    /// The timer service saw the deadline of a running dispatch pass.
    ExpireDeadline {
        request: RequestId,
        node: NodeId,
        attempt: u32,
        now: DateTime<Utc>,
        /// The request's one verified result sealed to the client, when it has one (a replica
        /// expired): released unconfirmed if no other replica can be found.
        release: Option<Sealed>,
    },
    /// A node returned a result; the shell opened it and checked the commitment and signature.
    CompleteTask(Box<Completion>),
    /// Put the coordinator's signing key on the log (at start, when it is not there yet).
    PublishCoordinatorKey {
        public_key_pem: String,
    },
    /// Record a session grant the shell made for a node.
    IssueSession(Box<SessionKeyIssued>),
    /// The timer service saw a node's heartbeats stop for the catalog's timeout.
    LapseNode {
        node_id: NodeId,
        now: DateTime<Utc>,
    },
    /// Open sampling epoch `epoch` with the hash of its secret seed.
    CommitSamplingSeed {
        epoch: u64,
        seed_hash: Hash32,
        sealed_seed: Sealed,
    },
    /// Close the open sampling epoch by revealing its seed.
    RevealSamplingSeed {
        epoch: u64,
        seed: Hash32,
    },
    /// Staking, reward mode, reward epochs: see [`crate::settle`].
    Settlement(crate::settle::SettlementCommand),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatch {
    pub choice: Choice,
    pub sealed_work: Sealed,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub request: RequestId,
    pub node: NodeId,
    pub attempt: u32,
    pub sealed_result: Sealed,
    pub poe: Hash32,
    pub signature: Sealed,
    pub token_count: u32,
    /// Whether the PoE recomputed from the opened result matches, and the signature verifies.
    /// `Err` says which check failed.
    pub commitment: Result<(), String>,
    /// SHA-256 of the canonical result bytes (meaningful when the commitment checked).
    pub result_hash: Hash32,
    /// The result this command would release, sealed to the client's key: this one when its
    /// commitment checked, else the request's one earlier verified result, if any.
    pub sealed_for_client: Sealed,
    /// The open sampling epoch's seed, opened by the shell: the draw is made here.
    pub seed: Option<Hash32>,
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

/// The price of a request for `model` at `tier` and `priority` with `max_tokens`, with the
/// same checks intake applies (`GET /v1/quote` and submission share it).
pub fn quote(
    state: &CoordinatorState,
    model: &str,
    tier: u8,
    priority: Priority,
    max_tokens: u32,
) -> Result<u64, Rejection> {
    use RejectionCode::*;
    let catalog = state.catalog.as_ref().ok_or_else(|| {
        Rejection::new(
            UnknownModel,
            Some("model"),
            "no model catalog has been published",
        )
    })?;
    let m = state.catalog_model(model).ok_or_else(|| {
        Rejection::new(
            UnknownModel,
            Some("model"),
            format!("{model:?} is not in the catalog"),
        )
    })?;
    if tier < m.min_tier || tier > catalog.max_tier {
        return Err(Rejection::new(
            TierOutOfRange,
            Some("hardware_tier"),
            format!(
                "{model} needs a tier in {}..={}",
                m.min_tier, catalog.max_tier
            ),
        ));
    }
    if max_tokens == 0 || max_tokens > m.max_tokens_limit {
        return Err(Rejection::new(
            MalformedRequest,
            Some("max_tokens"),
            format!("must be 1..={}", m.max_tokens_limit),
        ));
    }
    task_price(m, priority, max_tokens)
        .ok_or_else(|| Rejection::new(MalformedRequest, Some("max_tokens"), "price overflows"))
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
            // The id is the key's fingerprint: a registration cannot claim another node's id,
            // and every node on the log has a key that session grants can be wrapped to.
            match prlx_events::crypto::parse_public_key_pem(&n.public_key_pem) {
                Ok(key) if prlx_events::crypto::node_id_of(&key) == n.node_id => {}
                Ok(_) => {
                    return Err(Rejection::new(
                        RejectionCode::MalformedRequest,
                        Some("node_id"),
                        "is not the SHA-256 of the public key's SPKI DER",
                    ))
                }
                Err(e) => {
                    return Err(Rejection::new(
                        RejectionCode::MalformedRequest,
                        Some("public_key_pem"),
                        format!("must be an RSA public key in PEM (SPKI): {e}"),
                    ))
                }
            }
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
                        Some("public_key_pem"),
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
        Command::Dispatch(d) => dispatch(state, *d),
        Command::ExpireDeadline {
            request,
            node,
            attempt,
            now,
            release,
        } => expire(state, request, node, attempt, now, release),
        Command::LapseNode { node_id, now } => {
            let node = state.nodes.get(&node_id).ok_or_else(|| {
                Rejection::new(
                    RejectionCode::UnknownNode,
                    Some("node_id"),
                    format!("{node_id} is not registered"),
                )
            })?;
            if node.lapsed {
                return Ok(vec![]);
            }
            if now < node.last_heartbeat + state.node_timeout() {
                return Err(internal(
                    "now",
                    format!(
                        "{node_id} heartbeated at {}, within the timeout",
                        node.last_heartbeat
                    ),
                ));
            }
            Ok(vec![NodeLapsed {
                node_id,
                last_heartbeat: node.last_heartbeat,
            }
            .into()])
        }
        Command::CommitSamplingSeed {
            epoch,
            seed_hash,
            sealed_seed,
        } => {
            if state.sampling.current.is_some() || epoch != state.sampling.last_epoch + 1 {
                return Err(internal(
                    "epoch",
                    format!(
                        "epoch {epoch} cannot open: last {}, open {:?}",
                        state.sampling.last_epoch,
                        state.sampling.current.as_ref().map(|e| e.epoch)
                    ),
                ));
            }
            Ok(vec![SamplingSeedCommitted {
                epoch,
                seed_hash,
                sealed_seed: Some(sealed_seed),
            }
            .into()])
        }
        Command::RevealSamplingSeed { epoch, seed } => match &state.sampling.current {
            Some(open) if open.epoch == epoch && Hash32::of(&seed.0) == open.seed_hash => {
                Ok(vec![SamplingSeedRevealed { epoch, seed }.into()])
            }
            _ => Err(internal(
                "seed",
                format!("is not the committed seed of an open epoch {epoch}"),
            )),
        },
        Command::CompleteTask(c) => complete(state, *c),
        Command::PublishCoordinatorKey { public_key_pem } => {
            if state.coordinator_key.as_deref() == Some(public_key_pem.as_str()) {
                return Ok(vec![]);
            }
            Ok(vec![CoordinatorKeyPublished { public_key_pem }.into()])
        }
        Command::Settlement(c) => crate::settle::decide_settlement(state, c),
        Command::IssueSession(k) => {
            let node = state.nodes.get(&k.node_id).ok_or_else(|| {
                Rejection::new(
                    RejectionCode::UnknownNode,
                    Some("node_id"),
                    format!("{} is not registered", k.node_id),
                )
            })?;
            if node
                .session
                .as_ref()
                .is_some_and(|(epoch, _)| *epoch >= k.epoch)
            {
                return Ok(vec![]);
            }
            Ok(vec![Event::SessionKeyIssued(*k)])
        }
    }
}

fn internal(field: &str, message: impl Into<String>) -> Rejection {
    Rejection::new(RejectionCode::MalformedRequest, Some(field), message)
}

fn dispatch(state: &CoordinatorState, d: Dispatch) -> Result<Vec<Event>, Rejection> {
    let expected = next_assignment(state);
    if expected.as_ref() != Some(&d.choice) {
        return Err(internal(
            "choice",
            format!(
                "stale scheduling choice {:?}; the state gives {expected:?}",
                d.choice
            ),
        ));
    }
    let c = d.choice;
    let req = &state.requests[&c.request];
    let task_id = TaskId::whole(c.request);
    Ok(vec![
        RequestScheduled {
            task_id,
            attempt: c.attempt,
            node_id: c.node,
            candidates_considered: c.candidates_considered,
            ranked: c.ranked,
        }
        .into(),
        TaskDispatched {
            task_id,
            attempt: c.attempt,
            node_id: c.node,
            sealed_work: d.sealed_work,
            deadline_at: d.now + chrono::Duration::seconds(i64::from(req.deadline_seconds)),
        }
        .into(),
    ])
}

/// Events that end a request that will not be served: the failure and the full refund.
fn give_up(state: &CoordinatorState, request: RequestId, reason: String) -> Vec<Event> {
    let req = &state.requests[&request];
    let mut events: Vec<Event> = vec![RequestFailed {
        request_id: request,
        reason,
    }
    .into()];
    if req.reserved > 0 {
        events.push(
            CreditsRefunded {
                account: req.account.clone(),
                request_id: request,
                amount: req.reserved,
            }
            .into(),
        );
    }
    events
}

fn expire(
    state: &CoordinatorState,
    request: RequestId,
    node: NodeId,
    attempt: u32,
    now: DateTime<Utc>,
    release: Option<Sealed>,
) -> Result<Vec<Event>, Rejection> {
    let req = state
        .requests
        .get(&request)
        .ok_or_else(|| internal("request", format!("unknown request {request}")))?;
    let deadline = match &req.running {
        Some(a) if a.node == node && a.attempt == attempt => a.deadline_at,
        _ => return Ok(vec![]), // already returned or expired: nothing to do
    };
    match deadline {
        Some(at) if now >= at => {}
        _ => {
            return Err(internal(
                "now",
                format!("deadline {deadline:?} has not passed at {now}"),
            ))
        }
    }
    let task_id = TaskId::whole(request);
    let mut events: Vec<Event> = vec![DeadlineExpired {
        task_id,
        attempt,
        node_id: node,
    }
    .into()];
    events.extend(after_failure(state, req, request, release));
    Ok(events)
}

/// What follows a failed dispatch (expired, or a result that did not check). Before a
/// verified result: give up after `max_attempts` failures. While validating: resolve with
/// what is in hand if no untried peer of the class is left, else the fold re-queues.
fn after_failure(
    state: &CoordinatorState,
    req: &RequestView,
    request: RequestId,
    release: Option<Sealed>,
) -> Vec<Event> {
    if req.results.is_empty() {
        if req.failures + 1 >= state.max_attempts() {
            return give_up(
                state,
                request,
                format!("no valid result after {} dispatch attempts", req.attempts),
            );
        }
        return vec![];
    }
    let class = req
        .replica_class
        .as_ref()
        .expect("results before validation imply sampled");
    if peer_exists(state, req, class) {
        return vec![];
    }
    without_peer(state, req, request, release.unwrap_or(Sealed(Vec::new())))
}

/// Validation that needs a replica no node can provide: one result is released
/// unconfirmed; two that disagree have no majority (both flagged, the request fails).
fn without_peer(
    state: &CoordinatorState,
    req: &RequestView,
    request: RequestId,
    release: Sealed,
) -> Vec<Event> {
    let task_id = TaskId::whole(request);
    let class = req.replica_class.as_ref().expect("sampled");
    match req.results.as_slice() {
        [only] => {
            let mut events: Vec<Event> = vec![ValidationResolved {
                task_id,
                verdict: Verdict::Unconfirmed {
                    reason: format!(
                        "no untried node of execution class {}/{}/{} serves {} at tier {}+",
                        class.device, class.driver, class.runtime, req.model, req.hardware_tier
                    ),
                },
                result_hash: Some(only.result_hash),
            }
            .into()];
            events.extend(release_result(req, request, release, only.poe, only.node));
            events
        }
        _ => {
            let parties: Vec<NodeId> = req.results.iter().map(|r| r.node).collect();
            let mut events: Vec<Event> = vec![ValidationResolved {
                task_id,
                verdict: Verdict::NoMajority {
                    parties: parties.clone(),
                },
                result_hash: None,
            }
            .into()];
            events.extend(review_flags(
                state,
                task_id,
                &parties,
                "no tie-breaking peer",
            ));
            events.extend(give_up(
                state,
                request,
                "replicas disagree and no majority can be formed".into(),
            ));
            events
        }
    }
}

/// Returns a result to the client and settles the request's credit.
fn release_result(
    req: &RequestView,
    request: RequestId,
    sealed_for_client: Sealed,
    poe: Hash32,
    node: NodeId,
) -> Vec<Event> {
    let mut events: Vec<Event> = vec![ResultReturned {
        request_id: request,
        sealed_for_client,
        poe,
        node_id: node,
    }
    .into()];
    let charge = req.price.min(req.reserved);
    events.push(
        CreditsCharged {
            account: req.account.clone(),
            request_id: request,
            amount: charge,
        }
        .into(),
    );
    if req.reserved > charge {
        events.push(
            CreditsRefunded {
                account: req.account.clone(),
                request_id: request,
                amount: req.reserved - charge,
            }
            .into(),
        );
    }
    events
}

/// How a node's validation history moves in one decision: (valid, invalid, disagreements).
type HistoryDelta = (u64, u64, u64);

/// `StandingChanged` for a node whose history moves by `delta`, and its removal from the
/// pool when standing falls under the floor. Stake is untouched: standing never seizes.
fn standing_events(state: &CoordinatorState, node: NodeId, delta: HistoryDelta) -> Vec<Event> {
    let Some(n) = state.nodes.get(&node) else {
        return vec![];
    };
    let policy = state.validation_policy();
    let (valid, invalid, disagreements) = (
        n.valid + delta.0,
        n.invalid + delta.1,
        n.disagreements + delta.2,
    );
    let bp = standing_bp(&policy, valid, invalid, disagreements);
    let mut events: Vec<Event> = vec![StandingChanged {
        node_id: node,
        valid,
        invalid,
        disagreements,
        standing_bp: bp,
    }
    .into()];
    if bp < policy.removal_below_bp && n.in_pool {
        events.push(
            NodeRemovedFromPool {
                node_id: node,
                reason: format!(
                    "standing {bp} bp is below {} bp (valid {valid}, invalid {invalid}, disagreements {disagreements})",
                    policy.removal_below_bp
                ),
            }
            .into(),
        );
    }
    events
}

/// Flags every party of a comparison without a majority for review.
fn review_flags(
    state: &CoordinatorState,
    task_id: TaskId,
    parties: &[NodeId],
    why: &str,
) -> Vec<Event> {
    let mut events = Vec::new();
    for &p in parties {
        events.push(
            NodeFlagged {
                node_id: p,
                task_id: Some(task_id),
                reason: format!("review: replicas disagree ({why})"),
            }
            .into(),
        );
        events.extend(standing_events(state, p, (0, 0, 1)));
    }
    events
}

fn complete(state: &CoordinatorState, c: Completion) -> Result<Vec<Event>, Rejection> {
    let req = state
        .requests
        .get(&c.request)
        .ok_or_else(|| internal("request", format!("unknown request {}", c.request)))?;
    let task_id = TaskId::whole(c.request);
    let running = matches!(&req.running, Some(a) if a.node == c.node && a.attempt == c.attempt && a.deadline_at.is_some());
    if !running {
        // A result for an attempt that expired (or a request already settled): recorded, unused.
        if req.tried.contains(&c.node) && c.attempt < req.attempts {
            return Ok(vec![LateResultDiscarded {
                task_id,
                attempt: c.attempt,
                node_id: c.node,
            }
            .into()]);
        }
        return Err(Rejection::new(
            RejectionCode::UnknownNode,
            Some("node_id"),
            format!("{} has no dispatch {} of {}", c.node, c.attempt, c.request),
        ));
    }
    let mut events: Vec<Event> = vec![ResultSubmitted {
        task_id,
        attempt: c.attempt,
        node_id: c.node,
        sealed_result: c.sealed_result,
        poe: c.poe,
        signature: c.signature,
        token_count: c.token_count,
    }
    .into()];
    if let Err(reason) = c.commitment {
        // Check 1 failed: the result is dropped, the node flagged, the work goes elsewhere.
        events.push(
            CommitmentRejected {
                task_id,
                attempt: c.attempt,
                node_id: c.node,
                reason: reason.clone(),
            }
            .into(),
        );
        events.push(
            NodeFlagged {
                node_id: c.node,
                task_id: Some(task_id),
                reason,
            }
            .into(),
        );
        events.extend(standing_events(state, c.node, (0, 1, 0)));
        // The removal above does not change whether a peer exists: the node was tried.
        events.extend(after_failure(
            state,
            req,
            c.request,
            Some(c.sealed_for_client),
        ));
        return Ok(events);
    }
    events.push(
        CommitmentVerified {
            task_id,
            attempt: c.attempt,
            node_id: c.node,
            result_hash: Some(c.result_hash),
        }
        .into(),
    );
    // The results as the fold will hold them after `CommitmentVerified`.
    let mut results = req.results.clone();
    results.push(prlx_projections::validation::VerifiedResult {
        node: c.node,
        attempt: c.attempt,
        result_hash: c.result_hash,
        poe: c.poe,
        sealed_result: Sealed(Vec::new()),
    });
    match compare(&results) {
        Comparison::Single => {
            // Check 2: the draw. Made now that the node has committed to its result.
            let draw = match (&state.sampling.current, c.seed) {
                (Some(open), Some(seed)) if Hash32::of(&seed.0) == open.seed_hash => {
                    Some((open.epoch, sampled(&seed, c.request, open.sampling_bp)))
                }
                (Some(open), _) => {
                    return Err(internal(
                        "seed",
                        format!("is not the committed seed of open epoch {}", open.epoch),
                    ))
                }
                (None, _) => None,
            };
            match draw {
                Some((epoch, true)) => {
                    events.push(
                        RedundancySampled {
                            task_id,
                            epoch,
                            primary: Some(c.node),
                        }
                        .into(),
                    );
                    let class = &state.nodes[&c.node].execution_class;
                    if !peer_exists(state, req, class) {
                        let mut sampled_req = req.clone();
                        sampled_req.results = results;
                        sampled_req.replica_class = Some(class.clone());
                        events.extend(without_peer(
                            state,
                            &sampled_req,
                            c.request,
                            c.sealed_for_client,
                        ));
                    }
                }
                _ => {
                    events.push(
                        ValidationResolved {
                            task_id,
                            verdict: Verdict::Accepted,
                            result_hash: Some(c.result_hash),
                        }
                        .into(),
                    );
                    events.extend(release_result(
                        req,
                        c.request,
                        c.sealed_for_client,
                        c.poe,
                        c.node,
                    ));
                }
            }
        }
        Comparison::Tiebreak => {
            // Two replicas disagree: a third decides, if the class has one left.
            if !peer_exists(state, req, req.replica_class.as_ref().expect("sampled")) {
                let mut req = req.clone();
                req.results = results;
                events.extend(without_peer(state, &req, c.request, Sealed(Vec::new())));
            }
        }
        Comparison::Resolved(verdict) => {
            let mut deltas: Vec<(NodeId, HistoryDelta)> = Vec::new();
            match &verdict {
                Verdict::Agreed { nodes } => deltas.extend(nodes.iter().map(|n| (*n, (1, 0, 0)))),
                Verdict::Majority {
                    winners,
                    dissenters,
                } => {
                    deltas.extend(winners.iter().map(|n| (*n, (1, 0, 0))));
                    deltas.extend(dissenters.iter().map(|n| (*n, (0, 1, 0))));
                }
                _ => {}
            }
            let winner_hash = match &verdict {
                Verdict::Agreed { .. } | Verdict::Majority { .. } => Some(c.result_hash),
                _ => None,
            };
            events.push(
                ValidationResolved {
                    task_id,
                    verdict: verdict.clone(),
                    result_hash: winner_hash,
                }
                .into(),
            );
            if let Verdict::Majority { dissenters, .. } = &verdict {
                for &d in dissenters {
                    events.push(
                        NodeFlagged {
                            node_id: d,
                            task_id: Some(task_id),
                            reason: "outvoted: its result differs from the majority".into(),
                        }
                        .into(),
                    );
                }
            }
            for (n, delta) in deltas {
                events.extend(standing_events(state, n, delta));
            }
            match verdict {
                // The latest result is always on the winning side: the first two disagreed,
                // so any majority of three includes the third.
                Verdict::Agreed { .. } | Verdict::Majority { .. } => events.extend(release_result(
                    req,
                    c.request,
                    c.sealed_for_client,
                    c.poe,
                    c.node,
                )),
                Verdict::NoMajority { parties } => {
                    events.extend(review_flags(
                        state,
                        task_id,
                        &parties,
                        "three different results",
                    ));
                    events.extend(give_up(
                        state,
                        c.request,
                        "three replicas returned three different results".into(),
                    ));
                }
                Verdict::Accepted | Verdict::Unconfirmed { .. } => {}
            }
        }
    }
    Ok(events)
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
    let price = quote(state, &s.model, s.hardware_tier, s.priority, s.max_tokens)?;
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
