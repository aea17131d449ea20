//! Writes the auditor's golden logs, `tests/fixtures/audit/*`, by driving the real coordinator
//! core (`prlx_commands::shell::Coordinator` on a `file://` log) through a small day of work:
//! catalog, deposits, three nodes with real RSA keys, submissions (one refused), dispatch,
//! signed and sealed results, a missed deadline with its re-dispatch. Then it derives the
//! tampered copies from the clean log, each with the offset the auditor must name, listed in
//! `manifest.json`.
//!
//! `cargo run -p prlx-tests --bin prlx-make-fixtures [-- DIR]` (default: `tests/fixtures/audit`).
//! Run it again when the event model changes; keys are generated per run and not kept.

use std::path::{Path, PathBuf};

use chrono::Utc;
use prlx_commands::decide::{Command, Submission};
use prlx_commands::settle::SettlementCommand;
use prlx_commands::shell::Coordinator;
use prlx_commands::testkit::fixtures;
use prlx_events::crypto::{
    accept_session, node_id_of, open_message, proof_of_execution, public_key_pem, result_statement,
    seal_message, sign, Direction, SessionGrant, SessionKey,
};
use prlx_events::event::*;
use prlx_events::log::file::{FileLogOptions, FileLogWriter};
use prlx_events::log::{LogUrl, LogWriter, Record};
use prlx_events::protocol::{DispatchBody, ResultBody, ResultReport};
use prlx_events::seal::{StorageKey, NONCE_LEN};
use prlx_events::{Envelope, Hash32, NodeId};
use prlx_tests::harness::client::read_records;
use rsa::rand_core::{OsRng, RngCore};
use rsa::RsaPrivateKey;
use serde_json::json;

const CHAT_SHA: Hash32 = Hash32([0xc4; 32]);
const VISION_SHA: Hash32 = Hash32([0x71; 32]);

struct Node {
    key: RsaPrivateKey,
    id: NodeId,
    session: Option<SessionKey>,
}

fn catalog() -> CatalogPublished {
    let model = |name: &str, sha, min_tier, base_price| CatalogModel {
        min_tier,
        base_price,
        per_token_price: 2,
        max_tokens_limit: 64,
        ..fixtures::model(name, sha)
    };
    CatalogPublished {
        max_tier: 3,
        max_deadline_seconds: 3600,
        ..fixtures::catalog(vec![
            model("chat-v1", CHAT_SHA, 1, 100),
            model("vision-v1", VISION_SHA, 2, 400),
        ])
    }
}

fn register(node: &Node, tier: u8, models: &[&str], slots: u32, stake: u64) -> Command {
    let public = node.key.to_public_key();
    Command::RegisterNode(Box::new(NodeRegistered {
        hardware_tier: tier,
        models: models.iter().map(|m| (*m).to_owned()).collect(),
        slots,
        stake,
        execution_class: fixtures::cpu("onnxruntime-1.22"),
        ..fixtures::registration(node.id, public_key_pem(&public))
    }))
}

fn submission(
    account: &str,
    model: &str,
    deadline_seconds: u32,
    key: Option<&str>,
    prompt: &str,
) -> Submission {
    Submission {
        idempotency_key: key.map(str::to_owned),
        hardware_tier: if model == "vision-v1" { 2 } else { 1 },
        deadline_seconds,
        credit_account: prlx_commands::testkit::accounts::account(account),
        ..fixtures::submission(model, prompt.as_bytes())
    }
    .signed()
}

/// The node's side of a dispatch: accept the grant once, open the work, answer with a signed,
/// sealed result committed to by its PoE.
fn answer(
    node: &mut Node,
    coordinator: &rsa::RsaPublicKey,
    log: &[Envelope],
    d: &TaskDispatched,
) -> ResultReport {
    if node.session.is_none() {
        let grant = log
            .iter()
            .find_map(|e| match &e.event {
                Event::SessionKeyIssued(g) if g.node_id == node.id => Some(g.clone()),
                _ => None,
            })
            .expect("a session grant precedes any dispatch");
        node.session = Some(
            accept_session(
                coordinator,
                &node.key,
                &SessionGrant {
                    node_id: grant.node_id,
                    epoch: grant.epoch,
                    wrapped_key: grant.wrapped_key.0,
                    signature: grant.signature.0,
                },
            )
            .unwrap(),
        );
    }
    let session = node.session.as_ref().unwrap();
    let epoch = prlx_commands::shell::SESSION_EPOCH;
    let work = open_message(
        session,
        Direction::Dispatch,
        d.task_id,
        node.id,
        d.attempt,
        epoch,
        &d.sealed_work.0,
    )
    .unwrap();
    let body: DispatchBody = serde_json::from_slice(&work).unwrap();
    let result = ResultBody {
        text: format!("echo: {}", body.prompt),
        token_ids: (0..8).collect(),
        model_sha256: if body.model == "chat-v1" {
            CHAT_SHA
        } else {
            VISION_SHA
        },
        decoding: "greedy".into(),
        stopped_at_eos: true,
    };
    let bytes = result.canonical_bytes();
    let poe = proof_of_execution(d.task_id, &bytes, node.id);
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let sealed_result = seal_message(
        session,
        Direction::Result,
        d.task_id,
        node.id,
        d.attempt,
        epoch,
        nonce,
        &bytes,
    );
    // Signed over the sealed bytes' hash, as the node daemon signs (statement v2).
    let statement = result_statement(
        d.task_id.request,
        d.task_id,
        node.id,
        d.attempt,
        poe,
        Hash32::of(&sealed_result),
    );
    ResultReport {
        request_id: d.task_id.request,
        attempt: d.attempt,
        epoch,
        sealed_result,
        poe,
        signature: sign(&node.key, &statement, &mut OsRng),
        token_count: 8,
    }
}

/// A heartbeat as the node daemon signs it, recorded with its evidence.
fn heartbeat(node: &Node) -> Command {
    let at = Utc::now().timestamp();
    let statement = prlx_events::crypto::heartbeat_statement(node.id, at);
    Command::Heartbeat {
        node_id: node.id,
        signed: prlx_commands::decide::SignedHeartbeat {
            at,
            signature: sign(&node.key, &statement, &mut OsRng),
        },
        // The shell stamps the time it records the heartbeat at.
        now: Utc::now(),
    }
}

/// Runs the scenario into a fresh log at `dir`.
async fn write_clean(dir: &Path) {
    let url = LogUrl::parse(&format!("file://{}", dir.display())).unwrap();
    let signing = RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
    let coordinator_pub = signing.to_public_key();
    let mut storage = [0u8; 32];
    OsRng.fill_bytes(&mut storage);
    let mut coord = Coordinator::open(&url, "coordinator/1", StorageKey::from_bytes(storage))
        .await
        .unwrap()
        .with_signing_key(signing);
    let mut nodes: Vec<Node> = (0..3)
        .map(|_| {
            let key = RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
            let id = node_id_of(&key.to_public_key());
            Node {
                key,
                id,
                session: None,
            }
        })
        .collect();

    coord
        .execute(Command::PublishCatalog(catalog()))
        .await
        .unwrap();
    coord
        .execute(Command::Settlement(SettlementCommand::PublishPolicy(
            RewardPolicyPublished {
                epoch_seconds: 2,
                uptime_slot_seconds: 1,
                ..RewardPolicyPublished::default()
            },
        )))
        .await
        .unwrap();
    for (account, tx, amount) in [("alice", "bank-tx-1", 10_000), ("bob", "bank-tx-2", 500)] {
        coord
            .execute(Command::DepositCredits {
                account: prlx_commands::testkit::accounts::account(account),
                tx_ref: tx.into(),
                amount,
            })
            .await
            .unwrap();
    }
    // Node 0 serves chat only, node 1 chat and vision, node 2 vision only (the one a forged
    // receipt names for a chat request).
    for cmd in [
        register(&nodes[0], 1, &["chat-v1"], 1, 1_000),
        register(&nodes[1], 2, &["chat-v1", "vision-v1"], 2, 5_000),
        register(&nodes[2], 3, &["vision-v1"], 1, 20_000),
    ] {
        coord.execute(cmd).await.unwrap();
    }
    coord.note_registration();
    coord.housekeeping(Utc::now()).await.unwrap();
    coord.execute(heartbeat(&nodes[0])).await.unwrap();

    let requests = [
        (
            "alice",
            "chat-v1",
            600,
            Some("k-1"),
            "What is the capital of France?",
        ),
        (
            "alice",
            "chat-v1",
            600,
            Some("k-2"),
            "Name a prime above 100.",
        ),
        (
            "alice",
            "vision-v1",
            600,
            None,
            "Describe the attached image.",
        ),
        ("bob", "chat-v1", 600, None, "Translate 'bonjour'."),
        (
            "bob",
            "vision-v1",
            600,
            None,
            "This one costs more than bob has left.",
        ),
        (
            "alice",
            "chat-v1",
            2,
            Some("k-3"),
            "A node will sit on this one past its deadline.",
        ),
        (
            "alice",
            "chat-v1",
            600,
            Some("k-1"),
            "What is the capital of France?",
        ),
    ];
    for (account, model, deadline, key, prompt) in requests {
        let cmd = coord.submission(
            submission(account, model, deadline, key, prompt),
            prompt.as_bytes(),
        );
        coord.execute(cmd).await.unwrap();
    }
    coord.housekeeping(Utc::now()).await.unwrap();

    // Nodes answer every dispatch except the first of the short-deadline request, which is
    // left to expire and go to another node.
    let reader = coord.writer().reader();
    let mut answered = 0;
    let mut skipped_once = false;
    for round in 0..20 {
        let log: Vec<Envelope> = read_records(&reader, 0)
            .await
            .iter()
            .map(|r| Envelope::decode(&r.payload).unwrap())
            .collect();
        let pending: Vec<TaskDispatched> = log
            .iter()
            .filter_map(|e| match &e.event {
                Event::TaskDispatched(d) => Some(d.clone()),
                _ => None,
            })
            .skip(answered)
            .collect();
        if pending.is_empty() && round > 0 {
            break;
        }
        let mut skipped_now = false;
        for d in pending {
            answered += 1;
            let req = &coord.state().requests[&d.task_id.request];
            if req.deadline_seconds == 2 && !skipped_once {
                skipped_once = true;
                skipped_now = true;
                continue;
            }
            let node = nodes.iter_mut().find(|n| n.id == d.node_id).unwrap();
            let report = answer(node, &coordinator_pub, &log, &d);
            let cmd = coord.completion(d.node_id, &report).unwrap();
            coord.execute(cmd).await.unwrap();
        }
        if skipped_now {
            // Real time, not a clock passed ahead: events are stamped with the wall clock,
            // and an epoch may only be settled by an event recorded after its end.
            tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
        }
        coord.housekeeping(Utc::now()).await.unwrap();
    }

    // Uptime across reward epochs (2 s long here): node 0 heartbeats in each, node 2 in
    // one, node 1 only through its verified work above. Then every ended epoch settles.
    for round in 0..2 {
        for n in [0, 2].into_iter().filter(|&n| n == 0 || round == 0) {
            coord.execute(heartbeat(&nodes[n])).await.unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    coord.housekeeping(Utc::now()).await.unwrap();
    drop(coord);
}

/// The clean log's records grouped into the batches they were appended in (one command's
/// events share a correlation id).
fn batches(records: &[Record]) -> Vec<Vec<(u64, Vec<u8>)>> {
    let mut out: Vec<Vec<(u64, Vec<u8>)>> = Vec::new();
    let mut last = None;
    for r in records {
        let corr = Envelope::decode(&r.payload).unwrap().header.correlation_id;
        if out.is_empty() || corr.is_none() || corr != last {
            out.push(Vec::new());
        }
        last = corr;
        out.last_mut().unwrap().push((r.offset, r.payload.clone()));
    }
    out
}

/// The batches without the record at offset `removed`.
fn without(grouped: &[Vec<(u64, Vec<u8>)>], removed: u64) -> Vec<Vec<Vec<u8>>> {
    grouped
        .iter()
        .map(|b| {
            b.iter()
                .filter(|(o, _)| *o != removed)
                .map(|(_, p)| p.clone())
                .collect()
        })
        .collect()
}

/// The batches with each record that `edit` changes (it returns true) re-encoded.
fn edited(
    grouped: &[Vec<(u64, Vec<u8>)>],
    edit: impl Fn(u64, &mut Envelope) -> bool,
) -> Vec<Vec<Vec<u8>>> {
    grouped
        .iter()
        .map(|b| {
            b.iter()
                .map(|(o, p)| {
                    let mut env = Envelope::decode(p).unwrap();
                    match edit(*o, &mut env) {
                        true => env.encode(),
                        false => p.clone(),
                    }
                })
                .collect()
        })
        .collect()
}

/// Writes `batches` to a fresh file log at `dir` through the real writer, so framing, CRCs
/// and the commit marker are valid whatever was edited.
async fn write_log(dir: &Path, batches: Vec<Vec<Vec<u8>>>) {
    let w = FileLogWriter::open(dir, FileLogOptions::default()).unwrap();
    for b in batches.into_iter().filter(|b| !b.is_empty()) {
        w.append(b).await.unwrap();
    }
}

fn tidy(dir: &Path) {
    // The writer's lock file is empty and means nothing to a reader.
    let _ = std::fs::remove_file(dir.join("LOCK"));
}

fn event_type(payload: &[u8]) -> &'static str {
    Envelope::decode(payload).unwrap().event.type_name()
}

/// The hash-chain cases, derived from `clean` byte for byte (`docs/adr/08-hash-chain.md`):
/// `chained` is `clean` with every record linked to the one before it, as a chaining
/// coordinator writes them; `chained-record-removed` is `chained` without the first request's
/// `CreditsCharged`, every later record renumbered consistently (offsets, CRCs, `COMMIT`,
/// sequence) but not relinked. The auditor must name the removed record's offset.
async fn write_chained(out: &Path, manifest: &mut serde_json::Map<String, serde_json::Value>) {
    use prlx_tests::tamper::{read_payloads, relink, remove, write_log, Forger};
    let chained = relink(&read_payloads(&out.join("clean")).await);
    write_log(&out.join("chained"), &chained).await;
    manifest.insert(
        "chained".into(),
        json!({ "ok": true, "records": chained.len() }),
    );
    let charged = chained
        .iter()
        .position(|p| event_type(p) == "CreditsCharged")
        .expect("the scenario charges a request");
    let cut = remove(&chained, charged, Forger::Renumbers);
    write_log(&out.join("chained-record-removed"), &cut).await;
    manifest.insert(
        "chained-record-removed".into(),
        json!({
            "ok": false, "kind": "chain_broken", "offset": charged, "field": "prev",
            "event_type": event_type(&cut[charged]),
            "removed": "CreditsCharged",
        }),
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let chained_only = std::env::args().nth(1).as_deref() == Some("--chained-only");
    let out: PathBuf = std::env::args_os()
        .skip(1)
        .find(|a| a != "--chained-only")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/audit"));
    if chained_only {
        // Only the chain's cases, from the `clean` there (the other golden logs stay as they
        // are, byte for byte).
        let path = out.join("manifest.json");
        let mut manifest: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        write_chained(&out, &mut manifest).await;
        std::fs::write(
            path,
            serde_json::to_string_pretty(&manifest).unwrap() + "\n",
        )
        .unwrap();
        println!("{}", serde_json::to_string_pretty(&manifest).unwrap());
        return;
    }
    for case in [
        "clean",
        "event-removed",
        "unqualified-node",
        "flipped-byte",
        "altered-payout",
        "chained",
        "chained-record-removed",
        "charge-removed",
        "repriced",
    ] {
        let _ = std::fs::remove_dir_all(out.join(case));
    }
    std::fs::create_dir_all(&out).unwrap();
    write_clean(&out.join("clean")).await;
    tidy(&out.join("clean"));
    // `clean` stays a log from before the hash chain, so that the cases below test the fold's
    // own checks (on a linked log the chain would catch most of them first); `chained` and
    // its case test the chain. The scenario is too short for a seal, so none is lost here.
    {
        use prlx_tests::tamper::{read_payloads, unlinked, write_log};
        let records: Vec<Vec<u8>> = read_payloads(&out.join("clean"))
            .await
            .iter()
            .map(|r| unlinked(r))
            .collect();
        write_log(&out.join("clean"), &records).await;
    }

    let reader = LogUrl::parse(&format!("file://{}", out.join("clean").display()))
        .unwrap()
        .open_reader()
        .unwrap();
    let records = read_records(&reader, 0).await;
    let envs: Vec<Envelope> = records
        .iter()
        .map(|r| Envelope::decode(&r.payload).unwrap())
        .collect();
    let grouped = batches(&records);
    let mut manifest = serde_json::Map::new();
    manifest.insert(
        "clean".into(),
        json!({ "ok": true, "records": records.len() }),
    );

    // 1. Event removed: the second request's RequestAccepted. The records after it move up
    // by one, so the auditor must stop at its old offset, on the event that needed it.
    let removed = envs
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e.event, Event::RequestAccepted(_)))
        .nth(1)
        .map(|(i, _)| i as u64)
        .unwrap();
    write_log(&out.join("event-removed"), without(&grouped, removed)).await;
    tidy(&out.join("event-removed"));
    manifest.insert(
        "event-removed".into(),
        json!({
            "ok": false, "kind": "fold_refused", "offset": removed,
            "event_type": event_type(&records[removed as usize + 1].payload),
            "removed": event_type(&records[removed as usize].payload),
        }),
    );

    // 2. A scheduling receipt that names a node lacking the capability: the first chat request
    // scheduled, re-recorded as if it went to the vision-only node.
    let vision_only = envs
        .iter()
        .find_map(|e| match &e.event {
            Event::NodeRegistered(n) if n.models == ["vision-v1"] => Some(n.node_id),
            _ => None,
        })
        .unwrap();
    let chat_requests: Vec<_> = envs
        .iter()
        .filter_map(|e| match &e.event {
            Event::RequestAccepted(r) if r.model == "chat-v1" => Some(r.request_id),
            _ => None,
        })
        .collect();
    let forged = envs
        .iter()
        .position(|e| matches!(&e.event, Event::RequestScheduled(s) if chat_requests.contains(&s.task_id.request)))
        .unwrap() as u64;
    let forged_log = edited(&grouped, |o, env| match &mut env.event {
        Event::RequestScheduled(s) if o == forged => {
            s.node_id = vision_only;
            true
        }
        _ => false,
    });
    write_log(&out.join("unqualified-node"), forged_log).await;
    tidy(&out.join("unqualified-node"));
    manifest.insert(
        "unqualified-node".into(),
        json!({ "ok": false, "kind": "fold_refused", "offset": forged, "event_type": "RequestScheduled" }),
    );

    // 3. One payout altered: the first settled epoch that pays anyone pays its first node
    // one minor unit more than the settlement rules give.
    let (altered, _) = envs
        .iter()
        .enumerate()
        .find(|(_, e)| matches!(&e.event, Event::RewardEpochSettled(s) if !s.payouts.is_empty()))
        .expect("the scenario settles an epoch with payouts");
    let altered = altered as u64;
    let altered_log = edited(&grouped, |o, env| match &mut env.event {
        Event::RewardEpochSettled(s) if o == altered => {
            s.payouts[0].amount += 1;
            true
        }
        _ => false,
    });
    write_log(&out.join("altered-payout"), altered_log).await;
    tidy(&out.join("altered-payout"));
    manifest.insert(
        "altered-payout".into(),
        json!({
            "ok": false, "kind": "fold_refused", "offset": altered,
            "event_type": "RewardEpochSettled", "field": "payouts[0].amount",
        }),
    );

    // 4. One flipped byte inside the payload of a record in the middle: its CRC fails.
    let flipped = (records.len() / 2) as u64;
    copy_dir(&out.join("clean"), &out.join("flipped-byte"));
    let seg = out.join("flipped-byte").join(format!("{:020}.seg", 0));
    let mut bytes = std::fs::read(&seg).unwrap();
    let mut pos = 32usize;
    for _ in 0..flipped {
        let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
        pos += 24 + len;
    }
    bytes[pos + 24 + 10] ^= 0x04;
    std::fs::write(&seg, bytes).unwrap();
    manifest.insert(
        "flipped-byte".into(),
        json!({ "ok": false, "kind": "corrupt_record", "offset": flipped }),
    );

    // 5. A charge removed: the first request's CreditsCharged, later records renumbered
    // consistently. Without the chain, what catches it is that a returned result owes its
    // charge within its decision: the first record of the next batch is refused, at the
    // offset it moved up to.
    let removed = envs
        .iter()
        .position(|e| matches!(e.event, Event::CreditsCharged(_)))
        .unwrap() as u64;
    let batch = envs[removed as usize].header.correlation_id;
    let next_batch = (removed as usize + 1..envs.len())
        .find(|&i| envs[i].header.correlation_id != batch)
        .expect("a record after the charge's decision") as u64;
    write_log(&out.join("charge-removed"), without(&grouped, removed)).await;
    tidy(&out.join("charge-removed"));
    manifest.insert(
        "charge-removed".into(),
        json!({
            "ok": false, "kind": "fold_refused", "offset": next_batch - 1,
            "event_type": event_type(&records[next_batch as usize].payload),
            "removed": "CreditsCharged",
        }),
    );

    // 6. A request re-priced consistently: its price, reservation and charge all one unit
    // more. The fold re-derives the price from the catalog and refuses the acceptance.
    let repriced_request = envs
        .iter()
        .find_map(|e| match &e.event {
            Event::CreditsCharged(c) => Some(c.request_id),
            _ => None,
        })
        .unwrap();
    let accepted_at = envs
        .iter()
        .position(
            |e| matches!(&e.event, Event::RequestAccepted(r) if r.request_id == repriced_request),
        )
        .unwrap() as u64;
    let repriced_log = edited(&grouped, |_, env| match &mut env.event {
        Event::RequestAccepted(r) if r.request_id == repriced_request => {
            r.price += 1;
            true
        }
        Event::CreditsReserved(c) if c.request_id == repriced_request => {
            c.amount += 1;
            true
        }
        Event::CreditsCharged(c) if c.request_id == repriced_request => {
            c.amount += 1;
            true
        }
        _ => false,
    });
    write_log(&out.join("repriced"), repriced_log).await;
    tidy(&out.join("repriced"));
    manifest.insert(
        "repriced".into(),
        json!({
            "ok": false, "kind": "fold_refused", "offset": accepted_at,
            "event_type": "RequestAccepted",
        }),
    );

    write_chained(&out, &mut manifest).await;

    std::fs::write(
        out.join("manifest.json"),
        serde_json::to_string_pretty(&manifest).unwrap() + "\n",
    )
    .unwrap();
    println!(
        "wrote {} ({} records in the clean log)",
        out.display(),
        records.len()
    );
    println!("{}", serde_json::to_string_pretty(&manifest).unwrap());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}
