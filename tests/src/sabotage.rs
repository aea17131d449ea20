//! The sabotage simulation of the validation issue: a pool of simulated nodes with a fast
//! deterministic executor, driving the real coordinator core (`decide` and the fold), with
//! a fraction of saboteurs that return wrong results at some rate.
//!
//! Only the node side is simulated: every request is submitted, scheduled, dispatched,
//! completed, sampled, compared and settled by the same code the coordinator runs, and every
//! event is folded (so the fold's re-derivation of each scheduling receipt, verdict and
//! standing change runs too). Registration skips `decide` because it wants a real RSA key per
//! node, which costs a second each and tests nothing here.
//!
//! Saboteurs collude: a sabotaged result of a request is the same bytes on every saboteur,
//! the worst case for a majority vote. All nodes share one execution class, so any node can
//! replicate any other. Everything random derives from `seed` through SHA-256.

use chrono::{DateTime, TimeZone, Utc};
use prlx_commands::decide::{decide, Command, Completion, Dispatch, Submission};
use prlx_commands::testkit::fixtures::{catalog, model, registration, unsigned_submission};
use prlx_events::event::*;
use prlx_events::{Envelope, Event, Hash32, Header, NodeId, RequestId};
use prlx_projections::coordinator::{RequestStatus, RequestSummary};
use prlx_projections::scheduler::next_assignment;
use prlx_projections::{CoordinatorState, Fold};
use std::collections::{BTreeMap, BTreeSet};

/// One run's parameters. Fractions in basis points.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub nodes: u32,
    pub requests: u64,
    /// f: the fraction of nodes that are saboteurs.
    pub saboteurs_bp: u32,
    /// s: how often a saboteur returns a wrong result.
    pub sabotage_bp: u32,
    /// p: the sampled fraction.
    pub sampling_bp: u32,
    /// The standing policy's weight of a proven bad result (default 4; a huge weight is
    /// blacklisting on the first catch, Sarmenta's model).
    pub invalid_weight: u32,
    pub seed: u64,
}

/// What a run measured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub requests: u64,
    /// Results returned to the client, and how many of them were wrong.
    pub released: u64,
    pub wrong_released: u64,
    /// Requests that failed (no majority, or no valid result).
    pub failed: u64,
    /// Wrong results submitted, and how many of those were never released.
    pub wrong_submitted: u64,
    pub wrong_caught: u64,
    pub saboteurs: u32,
    /// Saboteurs that submitted at least one wrong result, and those removed from the pool.
    pub saboteurs_active: u32,
    pub saboteurs_removed: u32,
    /// Honest nodes that were flagged (outvoted or party to a no-majority comparison), and
    /// those removed from the pool.
    pub honest_flagged: u32,
    pub honest_removed: u32,
    /// Dispatches in all, first and redundant.
    pub dispatches: u64,
    /// Events folded.
    pub events: u64,
}

impl Outcome {
    /// Wrong results accepted, as a fraction of results released.
    pub fn error_rate(&self) -> f64 {
        ratio(self.wrong_released, self.released)
    }

    /// Wrong results that were caught, as a fraction of wrong results submitted.
    pub fn detection_rate(&self) -> f64 {
        ratio(self.wrong_caught, self.wrong_submitted)
    }

    /// Extra dispatches per request: the price of redundancy.
    pub fn overhead(&self) -> f64 {
        ratio(self.dispatches, self.requests) - 1.0
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// The analytic expectations next to which a run is reported.
impl Params {
    /// Without removal from the pool: a wrong result slips through when it is not sampled
    /// (or its replica colludes), about `f * s * (1 - p * (1 - f))` of results.
    pub fn expected_error_without_removal(&self) -> f64 {
        let (f, s, p) = self.fractions();
        f * s * (1.0 - p * (1.0 - f))
    }

    /// Sarmenta (2002), spot-checking with blacklisting: `eps <= f / ((1 - f) q n e)`, with
    /// `q` the spot-check rate (here p) and `n` the work a saboteur does in the run (here
    /// requests per node). It bounds the error over every sabotage rate a saboteur could
    /// choose.
    pub fn sarmenta_bound(&self) -> f64 {
        let (f, _, p) = self.fractions();
        let n = self.requests as f64 / f64::from(self.nodes);
        if p == 0.0 || f == 0.0 {
            return if f == 0.0 { 0.0 } else { f64::INFINITY };
        }
        f / ((1.0 - f) * p * n * std::f64::consts::E)
    }

    fn fractions(&self) -> (f64, f64, f64) {
        (
            f64::from(self.saboteurs_bp) / 1e4,
            f64::from(self.sabotage_bp) / 1e4,
            f64::from(self.sampling_bp) / 1e4,
        )
    }
}

fn h(parts: &[&[u8]]) -> Hash32 {
    Hash32::of(&parts.concat())
}

fn node_id(i: u32) -> NodeId {
    NodeId(h(&[b"sim-node", &i.to_be_bytes()]))
}

/// The coordinator core, stamped and folded as the shell would.
struct Core {
    fold: Fold<CoordinatorState>,
    /// Every settled request's summary, taken when it settled.
    settled: BTreeMap<RequestId, RequestSummary>,
    seq: u64,
    start: DateTime<Utc>,
}

impl Core {
    /// Stamps `events` with one time and one batch, as the shell stamps one decision's
    /// events: the fold re-derives a dispatch's deadline from the time it is recorded at and
    /// checks that a decision's events complete within their batch.
    fn apply(&mut self, events: Vec<Event>) -> Vec<Event> {
        let at = self.now();
        let batch = uuid::Uuid::from_u128(u128::from(self.seq) + 1);
        for e in &events {
            let env = Envelope::new(
                Header {
                    event_id: uuid::Uuid::from_u128(u128::from(self.seq) + 1),
                    recorded_at: at,
                    producer: "sabotage-sim".into(),
                    sequence: self.seq,
                    correlation_id: Some(batch),
                    causation_id: None,
                    prev: None,
                },
                e.clone(),
            );
            self.fold
                .feed(self.seq, &env)
                .unwrap_or_else(|err| panic!("the core's own events do not fold: {err}"));
            self.seq += 1;
        }
        // A settled request leaves the state after a window: its summary is taken now, as
        // the shell takes it for the request index.
        for e in &events {
            let id = match e {
                Event::ResultReturned(r) => r.request_id,
                Event::RequestFailed(r) => r.request_id,
                _ => continue,
            };
            let summary = self.fold.state.summary(id).expect("settled just now");
            self.settled.insert(id, summary);
        }
        events
    }

    fn run(&mut self, command: Command) -> Vec<Event> {
        let events = decide(&self.fold.state, command)
            .unwrap_or_else(|r| panic!("the core refused the simulation's command: {r}"));
        self.apply(events)
    }

    fn now(&self) -> DateTime<Utc> {
        self.start + chrono::Duration::milliseconds(self.seq as i64)
    }
}

/// Runs one configuration to the end: every request released or failed.
pub fn run(p: Params) -> Outcome {
    let seed = p.seed.to_be_bytes();
    let mut core = Core {
        fold: Fold::default(),
        settled: BTreeMap::new(),
        seq: 0,
        start: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
    };
    // A chain address: decide charges it only what it consented to.
    let account = prlx_commands::testkit::accounts::account("parallelix-ai");
    core.run(Command::PublishCatalog(CatalogPublished {
        max_tier: 1,
        max_deadline_seconds: 3_600,
        validation: ValidationPolicy {
            sampling_bp: p.sampling_bp,
            // One epoch for the whole run; the reveal at the end checks every draw.
            epoch_seconds: u32::MAX,
            invalid_weight: p.invalid_weight,
            // The grid measures the catalog's rate: no probation at a higher one.
            probation_results: 0,
            // No timers run here: a result with no peer left goes out at once.
            unconfirmed_hold_seconds: 0,
            ..Default::default()
        },
        ..catalog(vec![CatalogModel {
            base_price: 1,
            per_token_price: 0,
            max_tokens_limit: 16,
            ..model("sim", Hash32([1; 32]))
        }])
    }));
    core.run(Command::DepositCredits {
        account: account.clone(),
        tx_ref: "sim".into(),
        amount: p.requests,
    });
    // The first round(f * nodes) nodes in SHA-256 order of (seed, index) are saboteurs.
    let mut order: Vec<u32> = (0..p.nodes).collect();
    order.sort_by_key(|i| h(&[&seed, &i.to_be_bytes()]));
    let k = (u64::from(p.nodes) * u64::from(p.saboteurs_bp)).div_ceil(10_000) as usize;
    let saboteurs: BTreeSet<NodeId> = order[..k].iter().map(|&i| node_id(i)).collect();
    let nodes: Vec<Event> = (0..p.nodes)
        .map(|i| {
            NodeRegistered {
                models: vec!["sim".into()],
                stake: 1_000,
                execution_class: ExecutionClass {
                    device: "cpu-sim".into(),
                    driver: "none".into(),
                    runtime: "onnxruntime-sim".into(),
                },
                ..registration(node_id(i), String::new())
            }
            .into()
        })
        .collect();
    core.apply(nodes);
    let sampling_seed = h(&[b"sampling", &seed]);
    core.run(Command::CommitSamplingSeed {
        epoch: 1,
        seed_hash: Hash32::of(&sampling_seed.0),
        sealed_seed: Sealed(Vec::new()),
    });
    for r in 0..p.requests {
        let payload = r.to_be_bytes();
        core.run(Command::SubmitRequest(Box::new(
            Submission {
                source: IntakeSource::Local,
                max_tokens: 1,
                credit_account: account.clone(),
                ..unsigned_submission("sim", &payload)
            }
            // Tens of thousands a grid, decided by the core alone (no auditor reads this log).
            .consented_unchecked(),
        )));
    }

    let honest = |r: RequestId| h(&[b"honest", &r.0.to_be_bytes()]);
    let mut out = Outcome {
        requests: p.requests,
        saboteurs: saboteurs.len() as u32,
        ..Outcome::default()
    };
    let mut wrong_by: BTreeSet<NodeId> = BTreeSet::new();
    // Wrong results submitted, by request: whether they were released is known at the end.
    let mut wrong_in: Vec<u64> = vec![0; p.requests as usize];
    loop {
        let mut running = Vec::new();
        while let Some(choice) = next_assignment(&core.fold.state, Some(&sampling_seed)) {
            let now = core.now();
            core.run(Command::Dispatch(Box::new(Dispatch {
                choice: choice.clone(),
                sealed_work: Sealed(Vec::new()),
                now,
                seed: Some(sampling_seed),
            })));
            out.dispatches += 1;
            running.push(choice);
        }
        if running.is_empty() {
            break;
        }
        for c in running {
            let sabotage = saboteurs.contains(&c.node)
                && u64::from_be_bytes(
                    h(&[&seed, &c.node.to_bytes(), &c.request.0.to_be_bytes()]).0[..8]
                        .try_into()
                        .unwrap(),
                ) % 10_000
                    < u64::from(p.sabotage_bp);
            let result = if sabotage {
                out.wrong_submitted += 1;
                wrong_in[c.request.0 as usize] += 1;
                wrong_by.insert(c.node);
                h(&[b"sabotaged", &c.request.0.to_be_bytes()])
            } else {
                honest(c.request)
            };
            core.run(Command::CompleteTask(Box::new(Completion {
                request: c.request,
                node: c.node,
                attempt: c.attempt,
                sealed_result: Sealed(Vec::new()),
                poe: Hash32([0; 32]),
                signature: Sealed(Vec::new()),
                ciphertext_hash: Hash32([0; 32]),
                token_count: 1,
                commitment: Ok(()),
                result_hash: result,
                // What the client gets is the result itself, so the end can check it.
                sealed_for_client: Sealed(result.0.to_vec()),
                seed: Some(sampling_seed),
                earlier: None,
                now: core.now(),
            })));
        }
    }
    // Close the epoch: the fold re-derives every draw from the revealed seed.
    core.run(Command::RevealSamplingSeed {
        epoch: 1,
        seed: sampling_seed,
    });

    let st = &core.fold.state;
    assert!(
        st.requests
            .values()
            .all(|r| r.status != RequestStatus::Accepted),
        "every request in the state settled"
    );
    assert_eq!(
        core.settled.len() as u64,
        p.requests,
        "every request settled"
    );
    for (id, req) in &core.settled {
        match (req.status, &req.result) {
            (RequestStatus::Completed, Some(res)) => {
                out.released += 1;
                let wrong = res.sealed_for_client.0 != honest(*id).0;
                out.wrong_released += u64::from(wrong);
                // Of the wrong results submitted for it, one got out if the release is wrong.
                out.wrong_caught += wrong_in[id.0 as usize] - u64::from(wrong);
            }
            (RequestStatus::Failed, _) => {
                out.failed += 1;
                out.wrong_caught += wrong_in[id.0 as usize];
            }
            other => panic!("request {id} did not finish: {other:?}"),
        }
    }
    out.saboteurs_active = wrong_by.len() as u32;
    for (id, n) in &st.nodes {
        let bad = saboteurs.contains(id);
        let flagged = n.invalid + n.disagreements > 0;
        match (bad, n.in_pool) {
            (true, false) => out.saboteurs_removed += 1,
            (false, false) => out.honest_removed += 1,
            _ => {}
        }
        if !bad && flagged {
            out.honest_flagged += 1;
        }
    }
    out.events = core.seq;
    out
}
