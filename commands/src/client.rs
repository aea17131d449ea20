//! A minimal HTTP/1.1 JSON client for the coordinator's API, used by `prlx-client` and the
//! tests that drive a real `serve` process, over https or http ([`Endpoint`]).

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use prlx_events::endpoint::Endpoint;
use serde_json::Value;

/// Why an exchange produced no answer (the server is unreachable, refused the handshake or
/// hung up).
#[derive(Debug, thiserror::Error)]
#[error("{method} {path} on {url}: {reason}")]
pub struct ClientError {
    pub url: String,
    pub method: String,
    pub path: String,
    pub reason: String,
}

/// One request on a fresh connection; returns the status and the JSON body (`Null` when the
/// body is not JSON).
pub async fn request(
    coordinator: &Endpoint,
    method: &str,
    path: &str,
    body: Option<&Value>,
    idempotency_key: Option<&str>,
) -> Result<(u16, Value), ClientError> {
    let fail = |reason: String| ClientError {
        url: coordinator.url().to_owned(),
        method: method.to_owned(),
        path: path.to_owned(),
        reason,
    };
    let stream = coordinator
        .connect()
        .await
        .map_err(|e| fail(e.to_string()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| fail(e.to_string()))?;
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", coordinator.authority())
        .header("content-type", "application/json");
    if let Some(key) = idempotency_key {
        req = req.header("Idempotency-Key", key);
    }
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let req = req
        .body(Full::new(Bytes::from(payload)))
        .map_err(|e| fail(e.to_string()))?;
    let res = sender
        .send_request(req)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let status = res.status().as_u16();
    let bytes = res
        .into_body()
        .collect()
        .await
        .map_err(|e| fail(e.to_string()))?
        .to_bytes();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}
