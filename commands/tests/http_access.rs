//! Who may spend and who may read, over HTTP (`app()` with `oneshot` on a real file log): a
//! delegate's submissions within its delegation's limit and life, and the reads of an
//! account's balance and requests, which answer only the account and its live delegates.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use prlx_commands::consent::{ConsentDomain, DelegationBody};
use prlx_commands::decide::Command;
use prlx_commands::testkit::accounts::{account, address, delegation, read_token, read_token_as};
use prlx_commands::testkit::app::InProcess;
use prlx_commands::testkit::intake::{assert_error_body, delegated, signed, submission};
use serde_json::Value;

/// A standard request of 10 tokens under the test kit's catalog (100 + 3 per token).
const PRICE: u64 = 130;

/// A coordinator with the catalog, `ai` credited with 10_000 and `other` with 1_000.
async fn fixture() -> Fixture {
    let app = InProcess::start(
        "access-test",
        [deposit("ai", "0x1", 10_000), deposit("other", "0x2", 1_000)],
    )
    .await;
    Fixture { app }
}

struct Fixture {
    app: InProcess,
}

fn deposit(name: &str, tx_ref: &str, amount: u64) -> Command {
    Command::DepositCredits {
        account: account(name),
        tx_ref: tx_ref.into(),
        amount,
    }
}

fn now() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp()).unwrap()
}

/// `ai`'s delegation to `gateway` of `limit` credits for `ttl` seconds from now.
fn to_gateway(limit: u64, ttl: u64) -> DelegationBody {
    delegation(
        "ai",
        "ai",
        "gateway",
        limit,
        now() + ttl,
        &ConsentDomain::default(),
    )
}

impl Fixture {
    async fn send(&self, req: Request<Body>) -> (StatusCode, Value) {
        self.app.send(req).await
    }

    async fn get(&self, uri: &str, authorization: Option<&str>) -> (StatusCode, Value) {
        let mut req = Request::get(uri);
        if let Some(a) = authorization {
            req = req.header("Authorization", a);
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    /// `GET uri` with a token for reading the test account `account` signed by `signer`.
    async fn read_as(&self, signer: &str, account: &str, uri: &str) -> (StatusCode, Value) {
        let token = read_token(signer, &address(account), 600, &ConsentDomain::default());
        self.get(uri, Some(&token)).await
    }

    async fn submit(&self, body: &Value) -> (StatusCode, Value) {
        let req = Request::post("/v1/requests")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        self.send(req).await
    }

    /// `ai`'s prompt `prompt` sent by `gateway` under `d`, with idempotency key `key`.
    async fn submit_as_gateway(
        &self,
        prompt: &str,
        key: &str,
        d: &DelegationBody,
    ) -> (StatusCode, Value) {
        let body = delegated(
            submission("ai", prompt),
            key,
            "gateway",
            d,
            &ConsentDomain::default(),
        );
        self.submit(&body).await
    }

    async fn reserved(&self) -> Value {
        let (status, body) = self
            .read_as("ai", "ai", &format!("/v1/accounts/{}", address("ai")))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["reserved"].clone()
    }

    /// Rejections recorded on the log with `code`.
    async fn rejections(&self, code: &'static str) -> u64 {
        self.app
            .handle
            .read_state(move |s| s.rejections.get(code).copied().unwrap_or(0))
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn a_delegate_spends_within_its_limit_and_past_it_is_refused_reserving_nothing() {
    let f = fixture().await;
    let d = to_gateway(2 * PRICE, 3_600);
    for (i, key) in ["g-1", "g-2"].into_iter().enumerate() {
        let (status, body) = f.submit_as_gateway(key, key, &d).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["request_id"], i as u64, "{body}");
    }
    assert_eq!(f.reserved().await, 2 * PRICE);
    let over = f.submit_as_gateway("g-3", "g-3", &d).await;
    assert_error_body(
        over.0,
        &over.1,
        StatusCode::FORBIDDEN,
        "spending_limit_exceeded",
        Some("delegation.spending_limit"),
    );
    assert_eq!(f.reserved().await, 2 * PRICE, "nothing more reserved");
    assert_eq!(
        f.rejections("spending_limit_exceeded").await,
        1,
        "the refusal is on the log"
    );
}

#[tokio::test]
async fn a_delegates_submission_is_refused_expired_forged_or_without_its_delegation() {
    let f = fixture().await;
    let domain = ConsentDomain::default();
    let expired = delegation("ai", "ai", "gateway", 1_000, now() - 1, &domain);
    let got = f.submit_as_gateway("late", "late", &expired).await;
    assert_error_body(
        got.0,
        &got.1,
        StatusCode::FORBIDDEN,
        "delegation_expired",
        Some("delegation.expires_at"),
    );
    let forged = delegation("stranger", "ai", "gateway", 1_000, now() + 600, &domain);
    let got = f.submit_as_gateway("forged", "forged", &forged).await;
    assert_error_body(
        got.0,
        &got.1,
        StatusCode::FORBIDDEN,
        "unauthorized",
        Some("delegation.signature"),
    );
    // The gateway's signature alone: the gateway is not the account.
    let mut bare = delegated(
        submission("ai", "bare"),
        "bare",
        "gateway",
        &to_gateway(1_000, 600),
        &domain,
    );
    bare.as_object_mut().unwrap().remove("delegation");
    let got = f.submit(&bare).await;
    assert_error_body(
        got.0,
        &got.1,
        StatusCode::FORBIDDEN,
        "unauthorized",
        Some("signature"),
    );
    // A delegation whose signature does not decode is refused at the door, naming it.
    let mut garbled = to_gateway(1_000, 600);
    garbled.signature = "0x12".into();
    let got = f.submit_as_gateway("garbled", "garbled", &garbled).await;
    assert_error_body(
        got.0,
        &got.1,
        StatusCode::BAD_REQUEST,
        "malformed_request",
        Some("delegation.signature"),
    );
    assert_eq!(f.reserved().await, 0);
}

/// The account revokes its delegation over HTTP: the delegate's submissions and reads are
/// refused after; a revocation by anyone but the account, or garbled, is refused naming the
/// field, and revoking twice answers the same.
#[tokio::test]
async fn a_revoked_delegation_signs_and_reads_no_more() {
    let f = fixture().await;
    let domain = ConsentDomain::default();
    let d = to_gateway(10 * PRICE, 3_600);
    assert_eq!(
        f.submit_as_gateway("before", "before", &d).await.0,
        StatusCode::ACCEPTED
    );
    let uri = format!("/v1/accounts/{}", address("ai"));
    assert_eq!(f.read_as("gateway", "ai", &uri).await.0, StatusCode::OK);

    let revoke = |body: Value| {
        Request::post("/v1/delegations/revocations")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let by = |name: &str| {
        serde_json::to_value(
            prlx_commands::revocation::sign_revocation(
                &prlx_commands::testkit::accounts::key(name),
                &address("ai"),
                &d,
                &domain,
            )
            .unwrap(),
        )
        .unwrap()
    };
    let mut garbled = by("ai");
    garbled["signature"] = "0x12".into();
    let mut not_an_address = by("ai");
    not_an_address["delegate"] = "gateway".into();
    use StatusCode as S;
    for (body, status, code, field) in [
        (by("gateway"), S::FORBIDDEN, "unauthorized", "signature"),
        (garbled, S::BAD_REQUEST, "malformed_request", "signature"),
        (
            not_an_address,
            S::BAD_REQUEST,
            "malformed_request",
            "delegate",
        ),
    ] {
        let got = f.send(revoke(body)).await;
        assert_error_body(got.0, &got.1, status, code, Some(field));
    }
    // Still usable: none of those was the account's word.
    assert_eq!(
        f.submit_as_gateway("still", "still", &d).await.0,
        StatusCode::ACCEPTED
    );

    let (status, answer) = f.send(revoke(by("ai"))).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "revoked", "{answer}");
    assert_eq!(
        f.send(revoke(by("ai"))).await,
        (status, answer.clone()),
        "twice: the same"
    );

    let got = f.submit_as_gateway("after", "after", &d).await;
    assert_error_body(
        got.0,
        &got.1,
        StatusCode::FORBIDDEN,
        "delegation_revoked",
        Some("delegation"),
    );
    assert_eq!(
        f.rejections("delegation_revoked").await,
        1,
        "the refusal is on the log"
    );
    let got = f.read_as("gateway", "ai", &uri).await;
    assert_eq!(got.0, StatusCode::FORBIDDEN, "{}", got.1);
    // The account lists it: used twice before (2 x 130 spent), revoked; nobody else may.
    let listing = format!("/v1/accounts/{}/delegations", address("ai"));
    let (status, list) = f.read_as("ai", "ai", &listing).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(
        (&list[0]["delegate"], &list[0]["spent"], &list[0]["revoked"]),
        (
            &Value::from(address("gateway")),
            &Value::from(2 * PRICE),
            &Value::from(true)
        ),
        "{list}"
    );
    assert_eq!(list[0]["delegation"], answer["delegation"], "{list}");
    for reader in ["gateway", "stranger"] {
        let got = f.read_as(reader, "ai", &listing).await;
        assert_eq!(got.0, StatusCode::FORBIDDEN, "{reader}: {}", got.1);
    }
    // The request made before it is answered as before, to the account.
    assert_eq!(
        f.submit_as_gateway("before", "before", &d).await.1["request_id"],
        0
    );
    assert_eq!(f.read_as("ai", "ai", &uri).await.0, StatusCode::OK);
}

#[tokio::test]
async fn reads_answer_only_the_account_and_its_live_delegates() {
    let f = fixture().await;
    let body = signed(submission("ai", "mine"), "mine", &ConsentDomain::default());
    assert_eq!(f.submit(&body).await.0, StatusCode::ACCEPTED);
    let ai = address("ai");
    let account_path = format!("/v1/accounts/{ai}");
    let domain = ConsentDomain::default();

    // The account itself reads both.
    assert_eq!(f.read_as("ai", "ai", &account_path).await.0, StatusCode::OK);
    let (status, request) = f.read_as("ai", "ai", "/v1/requests/0").await;
    assert_eq!((status, &request["price"]), (StatusCode::OK, &PRICE.into()));

    // No proof, or one that does not hold: 401, naming the header.
    let key = prlx_commands::testkit::accounts::key("ai");
    let expired = read_token_as(&key, &ai, now() - 1, &domain);
    let too_long = read_token_as(&key, &ai, now() + 7_200, &domain);
    for (authorization, what) in [
        (None, "none"),
        (Some("Bearer nonsense"), "malformed"),
        (Some("Basic YWk6cGFzcw=="), "another scheme"),
        (Some(expired.as_str()), "expired"),
        (Some(too_long.as_str()), "over an hour"),
    ] {
        for path in [account_path.as_str(), "/v1/requests/0"] {
            let (status, body) = f.get(path, authorization).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{what} {path}: {body}");
            assert_error_body(
                status,
                &body,
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                Some("Authorization"),
            );
        }
    }

    // A stranger's key, for the account: 403. For its own account: not the account in the
    // path (403), and another account's request is answered as none (404).
    let forbidden = (StatusCode::FORBIDDEN, "unauthorized", "Authorization");
    let unknown = (StatusCode::NOT_FOUND, "unknown_request", "request_id");
    for ((signer, reads, path), (status, code, field)) in [
        (("stranger", "ai", account_path.as_str()), forbidden),
        (("stranger", "ai", "/v1/requests/0"), forbidden),
        (("other", "other", account_path.as_str()), forbidden),
        (("other", "other", "/v1/requests/0"), unknown),
        (("other", "other", "/v1/requests/9"), unknown),
    ] {
        let (got, body) = f.read_as(signer, reads, path).await;
        assert_error_body(got, &body, status, code, Some(field));
    }

    // The gateway may read once a request was accepted under its live delegation.
    let (status, _) = f.read_as("gateway", "ai", &account_path).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let d = to_gateway(1_000, 3_600);
    let (status, accepted) = f.submit_as_gateway("via gateway", "via-gateway", &d).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert_eq!(
        f.read_as("gateway", "ai", &account_path).await.0,
        StatusCode::OK
    );
    assert_eq!(
        f.read_as("gateway", "ai", "/v1/requests/0").await.0,
        StatusCode::OK
    );
    assert_eq!(
        f.read_as("gateway", "ai", "/v1/requests/1").await.0,
        StatusCode::OK
    );
    // ... but not another account.
    let (status, _) = f
        .read_as(
            "gateway",
            "other",
            &format!("/v1/accounts/{}", address("other")),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn openapi_declares_the_read_access_scheme_on_the_reads() {
    let f = fixture().await;
    let (status, doc) = f.get("/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let scheme = &doc["components"]["securitySchemes"]["read_access"];
    assert_eq!(
        (&scheme["type"], &scheme["scheme"]),
        (&"http".into(), &"bearer".into()),
        "{scheme}"
    );
    for path in ["/v1/accounts/{account}", "/v1/requests/{id}"] {
        let op = &doc["paths"][path]["get"];
        assert!(op["security"][0]["read_access"].is_array(), "{path}: {op}");
        assert!(op["responses"]["401"].is_object(), "{path}: {op}");
    }
    assert!(doc["paths"]["/v1/quote"]["get"]["security"].is_null());
    let body = &doc["components"]["schemas"]["SubmitRequestBody"]["properties"];
    assert!(body["delegation"].is_object(), "{body}");
}
