//! A small HTTP/1.1 client for the coordinator's API (hyper's connection-level client).
//!
//! One connection per call: a node makes a handful of calls a minute (registration,
//! heartbeats, one report per task), and a fresh connection is what survives a coordinator
//! restart without any pool bookkeeping. Every call is bounded by a timeout.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::Serialize;

/// How long one call may take, connection included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "coordinator URL {url:?}: {reason} (expected http://HOST:PORT; for TLS, run the node \
         beside a local TLS-terminating tunnel)"
    )]
    BadUrl { url: String, reason: &'static str },
    /// Nothing answered or the connection broke: worth a retry (the coordinator may restart).
    #[error("cannot reach the coordinator at {authority}: {message}")]
    Unreachable { authority: String, message: String },
    #[error("the coordinator at {authority} did not answer within {timeout:?}")]
    Timeout {
        authority: String,
        timeout: Duration,
    },
}

impl ClientError {
    /// Whether the same call to the coordinator may succeed when made again later: the
    /// coordinator was unreachable or slow (it may be restarting), not misaddressed. A
    /// question about HTTP calls, apart from which errors of its log are worth waiting out
    /// (`LogError::is_retryable`).
    pub fn is_retryable_call(&self) -> bool {
        !matches!(self, ClientError::BadUrl { .. })
    }
}

/// An answer: status and body bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// `error.code` of the coordinator's error body, when there is one.
    pub fn error_code(&self) -> Option<String> {
        self.json()["error"]["code"].as_str().map(str::to_owned)
    }

    /// A short description for logs: status, and the error body's code and message.
    pub fn describe(&self) -> String {
        let json = self.json();
        match (
            json["error"]["code"].as_str(),
            json["error"]["message"].as_str(),
        ) {
            (Some(code), Some(message)) => format!("{} {code}: {message}", self.status),
            _ => format!("{}", self.status),
        }
    }
}

/// The coordinator at `http://HOST:PORT`.
#[derive(Debug, Clone)]
pub struct CoordinatorClient {
    authority: String,
    timeout: Duration,
}

impl CoordinatorClient {
    /// Parses `http://HOST:PORT` (a trailing `/` is allowed; a path is not).
    pub fn new(url: &str) -> Result<CoordinatorClient, ClientError> {
        let bad = |reason| ClientError::BadUrl {
            url: url.to_owned(),
            reason,
        };
        if url.starts_with("https://") {
            return Err(bad("https is not supported by this build"));
        }
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("not http://"))?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
            return Err(bad("needs exactly HOST:PORT after http://"));
        }
        Ok(CoordinatorClient {
            authority: authority.to_owned(),
            timeout: CALL_TIMEOUT,
        })
    }

    /// `HOST:PORT`.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    pub fn with_timeout(mut self, timeout: Duration) -> CoordinatorClient {
        self.timeout = timeout;
        self
    }

    pub async fn get(&self, path: &str) -> Result<Answer, ClientError> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post_json(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<Answer, ClientError> {
        let bytes = serde_json::to_vec(body).expect("request bodies are plain data");
        self.call(Method::POST, path, Some(bytes)).await
    }

    /// A POST with no body (heartbeats).
    pub async fn post_empty(&self, path: &str) -> Result<Answer, ClientError> {
        self.call(Method::POST, path, Some(Vec::new())).await
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, ClientError> {
        match tokio::time::timeout(self.timeout, self.exchange(method, path, body)).await {
            Ok(answer) => answer,
            Err(_) => Err(ClientError::Timeout {
                authority: self.authority.clone(),
                timeout: self.timeout,
            }),
        }
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, ClientError> {
        let unreachable = |message: String| ClientError::Unreachable {
            authority: self.authority.clone(),
            message,
        };
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        // Drives the connection; it ends when `sender` is dropped after the answer.
        let driver = tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, &self.authority);
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| unreachable(format!("building the request: {e}")))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(format!("reading the answer: {e}")))?
            .to_bytes()
            .to_vec();
        drop(sender);
        driver.abort();
        Ok(Answer { status, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_http_host_port_and_refuses_the_rest() {
        assert_eq!(
            CoordinatorClient::new("http://127.0.0.1:8080/")
                .unwrap()
                .authority(),
            "127.0.0.1:8080"
        );
        for url in [
            "https://c:443",
            "127.0.0.1:8080",
            "http://",
            "http://c:1/v1",
            "http://u@c:1",
        ] {
            assert!(CoordinatorClient::new(url).is_err(), "{url}");
        }
    }

    #[test]
    fn a_call_to_a_closed_port_is_retryable() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = CoordinatorClient::new(&format!("http://127.0.0.1:{port}")).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = rt.block_on(client.get("/healthz")).unwrap_err();
        assert!(err.is_retryable_call(), "{err}");
    }

    #[test]
    fn error_bodies_are_described_by_code_and_message() {
        let a = Answer {
            status: 409,
            body: br#"{"error":{"code":"node_already_registered","field":null,"message":"other parameters"}}"#.to_vec(),
        };
        assert_eq!(a.error_code().as_deref(), Some("node_already_registered"));
        assert_eq!(
            a.describe(),
            "409 node_already_registered: other parameters"
        );
        assert!(!a.is_success());
    }
}
