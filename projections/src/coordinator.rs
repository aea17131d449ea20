//! What the coordinator decides against: the catalog, credit accounts, requests and nodes.
//!
//! The fold enforces the money invariants itself (a reservation never exceeds what is
//! available, a charge or refund never exceeds what is reserved, a deposit is credited once,
//! request ids are dense), so a log that breaks them fails to fold: the auditor reports it
//! instead of summing it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use prlx_events::event::*;
use prlx_events::{AccountId, Envelope, Event, Hash32, NodeId, RequestId};
use serde::{Deserialize, Serialize};

use crate::fold::{FoldError, Projection};
use crate::scheduler::{choose_node, slot_key, QueueEntry, Scheduler};

/// Reputation weight in percent when the catalog sets none (1.0).
pub const DEFAULT_REPUTATION_WEIGHT_PCT: u32 = 100;
/// Dispatch attempts before a request fails, when the catalog sets none.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Credited minus charged, in minor units.
    pub balance: u64,
    /// Held for requests in flight; `balance - reserved` is what new requests may use.
    pub reserved: u64,
}

impl Account {
    pub fn available(&self) -> u64 {
        self.balance - self.reserved
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    Accepted,
    Completed,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestView {
    pub account: AccountId,
    pub model: String,
    pub hardware_tier: u8,
    pub priority: Priority,
    pub price: u64,
    pub reserved: u64,
    pub charged: u64,
    pub status: RequestStatus,
    pub accepted_at: DateTime<Utc>,
    pub deadline_seconds: u32,
    pub payload_hash: Hash32,
    /// The payload sealed to the coordinator's storage key, kept for (re-)dispatch.
    pub sealed_payload: Sealed,
    /// Dispatches so far; the next one is attempt number `attempts`.
    pub attempts: u32,
    /// Nodes that already had this request: a re-dispatch goes elsewhere.
    pub tried: BTreeSet<NodeId>,
    /// Where it waits in the queue, while it waits.
    pub queued: Option<QueueEntry>,
    /// The node working on it, while one is.
    pub running: Option<Assignment>,
    pub max_tokens: u32,
    /// The client's RSA public key (PEM): the result is sealed to it.
    pub client_pubkey: String,
    /// The result as returned to the client, once validated.
    pub result: Option<ReturnedResult>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnedResult {
    pub sealed_for_client: Sealed,
    pub poe: Hash32,
    pub node: NodeId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub node: NodeId,
    pub attempt: u32,
    /// Set when the dispatch is recorded.
    pub deadline_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    pub hardware_tier: u8,
    pub models: BTreeSet<String>,
    pub slots: u32,
    pub stake: u64,
    pub execution_class: ExecutionClass,
    pub registered_at: DateTime<Utc>,
    pub last_heartbeat: DateTime<Utc>,
    pub draining: bool,
    pub in_pool: bool,
    pub standing_bp: u32,
    /// Tasks dispatched to it and not yet returned or expired.
    pub busy: u32,
    pub public_key_pem: String,
    /// The epoch of its current session key and that key sealed to the coordinator's storage
    /// key; `None` until a grant is issued.
    pub session: Option<(u64, Sealed)>,
}

impl NodeView {
    pub fn free_slots(&self) -> u32 {
        self.slots.saturating_sub(self.busy)
    }

    /// Whether new work may go to it.
    pub fn schedulable(&self) -> bool {
        self.in_pool && !self.draining && self.free_slots() > 0
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordinatorState {
    pub catalog: Option<CatalogPublished>,
    pub accounts: BTreeMap<AccountId, Account>,
    pub deposits: BTreeSet<String>,
    pub requests: BTreeMap<RequestId, RequestView>,
    /// account -> Idempotency-Key -> the request it created.
    pub idempotency: BTreeMap<AccountId, BTreeMap<String, RequestId>>,
    pub nodes: BTreeMap<NodeId, NodeView>,
    /// Rejections recorded at intake, by code.
    pub rejections: BTreeMap<String, u64>,
    pub next_request_id: u64,
    pub sched: Scheduler,
    /// The coordinator's signing key (PEM), as last published.
    pub coordinator_key: Option<String>,
    /// Uptime, stake and reward epochs (step 9).
    pub rewards: crate::settlement::Settlement,
}

impl CoordinatorState {
    pub fn catalog_model(&self, model: &str) -> Option<&CatalogModel> {
        self.catalog
            .as_ref()?
            .models
            .iter()
            .find(|m| m.model == model)
    }

    pub fn request_for_key(&self, account: &AccountId, key: &str) -> Option<RequestId> {
        self.idempotency.get(account)?.get(key).copied()
    }

    pub fn reputation_weight_pct(&self) -> u32 {
        self.catalog
            .as_ref()
            .map_or(DEFAULT_REPUTATION_WEIGHT_PCT, |c| c.reputation_weight_pct)
    }

    pub fn max_attempts(&self) -> u32 {
        self.catalog
            .as_ref()
            .map_or(DEFAULT_MAX_ATTEMPTS, |c| c.max_attempts)
    }

    /// Changes a node and keeps the free-capacity index in step with it.
    fn update_node(
        &mut self,
        env: &Envelope,
        id: NodeId,
        change: impl FnOnce(&mut NodeView),
    ) -> Result<(), FoldError> {
        let weight = self.reputation_weight_pct();
        let node = self
            .nodes
            .get_mut(&id)
            .ok_or_else(|| FoldError::new(env, format!("unknown node {id}")))?;
        let old_key = slot_key(id, node, weight);
        self.sched.unindex(node, old_key);
        change(node);
        let new_key = slot_key(id, node, weight);
        self.sched.index(node, new_key);
        Ok(())
    }

    /// Puts a request (back) in its queue.
    fn enqueue(&mut self, id: RequestId) {
        let req = self.requests.get_mut(&id).expect("caller checked");
        let entry = QueueEntry::new(
            req.priority,
            req.accepted_at + chrono::Duration::seconds(i64::from(req.deadline_seconds)),
            id,
        );
        req.queued = Some(entry.clone());
        self.sched.enqueue(req, entry);
    }

    /// Ends the running assignment `(node, attempt)` of a request and frees the node's slot.
    fn close_assignment(
        &mut self,
        env: &Envelope,
        id: RequestId,
        node: NodeId,
        attempt: u32,
    ) -> Result<(), FoldError> {
        let req = self.request_mut(env, id)?;
        match &req.running {
            Some(Assignment {
                node: n,
                attempt: a,
                deadline_at: Some(at),
            }) if *n == node && *a == attempt => {
                let at = *at;
                req.running = None;
                self.sched.deadlines.remove(&(at, id));
            }
            other => {
                return Err(FoldError::new(
                    env,
                    format!("attempt {attempt} on {node} is not the running dispatch {other:?}"),
                ))
            }
        }
        self.update_node(env, node, |n| n.busy -= 1)
    }

    fn requeue_if_attempts_left(&mut self, id: RequestId) {
        let req = &self.requests[&id];
        if req.status == RequestStatus::Accepted && req.attempts < self.max_attempts() {
            self.enqueue(id);
        }
    }

    fn request_mut(
        &mut self,
        env: &Envelope,
        id: RequestId,
    ) -> Result<&mut RequestView, FoldError> {
        self.requests
            .get_mut(&id)
            .ok_or_else(|| FoldError::new(env, format!("unknown request {id}")))
    }

    fn node_mut(&mut self, env: &Envelope, id: NodeId) -> Result<&mut NodeView, FoldError> {
        self.nodes
            .get_mut(&id)
            .ok_or_else(|| FoldError::new(env, format!("unknown node {id}")))
    }

    /// Checks a release of `amount` reserved credits for request `id` against both the
    /// request and its account, before anything is changed.
    fn check_release(
        &self,
        env: &Envelope,
        account: &AccountId,
        id: RequestId,
        amount: u64,
    ) -> Result<(), FoldError> {
        let req = self
            .requests
            .get(&id)
            .ok_or_else(|| FoldError::new(env, format!("unknown request {id}")))?;
        if &req.account != account {
            return Err(FoldError::new(
                env,
                format!("request {id} belongs to {}, not {account}", req.account),
            ));
        }
        if amount > req.reserved {
            return Err(FoldError::new(
                env,
                format!("releases {amount} but request {id} holds {}", req.reserved),
            ));
        }
        Ok(())
    }
}

impl Projection for CoordinatorState {
    const NAME: &'static str = "coordinator";
    const FOLD_VERSION: u32 = 1;

    fn apply(&mut self, env: &Envelope) -> Result<(), FoldError> {
        let at = env.header.recorded_at;
        match &env.event {
            Event::CatalogPublished(c) => self.catalog = Some(c.clone()),
            Event::CreditsDeposited(d) => {
                if self.deposits.contains(&d.tx_ref) {
                    return Err(FoldError::new(
                        env,
                        format!("deposit {} credited twice", d.tx_ref),
                    ));
                }
                let acct = self.accounts.get(&d.account).cloned().unwrap_or_default();
                let balance = acct
                    .balance
                    .checked_add(d.amount)
                    .ok_or_else(|| FoldError::new(env, "balance overflows u64"))?;
                self.deposits.insert(d.tx_ref.clone());
                self.accounts.entry(d.account.clone()).or_default().balance = balance;
            }
            Event::RequestAccepted(r) => {
                if r.request_id.0 != self.next_request_id {
                    return Err(FoldError::new(
                        env,
                        format!(
                            "request id {} allocated, next free is {}",
                            r.request_id.0, self.next_request_id
                        ),
                    ));
                }
                if let Some(key) = &r.idempotency_key {
                    if self.request_for_key(&r.credit_account, key).is_some() {
                        return Err(FoldError::new(
                            env,
                            format!("idempotency key {key:?} used twice"),
                        ));
                    }
                    self.idempotency
                        .entry(r.credit_account.clone())
                        .or_default()
                        .insert(key.clone(), r.request_id);
                }
                self.requests.insert(
                    r.request_id,
                    RequestView {
                        account: r.credit_account.clone(),
                        model: r.model.clone(),
                        hardware_tier: r.hardware_tier,
                        priority: r.priority,
                        price: r.price,
                        reserved: 0,
                        charged: 0,
                        status: RequestStatus::Accepted,
                        accepted_at: at,
                        deadline_seconds: r.deadline_seconds,
                        payload_hash: r.payload_hash,
                        sealed_payload: r.sealed_payload.clone(),
                        attempts: 0,
                        tried: BTreeSet::new(),
                        queued: None,
                        running: None,
                        max_tokens: r.max_tokens,
                        client_pubkey: r.client_pubkey.clone(),
                        result: None,
                    },
                );
                self.next_request_id += 1;
                self.enqueue(r.request_id);
            }
            Event::CreditsReserved(c) => {
                let available = self.accounts.get(&c.account).map_or(0, Account::available);
                if c.amount > available {
                    return Err(FoldError::new(
                        env,
                        format!(
                            "reserves {} but {} has {available} available",
                            c.amount, c.account
                        ),
                    ));
                }
                let req = self.request_mut(env, c.request_id)?;
                req.reserved += c.amount;
                self.accounts
                    .get_mut(&c.account)
                    .expect("checked above")
                    .reserved += c.amount;
            }
            Event::CreditsCharged(c) => {
                self.check_release(env, &c.account, c.request_id, c.amount)?;
                let req = self.request_mut(env, c.request_id)?;
                req.reserved -= c.amount;
                req.charged += c.amount;
                let acct = self
                    .accounts
                    .get_mut(&c.account)
                    .expect("request implies account");
                acct.reserved -= c.amount;
                acct.balance -= c.amount;
            }
            Event::CreditsRefunded(c) => {
                self.check_release(env, &c.account, c.request_id, c.amount)?;
                self.request_mut(env, c.request_id)?.reserved -= c.amount;
                self.accounts
                    .get_mut(&c.account)
                    .expect("request implies account")
                    .reserved -= c.amount;
            }
            Event::RequestRejected(r) => {
                let code = serde_json::to_value(r.code).expect("plain enum");
                *self
                    .rejections
                    .entry(code.as_str().unwrap_or("?").to_owned())
                    .or_default() += 1;
            }
            Event::ResultReturned(r) => {
                let req = self.request_mut(env, r.request_id)?;
                if req.status != RequestStatus::Accepted
                    || req.running.is_some()
                    || req.queued.is_some()
                {
                    return Err(FoldError::new(
                        env,
                        format!(
                            "request {} is {:?}, running {:?}, queued {}",
                            r.request_id,
                            req.status,
                            req.running,
                            req.queued.is_some()
                        ),
                    ));
                }
                req.status = RequestStatus::Completed;
                req.result = Some(ReturnedResult {
                    sealed_for_client: r.sealed_for_client.clone(),
                    poe: r.poe,
                    node: r.node_id,
                });
            }
            Event::CoordinatorKeyPublished(k) => {
                self.coordinator_key = Some(k.public_key_pem.clone())
            }
            Event::SessionKeyIssued(k) => {
                let node = self.node_mut(env, k.node_id)?;
                if node
                    .session
                    .as_ref()
                    .is_some_and(|(epoch, _)| *epoch >= k.epoch)
                {
                    return Err(FoldError::new(
                        env,
                        format!("epoch {} is not newer than the node's session", k.epoch),
                    ));
                }
                node.session = Some((k.epoch, k.sealed_for_coordinator.clone()));
            }
            Event::RequestFailed(r) => {
                let req = self.request_mut(env, r.request_id)?;
                if req.status != RequestStatus::Accepted || req.running.is_some() {
                    return Err(FoldError::new(
                        env,
                        format!(
                            "request {} is {:?}, running {:?}",
                            r.request_id, req.status, req.running
                        ),
                    ));
                }
                req.status = RequestStatus::Failed;
                if let Some(entry) = req.queued.take() {
                    let (model, tier) = (req.model.clone(), req.hardware_tier);
                    self.sched.dequeue(&model, tier, &entry);
                }
            }
            Event::RequestScheduled(e) => {
                let req = self.requests.get(&e.task_id.request).ok_or_else(|| {
                    FoldError::new(env, format!("unknown request {}", e.task_id.request))
                })?;
                let Some(entry) = req.queued.clone() else {
                    return Err(FoldError::new(
                        env,
                        format!("request {} is not waiting for a node", e.task_id.request),
                    ));
                };
                // Re-derive the decision from this state: the log's receipt must be exactly it.
                let expected = choose_node(self, e.task_id.request);
                let recorded = (e.node_id, e.attempt, e.candidates_considered, &e.ranked);
                match &expected {
                    Some(c) if (c.node, c.attempt, c.candidates_considered, &c.ranked) == recorded => {}
                    other => {
                        return Err(FoldError::new(
                            env,
                            format!("scheduling receipt differs from the decision this state gives: recorded {recorded:?}, derived {other:?}"),
                        ))
                    }
                }
                let req = self.requests.get_mut(&e.task_id.request).expect("checked");
                req.queued = None;
                req.running = Some(Assignment {
                    node: e.node_id,
                    attempt: e.attempt,
                    deadline_at: None,
                });
                req.attempts += 1;
                req.tried.insert(e.node_id);
                let (model, tier) = (req.model.clone(), req.hardware_tier);
                self.sched.dequeue(&model, tier, &entry);
                self.update_node(env, e.node_id, |n| n.busy += 1)?;
            }
            Event::TaskDispatched(d) => {
                let req = self.request_mut(env, d.task_id.request)?;
                match &mut req.running {
                    Some(a)
                        if a.node == d.node_id
                            && a.attempt == d.attempt
                            && a.deadline_at.is_none() =>
                    {
                        a.deadline_at = Some(d.deadline_at)
                    }
                    other => {
                        return Err(FoldError::new(
                            env,
                            format!(
                            "dispatch of attempt {} to {} does not match the assignment {other:?}",
                            d.attempt, d.node_id
                        ),
                        ))
                    }
                }
                // The timer service's index: running dispatches by deadline.
                self.sched
                    .deadlines
                    .insert((d.deadline_at, d.task_id.request));
            }
            Event::DeadlineExpired(d) => {
                self.close_assignment(env, d.task_id.request, d.node_id, d.attempt)?;
                self.requeue_if_attempts_left(d.task_id.request);
            }
            Event::ResultSubmitted(r) => {
                self.close_assignment(env, r.task_id.request, r.node_id, r.attempt)?
            }
            Event::CommitmentRejected(c) => {
                let req = self.request_mut(env, c.task_id.request)?;
                if req.running.is_some()
                    || req.queued.is_some()
                    || req.status != RequestStatus::Accepted
                {
                    return Err(FoldError::new(
                        env,
                        format!("request {} is not awaiting validation", c.task_id.request),
                    ));
                }
                self.requeue_if_attempts_left(c.task_id.request);
            }
            Event::NodeRegistered(n) => {
                if self.nodes.contains_key(&n.node_id) {
                    return Err(FoldError::new(
                        env,
                        format!("node {} registered twice", n.node_id),
                    ));
                }
                let view = NodeView {
                    hardware_tier: n.hardware_tier,
                    models: n.models.iter().cloned().collect(),
                    slots: n.slots,
                    stake: n.stake,
                    execution_class: n.execution_class.clone(),
                    registered_at: at,
                    last_heartbeat: at,
                    draining: false,
                    in_pool: true,
                    standing_bp: 10_000,
                    busy: 0,
                    public_key_pem: n.public_key_pem.clone(),
                    session: None,
                };
                self.sched.index(
                    &view,
                    slot_key(n.node_id, &view, self.reputation_weight_pct()),
                );
                self.nodes.insert(n.node_id, view);
            }
            Event::NodeHeartbeat(h) => self.node_mut(env, h.node_id)?.last_heartbeat = at,
            Event::NodeDrained(d) => self.update_node(env, d.node_id, |n| n.draining = true)?,
            Event::NodeRemovedFromPool(r) => {
                self.update_node(env, r.node_id, |n| n.in_pool = false)?
            }
            Event::StandingChanged(s) => {
                self.update_node(env, s.node_id, |n| n.standing_bp = s.standing_bp)?
            }
            Event::StakeDeposited(s) => {
                let node = self.node_mut(env, s.node_id)?;
                node.stake = node
                    .stake
                    .checked_add(s.amount)
                    .ok_or_else(|| FoldError::new(env, "stake overflows u64"))?;
            }
            // Folded by the scheduling, validation and settlement projections of their own
            // issues; they do not change what intake decides.
            Event::SubtasksPlanned(_)
            | Event::LateResultDiscarded(_)
            | Event::CommitmentVerified(_)
            | Event::SamplingSeedCommitted(_)
            | Event::SamplingSeedRevealed(_)
            | Event::RedundancySampled(_)
            | Event::ValidationResolved(_)
            | Event::NodeFlagged(_)
            | Event::UnstakeRequested(_)
            | Event::StakeReturned(_)
            | Event::RewardModeChanged(_)
            | Event::RewardEpochSettled(_) => {}
        }
        // Settlement sees every event the coordinator accepted, after it.
        self.rewards.apply(env)
    }
}
