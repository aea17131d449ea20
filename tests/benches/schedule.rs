//! Scheduling decision cost at 1k vs 100k registered nodes (target: within 2x), side by side.
//!
//! `cargo bench -p prlx-tests --bench schedule`. For each pool size: `next_assignment` on a
//! state with 1,000 queued requests (the pure decision), and the full dispatch cycle (decide +
//! fold, which re-derives the decision as the auditor does) for 1,000 requests.

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use prlx_commands::decide::{decide, Command, Dispatch};
use prlx_commands::testkit::fixtures::{
    catalog, cpu, deposited, model, registration, request_accepted,
};
use prlx_events::event::*;
use prlx_events::{AccountId, Envelope, Event, Hash32, Header, NodeId};
use prlx_projections::fold::Projection;
use prlx_projections::scheduler::next_assignment;
use prlx_projections::CoordinatorState;

const MODELS: [&str; 4] = ["chat-a", "chat-b", "chat-c", "chat-d"];

fn env(seq: u64, event: Event) -> Envelope {
    Envelope::new(
        Header {
            event_id: uuid::Uuid::from_u128(u128::from(seq)),
            recorded_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            producer: "bench".into(),
            sequence: seq,
            // One batch throughout: each decision's events are applied together, in order.
            correlation_id: Some(uuid::Uuid::from_u128(1)),
            causation_id: None,
            prev: None,
        },
        event,
    )
}

fn node_id(i: u32) -> NodeId {
    let mut b = [0u8; 32];
    b[..4].copy_from_slice(&i.to_be_bytes());
    NodeId(Hash32(b))
}

fn build(nodes: u32, requests: u64) -> CoordinatorState {
    let mut st = CoordinatorState::default();
    let mut seq = 0;
    let mut apply = |st: &mut CoordinatorState, e: Event| {
        st.apply(&env(seq, e)).unwrap();
        seq += 1;
    };
    apply(
        &mut st,
        catalog(
            MODELS
                .iter()
                .map(|m| CatalogModel {
                    base_price: 1,
                    per_token_price: 0,
                    max_tokens_limit: 10,
                    ..model(m, Hash32([0; 32]))
                })
                .collect(),
        )
        .into(),
    );
    for i in 0..nodes {
        apply(
            &mut st,
            NodeRegistered {
                hardware_tier: (i % 5 + 1) as u8,
                models: vec![
                    MODELS[(i % 4) as usize].to_string(),
                    MODELS[((i + 1) % 4) as usize].to_string(),
                ],
                slots: 2,
                stake: 1,
                execution_class: cpu("onnxruntime-1.22"),
                ..registration(node_id(i), String::new())
            }
            .into(),
        );
    }
    apply(
        &mut st,
        CreditsDeposited {
            account: AccountId("a".into()),
            ..deposited(u64::MAX / 2)
        }
        .into(),
    );
    for r in 0..requests {
        apply(
            &mut st,
            RequestAccepted {
                source: IntakeSource::Local,
                model: MODELS[(r % 4) as usize].into(),
                hardware_tier: (r % 3 + 1) as u8,
                deadline_seconds: 60,
                max_tokens: 1,
                credit_account: AccountId("a".into()),
                payload_hash: Hash32([0; 32]),
                sealed_payload: Sealed(vec![]),
                price: 1,
                ..request_accepted(r)
            }
            .into(),
        );
    }
    st
}

fn main() {
    let quick = std::env::var_os("PRLX_BENCH_QUICK").is_some();
    let calls = if quick { 2_000 } else { 20_000 };
    println!(
        "| registered nodes | next_assignment (µs/decision) | decide + fold per dispatch (µs) |"
    );
    println!("|---:|---:|---:|");
    let mut results = Vec::new();
    let states: Vec<_> = [1_000u32, 100_000]
        .iter()
        .map(|&n| (n, build(n, 1_000)))
        .collect();
    // Decision time: both pool sizes alternately, five rounds, median.
    let mut decisions = [Vec::new(), Vec::new()];
    for _ in 0..5 {
        for (i, (_, st)) in states.iter().enumerate() {
            let t = Instant::now();
            for _ in 0..calls {
                std::hint::black_box(next_assignment(std::hint::black_box(st), None));
            }
            decisions[i].push(t.elapsed() / calls);
        }
    }
    for (i, (nodes, st)) in states.into_iter().enumerate() {
        decisions[i].sort();
        let decision = decisions[i][2];

        let mut st = st;
        let mut seq = 1 << 40;
        let t = Instant::now();
        let mut dispatched = 0u32;
        while let Some(choice) = next_assignment(&st, None) {
            let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
            let events = decide(
                &st,
                Command::Dispatch(Box::new(Dispatch {
                    choice,
                    sealed_work: Sealed(vec![0; 64]),
                    now,
                    seed: None,
                })),
            )
            .unwrap();
            for e in events {
                st.apply(&env(seq, e)).unwrap();
                seq += 1;
            }
            dispatched += 1;
        }
        let cycle = t.elapsed() / dispatched.max(1);
        assert_eq!(dispatched, 1_000, "every request found a node");
        println!(
            "| {nodes} | {:.2} | {:.2} |",
            micros(decision),
            micros(cycle)
        );
        results.push((decision, cycle));
    }
    println!();
    println!(
        "100k / 1k: decision {:.2}x, dispatch cycle {:.2}x",
        results[1].0.as_secs_f64() / results[0].0.as_secs_f64(),
        results[1].1.as_secs_f64() / results[0].1.as_secs_f64()
    );
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
