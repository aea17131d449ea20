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

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use prlx_commands::decide::{Command, Completion, Dispatch, Submission};
use prlx_commands::settle::due_settlements;
use prlx_commands::testkit::fixtures::{catalog, heartbeat, model, registration, submission};
use prlx_events::event::*;
use prlx_events::{Envelope, Event, Hash32, NodeId, RequestId};
use prlx_projections::coordinator::RequestStatus;
use prlx_projections::scheduler::next_assignment;
use prlx_projections::snapshot::Snapshot;
use prlx_projections::validation::hold_deadline;
use prlx_projections::Fold;

use crate::rng::Rng;

mod core;
mod witness;

use self::core::{check, check_replays, restart, Core};
use self::witness::Witness;

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

fn h(parts: &[&[u8]]) -> Hash32 {
    Hash32::of(&parts.concat())
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
    // Chain addresses with keys: every submission is signed by its account.
    let accounts = [
        prlx_commands::testkit::accounts::account("rich"),
        prlx_commands::testkit::accounts::account("poor"),
    ];
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
                }
                .signed();
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
        ciphertext_hash: Hash32([0; 32]),
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
