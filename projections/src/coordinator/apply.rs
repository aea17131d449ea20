//! The fold of [`CoordinatorState`]: one arm per event, each checking what it may change
//! before changing it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use prlx_events::event::*;
use prlx_events::{Envelope, Event, Hash32, NodeId, RequestId};

use crate::coordinator::batch::Owed;
use crate::coordinator::heartbeat::heartbeat_time_problem;
use crate::coordinator::lifecycle::{RequestPhase, RequestStatus, Submission, Transition, Wait};
use crate::coordinator::registration::registration_problem;
use crate::coordinator::state::CoordinatorState;
use crate::coordinator::views::{NodeView, RequestView, ReturnedResult, VerifiedResult};
use crate::fold::{FoldError, Projection};
use crate::pricing::task_price;
use crate::refusal::failed_by_refusals;
use crate::scheduler::choose::{next_assignment, unservable_at, untried_capable};
use crate::scheduler::index::slot_key;
use crate::settlement::stake_counts;
use crate::validation::{compare, removed, standing_bp, Comparison};

impl CoordinatorState {
    /// Changes a node and keeps the free-capacity index in step with it.
    pub(super) fn update_node(
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
                (req.results.is_empty() && req.failures > 0 && !untried_capable(self, req, None))
                    || unservable_at(self, req, at)
            }
            Some(FailureCause::QueueTimeout) => self
                .queue_deadline(f.request_id)
                .is_some_and(|due| at >= due),
            Some(FailureCause::Refused) => failed_by_refusals(self, req),
            Some(FailureCause::SubtaskFailed) => self.task_has_failed_subtask(req),
            Some(FailureCause::OutputsRefused) => self.task_has_returned_subtask(req),
        };
        if derived {
            return Ok(());
        }
        Err(FoldError::new(
            env,
            format!(
                "cause: recorded {:?} at {at}, but the request has {} failed dispatch(es) of {} allowed, {} verified result(s), declined by {} node(s) (none twice for one model file, or after a result), an untried capable node: {}, queued: {}, accepted at {} (queue timeout {} s)",
                f.cause,
                req.failures,
                self.max_attempts(),
                req.results.len(),
                req.refused.len(),
                untried_capable(self, req, None),
                req.queued.is_some(),
                req.accepted_at,
                self.queue_timeout().num_seconds()
            ),
        ))
    }

    /// A dispatch expires at or after its deadline, and a result or a refusal counts only
    /// before it (`expired`: which of the two `at` is the time of). The assignment itself is
    /// checked by the lifecycle's table.
    pub(super) fn check_deadline(
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
                    "recorded_at: a report recorded at {at}, at or after its deadline {due}, is late"
                ),
            )),
            // No running dispatch: the lifecycle's table says so.
            _ => Ok(()),
        }
    }

    pub(super) fn request(&self, env: &Envelope, id: RequestId) -> Result<&RequestView, FoldError> {
        self.requests
            .get(&id)
            .ok_or_else(|| FoldError::new(env, format!("unknown request {id}")))
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
    /// 10: `DispatchRefused` (a node declining a dispatch) and the records it keeps
    /// (`RequestView::refused`, `NodeView::refusals`); snapshots of 9 are rebuilt.
    /// 11: what comes from the chain (`chain_block`, `chain_seen`, `chain_stakes`) and the
    /// payout trees (`recent_payouts`, `roots`); snapshots of 10 lack them and are rebuilt.
    /// 12: steady-state income due from escrow (`usage_due`, `UsageSettled`).
    /// 13: the bootstrap stream's terms (`Settlement::stream`, `RewardStreamObserved`).
    /// 14: signed registrations (`NodeView::operator`, `signed`): a bond counts only from the
    /// operator the node signed, and a signed node gets work only after its first heartbeat.
    /// 15: delegated consents (`delegations`, `RequestView::delegation`): what each delegation
    /// has spent, checked against its limit and life; every consent's signer checked.
    /// 16: uptime only while a node serves a catalog model (`Settlement::catalog`,
    /// `Operator::models`, `model_hashes`); tier claims measured (`NodeView::tier_run`,
    /// `tier_due`, `Submission::measured_milli_tps`, `NodeTierLowered`).
    /// 20: chain events other than deposits windowed like deposits (`chain_seen_blocks`).
    /// 21: revoked delegations (`revoked`, `DelegationRevoked`).
    const FOLD_VERSION: u32 = 21;

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
            Event::DelegationRevoked(r) => self.fold_revoked(env, r, at)?,
            Event::CreditsDeposited(d) => {
                if self.deposits.contains(&d.tx_ref) {
                    return Err(FoldError::new(
                        env,
                        format!("deposit {} credited twice", d.tx_ref),
                    ));
                }
                if let Some(c) = &d.chain {
                    if let Some((field, why)) = super::apply_chain::place_problem(&c.place)
                        .or_else(|| super::apply_chain::hex_problem("chain.payer", &c.payer, 20))
                        .or_else(|| super::apply_chain::hex_problem("account", &d.account.0, 20))
                    {
                        return Err(FoldError::at_field(env, field, why));
                    }
                    // A chain deposit's reference and credits follow from where it is and
                    // what it paid: a log cannot credit more than the chain's amount buys.
                    if d.tx_ref != c.tx_ref() {
                        return Err(FoldError::new(
                            env,
                            format!("CreditsDeposited.tx_ref: recorded {}, derived {}", d.tx_ref, c.tx_ref()),
                        ));
                    }
                    if c.credits() != Some(d.amount) {
                        return Err(FoldError::new(
                            env,
                            format!(
                                "CreditsDeposited.amount: recorded {}, derived {:?} from {} minor units",
                                d.amount,
                                c.credits(),
                                c.amount_wei
                            ),
                        ));
                    }
                    // Below the window every deposit was credited already: a record of one
                    // is a second credit (or of a deposit the watcher never saw).
                    self.within_window(env, &c.place)?;
                    self.note_chain_place(&c.place);
                }
                let acct = self.accounts.get(&d.account).cloned().unwrap_or_default();
                let balance = acct
                    .balance
                    .checked_add(d.amount)
                    .ok_or_else(|| FoldError::new(env, "balance overflows u64"))?;
                self.deposits.insert(d.tx_ref.clone());
                self.accounts.entry(d.account.clone()).or_default().balance = balance;
                if let Some(c) = &d.chain {
                    self.chain_deposits
                        .insert((c.place.block_number, d.tx_ref.clone()));
                }
                self.forget_below_window();
            }
            Event::RequestAccepted(r) => {
                // The price is the catalog's, re-derived: a log cannot bill other prices. A
                // general-path task's is its sub-tasks', checked with its plan.
                let general = super::apply_subtasks::is_general(&r.workload_class);
                let priced = self
                    .catalog_model(&r.model)
                    .and_then(|m| task_price(m, r.priority, r.max_tokens));
                if !general && priced != Some(r.price) {
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
                let delegation = self.fold_consent(env, r, at)?;
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
                // The phase and the fields that mirror it are set by `enter`, below.
                let mut req = RequestView {
                    account: r.credit_account.clone(),
                    model: r.model.clone(),
                    hardware_tier: r.hardware_tier,
                    priority: r.priority,
                    price: r.price,
                    reserved: 0,
                    charged: 0,
                    phase: RequestPhase::Verified,
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
                    refused: BTreeMap::new(),
                    delegation,
                    idempotency_key: r.idempotency_key.clone(),
                    settled_seq: None,
                    subtask_of: None,
                    plan: None,
                };
                if general {
                    // A task never runs itself: its plan follows in this batch.
                    req = req.into_task(&r.workload_class);
                    req.enter(RequestPhase::Split);
                    self.batch.owe(Owed::Plan(r.request_id));
                    self.open_tasks.insert(r.request_id);
                } else {
                    req.enter(RequestPhase::Queued(req.queue_entry(r.request_id)));
                }
                self.requests.insert(r.request_id, req);
                self.next_request_id += 1;
                self.index_phase(r.request_id);
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
                self.advance(env, r.request_id, &Transition::ResultReturned)?;
                self.request_mut(env, r.request_id)?.result = Some(ReturnedResult {
                    sealed_for_client: r.sealed_for_client.clone(),
                    poe: r.poe,
                    node: r.node_id,
                });
                // A sub-task's result goes to its task, not to a client: the task is charged,
                // when its aggregate is returned.
                if self.requests[&r.request_id].subtask_of.is_none() {
                    self.batch.owe(Owed::Charge(r.request_id));
                }
            }
            Event::SubtasksPlanned(p) => self.fold_planned(env, p, at)?,
            Event::SubtaskReleased(r) => self.fold_released(env, r, at)?,
            Event::AggregateReturned(a) => self.fold_aggregated(env, a)?,
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
                let next = self.next_phase(env, r.request_id, &Transition::RequestFailed)?;
                self.check_failure(env, r, at)?;
                self.enter(env, r.request_id, next)?;
                self.batch.discharge(Owed::Failure(r.request_id));
                if self.requests[&r.request_id].reserved > 0 {
                    // A request that will not be served gives all its credit back.
                    self.batch.owe(Owed::Refund(r.request_id));
                }
            }
            Event::RequestScheduled(e) => {
                let id = e.task_id.request;
                let next = self.next_phase(
                    env,
                    id,
                    &Transition::Scheduled {
                        node: e.node_id,
                        attempt: e.attempt,
                    },
                )?;
                // Queue and priority order: the request is the one the scheduler takes next in
                // this state. Which request that is does not depend on the seed, only which peer
                // a replica goes to, so any seed stands in for the secret one while an epoch is
                // open (the shell has one then, and places replicas; without one it does not).
                let stand_in = Hash32([0; 32]);
                let seed = self.sampling.current.as_ref().map(|_| &stand_in);
                let first = next_assignment(self, seed);
                if first.as_ref().map(|c| c.request) != Some(id) {
                    return Err(FoldError::new(
                        env,
                        format!(
                            "order: request {id} scheduled, but the queues give {:?} first",
                            first.map(|c| c.request)
                        ),
                    ));
                }
                // Re-derive the decision from this state: the log's receipt must be exactly it.
                // For a primary that is the scheduler's choice just made; a replica's peer is
                // drawn under the secret seed, so its receipt is checked here but its draw at
                // the reveal.
                let expected = if self.requests[&id].replica_class.is_some() {
                    self.replica_scheduled(env, e)?
                } else {
                    first
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
                self.enter(env, id, next)?;
                let req = self.request_mut(env, id)?;
                req.attempts += 1;
                req.tried.insert(e.node_id);
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
                // The timer service indexes running dispatches by deadline.
                self.advance(
                    env,
                    d.task_id.request,
                    &Transition::Dispatched {
                        node: d.node_id,
                        attempt: d.attempt,
                        deadline_at: d.deadline_at,
                    },
                )?;
            }
            Event::DeadlineExpired(d) => {
                let id = d.task_id.request;
                self.check_deadline(env, id, at, true)?;
                let (retry, failures) = self.retry(env, id, at)?;
                let expired = Transition::DeadlineExpired {
                    node: d.node_id,
                    attempt: d.attempt,
                    retry,
                };
                self.advance(env, id, &expired)?;
                self.request_mut(env, id)?.failures = failures;
                self.node_mut(env, d.node_id)?.missed += 1;
            }
            Event::DispatchRefused(r) => self.fold_refused(env, r, at)?,
            Event::ResultSubmitted(r) => {
                self.check_deadline(env, r.task_id.request, at, false)?;
                let req = self.request(env, r.task_id.request)?;
                let submitted = Submission {
                    node: r.node_id,
                    attempt: r.attempt,
                    poe: r.poe,
                    sealed_result: r.sealed_result.clone(),
                    measured_milli_tps: super::calibration::measure(req, r.token_count, at),
                };
                self.advance(
                    env,
                    r.task_id.request,
                    &Transition::ResultSubmitted(submitted),
                )?;
            }
            Event::CommitmentVerified(c) => {
                let id = c.task_id.request;
                let req = self.request_mut(env, id)?;
                // Logs from before replicas were compared carry no hash; they were never
                // compared either.
                let result_hash = c.result_hash.unwrap_or(Hash32([0; 32]));
                // Two results that differ: a third must break the tie (`compare`).
                let tie = matches!(req.results.as_slice(), [first] if first.result_hash != result_hash)
                    .then(|| Wait {
                        entry: req.queue_entry(id),
                        since: at,
                    });
                let verified = Transition::CommitmentVerified {
                    node: c.node_id,
                    attempt: c.attempt,
                    tie,
                };
                let RequestPhase::Submitted(s) = self.advance(env, id, &verified)? else {
                    return Err(FoldError::new(
                        env,
                        format!("request {id}: the lifecycle judged no submitted result"),
                    ));
                };
                let req = self.request_mut(env, id)?;
                req.results.push(VerifiedResult {
                    node: s.node,
                    attempt: s.attempt,
                    result_hash,
                    poe: s.poe,
                    sealed_result: s.sealed_result,
                });
                debug_assert_eq!(
                    req.phase().replica_since().is_some(),
                    compare(&req.results) == Comparison::Tiebreak
                );
                // Probation counts a node's verified results (docs/validation.md).
                self.node_mut(env, c.node_id)?.verified += 1;
                self.calibrate(env, c.node_id, id, s.measured_milli_tps)?;
            }
            Event::NodeTierLowered(l) => {
                self.batch.check_owed(env, Owed::TierLowered(l.node_id))?;
                let due = self.node_mut(env, l.node_id)?.tier_due.clone();
                if due.as_ref() != Some(l) {
                    return Err(FoldError::new(
                        env,
                        format!("the measured results give {due:?}, not what is recorded"),
                    ));
                }
                self.batch.discharge(Owed::TierLowered(l.node_id));
                self.update_node(env, l.node_id, |n| {
                    n.hardware_tier = l.to_tier;
                    n.tier_due = None;
                })?;
            }
            Event::CommitmentRejected(c) => {
                let id = c.task_id.request;
                let (retry, failures) = self.retry(env, id, at)?;
                let rejected = Transition::CommitmentRejected {
                    node: c.node_id,
                    attempt: c.attempt,
                    retry,
                };
                self.advance(env, id, &rejected)?;
                self.request_mut(env, id)?.failures = failures;
                self.node_mut(env, c.node_id)?.invalid += 1;
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
                if let Some((field, why)) = registration_problem(n, at) {
                    return Err(FoldError::at_field(env, field, why));
                }
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
                    // Staked for on chain before it registered: the chain's figure, if the
                    // staker is the one it signed.
                    stake: self.chain_stakes.get(&n.node_id).map_or(n.stake, |c| {
                        if stake_counts(n.is_signed(), n.operator.as_deref(), &c.staker) {
                            c.stake
                        } else {
                            0
                        }
                    }),
                    execution_class: n.execution_class.clone(),
                    registered_at: at,
                    last_heartbeat: at,
                    draining: false,
                    in_pool: true,
                    // A signed registration gets work only after its first heartbeat.
                    lapsed: n.is_signed(),
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
                    refusals: 0,
                    operator: n.operator.clone(),
                    signed: n.is_signed(),
                    tier_run: 0,
                    tier_due: None,
                };
                self.sched.index(
                    &view,
                    slot_key(n.node_id, &view, self.reputation_weight_pct()),
                );
                self.nodes.insert(n.node_id, view);
                // Only nodes that may take work lapse: one waiting for its first heartbeat
                // has nothing to lose.
                if !n.is_signed() {
                    self.sched.heartbeats.insert((at, n.node_id));
                }
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
            Event::ChainStakeChanged(c) => self.fold_chain_stake(env, c)?,
            // Settlement checks it (below); its payouts are kept for the payout tree.
            Event::RewardEpochSettled(e) => self.keep_payouts(e),
            Event::RewardRootPrepared(r) => self.fold_root_prepared(env, r)?,
            Event::RewardRootPosted(p) => self.fold_root_posted(env, p)?,
            Event::UsageSettled(u) => self.fold_usage_settled(env, u)?,
            // Its terms are settlement's (below); here only the log's spelling.
            Event::RewardStreamObserved(o) => {
                if let Some((field, why)) = super::apply_chain::stream_spelling_problem(o) {
                    return Err(FoldError::at_field(env, field, why));
                }
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
            // A report kept out is one of an attempt the node was given and that is over: a
            // log cannot file a running attempt's result, or one never dispatched, as late.
            Event::LateResultDiscarded(l) => {
                let id = l.task_id.request;
                let req = self.request(env, id)?;
                let running = req
                    .running
                    .as_ref()
                    .is_some_and(|a| (a.node, a.attempt) == (l.node_id, l.attempt));
                if running || !req.tried.contains(&l.node_id) || l.attempt >= req.attempts {
                    return Err(FoldError::new(
                        env,
                        format!(
                            "attempt {} on {} of request {id} is not one that is over",
                            l.attempt, l.node_id
                        ),
                    ));
                }
            }
            // Folded by the scheduling, validation and settlement projections of their own
            // issues; they do not change what intake decides.
            Event::UnstakeRequested(_)
            | Event::StakeReturned(_)
            | Event::RewardModeChanged(_)
            | Event::RewardPolicyPublished(_)
            // A seal is evidence about the log's bytes, checked by the auditor; no state.
            | Event::LogSealed(_) => {}
        }
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

impl CoordinatorState {
    /// Folds a verified result's measurement into its node's tier run; a run that lowers the
    /// node's tier owes its `NodeTierLowered` in this batch.
    fn calibrate(
        &mut self,
        env: &Envelope,
        node_id: NodeId,
        request: RequestId,
        rate: Option<u64>,
    ) -> Result<(), FoldError> {
        let model = self.request(env, request)?.model.clone();
        let Some(entry) = self.catalog_model(&model).cloned() else {
            return Ok(());
        };
        let node = self.node_mut(env, node_id)?;
        let (below, lowered) =
            super::calibration::judge(node.hardware_tier, node.tier_run, &entry, rate);
        node.tier_run = below;
        if let Some(to_tier) = lowered {
            node.tier_due = Some(NodeTierLowered {
                node_id,
                from_tier: node.hardware_tier,
                to_tier,
                model,
                measured_milli_tps: rate.unwrap_or(0),
            });
            self.batch.owe(Owed::TierLowered(node_id));
        }
        Ok(())
    }
}
