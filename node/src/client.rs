//! A small HTTP/1.1 client for the coordinator's API (hyper's connection-level client), over
//! https (the coordinator's default, its certificate pinnable) or http ([`Endpoint`]).
//!
//! One idle connection is kept for the next call: a node calls a few times a minute
//! (heartbeats, one report per task), and with TLS a fresh connection per call would spend a
//! handshake on each. A call that fails on the kept connection (the coordinator restarted,
//! or closed it after its idle timeout, perhaps before this process noticed) is made once
//! more on a new one, as its caller would retry it anyway: every call of the node is safe to
//! repeat (a report is recorded once, a registration is idempotent, a heartbeat repeated
//! after it counted is refused as a replay and changes nothing). A 5xx answer drops the kept
//! connection, so the next call goes through a load balancer afresh after a failover. Calls
//! made at once use connections of their own. Every call is bounded by a timeout.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use prlx_events::endpoint::{ConnectError, Endpoint, EndpointError};
use serde::Serialize;

/// How long one call may take, connection included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL or the pinned certificate cannot be used.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// Nothing answered or the connection broke: worth a retry (the coordinator may restart).
    #[error("cannot reach the coordinator at {url}: {message}")]
    Unreachable { url: String, message: String },
    /// The TLS handshake was refused: the coordinator's certificate is not the one trusted,
    /// or it does not speak TLS.
    #[error(transparent)]
    Refused(ConnectError),
    #[error("the coordinator at {url} did not answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
}

impl ClientError {
    /// Whether the same call to the coordinator may succeed when made again later: the
    /// coordinator was unreachable or slow (it may be restarting), not misaddressed or
    /// untrusted. A question about HTTP calls, apart from which errors of its log are worth
    /// waiting out (`LogError::is_retryable`).
    pub fn is_retryable_call(&self) -> bool {
        matches!(
            self,
            ClientError::Unreachable { .. } | ClientError::Timeout { .. }
        )
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

/// The coordinator at `https://HOST[:PORT]` or `http://HOST:PORT`.
#[derive(Debug, Clone)]
pub struct CoordinatorClient {
    endpoint: Endpoint,
    timeout: Duration,
    /// The connection kept for the next call.
    idle: Arc<Mutex<Option<SendRequest<Full<Bytes>>>>>,
}

impl CoordinatorClient {
    /// Parses the URL (a trailing `/` is allowed; a path is not); `pin` is the PEM file of
    /// the coordinator's certificate to trust alone (https only).
    pub fn new(url: &str, pin: Option<&std::path::Path>) -> Result<CoordinatorClient, ClientError> {
        Ok(CoordinatorClient {
            endpoint: Endpoint::new(url, pin)?,
            timeout: CALL_TIMEOUT,
            idle: Arc::default(),
        })
    }

    /// `HOST[:PORT]`.
    pub fn authority(&self) -> &str {
        self.endpoint.authority()
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
                url: self.endpoint.url().to_owned(),
                timeout: self.timeout,
            }),
        }
    }

    fn unreachable(&self, message: String) -> ClientError {
        ClientError::Unreachable {
            url: self.endpoint.url().to_owned(),
            message,
        }
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, ClientError> {
        let has_body = body.is_some();
        let body = Bytes::from(body.unwrap_or_default());
        let request = || {
            let mut request = Request::builder()
                .method(method.clone())
                .uri(path)
                .header(HOST, self.endpoint.authority());
            if has_body {
                request = request.header(CONTENT_TYPE, "application/json");
            }
            request
                .body(Full::new(body.clone()))
                .map_err(|e| self.unreachable(format!("building the request: {e}")))
        };
        let kept = self.idle.lock().expect("never poisoned").take();
        let mut sent = None;
        if let Some(mut sender) = kept.filter(|s| !s.is_closed()) {
            match sender.send_request(request()?).await {
                Ok(response) => sent = Some((sender, response)),
                Err(e) => tracing::debug!(error = %e, "kept connection failed; calling again"),
            }
        }
        let (sender, response) = match sent {
            Some(sent) => sent,
            None => {
                let mut sender = self.connect().await?;
                let response = sender
                    .send_request(request()?)
                    .await
                    .map_err(|e| self.unreachable(e.to_string()))?;
                (sender, response)
            }
        };
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| self.unreachable(format!("reading the answer: {e}")))?
            .to_bytes()
            .to_vec();
        if status < 500 && !sender.is_closed() {
            self.idle
                .lock()
                .expect("never poisoned")
                .get_or_insert(sender);
        }
        Ok(Answer { status, body })
    }

    /// A new connection, its driver running until the connection closes.
    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, ClientError> {
        let stream = self.endpoint.connect().await.map_err(|e| match e {
            e @ ConnectError::Refused { .. } => ClientError::Refused(e),
            // Its own message already names the coordinator; only the cause is added here.
            ConnectError::Unreachable { source, .. } => self.unreachable(source.to_string()),
        })?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.unreachable(e.to_string()))?;
        // Ends when the coordinator closes the connection or every sender is dropped.
        tokio::spawn(connection);
        Ok(sender)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_http_host_port_and_refuses_the_rest() {
        assert_eq!(
            CoordinatorClient::new("http://127.0.0.1:8080/", None)
                .unwrap()
                .authority(),
            "127.0.0.1:8080"
        );
        for url in ["127.0.0.1:8080", "http://", "http://c:1/v1", "http://u@c:1"] {
            let err = CoordinatorClient::new(url, None).unwrap_err();
            assert!(!err.is_retryable_call(), "{url}: {err}");
        }
    }

    #[test]
    fn a_call_to_a_closed_port_is_retryable() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = CoordinatorClient::new(&format!("http://127.0.0.1:{port}"), None).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = rt.block_on(client.get("/healthz")).unwrap_err();
        assert!(err.is_retryable_call(), "{err}");
        // Said once, with the cause (the node logs it on every retry).
        let message = err.to_string();
        assert_eq!(
            message.matches("cannot reach the coordinator").count(),
            1,
            "{message}"
        );
        assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
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
