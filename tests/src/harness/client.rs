//! What the tests do as a client of a running coordinator: HTTP exchanges, opening a returned
//! result, and reading the log it writes (by URL, or from a reader the caller holds).
//!
//! Exchanges name the coordinator by its address, `HOST:PORT`. One that [`pin`] was told of
//! (every coordinator [`ServeLaunch`](super::launch::ServeLaunch) starts with TLS) is spoken
//! to over https, trusting only its certificate; any other over plain http.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use prlx_events::crypto::open_with_private_key;
use prlx_events::endpoint::Endpoint;
use prlx_events::log::{LogReader, LogUrl, Offset, Record};
use prlx_events::{Hash32, NodeId, RequestId};
use rsa::RsaPrivateKey;
use serde_json::Value;

/// The addresses spoken to over https, with what each trusts.
static PINNED: Mutex<BTreeMap<String, Endpoint>> = Mutex::new(BTreeMap::new());

/// From now on, exchanges with `addr` (`HOST:PORT`: a coordinator, or a front that forwards
/// to coordinators serving `cert`) go over https and trust only `cert` (PEM).
pub fn pin(addr: &str, cert: &Path) {
    let endpoint = Endpoint::new(&format!("https://{addr}"), Some(cert))
        .unwrap_or_else(|e| panic!("{addr}: {e}"));
    PINNED.lock().unwrap().insert(addr.to_owned(), endpoint);
}

/// How exchanges reach `addr`: https pinned as [`pin`] was told, else plain http.
pub fn endpoint(addr: &str) -> Endpoint {
    if let Some(pinned) = PINNED.lock().unwrap().get(addr) {
        return pinned.clone();
    }
    Endpoint::new(&format!("http://{addr}"), None).unwrap_or_else(|e| panic!("{addr}: {e}"))
}

/// One exchange with the coordinator at `addr` (`HOST:PORT`; see [`endpoint`]); `Err` when
/// the connection fails (a killed server), so callers can tell "refused" from "answered".
pub async fn try_http(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    idempotency_key: Option<&str>,
) -> Result<(u16, Value), String> {
    prlx_commands::client::request(&endpoint(addr), method, path, body, idempotency_key)
        .await
        .map_err(|e| e.to_string())
}

/// A `GET` with `authorization` (a read-access token's header, see
/// `TestChain::read_token`): the reads of an account's balance and requests.
pub async fn read(addr: &str, path: &str, authorization: &str) -> (u16, Value) {
    prlx_commands::client::request_with(
        &endpoint(addr),
        "GET",
        path,
        None,
        &[("Authorization", authorization)],
    )
    .await
    .unwrap()
}

/// [`try_http`] that must get an answer.
pub async fn http(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    idempotency_key: Option<&str>,
) -> (u16, Value) {
    try_http(addr, method, path, body, idempotency_key)
        .await
        .unwrap()
}

/// Opens the result in request `id`'s status body (`GET /v1/requests/ID`) as its client, with
/// `client_key`: the result's canonical bytes, the node it is credited to, and its PoE.
pub fn open_result(
    client_key: &RsaPrivateKey,
    id: RequestId,
    status: &Value,
) -> (Vec<u8>, NodeId, Hash32) {
    let result = &status["result"];
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(result["sealed_for_client"].as_str().expect("a result"))
        .unwrap();
    let bytes = open_with_private_key(client_key, &id.0.to_be_bytes(), &sealed)
        .unwrap_or_else(|e| panic!("{id}: the result does not open for the client: {e}"));
    let node: NodeId = result["node_id"].as_str().unwrap().parse().unwrap();
    let poe: Hash32 = result["poe"].as_str().unwrap().parse().unwrap();
    (bytes, node, poe)
}

/// Reads request `id`'s status body with `status` every `every` until it has a result, and
/// returns it; fails if the request failed or has no result after `timeout`.
pub fn poll_result(
    id: RequestId,
    timeout: Duration,
    every: Duration,
    mut status: impl FnMut() -> Value,
) -> Value {
    let until = Instant::now() + timeout;
    loop {
        let body = status();
        if body.get("result").is_some() {
            return body;
        }
        assert_ne!(body["status"], "failed", "{id} failed: {body}");
        assert!(
            Instant::now() < until,
            "{id} has no result after {timeout:?}: {body}"
        );
        std::thread::sleep(every);
    }
}

/// Every committed record of the log at `url`, with its offset.
pub async fn read_log(url: &str) -> Vec<(Offset, Vec<u8>)> {
    let reader = LogUrl::parse(url).unwrap().open_reader().unwrap();
    read_records(&reader, 0)
        .await
        .into_iter()
        .map(|r| (r.offset, r.payload))
        .collect()
}

/// Every record `reader` holds from offset `from` on, in order: what is durable now, not
/// waiting for more.
pub async fn read_records(reader: &impl LogReader, from: Offset) -> Vec<Record> {
    let mut out = Vec::new();
    let mut batches = prlx_events::log::Batches::new(reader, from);
    while let Some(batch) = batches.next().await.unwrap() {
        out.extend(batch);
    }
    out
}
