//! Auditor replay speed, side by side with a raw JSONL fold of the same events, and full
//! replay against snapshot + tail.
//!
//! `cargo bench -p prlx-tests --bench replay` (`PRLX_BENCH_QUICK=1` for a short run;
//! `PRLX_BENCH_PROFILE=1` runs only the auditor, ten times, for `perf record`).
//!
//! The log is written once by the real coordinator shell (`Coordinator` on a `file://` log:
//! decide, fold, sealing, session grants, signed and sealed results from 16 nodes, validation)
//! and cached under the target directory; about 10 events per request. Then, alternating,
//! 5 rounds, median:
//! - auditor: `prlx_replay::verify` end to end over the file log (read, CRC, decode, fold,
//!   every scheduling receipt re-derived, the report).
//! - decode + fold: the same, from payloads already in memory (no log read, no CRC).
//! - raw JSONL: the same envelopes one per line in a file; read lines, `serde_json` each into a
//!   `Value`, count by `type` and sum `data.amount`. No checks at all: the floor of "reading
//!   the events", against which the auditor's cost is measured.
//! - raw JSONL from memory: the parse alone.
//! - the auditor over the same workload with each account's consents signed once per 64
//!   submissions (`prlx_chain::consent_batch`; its own cached log), against that log's own
//!   raw JSONL fold: what a publisher that batches its consents saves the auditor.
//! - snapshot + tail, at each of [`CUTS`] (a snapshot taken that far into the log):
//!   - auditor: `verify --from-snapshot`, against the auditor's full replay;
//!   - restart: `restart::restore`, what the coordinator's start does (parse the snapshot
//!     while the tail is read and decoded, then fold the tail), against the same from no
//!     snapshot (read, decode and fold the whole log);
//!   - the snapshot's load alone.
//!
//!   A cut fixes the tail at a share of the log, so neither can be more than 1 / that share
//!   faster than its full replay (10x at 90%): the cuts show how the gain grows as the tail
//!   shrinks. The coordinator snapshots every 200,000 records or minute, so on a log much
//!   longer than that (a day of traffic) its tail is a small share, and the snapshot's size
//!   does not grow with the log.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use prlx_commands::decide::{Command, Submission};
use prlx_commands::shell::{Coordinator, Outcome, SESSION_EPOCH};
use prlx_commands::testkit::fixtures::{self, catalog, cpu, model, registration};
use prlx_events::crypto::{
    accept_session, node_id_of, proof_of_execution, public_key_pem, result_statement, seal_message,
    sign, Direction, SessionGrant, SessionKey,
};
use prlx_events::event::*;
use prlx_events::log::{LogReader, LogUrl, Record};
use prlx_events::protocol::{ResultBody, ResultReport};
use prlx_events::seal::{StorageKey, NONCE_LEN};
use prlx_events::{Envelope, Hash32, NodeId};
use prlx_projections::restart::restore;
use prlx_projections::snapshot::Snapshot;
use prlx_projections::{CoordinatorState, Fold};
use prlx_replay::{verify, VerifyOptions};
use rsa::rand_core::{OsRng, RngCore};

#[path = "../../node/benches/common/median.rs"]
mod median;
use median::median;

const NODES: usize = 16;
const CHUNK: usize = 512;
const MODEL_SHA: Hash32 = Hash32([0x5a; 32]);
/// Where snapshots are cut, in per mille of the log's events.
const CUTS: [u64; 3] = [900, 950, 990];

/// Keys for the coordinator and the nodes, cached between runs (the same cache as the
/// coordinator benchmark).
fn bench_keys() -> Vec<rsa::RsaPrivateKey> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-keys");
    prlx_tests::harness::keys::cached_keys(&dir, NODES + 1)
}

async fn read_from(reader: &impl LogReader, from: u64) -> Vec<Record> {
    let mut out = Vec::new();
    loop {
        let got = reader.read(from + out.len() as u64, 4096).await.unwrap();
        if got.is_empty() {
            return out;
        }
        out.extend(got);
    }
}

fn submission(i: usize) -> (Submission, Vec<u8>) {
    let prompt = format!("prompt {i}: summarise the minutes of meeting number {i} in one line");
    (
        Submission {
            idempotency_key: Some(format!("key-{i}")),
            priority: if i.is_multiple_of(5) {
                Priority::High
            } else {
                Priority::Standard
            },
            deadline_seconds: 600,
            max_tokens: 64,
            credit_account: prlx_commands::testkit::accounts::account(&format!("acct-{}", i % 8)),
            ..fixtures::submission("chat-v1", prompt.as_bytes())
        }
        .signed(),
        prompt.into_bytes(),
    )
}

/// A node's signed, sealed answer to a dispatch (the same bytes for every replica of a
/// request, as honest greedy decoding gives).
fn answer(
    key: &rsa::RsaPrivateKey,
    node: NodeId,
    session: &SessionKey,
    d: &TaskDispatched,
) -> ResultReport {
    let result = ResultBody {
        text: format!(
            "The minutes of meeting {} say the budget was approved.",
            d.task_id.request.0
        ),
        token_ids: (0..24)
            .map(|t| t * 7 + d.task_id.request.0 as u32 % 100)
            .collect(),
        model_sha256: MODEL_SHA,
        decoding: "greedy".into(),
        stopped_at_eos: true,
    };
    let bytes = result.canonical_bytes();
    let poe = proof_of_execution(d.task_id, &bytes, node);
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let sealed_result = seal_message(
        session,
        Direction::Result,
        d.task_id,
        node,
        d.attempt,
        SESSION_EPOCH,
        nonce,
        &bytes,
    );
    let statement = result_statement(
        d.task_id.request,
        d.task_id,
        node,
        d.attempt,
        poe,
        Hash32::of(&sealed_result),
    );
    ResultReport {
        request_id: d.task_id.request,
        attempt: d.attempt,
        epoch: SESSION_EPOCH,
        sealed_result,
        poe,
        signature: sign(key, &statement, &mut OsRng),
        token_count: 24,
    }
}

/// Each account's submissions in `chunk` signed once per `batch` of them (in order, each
/// account's in turn), as a publisher that batches its consents does; `None`: as they are,
/// each signed alone.
fn signed_in_batches(
    chunk: Vec<(Submission, Vec<u8>)>,
    batch: Option<usize>,
) -> Vec<(Submission, Vec<u8>)> {
    let Some(size) = batch else { return chunk };
    let mut by_account: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
    for (i, (s, _)) in chunk.iter().enumerate() {
        by_account
            .entry(s.credit_account.0.clone())
            .or_default()
            .push(i);
    }
    let (mut subs, payloads): (Vec<_>, Vec<_>) = chunk.into_iter().unzip();
    for (account, indices) in by_account {
        let key = prlx_commands::testkit::accounts::key_of_address(&account).unwrap();
        for group in indices.chunks(size) {
            let mut batch: Vec<Submission> = group.iter().map(|&i| subs[i].clone()).collect();
            prlx_commands::consent::sign_batch(
                &mut batch,
                &key,
                &prlx_commands::consent::ConsentDomain::default(),
            )
            .unwrap();
            for (&i, s) in group.iter().zip(batch) {
                subs[i] = s;
            }
        }
    }
    subs.into_iter().zip(payloads).collect()
}

/// Writes `requests` requests' worth of coordinator work to a fresh log at `dir`, consents
/// signed in batches of `batch` per account if given.
async fn generate(dir: &Path, requests: usize, keys: &[rsa::RsaPrivateKey], batch: Option<usize>) {
    let url = LogUrl::parse(&format!("file://{}", dir.display())).unwrap();
    let mut coord = Coordinator::open(&url, "coordinator/1", StorageKey::from_bytes([7; 32]))
        .await
        .unwrap()
        .with_signing_key(keys[0].clone());
    coord
        .execute(Command::PublishCatalog(CatalogPublished {
            max_tier: 3,
            max_deadline_seconds: 3600,
            ..catalog(vec![CatalogModel {
                base_price: 50,
                per_token_price: 3,
                max_tokens_limit: 256,
                ..model("chat-v1", MODEL_SHA)
            }])
        }))
        .await
        .unwrap();
    for a in 0..8 {
        coord
            .execute(Command::DepositCredits {
                account: prlx_commands::testkit::accounts::account(&format!("acct-{a}")),
                tx_ref: format!("bank-{a}"),
                amount: u64::MAX / 64,
            })
            .await
            .unwrap();
    }
    let mut nodes = Vec::new();
    for (i, key) in keys[1..].iter().enumerate() {
        let public = key.to_public_key();
        let id = node_id_of(&public);
        let registered = coord
            .execute(Command::RegisterNode(Box::new(NodeRegistered {
                hardware_tier: 1 + (i % 3) as u8,
                models: vec!["chat-v1".into()],
                slots: 64,
                stake: 1_000 * (i as u64 + 1),
                execution_class: cpu("onnxruntime-1.22"),
                // A node serving a catalog model reports the catalog's file.
                model_hashes: [("chat-v1".to_owned(), MODEL_SHA)].into_iter().collect(),
                ..registration(id, public_key_pem(&public))
            })))
            .await
            .unwrap();
        assert!(matches!(registered, Outcome::Appended(_)), "{registered:?}");
        nodes.push((key.clone(), id));
    }
    coord.note_registration();
    coord.housekeeping(Utc::now()).await.unwrap();
    let reader = coord.writer().reader();
    let mut seen = 0u64;
    let mut sessions: HashMap<NodeId, SessionKey> = HashMap::new();
    let mut next = 0;
    while next < requests {
        let mut pending = Vec::new();
        let chunk: Vec<_> = (next..(next + CHUNK).min(requests))
            .map(submission)
            .collect();
        for (s, payload) in signed_in_batches(chunk, batch) {
            let cmd = coord.submission(s, &payload);
            pending.extend(coord.stage(cmd).unwrap().durable);
        }
        next = (next + CHUNK).min(requests);
        pending.extend(coord.stage_housekeeping(Utc::now()).unwrap());
        // Answer every dispatch until the chunk is done (redundancy may add replicas).
        loop {
            for p in pending.drain(..) {
                let range = p.await.unwrap();
                coord.durable_through(&range);
            }
            let fresh = read_from(&reader, seen).await;
            seen += fresh.len() as u64;
            let mut answered = 0;
            for r in fresh {
                match Envelope::decode(&r.payload).unwrap().event {
                    Event::SessionKeyIssued(g) => {
                        let (key, _) = nodes.iter().find(|(_, id)| *id == g.node_id).unwrap();
                        let grant = SessionGrant {
                            node_id: g.node_id,
                            epoch: g.epoch,
                            wrapped_key: g.wrapped_key.0,
                            signature: g.signature.0,
                        };
                        let session =
                            accept_session(&keys[0].to_public_key(), key, &grant).unwrap();
                        sessions.insert(g.node_id, session);
                    }
                    Event::TaskDispatched(d) => {
                        let (key, id) = nodes.iter().find(|(_, id)| *id == d.node_id).unwrap();
                        let report = answer(key, *id, &sessions[id], &d);
                        let cmd = coord.completion(*id, &report).unwrap();
                        pending.extend(coord.stage(cmd).unwrap().durable);
                        answered += 1;
                    }
                    _ => {}
                }
            }
            pending.extend(coord.stage_housekeeping(Utc::now()).unwrap());
            if answered == 0 && pending.is_empty() {
                break;
            }
        }
    }
}

/// The cached log, written again when missing or when it no longer verifies (the event
/// model changed). Named apart from the logs of builds before the hash chain, which still
/// verify but carry no links or seals.
fn bench_log(rt: &tokio::runtime::Runtime, requests: usize, batch: Option<usize>) -> PathBuf {
    let name = match batch {
        None => format!("replay-bench-chained-{requests}"),
        Some(b) => format!("replay-bench-batched-{b}-{requests}"),
    };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let url = format!("file://{}", dir.join("log").display());
    let ok = dir.join("log").exists()
        && rt
            .block_on(verify(
                &VerifyOptions {
                    log: url.clone(),
                    ..Default::default()
                },
                |_| (),
            ))
            .is_ok_and(|r| r.ok);
    if !ok {
        let _ = std::fs::remove_dir_all(&dir);
        let keys = bench_keys();
        let t = Instant::now();
        rt.block_on(generate(&dir.join("log"), requests, &keys, batch));
        eprintln!(
            "generated the bench log in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    dir
}

fn raw_jsonl_fold(lines: impl Iterator<Item = String>) -> (u64, u128) {
    let mut by_type: HashMap<String, u64> = HashMap::new();
    let mut sum = 0u128;
    let mut n = 0;
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        *by_type
            .entry(v["type"].as_str().unwrap().to_owned())
            .or_default() += 1;
        sum += v["data"]["amount"].as_u64().unwrap_or(0) as u128;
        n += 1;
    }
    (n, sum)
}

fn main() {
    let quick = std::env::var_os("PRLX_BENCH_QUICK").is_some();
    let requests = if quick { 2_000 } else { 12_000 };
    let rounds = if quick { 3 } else { 5 };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = bench_log(&rt, requests, None);
    let batched = Batched::open(&rt, requests);
    let url = format!("file://{}", dir.join("log").display());
    let reader = LogUrl::parse(&url).unwrap().open_reader().unwrap();
    let records = rt.block_on(read_from(&reader, 0));
    let events = records.len() as u64;
    let bytes: usize = records.iter().map(|r| r.payload.len()).sum();

    // The same events as JSONL.
    let jsonl = dir.join("events.jsonl");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&jsonl).unwrap());
        for r in &records {
            f.write_all(&r.payload).unwrap();
            f.write_all(b"\n").unwrap();
        }
    }
    let lines: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8(r.payload.clone()).unwrap())
        .collect();

    // A snapshot at each cut, from one fold.
    let mut cuts: Vec<Cut> = {
        let mut fold = Fold::<CoordinatorState>::default();
        let mut folded = 0;
        CUTS.iter()
            .map(|per_mille| {
                let at = events * per_mille / 1000;
                for r in &records[folded..at as usize] {
                    fold.feed(r.offset, &Envelope::decode(&r.payload).unwrap())
                        .unwrap();
                }
                folded = at as usize;
                let path = dir.join(format!("cut-{per_mille}.snapshot"));
                Snapshot::of(&fold).save(&path).unwrap();
                Cut {
                    per_mille: *per_mille,
                    at,
                    bytes: std::fs::metadata(&path).unwrap().len(),
                    path,
                    auditor: Vec::new(),
                    restart: Vec::new(),
                    load: Vec::new(),
                }
            })
            .collect()
    };

    if std::env::var_os("PRLX_BENCH_PROFILE").is_some() {
        // Only the auditor, over and over: for `perf record`.
        let opts = VerifyOptions {
            log: url.clone(),
            ..Default::default()
        };
        for _ in 0..10 {
            rt.block_on(verify(&opts, |_| ())).unwrap();
        }
        return;
    }
    let full_opts = VerifyOptions {
        log: url.clone(),
        ..Default::default()
    };
    let (mut auditor, mut folded, mut raw, mut raw_mem, mut restart) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut batched_times = (Vec::new(), Vec::new());
    let no_snapshot = dir.join("none.snapshot");
    for _ in 0..rounds {
        let t = Instant::now();
        let report = rt.block_on(verify(&full_opts, |_| ())).unwrap();
        auditor.push(t.elapsed());
        assert!(
            report.ok && report.records == events,
            "{}",
            report.to_text()
        );

        let t = Instant::now();
        let mut fold = Fold::<CoordinatorState>::default();
        for r in &records {
            fold.feed(r.offset, &Envelope::decode(&r.payload).unwrap())
                .unwrap();
        }
        folded.push(t.elapsed());
        std::hint::black_box(&fold);

        let t = Instant::now();
        let f = BufReader::new(std::fs::File::open(&jsonl).unwrap());
        let (n, _) = std::hint::black_box(raw_jsonl_fold(f.lines().map(Result::unwrap)));
        raw.push(t.elapsed());
        assert_eq!(n, events);

        let t = Instant::now();
        std::hint::black_box(raw_jsonl_fold(lines.iter().cloned()));
        raw_mem.push(t.elapsed());

        batched.round(&rt, &mut batched_times);

        let t = Instant::now();
        let fold = rt
            .block_on(restore::<CoordinatorState, _>(&no_snapshot, &reader))
            .unwrap();
        restart.push(t.elapsed());
        assert_eq!(fold.last_offset, records.last().map(|r| r.offset));

        for cut in &mut cuts {
            cut.round(&rt, &url, &reader, &records);
        }
    }
    let rate = |d: Duration| events as f64 / d.as_secs_f64();
    let (a, f, r, m, s) = (
        median(auditor),
        median(folded),
        median(raw),
        median(raw_mem),
        median(restart),
    );
    println!(
        "{events} events from {requests} requests ({:.1} per request, {:.0} bytes per event on average); median of {rounds}",
        events as f64 / requests as f64,
        bytes as f64 / events as f64
    );
    println!("| path | time (ms) | events/s | / raw JSONL |");
    println!("|---|---:|---:|---:|");
    for (name, d) in [
        ("auditor: `prlx_replay::verify` over the file log", a),
        ("decode + fold, payloads in memory", f),
        (
            "raw JSONL fold: read file, `Value` per line, count + sum",
            r,
        ),
        ("raw JSONL fold, lines in memory", m),
    ] {
        println!(
            "| {name} | {:.1} | {:.0} | {:.2} |",
            d.as_secs_f64() * 1e3,
            rate(d),
            r.as_secs_f64() / d.as_secs_f64()
        );
    }
    println!(
        "| restart from no snapshot: read, decode and fold the whole log (`restart::restore`) | {:.1} | {:.0} | {:.2} |",
        s.as_secs_f64() * 1e3,
        rate(s),
        r.as_secs_f64() / s.as_secs_f64()
    );
    batched.print(batched_times);
    println!();
    println!("| cut | snapshot (KiB) | tail (events) | auditor: snapshot + tail (ms) | auditor full / this | restart: snapshot + tail (ms) | restart full / this | snapshot load alone (ms) |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for cut in cuts {
        let (t, c, l) = (median(cut.auditor), median(cut.restart), median(cut.load));
        println!(
            "| {:.1} % | {} | {} | {:.1} | {:.1}x | {:.1} | {:.1}x | {:.1} |",
            cut.per_mille as f64 / 10.0,
            cut.bytes / 1024,
            events - cut.at,
            t.as_secs_f64() * 1e3,
            a.as_secs_f64() / t.as_secs_f64(),
            c.as_secs_f64() * 1e3,
            s.as_secs_f64() / c.as_secs_f64(),
            l.as_secs_f64() * 1e3,
        );
    }
}

/// A snapshot cut into the log, and its timings.
struct Cut {
    per_mille: u64,
    /// Events before the cut (the snapshot's), so the tail starts at this index.
    at: u64,
    path: PathBuf,
    bytes: u64,
    auditor: Vec<Duration>,
    restart: Vec<Duration>,
    load: Vec<Duration>,
}

impl Cut {
    /// One round: the auditor from the snapshot, the restart, the load alone.
    fn round(
        &mut self,
        rt: &tokio::runtime::Runtime,
        url: &str,
        reader: &impl LogReader,
        records: &[Record],
    ) {
        let events = records.len() as u64;
        let opts = VerifyOptions {
            log: url.to_owned(),
            from_snapshot: Some(self.path.clone()),
            ..Default::default()
        };
        let t = Instant::now();
        let report = rt.block_on(verify(&opts, |_| ())).unwrap();
        self.auditor.push(t.elapsed());
        assert!(report.ok && report.records == events - self.at);

        let t = Instant::now();
        let fold = rt
            .block_on(restore::<CoordinatorState, _>(&self.path, reader))
            .unwrap();
        self.restart.push(t.elapsed());
        assert_eq!(fold.last_offset, records.last().map(|r| r.offset));

        let t = Instant::now();
        let restored = Snapshot::<CoordinatorState>::load(&self.path).unwrap();
        self.load.push(t.elapsed());
        assert_eq!(
            std::hint::black_box(restored).map(|f| f.last_offset),
            Some(Some(records[self.at as usize - 1].offset))
        );
    }
}

/// The same workload with each account's consents signed once per [`CONSENT_BATCH`]
/// submissions: its own log and JSONL, its auditor against its own raw fold.
struct Batched {
    url: String,
    jsonl: PathBuf,
    events: u64,
}

/// Submissions per batch signature in the batched log.
const CONSENT_BATCH: usize = 64;

impl Batched {
    fn open(rt: &tokio::runtime::Runtime, requests: usize) -> Batched {
        let dir = bench_log(rt, requests, Some(CONSENT_BATCH));
        let url = format!("file://{}", dir.join("log").display());
        let reader = LogUrl::parse(&url).unwrap().open_reader().unwrap();
        let records = rt.block_on(read_from(&reader, 0));
        let jsonl = dir.join("events.jsonl");
        let mut f = std::io::BufWriter::new(std::fs::File::create(&jsonl).unwrap());
        for r in &records {
            f.write_all(&r.payload).unwrap();
            f.write_all(b"\n").unwrap();
        }
        Batched {
            url,
            jsonl,
            events: records.len() as u64,
        }
    }

    /// One round: its auditor, then its raw JSONL fold.
    fn round(&self, rt: &tokio::runtime::Runtime, times: &mut (Vec<Duration>, Vec<Duration>)) {
        let opts = VerifyOptions {
            log: self.url.clone(),
            ..Default::default()
        };
        let t = Instant::now();
        let report = rt.block_on(verify(&opts, |_| ())).unwrap();
        times.0.push(t.elapsed());
        assert!(
            report.ok && report.records == self.events,
            "{}",
            report.to_text()
        );
        assert!(report.evidence.signatures_reused > 0);

        let t = Instant::now();
        let f = BufReader::new(std::fs::File::open(&self.jsonl).unwrap());
        let (n, _) = std::hint::black_box(raw_jsonl_fold(f.lines().map(Result::unwrap)));
        times.1.push(t.elapsed());
        assert_eq!(n, self.events);
    }

    fn print(&self, (auditor, raw): (Vec<Duration>, Vec<Duration>)) {
        let (a, r) = (median(auditor), median(raw));
        println!(
            "| auditor, consents signed once per {CONSENT_BATCH} submissions of an account (its own log, {} events) | {:.1} | {:.0} | {:.2} |",
            self.events,
            a.as_secs_f64() * 1e3,
            self.events as f64 / a.as_secs_f64(),
            r.as_secs_f64() / a.as_secs_f64()
        );
        println!(
            "| raw JSONL fold of that log | {:.1} | {:.0} | 1.00 |",
            r.as_secs_f64() * 1e3,
            self.events as f64 / r.as_secs_f64(),
        );
    }
}
