//! Deterministic simulation of the coordinator core: a seeded generator of submissions,
//! deposits, heartbeats, honest, wrong, late, silent and replayed reports, nodes joining
//! mid-run, restarts from snapshot, the timers (deadlines, lapses, the queue's admission bound,
//! the replica hold, sampling epochs, reward epochs) and time passing, driving the real
//! `decide` and fold step after step, with the invariants checked as it goes and the auditor's
//! verdict at the end.
//!
//! Only the outside is simulated: the shell's I/O (the log writer, keys, sealing) is replaced
//! by stamping each decided batch with the simulated clock, as the shell stamps it with the
//! wall clock. Registration, at the start and when a node joins later, skips `decide` (it
//! needs a real RSA key per node, a second each; the sabotage simulation does the same). A
//! restart replaces the core's fold with its last snapshot (a JSON round trip of
//! `Snapshot::of`, as saved to disk) plus the log's tail, and the run decides on from that;
//! the sampling seed the shell would unseal from the log is kept as it is. Everything random
//! derives from the seed through xorshift, so a failing seed replays exactly.
//!
//! Invariants (after every batch unless said otherwise):
//! - every event the core decides folds (the fold re-derives scheduling, verdicts, standing,
//!   settlement: a disagreement is a failure);
//! - credits are conserved: what accounts hold is what was deposited minus what was charged,
//!   no account reserves more than it holds, and accounts reserve exactly what open requests
//!   hold (after every step);
//! - a finished request holds nothing: completed ones are charged their price, failed ones
//!   refunded in full (after every step);
//! - every accepted request ends exactly once (one `ResultReturned` or `RequestFailed` on the
//!   log, never a second), within its bound after its `RequestAccepted` (`Witness::bound`
//!   derives it from the catalog), and no dispatch of it goes to a node it already tried;
//! - no node is paid for slots it did not prove: at each `RewardEpochSettled`, a payout's
//!   `verified_slots` never exceed the distinct uptime slots of that epoch in which a
//!   `NodeHeartbeat` or `CommitmentVerified` naming the node is on the log, and a node with
//!   none is paid nothing;
//! - a restart from a snapshot and the log's tail gives the state the core had, and so does a
//!   full re-fold of the log (every 5,000 steps and at the end);
//! - after the drain (no new work, time runs on), every accepted request has ended.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeZone, Utc};
use prlx_commands::decide::{decide, Command, Completion, Dispatch, Rejection, Submission};
use prlx_commands::settle::due_settlements;
use prlx_commands::testkit::fixtures::{catalog, heartbeat, model, registration, submission};
use prlx_events::event::*;
use prlx_events::{AccountId, Envelope, Event, Hash32, Header, NodeId, RequestId};
use prlx_projections::coordinator::RequestStatus;
use prlx_projections::scheduler::next_assignment;
use prlx_projections::snapshot::{Snapshot, FORMAT_VERSION};
use prlx_projections::validation::hold_deadline;
use prlx_projections::{CoordinatorState, Fold, Projection};

use crate::rng::Rng;

/// One run's parameters.
#[derive(Debug, Clone, Copy)]
pub struct SimParams {
    pub seed: u64,
    /// Generator steps before the drain.
    pub steps: u64,
    pub nodes: u32,
}

/// What a run did, for the test to look at and print.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimReport {
    pub events: u64,
    pub requests: u64,
    pub completed: u64,
    pub failed: u64,
    /// Commands the core refused (malformed or hostile ones are generated on purpose).
    pub refused: u64,
    pub dispatches: u64,
    pub late_reports: u64,
    pub replayed_reports: u64,
    /// Nodes registered after the start.
    pub joins: u64,
    /// Restarts from a snapshot plus the log's tail.
    pub restarts: u64,
    /// Payouts checked against the uptime proofs on the log.
    pub payouts_checked: u64,
    /// The longest time from a request's acceptance to its end, in seconds.
    pub longest_request_s: i64,
}

/// How a simulated node behaves for the whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Honest,
    /// Takes work and never answers.
    Silent,
    /// Answers after the deadline.
    Late,
    /// Answers with a wrong result now and then.
    Wrong,
    /// Answers with a result whose commitment does not check.
    BadCommitment,
}

/// The behaviours nodes are given, honest ones most often.
const KINDS: [Behaviour; 7] = [
    Behaviour::Honest,
    Behaviour::Honest,
    Behaviour::Honest,
    Behaviour::Silent,
    Behaviour::Late,
    Behaviour::Wrong,
    Behaviour::BadCommitment,
];

/// The most simulated time that passes between two runs of the timers: a generator step
/// advances the clock by under 4 s, a drain round by 5 s.
const STEP_SECONDS: i64 = 5;

fn h(parts: &[&[u8]]) -> Hash32 {
    Hash32::of(&parts.concat())
}

/// The core, stamped with the simulated clock and folded as the shell would.
struct Core {
    fold: Fold<CoordinatorState>,
    log: Vec<Envelope>,
    now: DateTime<Utc>,
    deposited: u64,
    charged: u64,
    witness: Witness,
}

impl Core {
    /// Folds one decision's events, stamped with one time and one batch, as the shell does.
    fn apply(&mut self, events: Vec<Event>) -> Result<(), String> {
        let batch = uuid::Uuid::from_u128(self.log.len() as u128 + 1);
        for event in events {
            match &event {
                Event::CreditsDeposited(d) => self.deposited += d.amount,
                Event::CreditsCharged(c) => self.charged += c.amount,
                _ => {}
            }
            let seq = self.log.len() as u64;
            let env = Envelope::new(
                Header {
                    event_id: uuid::Uuid::from_u128(u128::from(seq) + 1),
                    recorded_at: self.now,
                    producer: "sim".into(),
                    sequence: seq,
                    correlation_id: Some(batch),
                    causation_id: None,
                    prev: None,
                },
                event,
            );
            self.fold
                .feed(seq, &env)
                .map_err(|e| format!("the core's own event does not fold: {e}"))?;
            self.witness
                .watch(&env)
                .map_err(|e| format!("offset {seq}: {e}"))?;
            self.log.push(env);
        }
        Ok(())
    }

    /// Decides and applies; a refusal is an answer, not a failure.
    fn run(&mut self, command: Command) -> Result<Result<(), Rejection>, String> {
        match decide(&self.fold.state, command) {
            Ok(events) => self.apply(events).map(Ok),
            Err(r) => Ok(Err(r)),
        }
    }
}

/// One accepted request as the log tells it.
#[derive(Debug)]
struct Lifetime {
    accepted_at: DateTime<Utc>,
    deadline_seconds: u32,
    /// Set at its first `CommitmentVerified`: every later dispatch is a replica.
    verified: bool,
    /// Dispatches after the first verified result (replicas and tie-breakers).
    replicas: u32,
    /// Every node dispatched to, primary or replica.
    tried: BTreeSet<NodeId>,
    ended_at: Option<DateTime<Utc>>,
}

/// Watches the log beside the fold, as an auditor would, for the invariants the fold does not
/// keep itself: each request's lifetime, and the proofs that earn uptime slots. It is the
/// simulation's own record, so it survives the core's restarts.
#[derive(Debug, Default)]
struct Witness {
    /// `queue_timeout_seconds` and `unconfirmed_hold_seconds` of the catalog (published once).
    queue_timeout: i64,
    hold: i64,
    /// The reward policy's `uptime_slot_seconds`.
    slot_seconds: i64,
    requests: BTreeMap<RequestId, Lifetime>,
    /// `(node, slot)` for every `NodeHeartbeat` or `CommitmentVerified` naming the node, the
    /// slot counted in `slot_seconds` from the Unix epoch (reward epochs start at multiples
    /// of their length, which the slot divides, so these are the fold's slots); dropped once
    /// their epoch is settled.
    proofs: BTreeSet<(NodeId, i64)>,
    payouts_checked: u64,
    longest: i64,
}

impl Witness {
    fn slot(&self, at: DateTime<Utc>) -> i64 {
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
    fn bound(&self, life: &Lifetime) -> i64 {
        let (d, h, k) = (
            i64::from(life.deadline_seconds),
            self.hold,
            i64::from(life.replicas),
        );
        self.queue_timeout + d + STEP_SECONDS + k * (h + d + 2 * STEP_SECONDS) + h + STEP_SECONDS
    }

    fn watch(&mut self, env: &Envelope) -> Result<(), String> {
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

    fn lifetime(&mut self, id: RequestId) -> Result<&mut Lifetime, String> {
        self.requests.get_mut(&id).ok_or_else(|| unaccepted(id))
    }

    /// A `ResultReturned` or `RequestFailed` for `id`, recorded at `at`.
    fn end(&mut self, id: RequestId, at: DateTime<Utc>) -> Result<(), String> {
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
    fn check_payouts(&mut self, settled: &RewardEpochSettled) -> Result<(), String> {
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
    fn all_ended(&self) -> Result<(), String> {
        match self.requests.iter().find(|(_, l)| l.ended_at.is_none()) {
            Some((id, l)) => Err(format!(
                "request {id}, accepted at {}, has no ResultReturned or RequestFailed on the log",
                l.accepted_at
            )),
            None => Ok(()),
        }
    }
}

fn unaccepted(id: RequestId) -> String {
    format!("request {id} is on the log but was never accepted")
}

/// Restarts the core: its fold is replaced by the one `snapshot` restores plus the log from
/// the snapshot's offset on, as the shell does at start, and deciding goes on from it. The
/// restored fold must be the one the core had.
fn restart(core: &mut Core, snapshot: &[u8]) -> Result<(), String> {
    let snap: Snapshot<CoordinatorState> =
        serde_json::from_slice(snapshot).map_err(|e| format!("snapshot does not read: {e}"))?;
    if snap.format_version != FORMAT_VERSION || snap.fold_version != CoordinatorState::FOLD_VERSION
    {
        return Err("the snapshot has another version".into());
    }
    let mut fold = snap.fold;
    let from = fold.next_offset();
    for (offset, env) in core.log.iter().enumerate().skip(from as usize) {
        fold.feed(offset as u64, env)
            .map_err(|e| format!("the log's tail does not fold on the snapshot: {e}"))?;
    }
    if fold != core.fold {
        return Err(format!(
            "restarting from the snapshot at offset {from} and {} records of tail gives \
             another state",
            core.log.len() as u64 - from
        ));
    }
    core.fold = fold;
    Ok(())
}

/// The registration of the run's `index`-th node, which behaves as `kind`; its tier, models,
/// slots and stake are drawn.
fn register(
    rng: &mut Rng,
    seed: u64,
    index: u32,
    kind: Behaviour,
    behaviour: &mut BTreeMap<NodeId, Behaviour>,
) -> Event {
    let id = NodeId(h(&[b"sim-node", &seed.to_be_bytes(), &index.to_be_bytes()]));
    behaviour.insert(id, kind);
    NodeRegistered {
        hardware_tier: 1 + rng.below(3) as u8,
        models: if rng.chance(70) {
            vec!["m1".into(), "m2".into()]
        } else {
            vec![["m1", "m2"][rng.below(2) as usize].into()]
        },
        slots: 1 + rng.below(3) as u32,
        stake: 100 + rng.below(10_000),
        execution_class: ExecutionClass {
            device: "cpu-sim".into(),
            driver: "none".into(),
            runtime: "onnxruntime-sim".into(),
        },
        ..registration(id, String::new())
    }
    .into()
}

/// Runs one seed and returns what it did and the log it wrote (for the auditor); `Err` names
/// the seed, the step and the invariant that broke.
pub fn run(p: SimParams) -> Result<(SimReport, Vec<Envelope>), String> {
    let mut rng = Rng::new(p.seed);
    let mut core = Core {
        fold: Fold::default(),
        log: Vec::new(),
        now: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        deposited: 0,
        charged: 0,
        witness: Witness::default(),
    };
    let mut report = SimReport::default();
    let models = ["m1", "m2"];
    core.run(Command::PublishCatalog(CatalogPublished {
        max_tier: 3,
        max_deadline_seconds: 60,
        queue_timeout_seconds: 300,
        validation: ValidationPolicy {
            sampling_bp: 2_000,
            epoch_seconds: 600,
            ..Default::default()
        },
        ..catalog(
            models
                .iter()
                .map(|m| CatalogModel {
                    max_tokens_limit: 100,
                    ..model(m, h(&[m.as_bytes()]))
                })
                .collect(),
        )
    }))?
    .map_err(|r| format!("catalog refused: {r}"))?;
    core.run(Command::Settlement(
        prlx_commands::settle::SettlementCommand::PublishPolicy(RewardPolicyPublished {
            epoch_seconds: 600,
            uptime_slot_seconds: 60,
            ..Default::default()
        }),
    ))?
    .map_err(|r| format!("reward policy refused: {r}"))?;

    let mut behaviour: BTreeMap<NodeId, Behaviour> = BTreeMap::new();
    // Every kind is present in every run; which node gets which is the seed's.
    let nodes: Vec<Event> = (0..p.nodes)
        .map(|i| {
            let kind = KINDS[i as usize % KINDS.len()];
            register(&mut rng, p.seed, i, kind, &mut behaviour)
        })
        .collect();
    core.apply(nodes)?;
    let accounts = [AccountId("rich".into()), AccountId("poor".into())];
    let mut epoch_seed = (
        1u64,
        h(&[b"seed", &p.seed.to_be_bytes(), &1u64.to_be_bytes()]),
    );
    core.run(Command::CommitSamplingSeed {
        epoch: 1,
        seed_hash: Hash32::of(&epoch_seed.1 .0),
        sealed_seed: Sealed(Vec::new()),
    })?
    .map_err(|r| format!("seed refused: {r}"))?;

    let mut tx = 0u64;
    let mut snapshot: Option<Vec<u8>> = None;
    let snapshot_of =
        |core: &Core| serde_json::to_vec(&Snapshot::of(&core.fold)).map_err(|e| e.to_string());
    for step in 0..p.steps {
        let at = |e: String| format!("seed {} step {step}: {e}", p.seed);
        match rng.below(100) {
            0..=29 => {
                let account = accounts[rng.below(2) as usize].clone();
                let model = ["m1", "m2", "m2", "nope"][rng.below(4) as usize];
                let payload = step.to_be_bytes();
                let mut s = Submission {
                    source: IntakeSource::Local,
                    credit_account: account,
                    hardware_tier: 1 + rng.below(4) as u8,
                    max_tokens: 1 + rng.below(120) as u32,
                    deadline_seconds: 1 + rng.below(70) as u32,
                    priority: [Priority::Low, Priority::Standard, Priority::High]
                        [rng.below(3) as usize],
                    idempotency_key: rng.chance(30).then(|| format!("k{}", rng.below(50))),
                    ..submission(model, &payload)
                };
                if rng.chance(3) {
                    s.computed_payload_hash = Hash32([0; 32]);
                }
                match core.run(Command::SubmitRequest(Box::new(s))).map_err(at)? {
                    Ok(()) => {}
                    Err(_) => report.refused += 1,
                }
            }
            30..=34 => {
                // Some references repeat: a repeated deposit credits once.
                tx += u64::from(rng.chance(80));
                let account = accounts[usize::from(rng.chance(20))].clone();
                let amount = rng.below(50_000);
                let outcome = core
                    .run(Command::DepositCredits {
                        account,
                        tx_ref: format!("0x{tx}"),
                        amount,
                    })
                    .map_err(at)?;
                report.refused += u64::from(outcome.is_err());
            }
            35..=54 => {
                core.now += chrono::Duration::milliseconds(rng.below(4_000) as i64);
                // A late node's report can arrive before the timer has noticed the deadline.
                if rng.chance(50) {
                    report_one(
                        &mut core,
                        &mut rng,
                        &behaviour,
                        true,
                        epoch_seed.1,
                        &mut report,
                    )
                    .map_err(at)?;
                }
            }
            55..=84 => {
                report_one(
                    &mut core,
                    &mut rng,
                    &behaviour,
                    false,
                    epoch_seed.1,
                    &mut report,
                )
                .map_err(at)?;
            }
            85..=89 => {
                // A report replayed for an attempt that is over.
                let done: Vec<(RequestId, NodeId, u32)> = core
                    .fold
                    .state
                    .requests
                    .iter()
                    .filter(|(_, r)| r.attempts > 0)
                    .flat_map(|(id, r)| r.tried.iter().map(move |n| (*id, *n, r.attempts - 1)))
                    .collect();
                if done.is_empty() {
                    continue;
                }
                let (request, node, attempt) = done[rng.below(done.len() as u64) as usize];
                report.replayed_reports += 1;
                let outcome = core
                    .run(honest_completion(
                        request,
                        node,
                        attempt,
                        core.now,
                        epoch_seed.1,
                    ))
                    .map_err(at)?;
                report.refused += u64::from(outcome.is_err());
            }
            _ => {
                // A heartbeat; silent nodes heartbeat too (they are up, just lying).
                let ids: Vec<NodeId> = behaviour.keys().copied().collect();
                let node_id = ids[rng.below(ids.len() as u64) as usize];
                let outcome = core.run(heartbeat(node_id, core.now)).map_err(at)?;
                report.refused += u64::from(outcome.is_err());
            }
        }
        // Now and then, between steps: a node joins with a drawn behaviour (registration
        // skips `decide`, as at the start), the shell saves a snapshot, or the core restarts
        // from its last one (at least once, halfway).
        let rare = if step == p.steps / 2 {
            5
        } else {
            rng.below(4_000)
        };
        match rare {
            0..=3 => {
                let index = behaviour.len() as u32;
                let kind = KINDS[rng.below(KINDS.len() as u64) as usize];
                let joined = register(&mut rng, p.seed, index, kind, &mut behaviour);
                core.apply(vec![joined]).map_err(at)?;
                report.joins += 1;
            }
            4 => snapshot = Some(snapshot_of(&core).map_err(at)?),
            5 => {
                let bytes = match snapshot.take() {
                    Some(bytes) => bytes,
                    None => snapshot_of(&core).map_err(at)?,
                };
                restart(&mut core, &bytes).map_err(at)?;
                report.restarts += 1;
            }
            _ => {}
        }
        timers(&mut core, &mut epoch_seed, &mut report).map_err(at)?;
        check(&core).map_err(at)?;
        if step % 5_000 == 4_999 {
            check_replays(&core).map_err(at)?;
        }
    }

    // The drain: no new work; time runs on and honest nodes keep answering.
    for round in 0..2_000 {
        let open: Vec<(RequestId, NodeId, u32)> = core
            .fold
            .state
            .requests
            .iter()
            .filter_map(|(id, r)| {
                let a = r.running.as_ref()?;
                Some((*id, a.node, a.attempt))
            })
            .collect();
        for (request, node, attempt) in open {
            if behaviour[&node] == Behaviour::Honest {
                core.run(honest_completion(
                    request,
                    node,
                    attempt,
                    core.now,
                    epoch_seed.1,
                ))
                .map_err(|e| format!("drain round {round}: {e}"))?
                .ok();
            }
        }
        core.now += chrono::Duration::seconds(5);
        for node_id in behaviour.keys().copied().collect::<Vec<_>>() {
            core.run(heartbeat(node_id, core.now))?.ok();
        }
        timers(&mut core, &mut epoch_seed, &mut report)
            .map_err(|e| format!("drain round {round}: {e}"))?;
        check(&core).map_err(|e| format!("drain round {round}: {e}"))?;
        if core
            .fold
            .state
            .requests
            .values()
            .all(|r| r.status != RequestStatus::Accepted)
        {
            break;
        }
    }
    check_replays(&core)?;
    let st = &core.fold.state;
    for (id, r) in &st.requests {
        match r.status {
            RequestStatus::Completed => report.completed += 1,
            RequestStatus::Failed => report.failed += 1,
            RequestStatus::Accepted => {
                return Err(format!(
                    "seed {}: request {id} never ended (queued: {}, running: {:?}, attempts {}, \
                     failures {}, tried {:?})",
                    p.seed,
                    r.queued.is_some(),
                    r.running,
                    r.attempts,
                    r.failures,
                    r.tried
                ))
            }
        }
    }
    // The fold says so; the log must too: one ending event per accepted request.
    core.witness
        .all_ended()
        .map_err(|e| format!("seed {}: {e}", p.seed))?;
    report.requests = st.requests.len() as u64;
    report.events = core.log.len() as u64;
    report.payouts_checked = core.witness.payouts_checked;
    report.longest_request_s = core.witness.longest;
    Ok((report, core.log))
}

/// A node reports on one of its running attempts, as its behaviour says; with `late_only`,
/// only a late node past its deadline does.
fn report_one(
    core: &mut Core,
    rng: &mut Rng,
    behaviour: &BTreeMap<NodeId, Behaviour>,
    late_only: bool,
    seed: Hash32,
    report: &mut SimReport,
) -> Result<(), String> {
    let now = core.now;
    let running: Vec<(RequestId, NodeId, u32, DateTime<Utc>)> = core
        .fold
        .state
        .requests
        .iter()
        .filter_map(|(id, r)| {
            let a = r.running.as_ref()?;
            Some((*id, a.node, a.attempt, a.deadline_at?))
        })
        .filter(|(_, node, _, deadline)| {
            !late_only || (behaviour[node] == Behaviour::Late && now >= *deadline)
        })
        .collect();
    if running.is_empty() {
        return Ok(());
    }
    let (request, node, attempt, deadline) = running[rng.below(running.len() as u64) as usize];
    let late = now >= deadline;
    let honest = honest_result(request);
    let (commitment, result) = match behaviour[&node] {
        Behaviour::Silent => return Ok(()),
        Behaviour::Late if !late => return Ok(()),
        Behaviour::Honest | Behaviour::Late => (Ok(()), honest),
        Behaviour::Wrong if rng.chance(50) => (Ok(()), h(&[b"wrong", &[0]])),
        Behaviour::Wrong => (Ok(()), honest),
        Behaviour::BadCommitment => (Err("PoE does not match".into()), honest),
    };
    report.late_reports += u64::from(late);
    let outcome = core.run(completion(
        request, node, attempt, commitment, result, now, seed,
    ))?;
    report.refused += u64::from(outcome.is_err());
    Ok(())
}

/// The result every honest node computes for `request`.
fn honest_result(request: RequestId) -> Hash32 {
    h(&[b"honest", &request.0.to_be_bytes()])
}

/// An honest, checked report of `attempt` of `request` by `node`, decided at `now`.
fn honest_completion(
    request: RequestId,
    node: NodeId,
    attempt: u32,
    now: DateTime<Utc>,
    seed: Hash32,
) -> Command {
    completion(
        request,
        node,
        attempt,
        Ok(()),
        honest_result(request),
        now,
        seed,
    )
}

fn completion(
    request: RequestId,
    node: NodeId,
    attempt: u32,
    commitment: Result<(), String>,
    result: Hash32,
    now: DateTime<Utc>,
    seed: Hash32,
) -> Command {
    Command::CompleteTask(Box::new(Completion {
        request,
        node,
        attempt,
        now,
        sealed_result: Sealed(Vec::new()),
        poe: Hash32([0; 32]),
        signature: Sealed(Vec::new()),
        token_count: 1,
        commitment,
        result_hash: result,
        sealed_for_client: Sealed(result.0.to_vec()),
        seed: Some(seed),
        earlier: None,
    }))
}

/// What the shell's housekeeping does at `now`: expire deadlines, lapse silent nodes, end
/// queued requests past the admission bound, roll sampling epochs, settle reward epochs, and
/// dispatch what can be placed.
fn timers(
    core: &mut Core,
    epoch_seed: &mut (u64, Hash32),
    report: &mut SimReport,
) -> Result<(), String> {
    let now = core.now;
    let st = &core.fold.state;
    let expired: Vec<(RequestId, NodeId, u32, Option<Sealed>)> = st
        .requests
        .iter()
        .filter_map(|(id, r)| {
            let a = r.running.as_ref()?;
            (a.deadline_at? <= now).then(|| {
                let release =
                    (r.results.len() == 1).then(|| Sealed(r.results[0].result_hash.0.to_vec()));
                (*id, a.node, a.attempt, release)
            })
        })
        .collect();
    let lapsed: Vec<NodeId> = st
        .nodes
        .iter()
        .filter(|(_, n)| !n.lapsed && n.last_heartbeat + st.node_timeout() <= now)
        .map(|(id, _)| *id)
        .collect();
    let queued: Vec<RequestId> = st
        .requests
        .iter()
        .filter(|(_, r)| r.queued.is_some())
        .map(|(id, _)| *id)
        .collect();
    for (request, node, attempt, release) in expired {
        core.run(Command::ExpireDeadline {
            request,
            node,
            attempt,
            now,
            release,
        })?
        .map_err(|r| format!("the timer's expiry was refused: {r}"))?;
    }
    for node_id in lapsed {
        core.run(Command::LapseNode { node_id, now })?
            .map_err(|r| format!("the timer's lapse was refused: {r}"))?;
    }
    for request in queued {
        // The core says whether the bound has passed; before it, the command is refused.
        core.run(Command::ExpireQueued { request, now })?.ok();
    }
    // Sampled results that waited out the hold for a replica go out unconfirmed.
    let st = &core.fold.state;
    let held: Vec<(RequestId, Option<Sealed>)> = (st.sched.replicas.iter())
        .filter(|(_, id)| hold_deadline(st, *id).is_some_and(|due| due <= now))
        .map(|(_, id)| {
            let r = &st.requests[id];
            let release =
                (r.results.len() == 1).then(|| Sealed(r.results[0].result_hash.0.to_vec()));
            (*id, release)
        })
        .collect();
    for (request, release) in held {
        core.run(Command::ReleaseUnconfirmed {
            request,
            now,
            release,
        })?
        .map_err(|r| format!("the timer's release of a held result was refused: {r}"))?;
    }
    let ends = core.fold.state.sampling.current.as_ref().map(|e| e.ends_at);
    if ends.is_some_and(|at| at <= now) {
        let (epoch, seed) = *epoch_seed;
        core.run(Command::RevealSamplingSeed { epoch, seed })?
            .map_err(|r| format!("the reveal was refused: {r}"))?;
        let next = (
            epoch + 1,
            h(&[b"seed", &seed.0, &(epoch + 1).to_be_bytes()]),
        );
        core.run(Command::CommitSamplingSeed {
            epoch: next.0,
            seed_hash: Hash32::of(&next.1 .0),
            sealed_seed: Sealed(Vec::new()),
        })?
        .map_err(|r| format!("the next seed was refused: {r}"))?;
        *epoch_seed = next;
    }
    for command in due_settlements(&core.fold.state, now) {
        core.run(Command::Settlement(command))?
            .map_err(|r| format!("a due settlement was refused: {r}"))?;
    }
    while let Some(choice) = next_assignment(&core.fold.state, Some(&epoch_seed.1)) {
        report.dispatches += 1;
        core.run(Command::Dispatch(Box::new(Dispatch {
            choice,
            sealed_work: Sealed(Vec::new()),
            now,
            seed: Some(epoch_seed.1),
        })))?
        .map_err(|r| format!("the scheduler's own choice was refused: {r}"))?;
    }
    Ok(())
}

/// The money invariants, after every step.
fn check(core: &Core) -> Result<(), String> {
    let st = &core.fold.state;
    let held: u64 = st.accounts.values().map(|a| a.balance).sum();
    if held != core.deposited - core.charged {
        return Err(format!(
            "accounts hold {held}, but {} was deposited and {} charged",
            core.deposited, core.charged
        ));
    }
    let mut reserved_by: BTreeMap<&AccountId, u64> = BTreeMap::new();
    for (id, r) in &st.requests {
        match r.status {
            RequestStatus::Accepted => *reserved_by.entry(&r.account).or_default() += r.reserved,
            RequestStatus::Completed if r.charged != r.price || r.reserved != 0 => {
                return Err(format!(
                    "completed request {id}: price {}, charged {}, still reserved {}",
                    r.price, r.charged, r.reserved
                ))
            }
            RequestStatus::Failed if r.reserved != 0 || r.charged != 0 => {
                return Err(format!(
                    "failed request {id}: charged {}, still reserved {}",
                    r.charged, r.reserved
                ))
            }
            _ => {}
        }
    }
    for (account, a) in &st.accounts {
        let open = reserved_by.get(account).copied().unwrap_or(0);
        if a.reserved != open || a.reserved > a.balance {
            return Err(format!(
                "account {account}: balance {}, reserved {}, open requests hold {open}",
                a.balance, a.reserved
            ));
        }
    }
    Ok(())
}

/// A snapshot restores to the same state, and re-folding the whole log from scratch does too.
fn check_replays(core: &Core) -> Result<(), String> {
    let bytes = serde_json::to_vec(&Snapshot::of(&core.fold)).map_err(|e| e.to_string())?;
    let snap: Snapshot<CoordinatorState> =
        serde_json::from_slice(&bytes).map_err(|e| format!("snapshot does not read: {e}"))?;
    if snap.fold.state != core.fold.state {
        return Err("the snapshot restores to another state".into());
    }
    let mut again = Fold::<CoordinatorState>::default();
    for (offset, env) in core.log.iter().enumerate() {
        again
            .feed(offset as u64, env)
            .map_err(|e| format!("re-folding the log fails: {e}"))?;
    }
    if again.state != core.fold.state {
        return Err("re-folding the log gives another state".into());
    }
    Ok(())
}
