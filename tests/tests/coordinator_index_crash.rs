//! Crash test of the request index: settled requests leave the coordinator's memory after
//! `FINISHED_WINDOW` settlements and are answered from the index after that. The coordinator
//! is SIGKILLed while it settles requests by the thousand (so while it writes the index),
//! restarted on the same log and index, and then every request that left memory is still
//! read, and every idempotency key, retried, gets the request it got before: none is
//! accepted twice. Then the same after the index was deleted (rebuilt by the start's scan).
//!
//! Requests settle without a node: none serves the model, so each fails (refunded) once the
//! catalog's `node_timeout_seconds` (1 s) has passed. The coordinator runs through the process
//! kit ([`prlx_tests::harness`]; build it first with `cargo build --workspace --bins`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use prlx_commands::consent::ConsentDomain;
use prlx_events::crypto::public_key_pem;
use prlx_events::log::{LogReader, LogUrl};
use prlx_events::{Envelope, Event};
use prlx_projections::coordinator::FINISHED_WINDOW;
use prlx_tests::harness::chain::TestChain;
use prlx_tests::harness::client::read;
use prlx_tests::harness::load;
use prlx_tests::harness::process::Proc;

/// Enough that the first few hundred leave memory before the kill.
const REQUESTS: usize = FINISHED_WINDOW + 600;
/// Killed once this many were acknowledged: past the window, while settlements stream.
const KILL_AFTER_ACKS: usize = FINISHED_WINDOW + 300;

const CATALOG: &str = r#"{
    "models": [{"model": "nobody-serves-v1",
        "sha256": "494c3b00fd977637bf2cbff7c4b1fd3b8ad304499dab5affc241a7d351ba2bb5",
        "min_tier": 1, "base_price": 10, "per_token_price": 1, "max_tokens_limit": 64}],
    "max_tier": 4, "min_deadline_seconds": 5, "max_deadline_seconds": 3600,
    "node_timeout_seconds": 1
}"#;

/// `prlx-coordinator serve` on `dir` (see `load::serve`).
fn spawn_serve(dir: &Path, catalog: &Path, chain: &TestChain) -> (Proc, String) {
    load::serve(dir, catalog, chain, "index-crash/1")
}

/// Submits `keys` of `nobody-serves-v1` from 16 clients (see `load::submit_signed`).
async fn submit_all(
    addr: &str,
    keys: Vec<usize>,
    pem: &str,
    domain: ConsentDomain,
    acked: Arc<Mutex<BTreeMap<usize, u64>>>,
) {
    load::submit_signed(addr, keys, 16, "nobody-serves-v1", pem, domain, acked).await
}

/// Retries every key (all of them: the client cannot know which unanswered one landed) and
/// checks each acknowledged one gets the request it got before; returns the answers.
async fn retry_all(
    addr: &str,
    pem: &str,
    chain: &TestChain,
    before: &BTreeMap<usize, u64>,
) -> BTreeMap<usize, u64> {
    let after = Arc::new(Mutex::new(BTreeMap::new()));
    let keys = (0..REQUESTS).collect();
    submit_all(addr, keys, pem, chain.consent_domain(), after.clone()).await;
    let after = after.lock().unwrap().clone();
    assert_eq!(after.len(), REQUESTS, "every key answered");
    for (i, first) in before {
        assert_eq!(
            after[i], *first,
            "key k-{i}: request {first} before, {} after",
            after[i]
        );
    }
    after
}

/// Request `id` as its account reads it, once settled (`failed`: nobody serves its model).
async fn read_settled(addr: &str, chain: &TestChain, id: u64) {
    for _ in 0..100 {
        let (status, body) = read(addr, &format!("/v1/requests/{id}"), &chain.read_token()).await;
        assert_eq!(status, 200, "request {id}: {body}");
        if body["status"] == "failed" {
            assert_eq!(body["reserved"], 0, "{body}");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("request {id} did not settle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_the_index_is_written_loses_no_settled_request_and_accepts_no_key_twice() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("catalog.json");
    std::fs::write(&catalog, CATALOG).unwrap();
    let client = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let pem = public_key_pem(&client.to_public_key());
    let chain = TestChain::start(dir.path()).await;
    let (mut server, addr) = spawn_serve(dir.path(), &catalog, &chain);
    chain.fund(&addr, 100_000_000, 10_000_000).await;

    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let run = {
        let (addr, pem, acked) = (addr.clone(), pem.clone(), Arc::clone(&acked));
        let domain = chain.consent_domain();
        tokio::spawn(async move {
            submit_all(&addr, (0..REQUESTS).collect(), &pem, domain, acked).await
        })
    };
    while acked.lock().unwrap().len() < KILL_AFTER_ACKS {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    // Killed once a few hundred have left memory (request KILL_AFTER_ACKS - 50 settled, so
    // 250 and more before it are in the index only), with submissions and their settlements
    // still streaming into the index.
    read_settled(&addr, &chain, (KILL_AFTER_ACKS - 50) as u64).await;
    server.kill();
    run.await.unwrap();
    let before = acked.lock().unwrap().clone();

    // Restarted on the same log and index: every key retried gets its request again, the
    // ones that left memory long ago included, and every request is read.
    let (server, addr) = spawn_serve(dir.path(), &catalog, &chain);
    let after = retry_all(&addr, &pem, &chain, &before).await;
    for id in [0, 1, 150, 299, (REQUESTS - 1) as u64] {
        read_settled(&addr, &chain, id).await;
    }
    drop(server);

    // Without its index: rebuilt from the log at the start, with the same answers.
    let index = dir.path().join("coordinator-state");
    assert!(index.is_dir(), "the index is beside the keys");
    std::fs::remove_dir_all(&index).unwrap();
    let (_server, addr) = spawn_serve(dir.path(), &catalog, &chain);
    retry_all(&addr, &pem, &chain, &after).await;
    read_settled(&addr, &chain, 0).await;

    // And the log holds one acceptance per key, no more.
    let url = LogUrl::parse(&format!("file://{}", dir.path().join("log").display())).unwrap();
    let reader = url.open_reader().unwrap();
    let mut accepted: BTreeMap<String, usize> = BTreeMap::new();
    let mut next = 0;
    loop {
        let records = reader.read(next, 4096).await.unwrap();
        let Some(last) = records.last() else { break };
        next = last.offset + 1;
        for r in records {
            if let Event::RequestAccepted(a) = Envelope::decode(&r.payload).unwrap().event {
                *accepted.entry(a.idempotency_key.unwrap()).or_default() += 1;
            }
        }
    }
    assert_eq!(accepted.len(), REQUESTS, "every key accepted");
    assert!(
        accepted.values().all(|&n| n == 1),
        "a key was accepted twice"
    );
}
