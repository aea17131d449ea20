//! Submissions by the thousand from a few concurrent clients, for the crash tests: each key's
//! answer is kept, and the clients stop once the coordinator stops answering (killed).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::client::try_http;

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
