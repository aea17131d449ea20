//! What the coordinator decides against: the catalog, credit accounts, requests and nodes.
//!
//! The fold enforces the money invariants itself (a reservation never exceeds what is
//! available, a charge or refund never exceeds what is reserved, a deposit is credited once,
//! request ids are dense), so a log that breaks them fails to fold: the auditor reports it
//! instead of summing it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use prlx_events::event::*;
use prlx_events::{AccountId, Envelope, Event, NodeId, RequestId};
use serde::{Deserialize, Serialize};

use crate::fold::{FoldError, Projection};

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
                    },
                );
                self.next_request_id += 1;
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
                if req.status != RequestStatus::Accepted {
                    return Err(FoldError::new(
                        env,
                        format!("request {} is already {:?}", r.request_id, req.status),
                    ));
                }
                req.status = RequestStatus::Completed;
            }
            Event::RequestFailed(r) => {
                let req = self.request_mut(env, r.request_id)?;
                if req.status != RequestStatus::Accepted {
                    return Err(FoldError::new(
                        env,
                        format!("request {} is already {:?}", r.request_id, req.status),
                    ));
                }
                req.status = RequestStatus::Failed;
            }
            Event::NodeRegistered(n) => {
                if self.nodes.contains_key(&n.node_id) {
                    return Err(FoldError::new(
                        env,
                        format!("node {} registered twice", n.node_id),
                    ));
                }
                self.nodes.insert(
                    n.node_id,
                    NodeView {
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
                    },
                );
            }
            Event::NodeHeartbeat(h) => self.node_mut(env, h.node_id)?.last_heartbeat = at,
            Event::NodeDrained(d) => self.node_mut(env, d.node_id)?.draining = true,
            Event::NodeRemovedFromPool(r) => self.node_mut(env, r.node_id)?.in_pool = false,
            Event::StandingChanged(s) => self.node_mut(env, s.node_id)?.standing_bp = s.standing_bp,
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
            | Event::CoordinatorKeyPublished(_)
            | Event::SessionKeyIssued(_)
            | Event::RequestScheduled(_)
            | Event::TaskDispatched(_)
            | Event::ResultSubmitted(_)
            | Event::DeadlineExpired(_)
            | Event::LateResultDiscarded(_)
            | Event::CommitmentVerified(_)
            | Event::CommitmentRejected(_)
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
        Ok(())
    }
}
