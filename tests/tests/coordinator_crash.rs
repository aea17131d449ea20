//! Crash test: SIGKILL the coordinator during a run of 1,200 requests over real HTTP, restart
//! it on the same log, retry what was not acknowledged, and prove from the log that no
//! acknowledged request was lost, none was accepted twice, and no (request, attempt) was
//! scheduled or dispatched twice. The coordinator runs through the process kit
//! ([`prlx_tests::harness`]; build it first with `cargo build --workspace --bins`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use prlx_commands::consent::ConsentDomain;
use prlx_commands::testkit::intake::{signed_heartbeat, signed_registration};
use prlx_events::crypto::public_key_pem;
use prlx_events::log::{LogReader, LogUrl};
use prlx_events::{AccountId, Envelope, Event, RequestId};
use prlx_projections::snapshot::catch_up;
use prlx_projections::{CoordinatorState, Fold};
use prlx_tests::harness::chain::{TestChain, CLIENT_ACCOUNT};
use prlx_tests::harness::client::{http, read};
use prlx_tests::harness::load;
use prlx_tests::harness::process::Proc;
use serde_json::json;

const REQUESTS: usize = 1_200;
const KILL_AFTER_ACKS: usize = 400;

/// The catalog's file for `tiny-test-v1`, which a node must report to serve it.
const TINY_SHA256: &str = "494c3b00fd977637bf2cbff7c4b1fd3b8ad304499dab5affc241a7d351ba2bb5";

const CATALOG: &str = r#"{
    "models": [{"model": "tiny-test-v1",
        "sha256": "494c3b00fd977637bf2cbff7c4b1fd3b8ad304499dab5affc241a7d351ba2bb5",
        "min_tier": 1, "base_price": 10, "per_token_price": 1, "max_tokens_limit": 64}],
    "max_tier": 4, "min_deadline_seconds": 5, "max_deadline_seconds": 3600
}"#;

/// `prlx-coordinator serve` on `dir` (see `load::serve`).
fn spawn_serve(dir: &Path, catalog: &Path, chain: &TestChain) -> (Proc, String) {
    load::serve(dir, catalog, chain, "serve-test/1")
}

/// Submits `keys` of `tiny-test-v1` from 32 clients (see `load::submit_signed`).
async fn submit_all(
    addr: &str,
    keys: Vec<usize>,
    pem: &str,
    domain: ConsentDomain,
    acked: Arc<Mutex<BTreeMap<usize, u64>>>,
) {
    load::submit_signed(addr, keys, 32, "tiny-test-v1", pem, domain, acked).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_loses_no_accepted_request_and_dispatches_none_twice() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("catalog.json");
    std::fs::write(&catalog, CATALOG).unwrap();
    let client = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let client_pem = public_key_pem(&client.to_public_key());

    let chain = TestChain::start(dir.path()).await;
    let (mut server, addr) = spawn_serve(dir.path(), &catalog, &chain);
    chain.fund(&addr, 10_000_000, 10_000_000).await;
    // Four nodes with room for every request, so each accepted request is also dispatched.
    for _ in 0..4 {
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let body = json!({"public_key_pem": public_key_pem(&key.to_public_key()), "hardware_tier": 1,
            "models": ["tiny-test-v1"], "slots": 400,
            "model_hashes": {"tiny-test-v1": TINY_SHA256},
            "execution_class": {"device": "cpu", "driver": "none", "runtime": "onnxruntime-test"}});
        let body = signed_registration(&key, body);
        let (status, answer) = http(&addr, "POST", "/v1/nodes", Some(&body), None).await;
        assert_eq!(status, 201, "{answer}");
        // Up, so it takes work (a signed node takes none before its first heartbeat).
        let id = prlx_events::crypto::node_id_of(&key.to_public_key());
        let path = format!("/v1/nodes/{}/heartbeat", id.0.to_hex());
        let beat = signed_heartbeat(&key, id);
        assert_eq!(http(&addr, "POST", &path, Some(&beat), None).await.0, 204);
    }

    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let run = {
        let (addr, pem, acked) = (addr.clone(), client_pem.clone(), Arc::clone(&acked));
        let domain = chain.consent_domain();
        tokio::spawn(async move {
            submit_all(&addr, (0..REQUESTS).collect(), &pem, domain, acked).await
        })
    };
    // SIGKILL once enough requests were acknowledged, in the middle of the stream.
    while acked.lock().unwrap().len() < KILL_AFTER_ACKS {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    server.kill();
    run.await.unwrap();
    let before_restart = acked.lock().unwrap().clone();
    assert!(
        before_restart.len() >= KILL_AFTER_ACKS && before_restart.len() < REQUESTS,
        "killed mid-run: {} acked",
        before_restart.len()
    );

    // Restart on the same log; retry everything not acknowledged (the client cannot know
    // whether an unanswered one landed) and some that were, all with their keys.
    let (_server, addr) = spawn_serve(dir.path(), &catalog, &chain);
    let retry: Vec<usize> = (0..REQUESTS)
        .filter(|i| !before_restart.contains_key(i) || i.is_multiple_of(50))
        .collect();
    let after = Arc::new(Mutex::new(BTreeMap::new()));
    submit_all(
        &addr,
        retry,
        &client_pem,
        chain.consent_domain(),
        Arc::clone(&after),
    )
    .await;
    let after = after.lock().unwrap().clone();
    for (i, id) in &after {
        if let Some(first) = before_restart.get(i) {
            assert_eq!(
                first, id,
                "key k-{i} got request {first} before the crash and {id} after"
            );
        }
    }
    // Wait until the restarted coordinator has dispatched everything (a read sees it durable).
    let mut done = false;
    for _ in 0..200 {
        let (_, health) = http(&addr, "GET", "/healthz", None, None).await;
        let (_, last) = read(
            &addr,
            &format!("/v1/requests/{}", REQUESTS - 1),
            &chain.read_token(),
        )
        .await;
        if health["status"] == "ok" && last["stage"] == "running" {
            done = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(done, "the last request was not dispatched");

    // The log, folded from the start with the auditor's fold (which also re-derives every
    // scheduling receipt), and counted event by event.
    let url = LogUrl::parse(&format!("file://{}", dir.path().join("log").display())).unwrap();
    let reader = url.open_reader().unwrap();
    let mut fold = Fold::<CoordinatorState>::default();
    catch_up(&mut fold, &reader)
        .await
        .expect("the log folds cleanly after the crash");
    let st = &fold.state;
    let account = AccountId(CLIENT_ACCOUNT.into());
    for (i, id) in before_restart.iter().chain(after.iter()) {
        assert_eq!(
            st.request_for_key(&account, &format!("k-{i}")),
            Some(RequestId(*id)),
            "acknowledged k-{i} is on the log as request {id}"
        );
    }
    assert_eq!(
        st.requests.len(),
        REQUESTS,
        "every key accepted exactly once"
    );
    assert_eq!(st.idempotency[&account].len(), REQUESTS);

    let mut scheduled: BTreeMap<(u64, u32), usize> = BTreeMap::new();
    let mut dispatched: BTreeMap<(u64, u32), usize> = BTreeMap::new();
    let mut next = 0;
    loop {
        let records = reader.read(next, 4096).await.unwrap();
        let Some(last) = records.last() else { break };
        next = last.offset + 1;
        for r in records {
            match Envelope::decode(&r.payload).unwrap().event {
                Event::RequestScheduled(s) => {
                    *scheduled
                        .entry((s.task_id.request.0, s.attempt))
                        .or_default() += 1
                }
                Event::TaskDispatched(d) => {
                    *dispatched
                        .entry((d.task_id.request.0, d.attempt))
                        .or_default() += 1
                }
                _ => {}
            }
        }
    }
    assert!(
        scheduled.values().all(|&n| n == 1),
        "a (request, attempt) was scheduled twice"
    );
    assert!(
        dispatched.values().all(|&n| n == 1),
        "a (request, attempt) was dispatched twice"
    );
    let dispatched_requests: BTreeSet<u64> = dispatched.keys().map(|(r, _)| *r).collect();
    assert_eq!(
        dispatched_requests.len(),
        REQUESTS,
        "every accepted request was dispatched"
    );
}
