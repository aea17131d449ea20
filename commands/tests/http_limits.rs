//! The HTTP door's transport checks (docs/security.md, "Transport checks"): for each, an
//! outsider refused, and a normal client still served. The checks in front of the router are
//! driven with `oneshot`; the server's own (connection limit, header and request timeouts)
//! through a real socket on loopback. Time is tokio's paused clock: nothing sleeps for real.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use prlx_commands::consent::ConsentDomain;
use prlx_commands::http::{guarded, serve, Connections, RateLimit, TransportOptions};
use prlx_commands::testkit::app::InProcess;
use prlx_commands::testkit::intake::{
    assert_error_body, client_key, registration_body, signed, signed_registration, submission,
};
use prlx_events::endpoint::Endpoint;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tower::ServiceExt;

/// The address the in-process router is reached at, as far as its Host check knows.
const ADDR: &str = "127.0.0.1:8080";

/// A coordinator on a fresh file log with the test catalog published; `app` has no
/// transport checks yet.
async fn fixture() -> InProcess {
    InProcess::start("limits-test", []).await
}

fn defaults() -> TransportOptions {
    TransportOptions::for_listener(ADDR.parse().unwrap())
}

/// A request from `peer` to the router at [`ADDR`], as the server would hand it over.
fn request(method: &str, uri: &str, peer: &str) -> axum::http::request::Builder {
    let peer: SocketAddr = peer.parse().unwrap();
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, ADDR)
        .extension(ConnectInfo(peer))
}

fn json_post(uri: &str, body: &Value) -> Request<Body> {
    request("POST", uri, "10.0.0.1:5000")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn send(router: &Router, req: Request<Body>) -> (StatusCode, HeaderMap, Value) {
    let res = router.clone().oneshot(req).await.unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, body)
}

#[track_caller]
fn assert_error(
    got: &(StatusCode, HeaderMap, Value),
    status: StatusCode,
    code: &str,
    field: Option<&str>,
) {
    assert_error_body(got.0, &got.2, status, code, field);
}

async fn log_end(router: &Router) -> u64 {
    let (status, _, body) = send(
        router,
        request("GET", "/healthz", "10.0.0.1:5000")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["log_end"].as_u64().unwrap()
}

/// A registration of the [`client_key`], signed now.
fn node_registration() -> Value {
    signed_registration(
        client_key(),
        registration_body(&client_key().to_public_key(), 3),
    )
}

#[tokio::test]
async fn a_body_that_does_not_say_json_reaches_no_handler() {
    let f = fixture().await;
    let router = guarded(f.app.clone(), &defaults());
    let end = log_end(&router).await;
    let body = node_registration().to_string();
    // What a cross-site form or fetch() may send without a preflight, and no type at all.
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
    ] {
        for uri in ["/v1/nodes", "/v1/requests", "/v1/nodes/0/heartbeat"] {
            let mut req = request("POST", uri, "10.0.0.1:5000");
            if let Some(ct) = content_type {
                req = req.header(header::CONTENT_TYPE, ct);
            }
            let got = send(&router, req.body(Body::from(body.clone())).unwrap()).await;
            assert_error(
                &got,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                Some("Content-Type"),
            );
        }
        // An empty POST is refused alike, before any handler could take it.
        let mut req = request("POST", "/v1/nodes", "10.0.0.1:5000");
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let got = send(&router, req.body(Body::empty()).unwrap()).await;
        assert_eq!(
            got.0,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}: {}",
            got.2
        );
    }
    assert_eq!(log_end(&router).await, end, "nothing recorded");

    // The same body as JSON registers the node; `+json` types count as JSON.
    let (status, _, registered) = send(&router, json_post("/v1/nodes", &node_registration())).await;
    assert_eq!(status, StatusCode::CREATED, "{registered}");
    let mut req = json_post("/v1/nodes", &node_registration());
    req.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/vnd.prlx+json; charset=utf-8".parse().unwrap(),
    );
    assert_eq!(
        send(&router, req).await.0,
        StatusCode::OK,
        "the same registration again"
    );
}

#[tokio::test]
async fn the_json_extractor_alone_refuses_a_missing_content_type() {
    // Without the guard's layers too: a handler taking `ApiJson` checks for itself.
    let f = fixture().await;
    let req = Request::post("/v1/requests")
        .body(Body::from(submission("ai", "hello").to_string()))
        .unwrap();
    let got = send(&f.app, req).await;
    assert_error(
        &got,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        Some("Content-Type"),
    );
}

#[tokio::test]
async fn a_foreign_origin_is_refused_naming_the_header() {
    let f = fixture().await;
    let router = guarded(f.app.clone(), &defaults());
    let end = log_end(&router).await;
    for origin in ["https://evil.example", "null", "http://127.0.0.1:8080"] {
        let mut req = json_post("/v1/nodes", &node_registration());
        req.headers_mut()
            .insert(header::ORIGIN, origin.parse().unwrap());
        let got = send(&router, req).await;
        assert_error(
            &got,
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            Some("Origin"),
        );
        // Reads too: a page must not read what the coordinator answers.
        let req = request("GET", "/v1/nodes", "10.0.0.1:5000")
            .header(header::ORIGIN, origin)
            .body(Body::empty())
            .unwrap();
        assert_error(
            &send(&router, req).await,
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            Some("Origin"),
        );
    }
    assert_eq!(log_end(&router).await, end, "nothing recorded");

    // An origin the operator allows passes, in any case.
    let mut options = defaults();
    options.origins.insert("https://console.example".into());
    let router = guarded(f.app.clone(), &options);
    let mut req = json_post("/v1/nodes", &node_registration());
    req.headers_mut()
        .insert(header::ORIGIN, "https://Console.example".parse().unwrap());
    let (status, _, body) = send(&router, req).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn a_foreign_host_is_refused_and_health_checks_are_not() {
    let f = fixture().await;
    let router = guarded(f.app.clone(), &defaults());
    for host in [
        "evil.example",
        "evil.example:8080",
        "127.0.0.1:9999",
        "localhost",
    ] {
        let mut req = json_post("/v1/nodes", &node_registration());
        req.headers_mut()
            .insert(header::HOST, host.parse().unwrap());
        let got = send(&router, req).await;
        assert_error(&got, StatusCode::FORBIDDEN, "forbidden_host", Some("Host"));
    }
    let mut no_host = json_post("/v1/nodes", &node_registration());
    no_host.headers_mut().remove(header::HOST);
    assert_error(
        &send(&router, no_host).await,
        StatusCode::FORBIDDEN,
        "forbidden_host",
        Some("Host"),
    );

    // A load balancer probes by the instance's own address.
    let probe = request("GET", "/healthz", "10.0.0.9:5000")
        .header(header::HOST, "10.1.2.3:8080")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&router, probe).await.0, StatusCode::OK);

    // Every loopback name on the port is the coordinator; so is a host the operator adds.
    let mut options = defaults();
    options.hosts = prlx_commands::http::HostAllowList::for_listener(
        ADDR.parse().unwrap(),
        &["coordinator.internal".into()],
    );
    let router = guarded(f.app.clone(), &options);
    for host in ["localhost:8080", "[::1]:8080", "coordinator.internal:443"] {
        let req = request("GET", "/v1/nodes", "10.0.0.1:5000")
            .header(header::HOST, host)
            .body(Body::empty())
            .unwrap();
        let (status, _, body) = send(&router, req).await;
        assert_eq!(status, StatusCode::OK, "{host}: {body}");
    }
}

#[tokio::test(start_paused = true)]
async fn over_the_rate_is_429_until_time_passes() {
    let f = fixture().await;
    let mut options = defaults();
    options.rate = Some(RateLimit {
        per_second: 2,
        burst: 3,
    });
    let router = guarded(f.app.clone(), &options);
    let get = |peer: &str| {
        request("GET", "/v1/nodes", peer)
            .body(Body::empty())
            .unwrap()
    };

    for _ in 0..3 {
        assert_eq!(send(&router, get("10.0.0.1:5000")).await.0, StatusCode::OK);
    }
    // Another port is the same caller; a refused request is answered before any handler.
    let refused = send(&router, get("10.0.0.1:6000")).await;
    assert_error(
        &refused,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        None,
    );
    assert_eq!(refused.1[header::RETRY_AFTER], "1");
    // Another address has its own bucket.
    assert_eq!(send(&router, get("10.0.0.2:5000")).await.0, StatusCode::OK);

    // Half a second pays for one request at 2/s, not two.
    tokio::time::advance(Duration::from_millis(500)).await;
    assert_eq!(send(&router, get("10.0.0.1:5000")).await.0, StatusCode::OK);
    assert_eq!(
        send(&router, get("10.0.0.1:5000")).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );

    // Off: no limit at all.
    options.rate = None;
    let unlimited = guarded(f.app.clone(), &options);
    for _ in 0..20 {
        assert_eq!(
            send(&unlimited, get("10.0.0.1:5000")).await.0,
            StatusCode::OK
        );
    }
}

#[tokio::test(start_paused = true)]
async fn the_default_rate_does_not_starve_a_host_of_nodes() {
    // Ten nodes on one host, each heartbeating every second and reporting a result a
    // second, and a client polling ten times a second: 30 requests a second for a minute.
    let f = fixture().await;
    let router = guarded(f.app.clone(), &defaults());
    for _ in 0..60 {
        for _ in 0..30 {
            let req = request("GET", "/v1/nodes", "10.0.0.1:5000")
                .body(Body::empty())
                .unwrap();
            assert_eq!(send(&router, req).await.0, StatusCode::OK);
        }
        tokio::time::advance(Duration::from_secs(1)).await;
    }
}

/// A server on a loopback port with `options` (whose hosts are set for the port it got);
/// stops when the sender is dropped.
async fn serve_loopback(
    router: Router,
    configure: impl FnOnce(&mut TransportOptions),
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut options = TransportOptions::for_listener(addr);
    configure(&mut options);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let connections = Connections::new(&options);
        let router = guarded(router, &options);
        serve(&listener, router, &connections, async {
            let _ = stopped.await;
        })
        .await;
    });
    (addr, stop)
}

/// Reads one answer off `s`: its status and JSON body, or `None` if the server closed first.
async fn read_answer(s: &mut TcpStream) -> Option<(u16, Value)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + len {
                let status = head[9..12].parse().unwrap();
                let body =
                    serde_json::from_slice(&buf[end + 4..end + 4 + len]).unwrap_or(Value::Null);
                return Some((status, body));
            }
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn health_request(addr: SocketAddr) -> String {
    format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n")
}

// Real time: the file log appends on a thread of its own, which a paused clock does not wait
// for before it jumps past the request timeout.
#[tokio::test]
async fn a_normal_client_is_served_through_every_check() {
    let f = fixture().await;
    let (addr, _stop) = serve_loopback(f.app.clone(), |_| {}).await;
    let endpoint = Endpoint::new(&format!("http://{addr}"), None).unwrap();
    let call = |method: &'static str, path: &'static str, body: Option<Value>| {
        let endpoint = endpoint.clone();
        async move {
            prlx_commands::client::request(&endpoint, method, path, body.as_ref(), None)
                .await
                .unwrap()
        }
    };
    let (status, body) = call("GET", "/healthz", None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call("POST", "/v1/nodes", Some(node_registration())).await;
    assert_eq!(status, 201, "{body}");
    // Reaches the core, which judges it: the account holds no credit.
    let signed_submission = signed(
        submission("ai", "hello"),
        "client-1",
        &ConsentDomain::default(),
    );
    let (status, body) = call("POST", "/v1/requests", Some(signed_submission)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (402, Some("insufficient_credit")),
        "{body}"
    );
    // The same server refuses a rebinding page's request on its very socket.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET /v1/nodes HTTP/1.1\r\nHost: evil.example\r\n\r\n")
        .await
        .unwrap();
    let (status, body) = read_answer(&mut s).await.unwrap();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden_host")),
        "{body}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_not_complete_in_time_is_408() {
    let f = fixture().await;
    let (addr, _stop) = serve_loopback(f.app.clone(), |o| {
        o.request_timeout = Duration::from_secs(5);
        o.header_read_timeout = Duration::from_secs(60);
    })
    .await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The head in full, then a tenth of the body announced, then nothing.
    let head = format!(
        "POST /v1/requests HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n{{\"model\":"
    );
    let start = Instant::now();
    s.write_all(head.as_bytes()).await.unwrap();
    // Bounded, so that a server without the timeout fails the test rather than hangs it.
    let answer = tokio::time::timeout(Duration::from_secs(600), read_answer(&mut s)).await;
    let (status, body) = answer.expect("an answer in time").expect("an answer");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (408, Some("request_timeout")),
        "{body}"
    );
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_connection_slow_to_send_its_head_is_closed() {
    let f = fixture().await;
    let (addr, _stop) = serve_loopback(f.app.clone(), |o| {
        o.header_read_timeout = Duration::from_secs(3);
    })
    .await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    s.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n").as_bytes())
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(600), read_answer(&mut s)).await;
    assert_eq!(answer, Ok(None), "closed without an answer");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(4),
        "{waited:?}"
    );

    // One that finishes its head in time is answered.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(health_request(addr).as_bytes()).await.unwrap();
    assert_eq!(read_answer(&mut s).await.map(|a| a.0), Some(200));
}

#[tokio::test(start_paused = true)]
async fn a_connection_over_the_limit_waits_until_one_closes() {
    let f = fixture().await;
    let (addr, _stop) = serve_loopback(f.app.clone(), |o| {
        o.max_connections = 1;
        o.header_read_timeout = Duration::from_secs(600);
    })
    .await;
    // The first connection is served and kept open.
    let mut first = TcpStream::connect(addr).await.unwrap();
    first
        .write_all(health_request(addr).as_bytes())
        .await
        .unwrap();
    assert_eq!(read_answer(&mut first).await.map(|a| a.0), Some(200));

    // The second waits in the backlog: no answer, however long.
    let mut second = TcpStream::connect(addr).await.unwrap();
    second
        .write_all(health_request(addr).as_bytes())
        .await
        .unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(60), read_answer(&mut second)).await;
    assert!(waited.is_err(), "answered over the limit: {waited:?}");

    // The first closes: the second is accepted and answered.
    drop(first);
    let answer = tokio::time::timeout(Duration::from_secs(60), read_answer(&mut second)).await;
    assert_eq!(answer.unwrap().map(|a| a.0), Some(200));
}

#[tokio::test]
async fn the_openapi_document_declares_the_refusals() {
    let f = fixture().await;
    let req = Request::get("/openapi.json").body(Body::empty()).unwrap();
    let (status, _, doc) = send(&f.app, req).await;
    assert_eq!(status, StatusCode::OK);
    let submit = &doc["paths"]["/v1/requests"]["post"]["responses"];
    for code in ["403", "408", "415", "429"] {
        assert!(submit[code].is_object(), "{code}: {submit}");
    }
    let read = &doc["paths"]["/v1/nodes"]["get"]["responses"];
    assert!(read["429"].is_object() && read["415"].is_null(), "{read}");
    let health = &doc["paths"]["/healthz"]["get"]["responses"];
    assert!(
        health["429"].is_object() && health["403"].is_null(),
        "{health}"
    );
}
