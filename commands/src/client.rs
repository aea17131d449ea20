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
    let headers: Vec<(&str, &str)> = idempotency_key
        .map(|key| ("Idempotency-Key", key))
        .into_iter()
        .collect();
    request_with(coordinator, method, path, body, &headers).await
}

/// [`request`] with `headers` (name, value) added: `Authorization` for the reads that need a
/// read-access token (`prlx_chain::read_access`), `Idempotency-Key`.
pub async fn request_with(
    coordinator: &Endpoint,
    method: &str,
    path: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
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
    for (name, value) in headers {
        req = req.header(*name, *value);
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

/// The seconds a read-access token is signed for; a fresh one is signed a minute before the
/// last expires (the coordinator takes none that lives over an hour).
pub const READ_TOKEN_SECONDS: u64 = 600;

/// The reads of one account's balance and requests, each with a read-access token
/// (`prlx_chain::read_access`) signed by `key`, the account's or a delegate's: one signature
/// per token, reused until it nears its end.
#[derive(Debug)]
pub struct AccountReads {
    key: alloy::signers::local::PrivateKeySigner,
    account: alloy::primitives::Address,
    account_id: String,
    domain: alloy::sol_types::Eip712Domain,
    token: Option<prlx_chain::read_access::ReadToken>,
}

impl AccountReads {
    /// Reads of `account` (a 0x address) signed by `key` under `domain`.
    pub fn new(
        key: alloy::signers::local::PrivateKeySigner,
        account: &str,
        domain: alloy::sol_types::Eip712Domain,
    ) -> Result<Self, prlx_chain::consent::ConsentError> {
        let parsed = prlx_chain::consent::address(account)?;
        Ok(Self {
            key,
            account: parsed,
            account_id: prlx_chain::record::hex0x(parsed.as_slice()),
            domain,
            token: None,
        })
    }

    /// The account read, lowercase 0x-hex.
    pub fn account(&self) -> &str {
        &self.account_id
    }

    /// `GET path` on `coordinator` with a live token.
    pub async fn get(
        &mut self,
        coordinator: &Endpoint,
        path: &str,
    ) -> Result<(u16, Value), ClientError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if self.token.as_ref().is_none_or(|t| t.expires_at <= now + 60) {
            self.token = Some(prlx_chain::read_access::ReadToken::sign(
                &self.key,
                self.account,
                now + READ_TOKEN_SECONDS,
                &self.domain,
            ));
        }
        let header = self.token.as_ref().expect("just signed").to_header();
        request_with(
            coordinator,
            "GET",
            path,
            None,
            &[("Authorization", header.as_str())],
        )
        .await
    }
}
