//! The fold of [`CoordinatorState`]: one arm per event, each checking what it may change
//! before changing it.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use prlx_events::event::*;
use prlx_events::{Envelope, Event, Hash32, NodeId, RequestId};

use crate::coordinator::batch::Owed;
use crate::coordinator::heartbeat::heartbeat_time_problem;
use crate::coordinator::state::CoordinatorState;
use crate::coordinator::views::{
    Assignment, NodeView, RequestStatus, RequestView, ReturnedResult, VerifiedResult,
};
use crate::fold::{FoldError, Projection};
use crate::pricing::task_price;
use crate::scheduler::choose::{choose_node, untried_capable};
use crate::scheduler::index::slot_key;
use crate::scheduler::queue::QueueEntry;
use crate::validation::{compare, removed, standing_bp, Comparison};

impl CoordinatorState {
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

    /// Puts a request (back) in its queue; one with no verified result also in the timer
    /// service's index of the admission bound.
    pub(super) fn enqueue(&mut self, id: RequestId) {
        let req = self.requests.get_mut(&id).expect("caller checked");
        let entry = QueueEntry::new(
            req.priority,
            req.accepted_at + chrono::Duration::seconds(i64::from(req.deadline_seconds)),
            id,
        );
        req.queued = Some(entry.clone());
        if req.results.is_empty() {
            self.sched.waiting.insert((req.accepted_at, id));
        }
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

    /// After a failed dispatch: before a verified result, it counts against the request's
    /// attempts; a failed replica does not (the request's result is already in hand), and the
    /// replica is sought elsewhere until no peer is left.
    fn after_failed_dispatch(&mut self, id: RequestId) {
        let max = self.max_attempts();
        let req = self.requests.get_mut(&id).expect("caller checked");
        if req.status != RequestStatus::Accepted || req.validated {
            return;
        }
        if req.results.is_empty() {
            req.failures += 1;
            if req.failures < max {
                self.enqueue(id);
            }
        } else {
            self.enqueue(id);
        }
    }

    /// Takes the request out of its queue, if it waits in one.
    pub(super) fn dequeue(&mut self, id: RequestId) {
        let req = self.requests.get_mut(&id).expect("caller checked");
        if let Some(entry) = req.queued.take() {
            let (model, tier) = (req.model.clone(), req.hardware_tier);
            self.sched.waiting.remove(&(req.accepted_at, id));
            self.sched.dequeue(&model, tier, &entry);
        }
    }

    /// Re-derives what a `RequestFailed` says caused it, from the state it is recorded in.
    fn check_failure(
        &self,
        env: &Envelope,
        f: &RequestFailed,
        at: DateTime<Utc>,
    ) -> Result<(), FoldError> {
        let req = &self.requests[&f.request_id];
        let derived = match f.cause {
            // Records from before causes were written; a verdict without majority is
            // re-derived where it is recorded (`ValidationResolved`).
            None | Some(FailureCause::NoMajority) => return Ok(()),
            Some(FailureCause::AttemptsExhausted) => {
                req.results.is_empty() && req.failures >= self.max_attempts()
            }
            Some(FailureCause::NoCapableNode) => {
                req.results.is_empty() && req.failures > 0 && !untried_capable(self, req, None)
            }
            Some(FailureCause::QueueTimeout) => self
                .queue_deadline(f.request_id)
                .is_some_and(|due| at >= due),
        };
        if derived {
            return Ok(());
        }
        Err(FoldError::new(
            env,
            format!(
                "cause: recorded {:?} at {at}, but the request has {} failed dispatch(es) of {} allowed, {} verified result(s), an untried capable node: {}, queued: {}, accepted at {} (queue timeout {} s)",
                f.cause,
                req.failures,
                self.max_attempts(),
                req.results.len(),
                untried_capable(self, req, None),
                req.queued.is_some(),
                req.accepted_at,
                self.queue_timeout().num_seconds()
            ),
        ))
    }

    /// A dispatch expires at or after its deadline, and a result counts only before it
    /// (`expired`: which of the two `at` is the time of). The assignment itself is checked by
    /// `close_assignment`.
    fn check_deadline(
        &self,
        env: &Envelope,
        id: RequestId,
        at: DateTime<Utc>,
        expired: bool,
    ) -> Result<(), FoldError> {
        let due = self
            .requests
            .get(&id)
            .and_then(|r| r.running.as_ref())
            .and_then(|a| a.deadline_at);
        match due {
            Some(due) if expired && at < due => Err(FoldError::new(
                env,
                format!("recorded_at: the dispatch expires at {at}, before its deadline {due}"),
            )),
            Some(due) if !expired && at >= due => Err(FoldError::new(
                env,
                format!(
                    "recorded_at: a result recorded at {at}, at or after its deadline {due}, is late"
                ),
            )),
            // No running dispatch: `close_assignment` says so.
            _ => Ok(()),
        }
    }

    pub(super) fn request_mut(
        &mut self,
        env: &Envelope,
        id: RequestId,
    ) -> Result<&mut RequestView, FoldError> {
        self.requests
            .get_mut(&id)
            .ok_or_else(|| FoldError::new(env, format!("unknown request {id}")))
    }

    pub(super) fn node_mut(
        &mut self,
        env: &Envelope,
        id: NodeId,
    ) -> Result<&mut NodeView, FoldError> {
        self.nodes
            .get_mut(&id)
            .ok_or_else(|| FoldError::new(env, format!("unknown node {id}")))
    }
}

impl Projection for CoordinatorState {
    const NAME: &'static str = "coordinator";
    const FOLD_VERSION: u32 = 8;

    fn apply(&mut self, env: &Envelope) -> Result<(), FoldError> {
        self.batch.check_boundary(env)?;
        self.apply_event(env)?;
        self.batch.enter(env);
        Ok(())
    }
}

impl CoordinatorState {
    fn apply_event(&mut self, env: &Envelope) -> Result<(), FoldError> {
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
                // The price is the catalog's, re-derived: a log cannot bill other prices.
                let priced = self
                    .catalog_model(&r.model)
                    .and_then(|m| task_price(m, r.priority, r.max_tokens));
                if priced != Some(r.price) {
                    return Err(FoldError::new(
                        env,
                        format!(
                            "price: recorded {}, but the catalog in force gives {priced:?} for \
                             {} at {:?} with {} tokens",
                            r.price, r.model, r.priority, r.max_tokens
                        ),
                    ));
                }
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
                        failures: 0,
                        results: Vec::new(),
                        replica_class: None,
                        validated: false,
                        submitted: None,
                        replica_since: None,
                        outcome: None,
                    },
                );
                self.next_request_id += 1;
                self.enqueue(r.request_id);
                self.batch.owe(Owed::Reservation(r.request_id));
            }
            Event::CreditsReserved(c) => self.fold_reserved(env, c)?,
            Event::CreditsCharged(c) => self.fold_charged(env, c)?,
            Event::CreditsRefunded(c) => self.fold_refunded(env, c)?,
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
                    || !req.validated
                {
                    return Err(FoldError::new(
                        env,
                        format!(
                            "request {} is {:?}, running {:?}, queued {}, not yet validated",
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
                self.batch.owe(Owed::Charge(r.request_id));
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
                self.check_failure(env, r, at)?;
                let req = self.request_mut(env, r.request_id)?;
                req.status = RequestStatus::Failed;
                if req.reserved > 0 {
                    // A request that will not be served gives all its credit back.
                    self.batch.owe(Owed::Refund(r.request_id));
                }
                self.dequeue(r.request_id);
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
                // A replica's peer is drawn under the secret seed: checked at the reveal.
                let expected = if req.replica_class.is_some() {
                    self.replica_scheduled(env, e)?
                } else {
                    choose_node(self, e.task_id.request, None)
                };
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
                self.sched.waiting.remove(&(req.accepted_at, e.task_id.request));
                self.sched.dequeue(&model, tier, &entry);
                self.update_node(env, e.node_id, |n| n.busy += 1)?;
            }
            Event::TaskDispatched(d) => {
                let req = self.request_mut(env, d.task_id.request)?;
                // The deadline runs from the time the dispatch is recorded at: a log cannot
                // grant a node more (or less) time than the request asked for.
                let due = at + chrono::Duration::seconds(i64::from(req.deadline_seconds));
                if d.deadline_at != due {
                    return Err(FoldError::new(
                        env,
                        format!(
                            "deadline_at: recorded {}, but recorded_at {at} plus the request's {} s gives {due}",
                            d.deadline_at, req.deadline_seconds
                        ),
                    ));
                }
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
                self.check_deadline(env, d.task_id.request, at, true)?;
                self.close_assignment(env, d.task_id.request, d.node_id, d.attempt)?;
                self.node_mut(env, d.node_id)?.missed += 1;
                self.after_failed_dispatch(d.task_id.request);
            }
            Event::ResultSubmitted(r) => {
                self.check_deadline(env, r.task_id.request, at, false)?;
                self.close_assignment(env, r.task_id.request, r.node_id, r.attempt)?;
                self.requests
                    .get_mut(&r.task_id.request)
                    .expect("closed")
                    .submitted = Some((r.node_id, r.attempt, r.poe, r.sealed_result.clone()));
            }
            Event::CommitmentVerified(c) => {
                let id = c.task_id.request;
                let req = self.request_mut(env, id)?;
                let Some((node, attempt, poe, sealed_result)) = req.submitted.take() else {
                    return Err(FoldError::new(
                        env,
                        format!("request {id} has no result to judge"),
                    ));
                };
                if (node, attempt) != (c.node_id, c.attempt) {
                    req.submitted = Some((node, attempt, poe, sealed_result));
                    return Err(FoldError::new(
                        env,
                        format!("judges attempt {} on {}, but the result submitted is attempt {attempt} on {node}", c.attempt, c.node_id),
                    ));
                }
                req.results.push(VerifiedResult {
                    node,
                    attempt,
                    // Logs from before replicas were compared carry no hash; they were never
                    // compared either.
                    result_hash: c.result_hash.unwrap_or(Hash32([0; 32])),
                    poe,
                    sealed_result,
                });
                if compare(&req.results) == Comparison::Tiebreak {
                    self.enqueue(id);
                }
                // Probation counts a node's verified results (docs/validation.md).
                self.node_mut(env, c.node_id)?.verified += 1;
            }
            Event::CommitmentRejected(c) => {
                let id = c.task_id.request;
                let req = self.request_mut(env, id)?;
                if req.running.is_some()
                    || req.queued.is_some()
                    || req.status != RequestStatus::Accepted
                    || !matches!(&req.submitted, Some((n, a, ..)) if (*n, *a) == (c.node_id, c.attempt))
                {
                    return Err(FoldError::new(
                        env,
                        format!(
                            "request {id} has no result of attempt {} on {} to judge",
                            c.attempt, c.node_id
                        ),
                    ));
                }
                req.submitted = None;
                self.node_mut(env, c.node_id)?.invalid += 1;
                self.after_failed_dispatch(id);
                self.batch.owe(Owed::Flag(c.node_id));
            }
            Event::RedundancySampled(r) => self.fold_sampled(env, r)?,
            Event::ValidationResolved(v) => self.resolve(env, v)?,
            Event::SamplingSeedCommitted(c) => self.fold_seed_committed(env, c, at)?,
            Event::SamplingSeedRevealed(r) => self.fold_seed_revealed(env, r)?,
            Event::StandingChanged(s) => {
                let policy = self.validation_policy();
                let node = self.node_mut(env, s.node_id)?;
                let derived = standing_bp(&policy, node.history());
                // Records from before missed deadlines counted do not carry the count; their
                // catalogs weigh misses 0 (upcast), so the standing still checks.
                let missed = s.missed_deadlines.unwrap_or(node.missed);
                let recorded = (s.valid, s.invalid, s.disagreements, missed, s.standing_bp);
                let expected = (node.valid, node.invalid, node.disagreements, node.missed, derived);
                if recorded != expected {
                    return Err(FoldError::new(
                        env,
                        format!("standing: recorded (valid, invalid, disagreements, missed_deadlines, bp) {recorded:?}, the history gives {expected:?}"),
                    ));
                }
                self.update_node(env, s.node_id, |n| n.standing_bp = s.standing_bp)?;
                let node = &self.nodes[&s.node_id];
                if node.in_pool && removed(&policy, node.history()) {
                    self.batch.owe(Owed::Removal(s.node_id));
                }
            }
            // A flag follows from a rejected commitment or a verdict in its decision.
            Event::NodeFlagged(f) => {
                self.node_mut(env, f.node_id)?;
                self.batch.check_owed(env, Owed::Flag(f.node_id))?;
                self.batch.discharge(Owed::Flag(f.node_id));
            }
            Event::NodeRegistered(n) => {
                self.check_class(env, n)?;
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
                    lapsed: false,
                    standing_bp: 10_000,
                    busy: 0,
                    public_key_pem: n.public_key_pem.clone(),
                    session: None,
                    valid: 0,
                    invalid: 0,
                    disagreements: 0,
                    missed: 0,
                    heartbeat_at: None,
                    verified: 0,
                    model_hashes: n.model_hashes.clone(),
                };
                self.sched.index(
                    &view,
                    slot_key(n.node_id, &view, self.reputation_weight_pct()),
                );
                self.nodes.insert(n.node_id, view);
                self.sched.heartbeats.insert((at, n.node_id));
            }
            Event::NodeHeartbeat(h) => {
                let node = self.node_mut(env, h.node_id)?;
                // The uptime that payouts follow must be the node's word: its signed
                // statement is on the log (the auditor verifies the signature), at a time the
                // rule allows.
                let (Some(signed_at), Some(_)) = (h.at, &h.signature) else {
                    return Err(FoldError::at_field(
                        env,
                        "signature",
                        "a heartbeat is recorded with the node's signed statement",
                    ));
                };
                if let Some(problem) = heartbeat_time_problem(node, signed_at, at) {
                    return Err(FoldError::at_field(env, "at", problem));
                }
                node.heartbeat_at = Some(signed_at);
                let (was, lapsed) = (node.last_heartbeat, node.lapsed);
                self.sched.heartbeats.remove(&(was, h.node_id));
                if lapsed {
                    self.update_node(env, h.node_id, |n| n.lapsed = false)?;
                }
                self.node_mut(env, h.node_id)?.last_heartbeat = at;
                self.sched.heartbeats.insert((at, h.node_id));
            }
            Event::NodeLapsed(l) => {
                let timeout = self.node_timeout();
                let node = self.node_mut(env, l.node_id)?;
                if node.lapsed
                    || node.last_heartbeat != l.last_heartbeat
                    || at < node.last_heartbeat + timeout
                {
                    return Err(FoldError::new(
                        env,
                        format!(
                            "last_heartbeat: recorded {}, the node's is {} (lapsed {}), timeout {} s at {at}",
                            l.last_heartbeat, node.last_heartbeat, node.lapsed, timeout.num_seconds()
                        ),
                    ));
                }
                self.sched.heartbeats.remove(&(l.last_heartbeat, l.node_id));
                self.update_node(env, l.node_id, |n| n.lapsed = true)?;
            }
            Event::NodeDrained(d) => self.update_node(env, d.node_id, |n| n.draining = true)?,
            // A removal follows from a standing under the floor in its decision.
            Event::NodeRemovedFromPool(r) => {
                self.batch.check_owed(env, Owed::Removal(r.node_id))?;
                self.update_node(env, r.node_id, |n| n.in_pool = false)?;
                self.batch.discharge(Owed::Removal(r.node_id));
            }
            Event::StakeDeposited(s) => {
                let node = self.node_mut(env, s.node_id)?;
                node.stake = node
                    .stake
                    .checked_add(s.amount)
                    .ok_or_else(|| FoldError::new(env, "stake overflows u64"))?;
            }
            // Not defined yet: nothing emits it, so one on a log was not written by this
            // coordinator, and folding it as a no-op would let it mean anything later.
            Event::SubtasksPlanned(_) => {
                return Err(FoldError::new(
                    env,
                    "SubtasksPlanned: sub-task plans are not defined by this version",
                ))
            }
            // Folded by the scheduling, validation and settlement projections of their own
            // issues; they do not change what intake decides.
            Event::LateResultDiscarded(_)
            | Event::UnstakeRequested(_)
            | Event::StakeReturned(_)
            | Event::RewardModeChanged(_)
            | Event::RewardEpochSettled(_)
            | Event::RewardPolicyPublished(_)
            // A seal is evidence about the log's bytes, checked by the auditor; no state.
            | Event::LogSealed(_) => {}
        }
        // A sampled request's wait for a replica is timed (`unconfirmed_hold_seconds`).
        self.time_replica_wait(env);
        // Settlement sees every event the coordinator accepted, after it.
        self.rewards.apply(env)?;
        // Settlement checked the unstake against the same stake (registration plus deposits
        // minus unstakes), so it is lowered only once that passed: a refused event changes
        // nothing.
        if let Event::UnstakeRequested(u) = &env.event {
            if let Some(node) = self.nodes.get_mut(&u.node_id) {
                node.stake = node.stake.saturating_sub(u.amount);
            }
        }
        self.log_time = Some(self.log_time.map_or(at, |t| t.max(at)));
        Ok(())
    }
}
