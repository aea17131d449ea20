//! The log is tamper-evident (`docs/adr/08-hash-chain.md`): whoever can rewrite its files
//! consistently (offsets, checksums, `COMMIT`, sequence numbers: `prlx_tests::tamper`) still
//! cannot remove, insert or reorder a record without the auditor naming the first break by
//! offset; recomputing the links as well is caught at the next seal; and evidence forged on
//! the log (a heartbeat's, a result's, a grant's or a refusal's signature, a result's
//! signature that does not cover its recorded ciphertext hash) is caught at its record.

use std::path::{Path, PathBuf};

use chrono::Utc;
use prlx_commands::decide::{Command, SignedHeartbeat};
use prlx_commands::shell::SealPolicy;
use prlx_commands::testkit::fixtures;
use prlx_commands::testkit::session::{node_with_dispatches, publish_chat_and_credit};
use prlx_events::crypto::{
    heartbeat_statement, node_id_of, open_message, public_key_pem, refusal_statement, sign,
    Direction,
};
use prlx_events::event::{
    CreditsDeposited, NodeRegistered, RefusalReason, ResultSubmitted, Sealed,
};
use prlx_events::log::LogUrl;
use prlx_events::protocol::{DispatchBody, RefusalReport, ResultBody};
use prlx_events::{Envelope, Event, Hash32, TaskId};
use prlx_node::worker::{commit_result, Identity, Job};
use prlx_replay::{verify, DivergenceKind, Report, VerifyOptions};
use prlx_tests::harness::inproc::open_coordinator;
use prlx_tests::tamper::{insert, read_payloads, relink, remove, swap, write_log, Forger};
use rsa::rand_core::OsRng;
use rsa::RsaPrivateKey;

async fn audit(dir: &Path) -> Report {
    let options = VerifyOptions {
        log: format!("file://{}", dir.display()),
        ..VerifyOptions::default()
    };
    verify(&options, |_| ()).await.unwrap()
}

/// Writes `records` to `dir` and audits them.
async fn audit_records(dir: &Path, records: &[Vec<u8>]) -> Report {
    write_log(dir, records).await;
    audit(dir).await
}

/// The report names a broken link at `offset`, and everything before it verified.
fn assert_break_at(report: &Report, offset: u64, what: &str) {
    assert!(!report.ok, "{what}: not caught\n{}", report.to_text());
    let d = report.divergence.as_ref().unwrap();
    assert_eq!(
        (d.offset, d.kind),
        (offset, DivergenceKind::ChainBroken),
        "{what}: {d:?}"
    );
    assert_eq!(d.field.as_deref(), Some("prev"), "{what}");
    assert_eq!(
        report.records, offset,
        "{what}: the records before it verified"
    );
    let text = report.to_text();
    assert!(
        text.contains(&format!("DIVERGENCE at offset {offset}"))
            && text.contains(&format!("the record at offset {offset} ")),
        "{what}: {text}"
    );
}

/// The golden log (every kind of record a day of work writes), linked as a chaining
/// coordinator writes it.
async fn golden_chained() -> Vec<Vec<u8>> {
    let clean = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/audit/clean");
    relink(&read_payloads(&clean).await)
}

#[tokio::test]
async fn removing_any_record_of_a_chained_log_is_caught_at_its_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let records = golden_chained().await;
    let report = audit_records(&dir, &records).await;
    assert!(report.ok, "{}", report.to_text());
    assert_eq!(report.chain_from, Some(0));
    let mut kinds = std::collections::BTreeSet::new();
    // Every record but the last: a log cut short is a valid log (the tail below).
    for i in 0..records.len() - 1 {
        let what = format!("record {i} ({}) removed", type_of(&records[i]));
        kinds.insert(type_of(&records[i]));
        let report = audit_records(&dir, &remove(&records, i, Forger::Renumbers)).await;
        assert_break_at(&report, i as u64, &what);
    }
    // What the issue saw go unnoticed is among them.
    for t in [
        "CreditsCharged",
        "ResultReturned",
        "CommitmentVerified",
        "SessionKeyIssued",
        "CatalogPublished",
    ] {
        assert!(kinds.contains(t), "the log has no {t}");
    }
    // The last record removed leaves a shorter valid log: only its head tells.
    let cut = audit_records(
        &dir,
        &remove(&records, records.len() - 1, Forger::Renumbers),
    )
    .await;
    assert!(cut.ok, "{}", cut.to_text());
    assert_ne!(cut.chain_head, report.chain_head);
}

#[tokio::test]
async fn inserting_or_swapping_records_is_caught_where_the_order_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let records = golden_chained().await;
    let n = records.len();
    // A record replayed elsewhere (with the next sequence number there), and one forged.
    let deposit = records
        .iter()
        .position(|r| type_of(r) == "CreditsDeposited")
        .unwrap();
    let mut forged = Envelope::decode(&records[deposit]).unwrap();
    if let Event::CreditsDeposited(CreditsDeposited { amount, .. }) = &mut forged.event {
        *amount *= 100;
    }
    let forged = forged.encode();
    for (at, record, what) in [
        (0, &records[3], "a copy at the start"),
        (deposit + 1, &records[deposit], "the deposit twice"),
        (n / 2, &forged, "a forged deposit in the middle"),
        (n, &records[n - 1], "a copy of the last at the end"),
    ] {
        let report = audit_records(&dir, &insert(&records, at, record, Forger::Renumbers)).await;
        assert_break_at(&report, at as u64, what);
    }
    for at in [0, 1, n / 3, n / 2, n - 2] {
        let report = audit_records(&dir, &swap(&records, at, Forger::Renumbers)).await;
        assert_break_at(
            &report,
            at as u64,
            &format!("records {at} and {} swapped", at + 1),
        );
    }
}

/// A small day written by the real coordinator shell, chaining and sealing every 5 records,
/// restarted once on the way: catalog, a deposit, two nodes with real keys and signed
/// heartbeats, grants, submissions and their dispatches.
async fn sealed_log(dir: &Path) -> Vec<Vec<u8>> {
    let url = LogUrl::parse(&format!("file://{}", dir.display())).unwrap();
    let signing = RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
    let open = || async {
        open_coordinator(&url)
            .await
            .with_signing_key(signing.clone())
            .with_seal_policy(SealPolicy {
                records: 5,
                interval_seconds: 3_600,
            })
    };
    let mut coord = open().await;
    publish_chat_and_credit(&mut coord).await;
    let nodes: Vec<RsaPrivateKey> = (0..2)
        .map(|_| RsaPrivateKey::new(&mut OsRng, 2048).unwrap())
        .collect();
    for key in &nodes {
        let public = key.to_public_key();
        let reg: NodeRegistered = fixtures::with_chat_file(fixtures::registration(
            node_id_of(&public),
            public_key_pem(&public),
        ));
        coord
            .execute(Command::RegisterNode(Box::new(reg)))
            .await
            .unwrap();
    }
    coord.note_registration();
    coord.housekeeping(Utc::now()).await.unwrap();
    for round in 0..3 {
        if round == 1 {
            // A restart: the chain goes on from the last record on the log.
            drop(coord);
            coord = open().await;
        }
        for key in &nodes {
            let node_id = node_id_of(&key.to_public_key());
            let at = Utc::now().timestamp() + round;
            let signature = sign(key, &heartbeat_statement(node_id, at), &mut OsRng);
            coord
                .execute(Command::Heartbeat {
                    node_id,
                    signed: SignedHeartbeat { at, signature },
                    // The shell stamps the time it records the heartbeat at.
                    now: Utc::now(),
                })
                .await
                .unwrap();
        }
        let payload = format!("prompt {round}");
        let cmd = coord.submission(
            fixtures::submission("chat", payload.as_bytes()),
            payload.as_bytes(),
        );
        coord.execute(cmd).await.unwrap();
        coord.housekeeping(Utc::now()).await.unwrap();
    }
    drop(coord);
    read_payloads(dir).await
}

fn type_of(record: &[u8]) -> &'static str {
    Envelope::decode(record).unwrap().event.type_name()
}

#[tokio::test]
async fn the_coordinators_log_is_chained_sealed_and_its_evidence_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let records = sealed_log(&tmp.path().join("written")).await;
    let report = audit(&tmp.path().join("written")).await;
    assert!(report.ok, "{}", report.to_text());
    assert_eq!(report.chain_from, Some(0));
    let count = |t: &str| records.iter().filter(|r| type_of(r) == t).count() as u64;
    let e = report.evidence;
    assert_eq!(e.seals, count("LogSealed"));
    assert!(e.seals >= 3, "{e:?}");
    assert_eq!(e.unverified_heartbeats, 0);
    assert_eq!(
        e.signatures_verified,
        count("LogSealed")
            + count("NodeHeartbeat")
            + count("SessionKeyIssued")
            + count("RequestAccepted"),
        "{e:?}"
    );
    assert!(count("TaskDispatched") > 0 && count("SessionKeyIssued") == 2);
    let last_seal = e.last_seal.unwrap() as usize;

    let dir = tmp.path().join("forged");
    for i in 0..records.len() - 1 {
        let what = format!("record {i} ({}) removed", type_of(&records[i]));
        // Renumbered only: the link after it breaks.
        let report = audit_records(&dir, &remove(&records, i, Forger::Renumbers)).await;
        assert_break_at(&report, i as u64, &what);
        // Relinked too: the next seal no longer signs the chain before it (or the fold
        // notices first). After the last seal, nothing can tell (the documented limit).
        let report = audit_records(&dir, &remove(&records, i, Forger::Relinks)).await;
        if i < last_seal {
            let d = report
                .divergence
                .as_ref()
                .unwrap_or_else(|| panic!("{what}, relinked"));
            let next_seal = (i + 1..records.len())
                .find(|&s| type_of(&records[s]) == "LogSealed")
                .unwrap();
            assert!(
                (i as u64..next_seal as u64).contains(&d.offset),
                "{what}, relinked: {d:?}"
            );
            if d.kind == DivergenceKind::BadEvidence {
                assert_eq!(d.offset, next_seal as u64 - 1, "{what}: {d:?}");
                assert_eq!(d.event_type.as_deref(), Some("LogSealed"));
            }
        }
    }
}

#[tokio::test]
async fn a_forged_heartbeat_signature_is_caught_at_its_record() {
    let tmp = tempfile::tempdir().unwrap();
    let records = sealed_log(&tmp.path().join("written")).await;
    let at = records
        .iter()
        .rposition(|r| type_of(r) == "NodeHeartbeat")
        .unwrap();
    // The coordinator's word for an uptime slot, with a signature that is not the node's;
    // the chain relinked, so only the signature can tell.
    let mut env = Envelope::decode(&records[at]).unwrap();
    let Event::NodeHeartbeat(h) = &mut env.event else {
        unreachable!()
    };
    h.signature = Some(Sealed(sign(
        &RsaPrivateKey::new(&mut OsRng, 2048).unwrap(),
        &heartbeat_statement(h.node_id, h.at.unwrap()),
        &mut OsRng,
    )));
    let mut forged = records.clone();
    forged[at] = env.encode();
    let forged = prlx_tests::tamper::relink(&forged);
    let report = audit_records(&tmp.path().join("forged"), &forged).await;
    assert_bad_signature_at(&report, at, "NodeHeartbeat");
}

/// The report names the signature of the `event_type` record at `at` as bad evidence.
#[track_caller]
fn assert_bad_signature_at(report: &Report, at: usize, event_type: &str) {
    assert_bad_evidence_at(report, at, event_type, "signature");
}

/// The report names `field` of the `event_type` record at `at` as bad evidence.
#[track_caller]
fn assert_bad_evidence_at(report: &Report, at: usize, event_type: &str, field: &str) {
    let d = report.divergence.as_ref().expect("caught");
    assert_eq!(
        (
            d.offset,
            d.kind,
            d.event_type.as_deref(),
            d.field.as_deref()
        ),
        (
            at as u64,
            DivergenceKind::BadEvidence,
            Some(event_type),
            Some(field)
        ),
        "{}",
        report.to_text()
    );
}

/// `records` with the signature of the first record of `event_type` replaced by `forge` of
/// it, and the chain relinked (so only the signature can tell). Answers the record's offset.
fn forge_signature(
    records: &[Vec<u8>],
    event_type: &str,
    forge: impl FnOnce(&mut Event),
) -> (Vec<Vec<u8>>, usize) {
    forge_nth(records, event_type, 0, forge)
}

/// [`forge_signature`] of the `nth` record of `event_type` (from 0).
fn forge_nth(
    records: &[Vec<u8>],
    event_type: &str,
    nth: usize,
    forge: impl FnOnce(&mut Event),
) -> (Vec<Vec<u8>>, usize) {
    let at = (0..records.len())
        .filter(|&i| type_of(&records[i]) == event_type)
        .nth(nth)
        .unwrap();
    let mut env = Envelope::decode(&records[at]).unwrap();
    forge(&mut env.event);
    let mut forged = records.to_vec();
    forged[at] = env.encode();
    (relink(&forged), at)
}

#[tokio::test]
async fn a_verified_result_without_the_node_s_signature_and_a_forged_grant_are_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let records = golden_chained().await;
    // The first result's signature replaced: the commitment that accepts it is the lie.
    let (forged, result_at) = forge_signature(&records, "ResultSubmitted", |e| {
        if let Event::ResultSubmitted(r) = e {
            r.signature.0[7] ^= 0x10;
        }
    });
    let verified_at = (result_at..records.len())
        .find(|&i| type_of(&records[i]) == "CommitmentVerified")
        .unwrap();
    let report = audit_records(&dir, &forged).await;
    let d = report.divergence.as_ref().expect("caught");
    assert_eq!(
        (d.offset, d.kind, d.event_type.as_deref()),
        (
            verified_at as u64,
            DivergenceKind::BadEvidence,
            Some("CommitmentVerified")
        ),
        "{}",
        report.to_text()
    );
    assert!(
        d.message
            .contains(&format!("the result at offset {result_at}")),
        "{}",
        d.message
    );
    // A session grant the coordinator's published key did not sign.
    let (forged, grant_at) = forge_signature(&records, "SessionKeyIssued", |e| {
        if let Event::SessionKeyIssued(g) = e {
            g.signature.0[0] ^= 0x01;
        }
    });
    let report = audit_records(&dir, &forged).await;
    let d = report.divergence.as_ref().expect("caught");
    assert_eq!(
        (d.offset, d.kind, d.field.as_deref()),
        (
            grant_at as u64,
            DivergenceKind::BadEvidence,
            Some("signature")
        ),
        "{}",
        report.to_text()
    );
    // The clean golden log: every result, grant and heartbeat carries its signed evidence,
    // and every one is verified.
    let report = audit_records(&dir, &records).await;
    let count = |t: &str| records.iter().filter(|r| type_of(r) == t).count() as u64;
    assert!(count("NodeHeartbeat") > 0, "the golden log has heartbeats");
    assert_eq!(
        report.evidence.signatures_verified,
        count("ResultSubmitted") + count("SessionKeyIssued") + count("NodeHeartbeat"),
        "{:?}",
        report.evidence
    );
    assert_eq!(report.evidence.unverified_heartbeats, 0);
}

/// A log with two results of one node, each reported as the node daemon's own code reports
/// it ([`commit_result`]: signed over request, task, node, attempt, PoE and the sealed bytes'
/// hash) and recorded by the coordinator shell.
async fn two_signed_results(dir: &Path) -> Vec<Vec<u8>> {
    let url = LogUrl::parse(&format!("file://{}", dir.display())).unwrap();
    let signing = RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
    let coordinator_key = signing.to_public_key();
    let mut coord = open_coordinator(&url).await.with_signing_key(signing);
    publish_chat_and_credit(&mut coord).await;
    let (node, dispatches) =
        node_with_dispatches(&mut coord, &coordinator_key, 2, &["one", "two"]).await;
    assert_eq!(dispatches.len(), 2);
    let identity = Identity::new(node.key);
    assert_eq!(identity.node, node.id);
    for d in dispatches {
        let work = open_message(
            &node.session,
            Direction::Dispatch,
            d.task_id,
            node.id,
            d.attempt,
            node.epoch,
            &d.sealed_work.0,
        )
        .unwrap();
        let body: DispatchBody = serde_json::from_slice(&work).unwrap();
        let result = ResultBody {
            text: format!("echo: {}", body.prompt),
            token_ids: vec![1, 2, 3],
            model_sha256: Hash32([1; 32]),
            decoding: "greedy".into(),
            stopped_at_eos: true,
        };
        let job = Job {
            task: d.task_id,
            attempt: d.attempt,
            epoch: node.epoch,
            session: node.session.clone(),
            body,
            deadline_at: d.deadline_at,
            trace: None,
        };
        let report = commit_result(&identity, &job, &result, 3, &mut OsRng);
        let cmd = coord.completion(node.id, &report).unwrap();
        coord.execute(cmd).await.unwrap();
    }
    drop(coord);
    read_payloads(dir).await
}

/// Results signed over their sealed bytes (statement v2, `ciphertext_hash` recorded): each is
/// re-verified at its own record, not only where a commitment accepts it, since the
/// coordinator records none whose signature failed. (The golden logs' results are v1.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_whose_signature_does_not_cover_its_sealed_result_is_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let records = two_signed_results(&tmp.path().join("written")).await;
    let count = |t: &str| records.iter().filter(|r| type_of(r) == t).count() as u64;
    assert_eq!(
        (count("ResultSubmitted"), count("CommitmentVerified")),
        (2, 2)
    );
    let result = |nth: usize| {
        let at = (0..records.len())
            .filter(|&i| type_of(&records[i]) == "ResultSubmitted")
            .nth(nth)
            .unwrap();
        match Envelope::decode(&records[at]).unwrap().event {
            Event::ResultSubmitted(r) => r,
            _ => unreachable!(),
        }
    };
    assert!(result(0).ciphertext_hash.is_some() && result(1).ciphertext_hash.is_some());

    // As written: every signature verifies, results over their ciphertext's hash (and each
    // accepted request's consent by its account).
    let report = audit(&tmp.path().join("written")).await;
    assert!(report.ok, "{}", report.to_text());
    assert_eq!(report.evidence.v1_results, 0);
    assert_eq!(
        report.evidence.signatures_verified,
        count("ResultSubmitted")
            + count("SessionKeyIssued")
            + count("LogSealed")
            + count("RequestAccepted"),
        "{:?}",
        report.evidence
    );

    let dir = tmp.path().join("forged");
    let forge = |nth: usize, f: &dyn Fn(&mut ResultSubmitted)| {
        forge_nth(&records, "ResultSubmitted", nth, |e| {
            if let Event::ResultSubmitted(r) = e {
                f(r);
            }
        })
    };
    // The signature kept, the hash of other bytes recorded: it does not cover them.
    let (forged, at) = forge(0, &|r| {
        r.ciphertext_hash = Some(Hash32::of(b"another ciphertext"));
    });
    let report = audit_records(&dir, &forged).await;
    assert_bad_signature_at(&report, at, "ResultSubmitted");
    // The node's own signature, but the one of its other result.
    let other = result(1).signature;
    let (forged, at) = forge(0, &|r| r.signature = other.clone());
    let report = audit_records(&dir, &forged).await;
    assert_bad_signature_at(&report, at, "ResultSubmitted");
    // After a v2 result, one without the hash: its signature covers no sealed result.
    let (forged, at) = forge(1, &|r| r.ciphertext_hash = None);
    let report = audit_records(&dir, &forged).await;
    assert_bad_evidence_at(&report, at, "ResultSubmitted", "ciphertext_hash");
}

/// Resuming from a snapshot, the chain is checked from the last record the snapshot covers:
/// a record removed right after it, or further on, is named as in a full replay.
#[tokio::test]
async fn a_replay_from_a_snapshot_checks_the_chain_from_the_snapshot_s_last_record() {
    let tmp = tempfile::tempdir().unwrap();
    let records = golden_chained().await;
    let cut = 30;
    let prefix = tmp.path().join("prefix");
    let snap = tmp.path().join("snapshot");
    write_log(&prefix, &records[..cut]).await;
    let verified = verify(
        &VerifyOptions {
            log: format!("file://{}", prefix.display()),
            snapshot: Some(snap.clone()),
            ..VerifyOptions::default()
        },
        |_| (),
    )
    .await
    .unwrap();
    assert!(verified.ok, "{}", verified.to_text());
    let dir = tmp.path().join("log");
    for (removed, what) in [
        (cut, "the first record after the snapshot"),
        (cut + 9, "one further on"),
    ] {
        write_log(&dir, &remove(&records, removed, Forger::Renumbers)).await;
        let report = verify(
            &VerifyOptions {
                log: format!("file://{}", dir.display()),
                from_snapshot: Some(snap.clone()),
                ..VerifyOptions::default()
            },
            |_| (),
        )
        .await
        .unwrap();
        assert_eq!(report.resumed.as_ref().unwrap().from_offset, cut as u64);
        let d = report
            .divergence
            .as_ref()
            .unwrap_or_else(|| panic!("{what}: not caught"));
        assert_eq!(
            (d.offset, d.kind),
            (removed as u64, DivergenceKind::ChainBroken),
            "{what}"
        );
    }
    // Untouched, the tail verifies from the snapshot.
    write_log(&dir, &records).await;
    let report = verify(
        &VerifyOptions {
            log: format!("file://{}", dir.display()),
            from_snapshot: Some(snap),
            ..VerifyOptions::default()
        },
        |_| (),
    )
    .await
    .unwrap();
    assert!(report.ok, "{}", report.to_text());
    assert_eq!(report.records, (records.len() - cut) as u64);
}

/// The actor seals the tail at a clean shutdown (every handle dropped): the last record is a
/// seal, so a forger who relinks after removing any record is caught, up to the very end.
#[tokio::test]
async fn a_clean_shutdown_seals_the_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let url = LogUrl::parse(&format!("file://{}", dir.display())).unwrap();
    let coord = open_coordinator(&url)
        .await
        .with_signing_key(RsaPrivateKey::new(&mut OsRng, 2048).unwrap());
    let (handle, task) = prlx_commands::actor::spawn(coord);
    for (tx_ref, amount) in [("bank-1", 500), ("bank-2", 700)] {
        handle
            .execute_command(Command::DepositCredits {
                account: fixtures::account(),
                tx_ref: tx_ref.into(),
                amount,
            })
            .await
            .unwrap();
    }
    drop(handle);
    task.await.unwrap().unwrap();
    let records = read_payloads(&dir).await;
    assert_eq!(type_of(records.last().unwrap()), "LogSealed");
    let report = audit(&dir).await;
    assert!(report.ok, "{}", report.to_text());
    assert_eq!(report.evidence.last_seal, Some(records.len() as u64 - 1));
    for i in 0..records.len() - 1 {
        let forged = audit_records(
            &tmp.path().join("forged"),
            &remove(&records, i, Forger::Relinks),
        )
        .await;
        assert!(
            !forged.ok,
            "record {i} removed and relinked: {}",
            forged.to_text()
        );
    }
}

/// A refusal moves work on (and, the second time, fails a request) on the node's word alone:
/// its signature is verified by the auditor, and a refusal the node did not sign is caught at
/// its record.
#[tokio::test]
async fn a_refusal_without_the_node_s_signature_is_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("written");
    let url = LogUrl::parse(&format!("file://{}", dir.display())).unwrap();
    let mut coord = open_coordinator(&url)
        .await
        .with_signing_key(RsaPrivateKey::new(&mut OsRng, 2048).unwrap());
    publish_chat_and_credit(&mut coord).await;
    let key = RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
    let node = node_id_of(&key.to_public_key());
    let reg = fixtures::with_chat_file(fixtures::registration(
        node,
        public_key_pem(&key.to_public_key()),
    ));
    coord
        .execute(Command::RegisterNode(Box::new(reg)))
        .await
        .unwrap();
    coord.note_registration();
    let cmd = coord.submission(fixtures::submission("chat", b"too long"), b"too long");
    coord.execute(cmd).await.unwrap();
    coord.housekeeping(Utc::now()).await.unwrap();
    let request = prlx_events::RequestId(0);
    assert!(coord.state().requests[&request].running.is_some());
    // The submission asks for 16 tokens in the model's 4096: a prompt of 4090 does not fit.
    let reason = RefusalReason::ContextExceeded {
        prompt_tokens: 4090,
        max_tokens: 16,
        context: 4096,
    };
    let statement = refusal_statement(request, TaskId::whole(request), node, 0, &reason);
    let report = RefusalReport {
        request_id: request,
        attempt: 0,
        reason,
        signature: sign(&key, &statement, &mut OsRng),
    };
    let command = coord.refusal(node, &report).unwrap();
    coord.execute(command).await.unwrap();
    drop(coord);
    let records = read_payloads(&dir).await;

    let report = audit(&dir).await;
    assert!(report.ok, "{}", report.to_text());
    let count = |t: &str| records.iter().filter(|r| type_of(r) == t).count() as u64;
    assert_eq!(count("DispatchRefused"), 1);
    assert_eq!(
        report.evidence.signatures_verified,
        count("DispatchRefused")
            + count("SessionKeyIssued")
            + count("LogSealed")
            + count("RequestAccepted"),
        "{:?}",
        report.evidence
    );

    let (forged, at) = forge_signature(&records, "DispatchRefused", |e| {
        if let Event::DispatchRefused(r) = e {
            r.signature.0[3] ^= 0x20;
        }
    });
    let report = audit_records(&tmp.path().join("forged"), &forged).await;
    assert_bad_signature_at(&report, at, "DispatchRefused");
}
