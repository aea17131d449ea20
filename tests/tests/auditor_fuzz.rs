//! No record on a log may crash the auditor: the clean golden log (tests/fixtures/audit/clean)
//! is mutated at random, record by record and field by field, written to a fresh file log, and
//! `prlx-replay`'s `verify` must answer (OK, a divergence, or an error) without panicking.
//!
//! Mutations are drawn from a seeded xorshift, so a failing case prints its seed and replays:
//! `PRLX_FUZZ_SEED=<seed> PRLX_FUZZ_CASES=1 cargo test -p prlx-tests --test auditor_fuzz`.
//! `PRLX_FUZZ_CASES` (default 200) sets how many cases run.

use std::panic::AssertUnwindSafe;
use std::path::Path;

use prlx_events::log::{LogUrl, LogWriter};
use prlx_replay::{verify, VerifyOptions};
use prlx_tests::harness::client::read_log;
use prlx_tests::rng::Rng;
use serde_json::Value;

/// An index below `n`.
fn pick(rng: &mut Rng, n: usize) -> usize {
    rng.below(n as u64) as usize
}

/// Every leaf of a JSON value, as a path of keys and indexes.
fn leaves(v: &Value, path: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                path.push(Value::String(k.clone()));
                leaves(child, path, out);
                path.pop();
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                path.push(Value::from(i));
                leaves(child, path, out);
                path.pop();
            }
        }
        _ => out.push(path.clone()),
    }
}

fn at<'a>(v: &'a mut Value, path: &[Value]) -> &'a mut Value {
    path.iter().fold(v, |v, p| match p {
        Value::String(k) => &mut v[k.as_str()],
        _ => &mut v[p.as_u64().unwrap() as usize],
    })
}

/// One mutation of `records` (JSON envelopes), described for the failure message.
fn mutate(records: &mut Vec<Value>, rng: &mut Rng) -> String {
    let i = pick(rng, records.len());
    match pick(rng, 8) {
        0 => {
            records.remove(i);
            format!("removed record {i}")
        }
        1 => {
            let copy = records[i].clone();
            records.insert(pick(rng, records.len() + 1), copy);
            format!("duplicated record {i}")
        }
        2 => {
            let j = pick(rng, records.len());
            records.swap(i, j);
            format!("swapped records {i} and {j}")
        }
        _ => {
            // A leaf of record i takes a hostile value, or a value of the same kind seen
            // elsewhere in the log (another request's id, another node's key, ...).
            let mut paths = Vec::new();
            leaves(&records[i], &mut Vec::new(), &mut paths);
            let path = paths[pick(rng, paths.len())].clone();
            let donor = pick(rng, records.len());
            let mut donor_paths = Vec::new();
            leaves(&records[donor], &mut Vec::new(), &mut donor_paths);
            let borrowed = at(
                &mut records[donor].clone(),
                &donor_paths[pick(rng, donor_paths.len())],
            )
            .clone();
            let hostile = [
                Value::from(0),
                Value::from(u64::MAX),
                Value::from(-1),
                Value::from(u32::MAX),
                Value::Null,
                Value::from(""),
                Value::from("x".repeat(10_000)),
                Value::from(true),
                Value::from(vec![Value::from(1)]),
                borrowed.clone(),
                borrowed,
            ];
            let value = hostile[pick(rng, hostile.len())].clone();
            let shown = value.to_string().chars().take(40).collect::<String>();
            *at(&mut records[i], &path) = value;
            format!("record {i} field {path:?} = {shown}")
        }
    }
}

async fn read_all(dir: &Path) -> Vec<Value> {
    read_log(&format!("file://{}", dir.display()))
        .await
        .iter()
        .map(|(_, payload)| serde_json::from_slice::<Value>(payload).unwrap())
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn cases() -> (u64, u64) {
    let cases: u64 = std::env::var("PRLX_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let first: u64 = std::env::var("PRLX_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    (cases, first)
}

/// Mutates `original` once per seed, verifies each mutated log, and fails on a panic; returns
/// how many of the mutated logs the auditor refused.
fn fuzz(rt: &tokio::runtime::Runtime, original: &[Value]) -> u64 {
    let (cases, first) = cases();
    let mut rejected = 0;
    for seed in first..first + cases {
        let mut rng = Rng::new(seed);
        let mut records = original.to_vec();
        let what: Vec<String> = (0..1 + pick(&mut rng, 3))
            .map(|_| mutate(&mut records, &mut rng))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let log = format!("file://{}", dir.path().join("log").display());
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            rt.block_on(async {
                let writer = LogUrl::parse(&log).unwrap().open_writer().unwrap();
                let bytes = records.iter().map(|r| r.to_string().into_bytes()).collect();
                writer.append(bytes).await.unwrap();
                drop(writer);
                let options = VerifyOptions {
                    log: log.clone(),
                    ..VerifyOptions::default()
                };
                verify(&options, |_| ()).await
            })
        }));
        match outcome {
            Ok(Ok(report)) => rejected += u64::from(!report.ok),
            Ok(Err(_)) => rejected += 1,
            Err(_) => panic!("seed {seed}: the auditor panicked on a log with {what:?}"),
        }
    }
    rejected
}

#[test]
fn mutated_logs_never_crash_the_auditor() {
    let rt = runtime();
    let clean = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/audit/clean");
    let original = rt.block_on(read_all(&clean));
    assert!(
        original.len() > 20,
        "the golden log has {} records",
        original.len()
    );
    let rejected = fuzz(&rt, &original);
    // Most mutations must be caught; the rest (a value replaced by an equal one, a record
    // swapped with itself) change nothing.
    let (cases, _) = cases();
    assert!(
        rejected * 2 > cases,
        "only {rejected} of {cases} mutated logs were refused"
    );
}

/// The same over a general-path task's log (plan, releases, aggregate: records the golden
/// log has none of), built by `prlx_commands::testkit::general`. Its results carry placeholder
/// signatures, so the auditor refuses even the unmutated log on evidence: only "no panic" is
/// asserted here; the fold's refusal of each forged general-path record is tested in
/// `prlx-commands` (`general_fold.rs`).
#[test]
fn mutated_general_path_logs_never_crash_the_auditor() {
    let rt = runtime();
    let original: Vec<Value> = prlx_commands::testkit::general::honest()
        .envelopes()
        .iter()
        .map(|env| serde_json::from_slice(&env.encode()).unwrap())
        .collect();
    assert!(original.len() > 20, "{} records", original.len());
    fuzz(&rt, &original);
}

/// The same over requests whose account signed them once, as a batch (`consent_batch`: a
/// place and a proof in each record, one signature recovered once): mutated places, proofs
/// and counts must be answered, never panicked on. The unmutated log verifies.
#[test]
fn mutated_batch_consent_logs_never_crash_the_auditor() {
    use prlx_commands::decide::{Command, Submission};
    use prlx_commands::testkit::fixtures::{self, t};
    use prlx_commands::testkit::{decide_at, History};
    let rt = runtime();
    let mut h = History::new();
    h.record(
        t(-100),
        [fixtures::catalog(vec![fixtures::model("chat", prlx_events::Hash32([1; 32]))]).into()],
    );
    h.record(t(-90), [fixtures::deposited(10_000).into()]);
    let mut batch: Vec<Submission> = (0..5)
        .map(|i| Submission {
            idempotency_key: Some(format!("batch-{i}")),
            now: t(-80),
            ..fixtures::unsigned_submission("chat", format!("prompt {i}").as_bytes())
        })
        .collect();
    let key = prlx_commands::testkit::accounts::key_of_address(&batch[0].credit_account.0)
        .expect("a test account");
    prlx_commands::consent::sign_batch(
        &mut batch,
        &key,
        &prlx_commands::consent::ConsentDomain::default(),
    )
    .unwrap();
    for s in batch {
        decide_at(&mut h, t(-80), Command::SubmitRequest(Box::new(s)));
    }
    let original: Vec<Value> = h
        .envelopes()
        .iter()
        .map(|env| serde_json::from_slice(&env.encode()).unwrap())
        .collect();
    let batched = original
        .iter()
        .filter(|r| !r["data"]["consent"]["batch"].is_null())
        .count();
    assert_eq!(batched, 5, "every request carries its place");
    let clean = rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let log = format!("file://{}", dir.path().join("log").display());
        let writer = LogUrl::parse(&log).unwrap().open_writer().unwrap();
        let bytes = original
            .iter()
            .map(|r| r.to_string().into_bytes())
            .collect();
        writer.append(bytes).await.unwrap();
        drop(writer);
        let options = VerifyOptions {
            log,
            ..VerifyOptions::default()
        };
        verify(&options, |_| ()).await.unwrap()
    });
    assert!(clean.ok, "{}", clean.to_text());
    assert_eq!(clean.evidence.signatures_reused, 4, "{:?}", clean.evidence);
    fuzz(&rt, &original);
}
