//! The HTTP intake: `app()` driven with `oneshot` on a real file log. The same requests sent
//! to a real `prlx-coordinator serve` process are tested in prlx-tests
//! (`tests/tests/coordinator_serve.rs`).

use std::collections::BTreeSet;
use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use prlx_commands::actor::{self, CoordinatorHandle};
use prlx_commands::consent::ConsentDomain;
use prlx_commands::decide::{decide, Command};
use prlx_commands::http::{app, MAX_BODY_BYTES};
use prlx_commands::settle::{due_settlements, SettlementCommand};
use prlx_commands::shell::{Coordinator, Outcome};
use prlx_commands::testkit::accounts::{account, address, read_token};
use prlx_commands::testkit::fixtures::{self, cpu, registration, reward_policy};
use prlx_commands::testkit::intake::{
    assert_error_body, rejection_cases, sha256_hex, signed, signed_registration,
    signed_registration_at, submission, CATALOG, CATALOG_MODEL_SHA256, REJECTION_KEY,
};
use prlx_events::crypto::{node_id_of, public_key_pem};
use prlx_events::event::{CatalogPublished, NodeRegistered};
use prlx_events::log::{LogUrl, LogWriter};
use prlx_events::seal::StorageKey;
use prlx_events::{Envelope, Event, Header, NodeId, RequestId};
use prlx_projections::{CoordinatorState, Fold};
use serde_json::{json, Value};
use tower::ServiceExt;

struct Fixture {
    _dir: tempfile::TempDir,
    app: Router,
    handle: CoordinatorHandle,
    task: tokio::task::JoinHandle<Result<(), prlx_commands::shell::ShellError>>,
}

async fn fixture() -> Fixture {
    fixture_with(|_| Vec::new()).await
}

/// A coordinator on a fresh log with the catalog published, then the commands `setup`
/// returns, each of which must be recorded.
async fn fixture_with(setup: impl FnOnce(&CoordinatorState) -> Vec<Command>) -> Fixture {
    fixture_signing(None, setup).await
}

/// As [`fixture_with`]; with `signing`, the coordinator grants sessions and dispatches.
async fn fixture_signing(
    signing: Option<rsa::RsaPrivateKey>,
    setup: impl FnOnce(&CoordinatorState) -> Vec<Command>,
) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = LogUrl::parse(&format!("file://{}", dir.path().join("log").display())).unwrap();
    let mut coord = Coordinator::open(&url, "http-test", StorageKey::from_bytes([7; 32]))
        .await
        .unwrap();
    if let Some(key) = signing {
        coord = coord.with_signing_key(key);
    }
    let catalog: CatalogPublished = serde_json::from_str(CATALOG).unwrap();
    let outcome = coord
        .execute(Command::PublishCatalog(catalog))
        .await
        .unwrap();
    assert!(matches!(outcome, Outcome::Appended(_)), "{outcome:?}");
    for command in setup(coord.state()) {
        let outcome = coord.execute(command).await.unwrap();
        assert!(matches!(outcome, Outcome::Appended(_)), "{outcome:?}");
    }
    serve_coordinator(dir, coord)
}

fn serve_coordinator(dir: tempfile::TempDir, coord: Coordinator) -> Fixture {
    let log = coord.writer().reader();
    let (handle, task) = actor::spawn(coord);
    Fixture {
        _dir: dir,
        app: app(handle.clone(), log),
        handle,
        task,
    }
}

impl Fixture {
    /// Stops the coordinator (its actor drains and closes the log) and opens a new one on the
    /// same log, as a restart or a failover does: nothing of the old process's memory is kept.
    async fn restarted(self) -> Fixture {
        let Fixture {
            _dir: dir,
            app,
            handle,
            task,
        } = self;
        drop((app, handle));
        task.await.unwrap().unwrap();
        let url = LogUrl::parse(&format!("file://{}", dir.path().join("log").display())).unwrap();
        // The old writer's files close on its own thread, just after the actor ends.
        for _ in 0..100 {
            match Coordinator::open(&url, "http-test", StorageKey::from_bytes([7; 32])).await {
                Ok(coord) => return serve_coordinator(dir, coord),
                Err(e)
                    if e.to_string().contains("locked") || format!("{e:?}").contains("Locked") =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await
                }
                Err(e) => panic!("reopening the log: {e}"),
            }
        }
        panic!("the log stayed locked after the coordinator stopped")
    }
}

/// An idempotency key not used before in this process.
fn fresh_key() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "auto-{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

fn new_key() -> rsa::RsaPrivateKey {
    rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap()
}

/// A heartbeat body for `node` signed by `key` at `at` (Unix seconds).
fn heartbeat(key: &rsa::RsaPrivateKey, node: NodeId, at: i64) -> Value {
    use base64::Engine as _;
    let statement = prlx_events::crypto::heartbeat_statement(node, at);
    let signature = prlx_events::crypto::sign(key, &statement, &mut rsa::rand_core::OsRng);
    json!({"at": at, "signature": base64::engine::general_purpose::STANDARD.encode(signature)})
}

impl Fixture {
    async fn send(&self, req: Request<Body>) -> (StatusCode, Value) {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("{status}: body is not JSON ({e}): {bytes:?}"))
        };
        (status, body)
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        self.send(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }

    /// `GET uri` as the account `ai`, with its read-access token.
    async fn read(&self, uri: &str) -> (StatusCode, Value) {
        self.read_as("ai", &address("ai"), uri).await
    }

    /// `GET uri` with a token for reading `account` signed by the test account `signer`.
    async fn read_as(&self, signer: &str, account: &str, uri: &str) -> (StatusCode, Value) {
        let token = read_token(signer, account, 600, &ConsentDomain::default());
        self.get_with(uri, Some(&token)).await
    }

    /// `GET uri` with `authorization`, if any.
    async fn get_with(&self, uri: &str, authorization: Option<&str>) -> (StatusCode, Value) {
        let mut req = Request::get(uri);
        if let Some(a) = authorization {
            req = req.header("Authorization", a);
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    async fn post(&self, uri: &str, body: &Value) -> (StatusCode, Value) {
        self.post_with(uri, body, None).await
    }

    async fn post_with(
        &self,
        uri: &str,
        body: &Value,
        idempotency_key: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = Request::post(uri).header("content-type", "application/json");
        if let Some(key) = idempotency_key {
            req = req.header("Idempotency-Key", key);
        }
        // A submission goes out as a client sends it: with its idempotency key and signed by
        // its account (a fresh key when the test names none).
        let body = if uri == "/v1/requests" && body.is_object() {
            let key = idempotency_key.map_or_else(fresh_key, str::to_owned);
            signed(body.clone(), &key, &ConsentDomain::default())
        } else {
            body.clone()
        };
        self.send(req.body(Body::from(body.to_string())).unwrap())
            .await
    }

    /// Credits the test account named `name` as the chain watcher does, in process: no
    /// endpoint credits.
    async fn deposit(&self, name: &str, tx_ref: &str, amount: u64) {
        let outcome = self
            .handle
            .execute_command(Command::DepositCredits {
                account: account(name),
                tx_ref: tx_ref.into(),
                amount,
            })
            .await
            .unwrap();
        assert!(matches!(outcome, Outcome::Appended(_)), "{outcome:?}");
    }

    async fn state<T: Send + 'static>(
        &self,
        f: impl FnOnce(&CoordinatorState) -> T + Send + 'static,
    ) -> T {
        self.handle.read_state(f).await.unwrap()
    }

    async fn log_end(&self) -> u64 {
        let (status, body) = self.get("/healthz").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "ok");
        body["log_end"].as_u64().unwrap()
    }
}

#[track_caller]
fn assert_error(got: &(StatusCode, Value), status: StatusCode, code: &str, field: Option<&str>) {
    let (s, body) = got;
    assert_error_body(*s, body, status, code, field);
    assert!(
        body.get("request_id").is_none(),
        "a rejection allocates no id: {body}"
    );
}

#[tokio::test]
async fn accepted_submission_reserves_its_price_and_reads_back() {
    let f = fixture().await;
    f.deposit("ai", "0x1", 10_000).await;

    let (status, body) = f.post("/v1/requests", &submission("ai", "hello")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        body,
        json!({"request_id": 0, "status": "accepted", "price": 130})
    );

    let (status, body) = f.read("/v1/requests/0").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({
            "request_id": 0, "status": "accepted", "price": 130, "reserved": 130, "charged": 0,
            "model": "oss-chat-v1", "hardware_tier": 3, "priority": "standard",
            "attempts": 0, "stage": "queued",
        })
    );
    let (status, body) = f.read(&format!("/v1/accounts/{}", address("ai"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"account": address("ai"), "balance": 10_000, "reserved": 130, "available": 9_870})
    );

    assert_error(
        &f.read("/v1/requests/1").await,
        StatusCode::NOT_FOUND,
        "unknown_request",
        Some("request_id"),
    );
    assert_error(
        &f.read("/v1/requests/first").await,
        StatusCode::BAD_REQUEST,
        "malformed_request",
        Some("request_id"),
    );
}

#[tokio::test]
async fn every_submission_rejection_has_its_status_code_and_field() {
    let f = fixture().await;
    f.deposit("ai", "0x1", 10_000).await;
    let ok = signed(
        submission("ai", "hello"),
        "ok-key",
        &ConsentDomain::default(),
    );
    let cases = rejection_cases();
    use StatusCode as S;
    let recorded = cases.iter().filter(|c| c.4).count() as u64;
    for (body, status, code, field, _) in &cases {
        let got = f.post_with("/v1/requests", body, Some(REJECTION_KEY)).await;
        assert_error(&got, *status, code, Some(field));
    }

    let bad_key = f.post_with("/v1/requests", &ok, Some("has space")).await;
    assert_error(
        &bad_key,
        S::BAD_REQUEST,
        "malformed_request",
        Some("Idempotency-Key"),
    );
    let long_key = "k".repeat(256);
    let long = f.post_with("/v1/requests", &ok, Some(&long_key)).await;
    assert_error(
        &long,
        S::BAD_REQUEST,
        "malformed_request",
        Some("Idempotency-Key"),
    );

    let trailing = format!("{ok} {{}}");
    for (raw, field) in [
        ("{\"model\": ", Some("model")),
        ("nonsense", None),
        (trailing.as_str(), None),
    ] {
        let got = f
            .send(
                Request::post("/v1/requests")
                    .header("content-type", "application/json")
                    .body(Body::from(raw.to_owned()))
                    .unwrap(),
            )
            .await;
        assert_error(&got, S::BAD_REQUEST, "malformed_request", field);
    }
    let form = f
        .send(
            Request::post("/v1/requests")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(ok.to_string()))
                .unwrap(),
        )
        .await;
    assert_error(
        &form,
        S::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        Some("Content-Type"),
    );

    let (requests, reserved, rejections) = f
        .state(|s| {
            (
                s.requests.len(),
                s.accounts[&account("ai")].reserved,
                s.rejections.values().sum::<u64>(),
            )
        })
        .await;
    assert_eq!(
        (requests, reserved),
        (0, 0),
        "nothing was accepted or reserved"
    );
    assert_eq!(
        rejections, recorded,
        "the core's rejections are on the log; bodies that never parsed are not"
    );
}

#[tokio::test]
async fn idempotent_retry_returns_the_same_id_and_reserves_once() {
    let f = fixture().await;
    f.deposit("ai", "0x1", 10_000).await;
    f.deposit("other", "0x2", 10_000).await;
    let body = submission("ai", "hello");

    let first = f.post_with("/v1/requests", &body, Some("key-1")).await;
    assert_eq!(first.0, StatusCode::ACCEPTED, "{}", first.1);
    let end = f.log_end().await;
    let retry = f.post_with("/v1/requests", &body, Some("key-1")).await;
    assert_eq!(retry, first, "a retry answers exactly as the first try");
    assert_eq!(f.log_end().await, end, "a retry appends nothing");
    // The same key for another request (a signed one: the key is the account's) is a
    // conflict, not a retry, and charges nothing.
    let other_prompt = f
        .post_with(
            "/v1/requests",
            &submission("ai", "something else"),
            Some("key-1"),
        )
        .await;
    assert_error(
        &other_prompt,
        StatusCode::CONFLICT,
        "idempotency_conflict",
        Some("Idempotency-Key"),
    );
    let (_, ai) = f.read(&format!("/v1/accounts/{}", address("ai"))).await;
    assert_eq!(ai["reserved"], first.1["price"], "reserved once");

    // Without the key, or under another account, the same body is a new request.
    let fresh = f.post("/v1/requests", &body).await;
    assert_eq!(fresh.1["request_id"], 1);
    let elsewhere = f
        .post_with("/v1/requests", &submission("other", "hello"), Some("key-1"))
        .await;
    assert_eq!(elsewhere.1["request_id"], 2, "keys are per account");
    assert_eq!(
        f.state(|s| s.request_for_key(&account("ai"), "key-1"))
            .await,
        Some(RequestId(0))
    );
}

/// Three submissions signed once, as a batch: each is accepted under the account's key, and a
/// place in the batch that does not hold is refused naming the field, reserving nothing.
#[tokio::test]
async fn a_batch_signed_once_is_accepted_per_submission_and_a_bent_place_refused() {
    let f = fixture().await;
    f.deposit("ai", "0x1", 10_000).await;
    let mut bodies: Vec<Value> = ["one", "two", "three"]
        .iter()
        .map(|p| {
            let mut b = submission("ai", p);
            b["idempotency_key"] = json!(format!("batch-{p}"));
            b
        })
        .collect();
    prlx_commands::testkit::accounts::sign_bodies_as_batch(
        &mut bodies,
        &prlx_commands::testkit::accounts::key("ai"),
        &ConsentDomain::default(),
    );
    assert_eq!(bodies[0]["signature"], bodies[2]["signature"]);
    let (status, consent) = f.read("/v1/consent").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        consent["batch_type"],
        "SubmissionBatch(bytes32 root,uint32 count)"
    );

    // Bent places of the second, each refused for its own field.
    let mut bent = bodies[1].clone();
    bent["consent_batch"]["proof"][0] = json!("00".repeat(32));
    let mut past = bodies[1].clone();
    past["consent_batch"]["index"] = json!(3);
    let mut short = bodies[1].clone();
    short["consent_batch"]["proof"] = json!([bodies[1]["consent_batch"]["proof"][1]]);
    let mut not_hex = bodies[1].clone();
    not_hex["consent_batch"]["proof"][1] = json!("0x12");
    let end = f.log_end().await;
    for (body, status, code, field) in [
        (
            &past,
            StatusCode::BAD_REQUEST,
            "malformed_request",
            "consent_batch",
        ),
        (
            &short,
            StatusCode::BAD_REQUEST,
            "malformed_request",
            "consent_batch",
        ),
        (
            &not_hex,
            StatusCode::BAD_REQUEST,
            "malformed_request",
            "consent_batch.proof",
        ),
    ] {
        let key = body["idempotency_key"].as_str().unwrap().to_owned();
        let got = f.post_with("/v1/requests", body, Some(&key)).await;
        assert_error(&got, status, code, Some(field));
    }
    assert_eq!(f.log_end().await, end, "a malformed place records nothing");
    // Another sibling leads to another root, signed by no one the account knows: refused
    // (and recorded) as a signature that may not charge the account.
    let got = f.post_with("/v1/requests", &bent, Some("batch-two")).await;
    assert_eq!(got.0, StatusCode::FORBIDDEN, "{}", got.1);
    assert_eq!(got.1["error"]["field"], "signature", "{}", got.1);
    assert!(
        got.1["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("consent_batch")),
        "the answer says where the key came from: {}",
        got.1
    );

    for (i, body) in bodies.iter().enumerate() {
        let key = body["idempotency_key"].as_str().unwrap().to_owned();
        let (status, answer) = f.post_with("/v1/requests", body, Some(&key)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{i}: {answer}");
    }
    let (_, ai) = f.read(&format!("/v1/accounts/{}", address("ai"))).await;
    assert_eq!(ai["reserved"], 390, "three reserved: {ai}");
    // What the door records: the account as signer, each submission's place.
    for (i, body) in bodies.iter().enumerate() {
        let (submission, _) = prlx_commands::submission::submission_from_body(
            serde_json::from_value(body.clone()).unwrap(),
            None,
            prlx_events::event::IntakeSource::Http,
            &ConsentDomain::default(),
        )
        .unwrap();
        let consent = submission.consent.expect("a consent");
        assert_eq!(consent.signer, address("ai"));
        let batch = consent.batch.expect("recorded in its batch");
        assert_eq!((batch.index, batch.count), (i as u32, 3));
    }
}

#[tokio::test]
async fn concurrent_submissions_get_dense_distinct_ids() {
    let f = fixture().await;
    f.deposit("ai", "0x1", 1_000_000).await;
    let mut tasks = Vec::new();
    for i in 0..24 {
        let app = f.app.clone();
        let body = signed(
            submission("ai", &format!("prompt {i}")),
            &format!("k{i}"),
            &ConsentDomain::default(),
        );
        tasks.push(tokio::spawn(async move {
            let req = Request::post("/v1/requests")
                .header("content-type", "application/json")
                .header("Idempotency-Key", format!("k{i}"))
                .body(Body::from(body.to_string()))
                .unwrap();
            let res = app.oneshot(req).await.unwrap();
            assert_eq!(res.status(), StatusCode::ACCEPTED);
            let bytes = res.into_body().collect().await.unwrap().to_bytes();
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            (i, v["request_id"].as_u64().unwrap())
        }));
    }
    let mut ids = BTreeSet::new();
    for t in tasks {
        let (i, id) = t.await.unwrap();
        // Each answer is the id its own key maps to, not a neighbour's.
        let key_id = f
            .state(move |s| s.request_for_key(&account("ai"), &format!("k{i}")))
            .await;
        assert_eq!(key_id, Some(RequestId(id)));
        ids.insert(id);
    }
    assert_eq!(ids, (0..24).collect());
}

/// Nobody credits an account or moves stake over HTTP: the endpoints that did are gone (the
/// coordinator reads deposits and stake off the chain), and a registration declaring stake is
/// refused naming the field. Nothing of it reaches the log.
#[tokio::test]
async fn no_endpoint_credits_an_account_or_moves_stake() {
    let f = fixture_with(|_| vec![register(1, 2, 0)]).await;
    let end = f.log_end().await;
    let (status, _) = f
        .post(
            "/v1/accounts/ai/deposits",
            &json!({"tx_ref": "0xabc", "amount": 500}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let id = test_node(1).0.to_hex();
    for verb in ["stake", "unstake"] {
        let (status, _) = f
            .post(&format!("/v1/nodes/{id}/{verb}"), &json!({"amount": 5}))
            .await;
        assert!(
            status == StatusCode::NOT_FOUND || status == StatusCode::METHOD_NOT_ALLOWED,
            "{verb}: {status}"
        );
    }
    let key = new_key().to_public_key();
    let declared = json!({
        "public_key_pem": public_key_pem(&key), "hardware_tier": 1, "models": ["oss-chat-v1"],
        "slots": 1, "stake": 1_000,
        "execution_class": {"device": "cpu", "driver": "-", "runtime": "onnxruntime-1.22.0"},
    });
    assert_error(
        &f.post("/v1/nodes", &declared).await,
        StatusCode::BAD_REQUEST,
        "malformed_request",
        Some("stake"),
    );
    assert_eq!(f.log_end().await, end, "nothing was recorded");
    assert_error(
        &f.read(&format!("/v1/accounts/{}", address("ai"))).await,
        StatusCode::NOT_FOUND,
        "unknown_account",
        Some("account"),
    );
}

#[tokio::test]
async fn quote_equals_the_price_charged_at_submission() {
    let f = fixture().await;
    f.deposit("ai", "0x1", 100_000).await;
    for (priority, max_tokens) in [("low", 7), ("standard", 10), ("high", 64)] {
        let (status, quote) = f
            .get(&format!(
                "/v1/quote?model=oss-chat-v1&hardware_tier=3&priority={priority}&max_tokens={max_tokens}"
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{quote}");
        let mut body = submission("ai", priority);
        body["priority"] = json!(priority);
        body["max_tokens"] = json!(max_tokens);
        let (status, accepted) = f.post("/v1/requests", &body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
        assert_eq!(quote["model"], "oss-chat-v1");
        assert_eq!(
            quote["price"], accepted["price"],
            "{priority} x {max_tokens}"
        );
    }
    // 100 + 3 * 7 = 121, at 80%, rounded up.
    let (_, low) = f
        .get("/v1/quote?model=oss-chat-v1&hardware_tier=2&priority=low&max_tokens=7")
        .await;
    assert_eq!(low["price"], 97);
    let (_, default) = f
        .get("/v1/quote?model=oss-chat-v1&hardware_tier=2&max_tokens=10")
        .await;
    assert_eq!(default["price"], 130, "priority defaults to standard");

    use StatusCode as S;
    for (query, code, field) in [
        (
            "model=gpt-omega&hardware_tier=3&max_tokens=10",
            "unknown_model",
            "model",
        ),
        (
            "model=oss-chat-v1&hardware_tier=1&max_tokens=10",
            "tier_out_of_range",
            "hardware_tier",
        ),
        (
            "model=oss-chat-v1&hardware_tier=5&max_tokens=10",
            "tier_out_of_range",
            "hardware_tier",
        ),
        (
            "model=oss-chat-v1&hardware_tier=3&max_tokens=0",
            "malformed_request",
            "max_tokens",
        ),
        (
            "model=oss-chat-v1&hardware_tier=3&max_tokens=65",
            "malformed_request",
            "max_tokens",
        ),
        (
            "model=oss-chat-v1&hardware_tier=three&max_tokens=10",
            "malformed_request",
            "hardware_tier",
        ),
        (
            "model=oss-chat-v1&hardware_tier=3",
            "malformed_request",
            "max_tokens",
        ),
        (
            "hardware_tier=3&max_tokens=10",
            "malformed_request",
            "model",
        ),
        (
            "model=oss-chat-v1&hardware_tier=3&max_tokens=10&priority=urgent",
            "malformed_request",
            "priority",
        ),
    ] {
        assert_error(
            &f.get(&format!("/v1/quote?{query}")).await,
            S::BAD_REQUEST,
            code,
            Some(field),
        );
    }
}

#[tokio::test]
async fn node_registration_conflict_and_heartbeat() {
    let f = fixture().await;
    let private = new_key();
    let key = private.to_public_key();
    let expected_id = node_id_of(&key).0.to_hex();
    let unsigned = json!({
        "public_key_pem": public_key_pem(&key),
        "hardware_tier": 3,
        "models": ["oss-chat-v1"],
        "slots": 2,
        "model_hashes": {"oss-chat-v1": CATALOG_MODEL_SHA256},
        "execution_class": {"device": "cpu-x86_64-avx2", "driver": "none", "runtime": "onnxruntime-1.22.0"},
    });
    let node = signed_registration(&private, unsigned.clone());

    // Whoever does not hold the key cannot register it: unsigned, signed by another key,
    // signed long ago, or a captured signature sent with another operator (who would be
    // paid). Nothing is recorded.
    let end = f.log_end().await;
    let stranger = new_key();
    let now = chrono::Utc::now().timestamp();
    let mut other_operator = node.clone();
    other_operator["operator"] = json!("0x00000000000000000000000000000000000000bb");
    for (body, field) in [
        (unsigned.clone(), "signature"),
        (
            signed_registration(&stranger, unsigned.clone()),
            "signature",
        ),
        (
            signed_registration_at(&private, unsigned.clone(), now - 600),
            "signed_at",
        ),
        (other_operator, "signature"),
    ] {
        assert_error(
            &f.post("/v1/nodes", &body).await,
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            Some(field),
        );
    }
    assert_eq!(
        f.log_end().await,
        end,
        "no refused registration is recorded"
    );

    let (status, body) = f.post("/v1/nodes", &node).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body, json!({"node_id": expected_id}));
    assert_eq!(expected_id.len(), 64);
    let (status, again) = f.post("/v1/nodes", &node).await;
    assert_eq!(
        (status, &again),
        (StatusCode::OK, &body),
        "identical re-registration"
    );

    let mut other = unsigned.clone();
    other["slots"] = json!(8);
    let other = signed_registration(&private, other);
    assert_error(
        &f.post("/v1/nodes", &other).await,
        StatusCode::CONFLICT,
        "node_already_registered",
        Some("public_key_pem"),
    );

    let end = f.log_end().await;
    let id = node_id_of(&key);
    let path = format!("/v1/nodes/{expected_id}/heartbeat");
    let (status, body) = f.post(&path, &heartbeat(&private, id, now)).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    assert_eq!(f.log_end().await, end + 1, "the heartbeat is on the log");

    // Forged, replayed, stale or unsigned heartbeats record nothing.
    for (body, status, field) in [
        (
            heartbeat(&stranger, id, now + 1),
            StatusCode::UNAUTHORIZED,
            "signature",
        ),
        (heartbeat(&private, id, now), StatusCode::UNAUTHORIZED, "at"),
        (
            heartbeat(&private, id, now - 1),
            StatusCode::UNAUTHORIZED,
            "at",
        ),
        (
            heartbeat(&private, id, now + 600),
            StatusCode::UNAUTHORIZED,
            "at",
        ),
        (
            json!({"at": now + 2, "signature": "AAAA"}),
            StatusCode::UNAUTHORIZED,
            "signature",
        ),
        (
            json!({"at": now + 2, "signature": "not base64!"}),
            StatusCode::BAD_REQUEST,
            "signature",
        ),
        (json!({"at": now + 2}), StatusCode::BAD_REQUEST, "signature"),
    ] {
        let code = if status == StatusCode::UNAUTHORIZED {
            "unauthenticated"
        } else {
            "malformed_request"
        };
        assert_error(&f.post(&path, &body).await, status, code, Some(field));
    }
    assert_eq!(f.log_end().await, end + 1, "nothing more on the log");
    let (status, _) = f.post(&path, &heartbeat(&private, id, now + 1)).await;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "a later signed time is taken"
    );

    // After a restart the new process has seen no heartbeat, but the log has: the captured
    // statements are still replays.
    let f = f.restarted().await;
    let end = f.log_end().await;
    for at in [now, now + 1] {
        let refused = f.post(&path, &heartbeat(&private, id, at)).await;
        assert_error(
            &refused,
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            Some("at"),
        );
    }
    assert_eq!(
        f.log_end().await,
        end,
        "no replay recorded after the restart"
    );
    let (status, _) = f.post(&path, &heartbeat(&private, id, now + 2)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "a fresh heartbeat is taken");

    let unknown = f
        .post(
            &format!("/v1/nodes/{}/heartbeat", "0".repeat(64)),
            &heartbeat(&private, id, now + 3),
        )
        .await;
    assert_error(
        &unknown,
        StatusCode::NOT_FOUND,
        "unknown_node",
        Some("node_id"),
    );
    let malformed = f
        .post(
            "/v1/nodes/node-1/heartbeat",
            &heartbeat(&private, id, now + 4),
        )
        .await;
    assert_error(
        &malformed,
        StatusCode::BAD_REQUEST,
        "malformed_request",
        Some("node_id"),
    );

    let (status, nodes) = f.get("/v1/nodes").await;
    assert_eq!(status, StatusCode::OK);
    let nodes = nodes.as_array().unwrap();
    assert_eq!(nodes.len(), 1);
    let n = &nodes[0];
    assert_eq!(n["node_id"], expected_id);
    assert_eq!(
        (&n["hardware_tier"], &n["models"], &n["slots"], &n["stake"]),
        (&json!(3), &json!(["oss-chat-v1"]), &json!(2), &json!(0))
    );
    assert_eq!(n["execution_class"], node["execution_class"]);
    assert_eq!(
        (&n["in_pool"], &n["draining"]),
        (&json!(true), &json!(false))
    );
    assert!(n["last_heartbeat"].as_str().unwrap() >= n["registered_at"].as_str().unwrap());

    let mut bad = node.clone();
    bad["public_key_pem"] = json!("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n");
    assert_error(
        &f.post("/v1/nodes", &bad).await,
        StatusCode::BAD_REQUEST,
        "malformed_request",
        Some("public_key_pem"),
    );
    let mut missing = node.clone();
    missing["execution_class"]
        .as_object_mut()
        .unwrap()
        .remove("device");
    assert_error(
        &f.post("/v1/nodes", &missing).await,
        StatusCode::BAD_REQUEST,
        "malformed_request",
        Some("execution_class.device"),
    );
    let mut wrong = node.clone();
    wrong["models"] = json!(["oss-chat-v1", 7]);
    assert_error(
        &f.post("/v1/nodes", &wrong).await,
        StatusCode::BAD_REQUEST,
        "malformed_request",
        Some("models[1]"),
    );
}

#[tokio::test]
async fn body_over_the_limit_is_413_with_the_error_body() {
    let f = fixture().await;
    f.deposit("ai", "0x1", 10_000).await;
    let end = f.log_end().await;
    let prompt = "x".repeat(MAX_BODY_BYTES);
    let got = f.post("/v1/requests", &submission("ai", &prompt)).await;
    assert_error(
        &got,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        None,
    );
    assert_eq!(f.log_end().await, end, "nothing appended");

    // Just under the limit is read (and then judged on its merits).
    // (Measured with its key and signature, which are the same length once signed again.)
    let mut body = signed(submission("ai", ""), "limit", &ConsentDomain::default());
    let room = MAX_BODY_BYTES - body.to_string().len() - 1;
    let prompt = "y".repeat(room);
    body["prompt"] = json!(prompt);
    body["payload_hash"] = json!(sha256_hex(&prompt));
    body.as_object_mut().unwrap().remove("signature");
    let (status, accepted) = f.post_with("/v1/requests", &body, Some("limit")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
}

#[tokio::test]
async fn unknown_routes_and_methods_use_the_error_body() {
    let f = fixture().await;
    assert_error(
        &f.get("/v2/requests").await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    let delete = f
        .send(Request::delete("/v1/nodes").body(Body::empty()).unwrap())
        .await;
    assert_error(
        &delete,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        None,
    );
}

#[tokio::test]
async fn openapi_lists_every_path() {
    let f = fixture().await;
    let (status, doc) = f.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let paths: BTreeSet<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let expected = BTreeSet::from([
        "/v1/requests",
        "/v1/requests/{id}",
        "/v1/accounts/{account}",
        "/v1/accounts/{account}/delegations",
        "/v1/consent",
        "/v1/delegations/revocations",
        "/v1/quote",
        "/v1/quote/task",
        "/v1/nodes",
        "/v1/nodes/{id}/heartbeat",
        "/v1/nodes/{id}/results",
        "/v1/nodes/{id}/refusals",
        "/v1/nodes/{id}/stake",
        "/v1/rewards",
        "/v1/rewards/epochs",
        "/healthz",
        "/openapi.json",
    ]);
    assert_eq!(paths, expected);
    assert!(doc["paths"]["/v1/nodes"]["get"].is_object());
    assert!(doc["paths"]["/v1/nodes"]["post"].is_object());
    assert!(doc["paths"]["/v1/nodes/{id}/stake"]["get"].is_object());
    assert!(doc["paths"]["/v1/nodes/{id}/stake"]["post"].is_null());
    // The heartbeat says how it is signed.
    let heartbeat = &doc["paths"]["/v1/nodes/{id}/heartbeat"]["post"];
    assert!(heartbeat["responses"]["401"].is_object(), "{heartbeat}");
    assert!(
        format!("{}", heartbeat["description"]).contains("Signed by the node's registered key"),
        "{heartbeat}"
    );
    assert!(doc["info"]["description"]
        .as_str()
        .unwrap()
        .contains("read from the chain"));
    let hash_doc = doc["components"]["schemas"]["SubmitRequestBody"]["properties"]["payload_hash"]
        ["description"]
        .as_str()
        .unwrap();
    assert!(
        hash_doc.contains("SHA-256") && hash_doc.contains("UTF-8"),
        "{hash_doc}"
    );
    // Every documented path is served (a 404 here would be our fallback's `not_found`).
    for path in expected {
        let concrete = path.replace("{id}", "0").replace("{account}", "ai");
        let (status, body) = f.get(&concrete).await;
        assert_ne!(
            body["error"]["code"], "not_found",
            "{path}: {status} {body}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Staking and rewards.

/// Node `n` (1 or 2): its id and public key. Keys of the smallest size the coordinator takes
/// (2048 bits), made once per test binary: only their fingerprints matter here.
fn node_key(n: u8) -> &'static (NodeId, String) {
    static KEYS: OnceLock<Vec<(NodeId, String)>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        (0..2)
            .map(|_| {
                let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
                    .unwrap()
                    .to_public_key();
                (node_id_of(&key), public_key_pem(&key))
            })
            .collect()
    });
    &keys[usize::from(n) - 1]
}

fn test_node(n: u8) -> NodeId {
    node_key(n).0
}

fn register(n: u8, tier: u8, stake: u64) -> Command {
    Command::RegisterNode(Box::new(NodeRegistered {
        hardware_tier: tier,
        models: vec!["oss-chat-v1".into()],
        model_hashes: [(
            "oss-chat-v1".to_owned(),
            CATALOG_MODEL_SHA256.parse().unwrap(),
        )]
        .into(),
        stake,
        execution_class: cpu("onnxruntime-1.32"),
        ..registration(test_node(n), node_key(n).1.clone())
    }))
}

fn policy_command() -> Command {
    Command::Settlement(SettlementCommand::PublishPolicy(reward_policy()))
}

/// A node's stake as the view shows it: what the settlement holds after stake moves (in
/// production observed on the chain), pending unstakes with their end, and what is refused.
#[tokio::test]
async fn the_stake_view_shows_staked_and_pending_and_names_what_it_refuses() {
    let f = fixture_with(|_| {
        vec![
            policy_command(),
            register(1, 2, 1_000),
            Command::Settlement(SettlementCommand::DepositStake {
                node_id: test_node(1),
                amount: 500,
            }),
            Command::Settlement(SettlementCommand::RequestUnstake {
                node_id: test_node(1),
                amount: 400,
            }),
        ]
    })
    .await;
    let id = test_node(1).0.to_hex();
    let (status, body) = f.get(&format!("/v1/nodes/{id}/stake")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["staked"], &body["returned"]),
        (&json!(1_100), &json!(0))
    );
    let pending = body["pending"].as_array().unwrap();
    assert_eq!(pending.len(), 1, "{body}");
    assert_eq!(pending[0]["amount"], 400);
    let available_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(pending[0]["available_at"].clone()).unwrap();
    let recorded = f
        .state(|s| s.rewards.operators[&test_node(1)].unbonding[0].available_at)
        .await;
    assert_eq!(available_at, recorded);
    // The node list follows unstakes too.
    let (_, nodes) = f.get("/v1/nodes").await;
    assert_eq!(nodes[0]["stake"], 1_100, "{nodes}");

    let unknown = "0".repeat(64);
    assert_error(
        &f.get(&format!("/v1/nodes/{unknown}/stake")).await,
        StatusCode::NOT_FOUND,
        "unknown_node",
        Some("node_id"),
    );
    assert_error(
        &f.get("/v1/nodes/node-1/stake").await,
        StatusCode::BAD_REQUEST,
        "malformed_request",
        Some("node_id"),
    );
}

#[tokio::test]
async fn the_rewards_view_without_a_policy() {
    let f = fixture_with(|_| vec![register(1, 1, 100)]).await;
    let (status, rewards) = f.get("/v1/rewards").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        rewards,
        json!({
            "policy": null, "mode": "bootstrap", "next_epoch": 0, "next_epoch_starts_at": null,
            "next_epoch_ends_at": null, "carried": 0
        })
    );
}

/// Epoch 0 of [`reward_policy`] starts at `t(0)`, a multiple of 600 s.
fn t(secs: i64) -> chrono::DateTime<chrono::Utc> {
    use chrono::TimeZone;
    chrono::Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(secs)
}

/// A log whose events are recorded at chosen times (the shell stamps the wall clock), built
/// as the shell builds it: each command decided against the fold, its events folded.
#[derive(Default)]
struct TimedLog {
    fold: Fold<CoordinatorState>,
    records: Vec<Vec<u8>>,
}

impl TimedLog {
    #[track_caller]
    fn run(&mut self, at: i64, command: Command) {
        let events = decide(&self.fold.state, command).unwrap_or_else(|r| panic!("{r}"));
        for event in events {
            self.push(at, event);
        }
    }

    #[track_caller]
    fn push(&mut self, at: i64, event: Event) {
        let seq = self.records.len() as u64;
        let env = Envelope::new(
            Header {
                event_id: uuid::Uuid::from_u128(u128::from(seq) + 1),
                recorded_at: t(at),
                producer: "timed-log".into(),
                sequence: seq,
                // Events recorded at one time are one decision's batch.
                correlation_id: Some(uuid::Uuid::from_u64_pair(1, at as u64)),
                causation_id: None,
                prev: None,
            },
            event,
        );
        self.fold.feed(seq, &env).unwrap();
        self.records.push(env.encode());
    }

    /// What housekeeping at `at` stages for settlement.
    fn settle_due(&mut self, at: i64) {
        for command in due_settlements(&self.fold.state, t(at)) {
            self.run(at, Command::Settlement(command));
        }
    }
}

#[tokio::test]
async fn settled_epochs_are_listed_with_their_payouts() {
    let a = test_node(1);
    let b = test_node(2);
    let mut log = TimedLog::default();
    let catalog: CatalogPublished = serde_json::from_str(CATALOG).unwrap();
    log.run(-100, Command::PublishCatalog(catalog));
    log.run(-100, policy_command());
    // Both at tier 2, the catalog model's smallest: a node below it is given no work and
    // earns nothing (docs/settlement.md).
    log.run(-50, register(1, 2, 50));
    log.run(-50, register(2, 2, 300));
    // A earns slots 0 and 1 at stake 50 x tier 2: weight 200. B earns slot 0 at 300 x 2,
    // unstakes 100, then earns slot 2 at 200 x 2: weight 1_000.
    log.run(30, fixtures::heartbeat(a, t(30)));
    log.run(90, fixtures::heartbeat(a, t(90)));
    log.run(30, fixtures::heartbeat(b, t(30)));
    log.run(
        100,
        Command::Settlement(SettlementCommand::RequestUnstake {
            node_id: b,
            amount: 100,
        }),
    );
    log.run(130, fixtures::heartbeat(b, t(130)));
    // Epoch 0 closes; epoch 1 has no uptime and carries its pool; B's 100 comes back at 1_000.
    log.settle_due(600);
    log.settle_due(1_200);
    assert_eq!(log.fold.state.rewards.next_epoch, 2);

    let dir = tempfile::tempdir().unwrap();
    let url = LogUrl::parse(&format!("file://{}", dir.path().join("log").display())).unwrap();
    {
        let writer = url.open_writer().unwrap();
        writer.append(log.records).await.unwrap();
    }
    let coord = Coordinator::open(&url, "http-test", StorageKey::from_bytes([7; 32]))
        .await
        .unwrap();
    let f = serve_coordinator(dir, coord);

    let (status, epochs) = f.get("/v1/rewards/epochs").await;
    assert_eq!(status, StatusCode::OK, "{epochs}");
    // The first unlock, floor(250_000 / 3) = 83_333, split 200 : 1_000. The floors add up
    // to 83_332; the unit left goes to the larger remainder, A's (1_000 against 200).
    let mut payouts = vec![
        json!({"node_id": a.0.to_hex(), "verified_slots": 2, "weight": "200", "amount": 13_889}),
        json!({"node_id": b.0.to_hex(), "verified_slots": 2, "weight": "1000", "amount": 69_444}),
    ];
    payouts.sort_by_key(|p| p["node_id"].as_str().unwrap().to_owned());
    assert_eq!(
        epochs[0],
        json!({
            "epoch": 0, "starts_at": "2024-01-01T00:00:00Z", "ends_at": "2024-01-01T00:10:00Z",
            "mode": "bootstrap", "income": 83_333, "carried_in": 0, "pool": 83_333,
            "treasury": 0, "infra": 0, "total_weight": "1200", "payouts": payouts,
            "carried_over": 0,
        })
    );
    assert_eq!(
        (
            &epochs[1]["epoch"],
            &epochs[1]["payouts"],
            &epochs[1]["pool"],
            &epochs[1]["carried_over"]
        ),
        (&json!(1), &json!([]), &json!(83_333), &json!(83_333))
    );
    assert_eq!(epochs.as_array().unwrap().len(), 2);

    let (_, from_1) = f.get("/v1/rewards/epochs?from=1").await;
    assert_eq!(from_1, json!([epochs[1].clone()]));
    let (_, first) = f.get("/v1/rewards/epochs?limit=1").await;
    assert_eq!(first, json!([epochs[0].clone()]));
    let (_, past) = f.get("/v1/rewards/epochs?from=7").await;
    assert_eq!(past, json!([]));
    for (query, field) in [
        ("from=-1", "from"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
    ] {
        assert_error(
            &f.get(&format!("/v1/rewards/epochs?{query}")).await,
            StatusCode::BAD_REQUEST,
            "malformed_request",
            Some(field),
        );
    }

    let (_, stake_b) = f.get(&format!("/v1/nodes/{}/stake", b.0.to_hex())).await;
    assert_eq!(
        stake_b,
        json!({
            "node_id": b.0.to_hex(), "staked": 200, "pending": [], "returned": 100,
            "rewards_paid": 69_444
        })
    );
    let (_, rewards) = f.get("/v1/rewards").await;
    assert_eq!(rewards["policy"]["epoch_seconds"], 600, "{rewards}");
    assert_eq!(
        (
            &rewards["mode"],
            &rewards["next_epoch"],
            &rewards["carried"]
        ),
        (&json!("bootstrap"), &json!(2), &json!(83_333))
    );
    assert_eq!(rewards["next_epoch_ends_at"], "2024-01-01T00:30:00Z");
}

/// Hostile bodies never crash the coordinator or get a 5xx: each field of a valid
/// submission, deposit and registration in turn takes a hostile value (0, the largest
/// integers, -1, null, a 10 kB string, a wrong type), seeded so a failure replays; after every
/// answer the coordinator still answers `/healthz`.
#[tokio::test]
async fn hostile_fields_get_4xx_never_a_crash() {
    let f = fixture().await;
    f.deposit("ai", "0xfuzz", 1_000_000).await;
    let key = new_key();
    let hostile = [
        json!(0),
        json!(u64::MAX),
        json!(-1),
        json!(u32::MAX),
        json!(null),
        json!(""),
        json!("x".repeat(10_000)),
        json!(true),
        json!([1]),
        json!({"a": 1}),
    ];
    let register = json!({
        "public_key_pem": public_key_pem(&key.to_public_key()),
        "hardware_tier": 1,
        "models": ["oss-chat-v1"],
        "slots": 1,
        "execution_class": {"device": "cpu", "driver": "-", "runtime": "onnxruntime-1.22.0"},
    });
    let node = node_id_of(&key.to_public_key()).0.to_hex();
    let report = json!({
        "request_id": 0, "attempt": 0, "epoch": 1, "sealed_result": "AA==",
        "poe": "00".repeat(32), "signature": "AA==", "token_count": 1,
    });
    let cases: Vec<(String, Value)> = vec![
        ("/v1/requests".into(), submission("ai", "fuzz")),
        ("/v1/nodes".into(), register),
        (format!("/v1/nodes/{node}/results"), report),
        (
            format!("/v1/nodes/{node}/refusals"),
            json!({
                "request_id": 0, "attempt": 0, "signature": "AA==",
                "reason": {"code": "context_exceeded", "prompt_tokens": 9000, "max_tokens": 10, "context": 8192},
            }),
        ),
        (
            format!("/v1/nodes/{node}/heartbeat"),
            json!({"at": 1, "signature": "AA=="}),
        ),
    ];
    for (path, valid) in &cases {
        let fields: Vec<String> = valid.as_object().unwrap().keys().cloned().collect();
        for field in &fields {
            for value in &hostile {
                let mut body = valid.clone();
                body[field.as_str()] = value.clone();
                let (status, answer) = f.post(path, &body).await;
                assert!(
                    !status.is_server_error(),
                    "{path} with {field} = {}: {status} {answer}",
                    value.to_string().chars().take(40).collect::<String>()
                );
            }
        }
        let (status, _) = f.get("/healthz").await;
        assert_eq!(status, StatusCode::OK, "after {path}");
    }
}

/// A refusal body for `request`'s `attempt`, signed by `key` as node `node` (for
/// `prompt_tokens` of a prompt, the submission's 10 tokens and the catalog's 8192 context).
fn refusal_body(
    key: &rsa::RsaPrivateKey,
    node: NodeId,
    request: u64,
    attempt: u32,
    prompt_tokens: u32,
) -> Value {
    use base64::Engine as _;
    let reason = prlx_events::event::RefusalReason::ContextExceeded {
        prompt_tokens,
        max_tokens: 10,
        context: 8192,
    };
    let statement = prlx_events::crypto::refusal_statement(
        RequestId(request),
        prlx_events::TaskId::whole(RequestId(request)),
        node,
        attempt,
        &reason,
    );
    let signature = prlx_events::crypto::sign(key, &statement, &mut rsa::rand_core::OsRng);
    json!({
        "request_id": request, "attempt": attempt, "reason": reason,
        "signature": base64::engine::general_purpose::STANDARD.encode(signature),
    })
}

/// The signed refusal over HTTP: forged, misdirected or implausible ones are refused and
/// record nothing; the first honest one re-queues the request, a repeat is a duplicate, and
/// the second node of the same model file fails it with a full refund.
#[tokio::test]
async fn refusals_requeue_then_fail_the_request_and_forgeries_record_nothing() {
    let f = fixture_signing(Some(new_key()), |_| Vec::new()).await;
    f.deposit("ai", "0xrefusal", 10_000).await;
    let catalog: CatalogPublished = serde_json::from_str(CATALOG).unwrap();
    let file = catalog.models[0].sha256.to_hex();
    let keys = [new_key(), new_key()];
    let mut ids = Vec::new();
    for key in &keys {
        let body = json!({
            "public_key_pem": public_key_pem(&key.to_public_key()),
            "hardware_tier": 3, "models": ["oss-chat-v1"], "slots": 1,
            "execution_class": {"device": "cpu", "driver": "none", "runtime": "onnxruntime-1.22.0"},
            "model_hashes": {"oss-chat-v1": file},
        });
        let (status, answer) = f.post("/v1/nodes", &signed_registration(key, body)).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        let id = node_id_of(&key.to_public_key());
        // A node gets work once it has heartbeated.
        let now = chrono::Utc::now().timestamp();
        let beat = format!("/v1/nodes/{}/heartbeat", id.0.to_hex());
        let (status, answer) = f.post(&beat, &heartbeat(key, id, now)).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
        ids.push(id);
    }
    let (status, answer) = f.post("/v1/requests", &submission("ai", "too long")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let request = answer["request_id"].as_u64().unwrap();

    let first = dispatched(&f, request).await;
    let (i, j) = if first.node == ids[0] { (0, 1) } else { (1, 0) };
    let path = |n: usize| format!("/v1/nodes/{}/refusals", ids[n].0.to_hex());

    let end = f.log_end().await;
    // Signed by the other node's key, for the holder's attempt: proves nothing.
    assert_error(
        &f.post(&path(i), &refusal_body(&keys[j], ids[i], request, 0, 9_000))
            .await,
        StatusCode::BAD_REQUEST,
        "report_refused",
        Some("signature"),
    );
    // The other node's own refusal of an attempt it does not hold.
    assert_error(
        &f.post(&path(j), &refusal_body(&keys[j], ids[j], request, 0, 9_000))
            .await,
        StatusCode::NOT_FOUND,
        "unknown_node",
        Some("attempt"),
    );
    // Numbers that fit the context: no reason to decline.
    assert_error(
        &f.post(&path(i), &refusal_body(&keys[i], ids[i], request, 0, 100))
            .await,
        StatusCode::BAD_REQUEST,
        "malformed_request",
        Some("reason"),
    );
    assert_eq!(f.log_end().await, end, "nothing refused is recorded");

    let honest = refusal_body(&keys[i], ids[i], request, 0, 9_000);
    let (status, answer) = f.post(&path(i), &honest).await;
    assert_eq!(
        (status, &answer["outcome"]),
        (StatusCode::OK, &json!("recorded"))
    );
    let (status, answer) = f.post(&path(i), &honest).await;
    assert_eq!(
        (status, &answer["outcome"]),
        (StatusCode::OK, &json!("duplicate"))
    );
    let (_, nodes) = f.get("/v1/nodes").await;
    let listed = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node_id"] == ids[i].0.to_hex())
        .unwrap();
    assert_eq!(
        (&listed["refusals"], &listed["standing_bp"]),
        (&json!(1), &json!(10_000))
    );

    let second = dispatched(&f, request).await;
    assert_eq!((second.node, second.attempt), (ids[j], 1));
    let (status, answer) = f
        .post(&path(j), &refusal_body(&keys[j], ids[j], request, 1, 9_000))
        .await;
    assert_eq!(
        (status, &answer["outcome"]),
        (StatusCode::OK, &json!("recorded"))
    );
    let (status, req) = f.read(&format!("/v1/requests/{request}")).await;
    assert_eq!(status, StatusCode::OK, "{req}");
    assert_eq!(req["status"], "failed", "{req}");
    let (_, account) = f.read(&format!("/v1/accounts/{}", address("ai"))).await;
    assert_eq!(
        (&account["balance"], &account["reserved"]),
        (&json!(10_000), &json!(0)),
        "{account}"
    );
}

/// The dispatch of `request` once one is recorded (housekeeping grants sessions and
/// dispatches after each command).
async fn dispatched(f: &Fixture, request: u64) -> prlx_projections::coordinator::Assignment {
    for _ in 0..500 {
        let running = f
            .state(move |s| s.requests[&RequestId(request)].running.clone())
            .await;
        if let Some(a) = running.filter(|a| a.deadline_at.is_some()) {
            return a;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("request {request} was never dispatched")
}
