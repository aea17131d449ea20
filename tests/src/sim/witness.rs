//! The simulation's witness: it reads the log beside the fold, as an auditor would, for the
//! invariants the fold does not keep itself (each request's lifetime and bound, the proofs
//! that earn uptime slots).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use prlx_events::event::*;
use prlx_events::{Envelope, Event, NodeId, RequestId};

/// The most simulated time that passes between two runs of the timers: a generator step
/// advances the clock by under 4 s, a drain round by 5 s.
pub(super) const STEP_SECONDS: i64 = 5;

/// One accepted request as the log tells it.
#[derive(Debug)]
pub(super) struct Lifetime {
    pub(super) accepted_at: DateTime<Utc>,
    pub(super) deadline_seconds: u32,
    /// Set at its first `CommitmentVerified`: every later dispatch is a replica.
    pub(super) verified: bool,
    /// Dispatches after the first verified result (replicas and tie-breakers).
    pub(super) replicas: u32,
    /// Every node dispatched to, primary or replica.
    pub(super) tried: BTreeSet<NodeId>,
    pub(super) ended_at: Option<DateTime<Utc>>,
}

/// Watches the log beside the fold, as an auditor would, for the invariants the fold does not
/// keep itself: each request's lifetime, and the proofs that earn uptime slots. It is the
/// simulation's own record, so it survives the core's restarts.
#[derive(Debug, Default)]
pub(super) struct Witness {
    /// `queue_timeout_seconds` and `unconfirmed_hold_seconds` of the catalog (published once).
    pub(super) queue_timeout: i64,
    pub(super) hold: i64,
    /// The reward policy's `uptime_slot_seconds`.
    pub(super) slot_seconds: i64,
    pub(super) requests: BTreeMap<RequestId, Lifetime>,
    /// `(node, slot)` for every `NodeHeartbeat` or `CommitmentVerified` naming the node, the
    /// slot counted in `slot_seconds` from the Unix epoch (reward epochs start at multiples
    /// of their length, which the slot divides, so these are the fold's slots); dropped once
    /// their epoch is settled.
    pub(super) proofs: BTreeSet<(NodeId, i64)>,
    pub(super) payouts_checked: u64,
    pub(super) longest: i64,
}

impl Witness {
    pub(super) fn slot(&self, at: DateTime<Utc>) -> i64 {
        at.timestamp().div_euclid(self.slot_seconds.max(1))
    }

    /// How long after its acceptance a request with `replicas` replica dispatches may end, in
    /// seconds, derived from the rules in `docs/protocol.md` (liveness) and
    /// `docs/validation.md` (the hold), with `d` the request's deadline (at most the catalog's
    /// `max_deadline_seconds`), `H` the hold and `S` = [`STEP_SECONDS`], the longest the timers
    /// can lag behind a due time:
    /// - until its first verified result, every dispatch starts before the admission bound
    ///   (`ExpireQueued` runs before dispatching) and ends by its deadline, so a result is in
    ///   by `queue_timeout + d`, or the request fails by then plus `S` (a dispatch expired
    ///   after the bound re-queues it, and it fails in the same round of timers); the bound
    ///   counts from acceptance, so `max_attempts` does not add to it;
    /// - a sampled result waits at most `H + S` in the queue for each replica (or
    ///   tie-breaker), which runs at most `d + S` (its expiry re-queues it for another hold),
    ///   and once the last one is over it waits one more hold before release: `replicas`
    ///   rounds of `H + d + 2S` plus one of `H + S`.
    ///
    /// A replica's failure does not count against `max_attempts`, so `replicas` is bounded
    /// by the nodes of the class rather than by the catalog; every dispatch goes to a node
    /// the request has not tried (checked), so the bound stays finite: at most
    /// `queue_timeout + d + H + 2S + (nodes - 1)(H + d + 2S)`. With no replica failing (one
    /// replica and a tie-breaker) it is `queue_timeout + 3d + 3H + 6S`.
    pub(super) fn bound(&self, life: &Lifetime) -> i64 {
        let (d, h, k) = (
            i64::from(life.deadline_seconds),
            self.hold,
            i64::from(life.replicas),
        );
        self.queue_timeout + d + STEP_SECONDS + k * (h + d + 2 * STEP_SECONDS) + h + STEP_SECONDS
    }

    pub(super) fn watch(&mut self, env: &Envelope) -> Result<(), String> {
        let at = env.header.recorded_at;
        match &env.event {
            Event::CatalogPublished(c) => {
                self.queue_timeout = i64::from(c.queue_timeout_seconds);
                self.hold = i64::from(c.validation.unconfirmed_hold_seconds);
            }
            Event::RewardPolicyPublished(p) => self.slot_seconds = i64::from(p.uptime_slot_seconds),
            Event::RequestAccepted(a) => {
                let life = Lifetime {
                    accepted_at: at,
                    deadline_seconds: a.deadline_seconds,
                    verified: false,
                    replicas: 0,
                    tried: BTreeSet::new(),
                    ended_at: None,
                };
                if self.requests.insert(a.request_id, life).is_some() {
                    return Err(format!("request {} accepted twice", a.request_id));
                }
            }
            Event::TaskDispatched(t) => {
                let id = t.task_id.request;
                let life = self.lifetime(id)?;
                if life.ended_at.is_some() {
                    return Err(format!("request {id} dispatched after it ended"));
                }
                if !life.tried.insert(t.node_id) {
                    return Err(format!(
                        "request {id} dispatched again to node {}, which it already tried",
                        t.node_id
                    ));
                }
                life.replicas += u32::from(life.verified);
            }
            Event::CommitmentVerified(c) => {
                self.lifetime(c.task_id.request)?.verified = true;
                let slot = self.slot(at);
                self.proofs.insert((c.node_id, slot));
            }
            Event::NodeHeartbeat(beat) => {
                let slot = self.slot(at);
                self.proofs.insert((beat.node_id, slot));
            }
            Event::ResultReturned(r) => self.end(r.request_id, at)?,
            Event::RequestFailed(f) => self.end(f.request_id, at)?,
            Event::RewardEpochSettled(e) => self.check_payouts(e)?,
            _ => {}
        }
        Ok(())
    }

    pub(super) fn lifetime(&mut self, id: RequestId) -> Result<&mut Lifetime, String> {
        self.requests.get_mut(&id).ok_or_else(|| unaccepted(id))
    }

    /// A `ResultReturned` or `RequestFailed` for `id`, recorded at `at`.
    pub(super) fn end(&mut self, id: RequestId, at: DateTime<Utc>) -> Result<(), String> {
        let life = self.requests.get(&id).ok_or_else(|| unaccepted(id))?;
        if let Some(first) = life.ended_at {
            return Err(format!(
                "request {id} ends twice: at {first} and again at {at}"
            ));
        }
        let (took, bound) = (at - life.accepted_at, self.bound(life));
        if took > chrono::Duration::seconds(bound) {
            return Err(format!(
                "request {id} ends {} ms after its acceptance at {}, past its bound of {bound} s \
                 (deadline {} s, {} replica dispatches, nodes tried {})",
                took.num_milliseconds(),
                life.accepted_at,
                life.deadline_seconds,
                life.replicas,
                life.tried.len()
            ));
        }
        self.longest = self.longest.max(took.num_seconds());
        self.lifetime(id)?.ended_at = Some(at);
        Ok(())
    }

    /// Every payout of `settled` within the proofs of its epoch's range.
    pub(super) fn check_payouts(&mut self, settled: &RewardEpochSettled) -> Result<(), String> {
        let (from, to) = (self.slot(settled.starts_at), self.slot(settled.ends_at));
        for p in &settled.payouts {
            let proven = self
                .proofs
                .range((p.node_id, from)..(p.node_id, to))
                .count() as u64;
            if p.verified_slots > proven || (proven == 0 && (p.amount > 0 || p.weight > 0)) {
                return Err(format!(
                    "reward epoch {}: node {} is paid {} for {} verified slots (weight {}), \
                     but the log proves it up in {proven} slots of [{}, {})",
                    settled.epoch,
                    p.node_id,
                    p.amount,
                    p.verified_slots,
                    p.weight,
                    settled.starts_at,
                    settled.ends_at
                ));
            }
            self.payouts_checked += 1;
        }
        self.proofs.retain(|(_, slot)| *slot >= to);
        Ok(())
    }

    /// Every accepted request has ended (each once, as [`Witness::end`] checks).
    pub(super) fn all_ended(&self) -> Result<(), String> {
        match self.requests.iter().find(|(_, l)| l.ended_at.is_none()) {
            Some((id, l)) => Err(format!(
                "request {id}, accepted at {}, has no ResultReturned or RequestFailed on the log",
                l.accepted_at
            )),
            None => Ok(()),
        }
    }
}

pub(super) fn unaccepted(id: RequestId) -> String {
    format!("request {id} is on the log but was never accepted")
}
