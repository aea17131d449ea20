//! Submissions by the thousand from a few concurrent clients, for the crash tests: each key's
//! answer is kept, and the clients stop once the coordinator stops answering (killed).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use prlx_commands::consent::ConsentDomain;
use prlx_events::Hash32;
use serde_json::{json, Value};

use super::chain::{TestChain, CLIENT_ACCOUNT};
use super::client::try_http;
use super::launch::ServeLaunch;
use super::process::Proc;

/// `prlx-coordinator serve` as `producer` with every key and the log under `dir`, crediting
/// from `chain`, and its address. No per-caller rate limit: every client calls from loopback,
/// a load test, not an abuser.
pub fn serve(dir: &Path, catalog: &Path, chain: &TestChain, producer: &str) -> (Proc, String) {
    ServeLaunch {
        chain: chain.serve_args(),
        extra: vec!["--rate-limit".into(), "0".into()],
        ..ServeLaunch::in_dir(dir, catalog, producer)
    }
    .spawn("coordinator")
}

/// Request `i` of `model`, signed by the chain's client under `domain` with `k-{i}` as its
/// idempotency key; every third at high priority.
pub fn signed_submission(i: usize, model: &str, client_pem: &str, domain: &ConsentDomain) -> Value {
    let prompt = format!("request {i}");
    let body = json!({
        "workload_class": "ai.inference", "model": model, "hardware_tier": 1,
        "priority": if i.is_multiple_of(3) { "high" } else { "standard" }, "deadline_seconds": 3600,
        "credit_account": CLIENT_ACCOUNT, "client_pubkey": client_pem, "prompt": prompt, "max_tokens": 8,
        "payload_hash": Hash32::of(prompt.as_bytes()).to_hex(),
    });
    prlx_commands::testkit::accounts::know(&prlx_chain::devchain::dev_signer(
        prlx_chain::devchain::dev_role::CLIENT,
    ));
    prlx_commands::testkit::intake::signed(body, &format!("k-{i}"), domain)
}

/// [`submit_all`] of [`signed_submission`]s of `model`.
pub async fn submit_signed(
    addr: &str,
    keys: Vec<usize>,
    clients: usize,
    model: &'static str,
    client_pem: &str,
    domain: ConsentDomain,
    acked: Arc<Mutex<BTreeMap<usize, u64>>>,
) {
    let pem = client_pem.to_owned();
    let body: Body = Arc::new(move |i| signed_submission(i, model, &pem, &domain));
    submit_all(addr, keys, clients, body, acked).await
}

/// Request `i`'s body, signed, with `k-{i}` as its idempotency key.
pub type Body = Arc<dyn Fn(usize) -> Value + Send + Sync>;

/// Submits `keys` with `clients` concurrent clients; inserts key -> request id into `acked`
/// for every 202, panics on any other answer, and stops early (leaving the rest) once the
/// server is gone.
pub async fn submit_all(
    addr: &str,
    keys: Vec<usize>,
    clients: usize,
    body: Body,
    acked: Arc<Mutex<BTreeMap<usize, u64>>>,
) {
    let queue = Arc::new(Mutex::new(keys.into_iter()));
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (addr, body, queue, acked) = (
                addr.to_owned(),
                Arc::clone(&body),
                Arc::clone(&queue),
                Arc::clone(&acked),
            );
            tokio::spawn(async move {
                loop {
                    let next = queue.lock().unwrap().next();
                    let Some(i) = next else { break };
                    let key = format!("k-{i}");
                    match try_http(&addr, "POST", "/v1/requests", Some(&body(i)), Some(&key)).await
                    {
                        Ok((202, answer)) => {
                            let id = answer["request_id"].as_u64().unwrap();
                            acked.lock().unwrap().insert(i, id);
                        }
                        Ok((status, answer)) => panic!("request {i}: {status} {answer}"),
                        Err(_) => break, // the server is gone
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}
