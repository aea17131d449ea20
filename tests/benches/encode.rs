//! The coordinator's encoder thread, alone: what each admitted and dispatched request costs it.
//!
//! `cargo bench -p prlx-tests --bench encode` (`PRLX_BENCH_QUICK=1` for a short run).
//!
//! A request on the file log is four records (`RequestAccepted` with its consent,
//! `CreditsReserved`, `RequestScheduled` with three ranked candidates, `TaskDispatched`), of
//! the sizes the coordinator bench writes (~3.2 KB together). Side by side, per request:
//! - encode: `Envelope::encode` of the four (JSON);
//! - encode + link: `encoder::chain_batch`, what the encoder thread does before an append:
//!   each record linked to the one before it (`prev`, then the record's SHA-256) and encoded;
//! - decode: `Envelope::decode` of the four records, for scale.
//!
//! The coordinator bench's CPU per request (~40 µs on the file log) is what this is part of.

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use prlx_commands::encoder::chain_batch;
use prlx_commands::testkit::fixtures::{self, node};
use prlx_events::chain::Chain;
use prlx_events::event::*;
use prlx_events::onchain::Consent;
use prlx_events::{Envelope, Event, Header, TaskId};

#[path = "../../node/benches/common/median.rs"]
mod median;
use median::median;

fn header(seq: u64) -> Header {
    Header {
        event_id: uuid::Uuid::from_u128(u128::from(seq) * 7919 + 1),
        recorded_at: Utc.with_ymd_and_hms(2026, 12, 7, 1, 14, 52).unwrap()
            + chrono::Duration::nanoseconds(seq as i64 * 1_013),
        producer: "bench/1".into(),
        sequence: seq,
        correlation_id: Some(uuid::Uuid::from_u128(u128::from(seq / 2) * 104_729 + 3)),
        causation_id: None,
        prev: None,
    }
}

/// Request `i`'s four events, as the coordinator records them.
fn request(i: u64) -> Vec<Event> {
    let accepted = RequestAccepted {
        sealed_payload: Sealed(vec![0x5a; 75]),
        consent: Some(Consent {
            signer: "0x94d0b549971ab2eae3685d9fab323c200b454a18".into(),
            signature: format!("0x{}", "b6".repeat(65)),
            chain_id: 31337,
            verifying_contract: format!("0x{}", "00".repeat(20)),
            delegation: None,
            batch: None,
        }),
        ..fixtures::request_accepted(i)
    };
    let task = TaskId::whole(accepted.request_id);
    let ranked = (1..=3)
        .map(|n| CandidateScore {
            node_id: node(n),
            free_slots: 512,
            queue_depth: 0,
            hardware_tier: 1,
            reputation_bp: 10_000,
        })
        .collect();
    let mut events = fixtures::accepted_and_reserved(accepted);
    events.push(
        RequestScheduled {
            task_id: task,
            attempt: 0,
            node_id: node(1),
            candidates_considered: 64,
            ranked,
        }
        .into(),
    );
    events.push(
        TaskDispatched {
            task_id: task,
            attempt: 0,
            node_id: node(1),
            sealed_work: Sealed(vec![0xa5; 140]),
            deadline_at: Utc.with_ymd_and_hms(2026, 12, 7, 2, 14, 52).unwrap(),
        }
        .into(),
    );
    events
}

fn main() {
    let quick = std::env::var_os("PRLX_BENCH_QUICK").is_some();
    let (requests, rounds) = if quick { (2_000, 3) } else { (20_000, 7) };
    let envelopes: Vec<Envelope> = (0..requests)
        .flat_map(|i| request(i as u64))
        .enumerate()
        .map(|(seq, event)| Envelope::new(header(seq as u64), event))
        .collect();
    let encoded: Vec<Vec<u8>> = envelopes.iter().map(Envelope::encode).collect();
    let bytes: usize = encoded.iter().map(Vec::len).sum();
    let (mut encode, mut link, mut decode) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let out: Vec<Vec<u8>> = envelopes.iter().map(Envelope::encode).collect();
        encode.push(t.elapsed());
        std::hint::black_box(out);

        // Its own copy, made before the clock: the encoder owns its batch.
        let batch = envelopes.clone();
        let t = Instant::now();
        let mut chain = Chain::after(None);
        // The encoder thread's own function, with no seal among the records.
        let out = chain_batch(&mut chain, batch, None);
        link.push(t.elapsed());
        std::hint::black_box((out, chain.head()));

        let t = Instant::now();
        let back: Vec<Envelope> = encoded
            .iter()
            .map(|b| Envelope::decode(b).unwrap())
            .collect();
        decode.push(t.elapsed());
        assert_eq!(back.len(), envelopes.len());
    }
    let per_request = |d: Duration| d.as_secs_f64() * 1e6 / requests as f64;
    println!(
        "{requests} requests, {} records, {:.0} bytes per request; median of {rounds}",
        envelopes.len(),
        bytes as f64 / requests as f64
    );
    println!("| path | µs per request | MB/s of records |");
    println!("|---|---:|---:|");
    for (what, d) in [
        ("encode (JSON)", median(encode)),
        (
            "encode + link (prev, SHA-256): the encoder thread",
            median(link),
        ),
        ("decode, for scale", median(decode)),
    ] {
        println!(
            "| {what} | {:.2} | {:.0} |",
            per_request(d),
            bytes as f64 / d.as_secs_f64() / 1e6
        );
    }
}
