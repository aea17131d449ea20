//! The transport checks in front of the handlers (docs/security.md, "Transport checks"):
//! who may talk to the coordinator at all, before any handler runs.
//!
//! - **Host**: a request's `Host` must be one the coordinator is reached by (its listen
//!   address and loopback names by default). A page on `evil.example` whose name an attacker
//!   re-points at 127.0.0.1 (DNS rebinding) reaches a loopback coordinator with
//!   `Host: evil.example`, and is refused here.
//! - **Origin**: browsers add `Origin` to cross-site requests; no client of ours sends it, so
//!   any `Origin` not allowed explicitly is refused.
//! - **JSON bodies**: a `POST`, `PUT` or `PATCH` without a JSON `Content-Type` is refused
//!   before routing (in [`super::app`]), so a browser's "simple request" (a form or
//!   `text/plain`, sent cross-site without a preflight) reaches no handler, even one that
//!   reads no body.
//! - **Rate**: per caller IP address (an IPv6 caller by its /64), a token bucket
//!   ([`super::rate`]); over it, `429 rate_limited` with `Retry-After`.
//! - **Time**: a request not answered within the request timeout gets `408`.
//!
//! The connection limit and the header read timeout are the server's ([`super::serve`]).
//!
//! `GET /healthz` skips the Host and Origin checks: a load balancer probes each instance by
//! its own address, and the answer (serving or not, and the log's length) is no secret.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;

use super::extract::{has_json_content_type, unsupported_media_type};
use super::rate::{CallerKey, RateLimit, RateLimiter};
use crate::error::AppError;

/// The default whole-request timeout.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The default time a client has to send a request's headers (and an idle keep-alive
/// connection is kept).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The default limit on open connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// The default per-caller rate: generous enough that a host running several nodes and a
/// client polling for results never meets it.
pub const DEFAULT_RATE_LIMIT: RateLimit = RateLimit {
    per_second: 200,
    burst: 400,
};

/// Which `Host` headers are accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostAllowList {
    /// Any (`--allowed-host '*'`): behind a proxy that checks the host itself.
    Any,
    /// These, lowercase: `name:port` matches exactly, a bare `name` matches that name on any
    /// port.
    Only(BTreeSet<String>),
}

impl HostAllowList {
    /// The hosts a coordinator on `listen` is reached by without a proxy: the address itself
    /// and the loopback names on its port, plus `extra` (`*` among them allows any).
    pub fn for_listener(listen: SocketAddr, extra: &[String]) -> HostAllowList {
        if extra.iter().any(|h| h.trim() == "*") {
            return HostAllowList::Any;
        }
        let port = listen.port();
        let mut hosts: BTreeSet<String> = [
            listen.to_string(),
            format!("localhost:{port}"),
            format!("127.0.0.1:{port}"),
            format!("[::1]:{port}"),
        ]
        .into_iter()
        .collect();
        if matches!(port, 80 | 443) {
            // A client leaves its scheme's default port (http 80, https 443) out of `Host`.
            hosts.extend(["localhost", "127.0.0.1", "[::1]"].map(String::from));
            if !listen.ip().is_unspecified() {
                hosts.insert(host_of_ip(listen.ip()));
            }
        }
        hosts.extend(extra.iter().map(|h| h.trim().to_ascii_lowercase()));
        HostAllowList::Only(hosts)
    }

    /// Whether `host` (a `Host` header's value) is allowed.
    pub fn allows(&self, host: &str) -> bool {
        let hosts = match self {
            HostAllowList::Any => return true,
            HostAllowList::Only(hosts) => hosts,
        };
        let host = host.trim().to_ascii_lowercase();
        hosts.contains(&host) || hosts.contains(split_port(&host).0)
    }
}

fn host_of_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// `name:port` as (`name`, `Some(port)`); an IPv6 literal keeps its brackets.
fn split_port(host: &str) -> (&str, Option<&str>) {
    match host.rfind(':') {
        Some(i)
            if !host[i..].contains(']') && (host.starts_with('[') || !host[..i].contains(':')) =>
        {
            (&host[..i], Some(&host[i + 1..]))
        }
        _ => (host, None),
    }
}

/// What the transport checks allow (see the module docs); `serve --help` describes the flags
/// that set each.
#[derive(Debug, Clone)]
pub struct TransportOptions {
    pub hosts: HostAllowList,
    /// Accepted `Origin` values (`scheme://host[:port]`, compared without case); empty: a
    /// request with any `Origin` is refused.
    pub origins: BTreeSet<String>,
    pub request_timeout: Duration,
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    /// `None`: no rate limit.
    pub rate: Option<RateLimit>,
    /// `Some`: connections speak TLS with this certificate ([`super::tls`]); `None`: plain
    /// HTTP (`--plain-http`, behind a TLS-terminating proxy; in-process tests).
    pub tls: Option<super::tls::ServerTls>,
}

impl TransportOptions {
    /// The defaults for a coordinator listening on `listen`.
    pub fn for_listener(listen: SocketAddr) -> TransportOptions {
        TransportOptions {
            hosts: HostAllowList::for_listener(listen, &[]),
            origins: BTreeSet::new(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            rate: Some(DEFAULT_RATE_LIMIT),
            tls: None,
        }
    }
}

/// `router` behind the Host, Origin, rate and request-time checks of `options`. The rate
/// limit keys on the `ConnectInfo<SocketAddr>` extension, which [`super::serve`] sets.
pub fn guarded(router: Router, options: &TransportOptions) -> Router {
    let timeout = options.request_timeout;
    let router = router.layer(middleware::from_fn(move |req, next| {
        answer_within(timeout, req, next)
    }));
    let origins = Arc::new(Checks {
        hosts: options.hosts.clone(),
        origins: options.origins.clone(),
    });
    let router = router.layer(middleware::from_fn(move |req, next| {
        check_host_and_origin(origins.clone(), req, next)
    }));
    match options.rate {
        Some(limit) => {
            let limiter = Arc::new(RateLimiter::new(limit));
            router.layer(middleware::from_fn(move |req, next| {
                limit_rate(limiter.clone(), req, next)
            }))
        }
        None => router,
    }
}

/// Refuses a `POST`, `PUT` or `PATCH` whose `Content-Type` is not JSON.
pub(super) async fn require_json_body(req: Request, next: Next) -> Response {
    let has_body = matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH);
    if has_body && !has_json_content_type(req.headers()) {
        return unsupported_media_type().into_response();
    }
    next.run(req).await
}

#[derive(Debug)]
struct Checks {
    hosts: HostAllowList,
    origins: BTreeSet<String>,
}

impl Checks {
    fn refusal(&self, headers: &HeaderMap) -> Option<AppError> {
        let forbidden = |code: &'static str, header: &str, message: String| {
            Some(AppError::new(
                StatusCode::FORBIDDEN,
                code,
                Some(header),
                message,
            ))
        };
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin
                .to_str()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            if !self.origins.contains(&origin) {
                return forbidden(
                    "forbidden_origin",
                    "Origin",
                    format!("requests from origin {origin:?} are not allowed"),
                );
            }
        }
        match headers.get(header::HOST).map(HeaderValue::to_str) {
            Some(Ok(host)) if self.hosts.allows(host) => None,
            Some(Ok(host)) => forbidden(
                "forbidden_host",
                "Host",
                format!("this coordinator is not served as {host:?} (see --allowed-host)"),
            ),
            _ if self.hosts == HostAllowList::Any => None,
            _ => forbidden(
                "forbidden_host",
                "Host",
                "a request must name the coordinator's host in Host".into(),
            ),
        }
    }
}

async fn check_host_and_origin(checks: Arc<Checks>, req: Request, next: Next) -> Response {
    let health = req.method() == Method::GET && req.uri().path() == "/healthz";
    if !health {
        if let Some(refusal) = checks.refusal(req.headers()) {
            tracing::debug!(
                host = ?req.headers().get(header::HOST),
                origin = ?req.headers().get(header::ORIGIN),
                "refused a request by its Host or Origin"
            );
            return refusal.into_response();
        }
    }
    next.run(req).await
}

async fn limit_rate(limiter: Arc<RateLimiter>, req: Request, next: Next) -> Response {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    match limiter.check(CallerKey::of(ip), tokio::time::Instant::now()) {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            // Whole seconds, rounded up: `Retry-After` has no fractions.
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let mut res = AppError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                None,
                format!("too many requests from this address; try again in {secs} s"),
            )
            .into_response();
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            res
        }
    }
}

/// Answers `408` when the handler (reading the body included) takes longer than `timeout`.
/// The handler is dropped then; a command it already handed to the coordinator may still be
/// recorded, as when a client hangs up, and a retry with the same `Idempotency-Key` finds it.
async fn answer_within(timeout: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(res) => res,
        Err(_) => AppError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            None,
            format!(
                "the request was not complete within {} s; it may or may not have taken \
                 effect: retry with the same Idempotency-Key",
                timeout.as_secs_f64()
            ),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_hosts_are_the_listen_address_and_loopback() {
        let hosts = HostAllowList::for_listener("127.0.0.1:8080".parse().unwrap(), &[]);
        for ok in ["127.0.0.1:8080", "LOCALHOST:8080", "[::1]:8080"] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:8080",
            "localhost:8081",
            "localhost",
            "",
        ] {
            assert!(!hosts.allows(refused), "{refused}");
        }
    }

    #[test]
    fn an_extra_host_without_a_port_matches_any_port_and_star_any_host() {
        let extra = ["Coordinator.Example".to_owned(), "10.0.0.5:9000".to_owned()];
        let hosts = HostAllowList::for_listener("0.0.0.0:9000".parse().unwrap(), &extra);
        for ok in [
            "coordinator.example",
            "coordinator.example:443",
            "10.0.0.5:9000",
        ] {
            assert!(hosts.allows(ok), "{ok}");
        }
        assert!(!hosts.allows("10.0.0.5:9001"));
        let any = HostAllowList::for_listener("0.0.0.0:9000".parse().unwrap(), &["*".into()]);
        assert!(any.allows("evil.example"));
    }

    #[test]
    fn ports_split_off_names_and_ipv6_literals() {
        assert_eq!(split_port("a.b:80"), ("a.b", Some("80")));
        assert_eq!(split_port("a.b"), ("a.b", None));
        assert_eq!(split_port("[::1]:80"), ("[::1]", Some("80")));
        assert_eq!(split_port("[::1]"), ("[::1]", None));
    }
}
