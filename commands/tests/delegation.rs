//! Delegated spending, Given/When/Then: an account lets a delegate key sign its submissions up
//! to a spending limit until an expiry, and may revoke it before then. Each decision is
//! recorded and folded, so the fold agrees with `decide` on every one.

use prlx_commands::consent::{ConsentDomain, DelegationBody};
use prlx_commands::decide::{Command, Submission};
use prlx_commands::revocation::{revocation_of, sign_revocation};
use prlx_commands::testkit::accounts::{address, delegation, key};
use prlx_commands::testkit::fixtures::{self, account, model, t};
use prlx_commands::testkit::{decide_at, given, History};
use prlx_events::event::*;
use prlx_events::{Event, Hash32, RequestId};
use prlx_projections::coordinator::revocation::MAX_REVOKED;

/// `oss-chat-v1` at 100 + 3 per token: a standard request of 10 tokens costs 130.
const PRICE: u64 = 130;

/// The account (`ai`) funded with 10_000 credits.
fn funded() -> History {
    let mut h = History::new();
    h.record(
        t(-100),
        [CatalogPublished {
            ..fixtures::catalog(vec![CatalogModel {
                base_price: 100,
                per_token_price: 3,
                ..model("oss-chat-v1", Hash32::of(b"model"))
            }])
        }
        .into()],
    );
    h.record(t(-90), [fixtures::deposited(10_000).into()]);
    h
}

/// `ai`'s delegation to `gateway` of `limit` credits until `t(expires)`.
fn to_gateway(limit: u64, expires: i64) -> DelegationBody {
    let expires_at = u64::try_from(t(expires).timestamp()).unwrap();
    delegation(
        "ai",
        "ai",
        "gateway",
        limit,
        expires_at,
        &ConsentDomain::default(),
    )
}

/// A submission of 10 tokens with idempotency key `key`, decided at `now`, unsigned.
fn submission(key: &str, now: i64) -> Submission {
    Submission {
        idempotency_key: Some(key.into()),
        max_tokens: 10,
        now: t(now),
        ..fixtures::unsigned_submission("oss-chat-v1", key.as_bytes())
    }
}

fn submit(s: Submission) -> Command {
    Command::SubmitRequest(Box::new(s))
}

#[test]
fn a_delegate_spends_within_its_limit_and_is_refused_past_it_reserving_nothing() {
    let d = to_gateway(2 * PRICE + 10, 3_600);
    let mut h = funded();
    for (i, key) in ["a", "b"].into_iter().enumerate() {
        let events = decide_at(
            &mut h,
            t(i as i64),
            submit(submission(key, i as i64).delegated("gateway", &d)),
        );
        let Event::RequestAccepted(r) = &events[0] else {
            panic!("{events:?}")
        };
        let consent = r.consent.as_ref().unwrap();
        assert_eq!(consent.signer, address("gateway"));
        let recorded = consent.delegation.as_ref().unwrap();
        assert_eq!(
            (recorded.signer.as_str(), recorded.spending_limit),
            (address("ai").as_str(), 2 * PRICE + 10)
        );
    }
    let state = given(h.clone());
    let hash = state.state().requests[&RequestId(0)].delegation.unwrap();
    assert_eq!(
        state
            .state()
            .delegation_use(&account(), &hash)
            .unwrap()
            .spent,
        2 * PRICE
    );
    let rejection = given(h.clone())
        .when(submit(submission("c", 2).delegated("gateway", &d)))
        .then_reject(
            RejectionCode::SpendingLimitExceeded,
            "delegation.spending_limit",
        );
    assert!(rejection.message.contains("260"), "{rejection}");
    // The account's own key is not bound by its delegate's limit.
    given(h).when(submit(submission("c", 2).signed())).events();
}

#[test]
fn a_refund_gives_the_delegation_its_credits_back() {
    let d = to_gateway(PRICE, 3_600);
    let mut h = funded();
    decide_at(
        &mut h,
        t(0),
        submit(submission("a", 0).delegated("gateway", &d)),
    );
    given(h.clone())
        .when(submit(submission("b", 1).delegated("gateway", &d)))
        .then_reject(
            RejectionCode::SpendingLimitExceeded,
            "delegation.spending_limit",
        );
    // Nobody serves it: it times out of the queue, refunded in full.
    let events = decide_at(
        &mut h,
        t(600),
        Command::ExpireQueued {
            request: RequestId(0),
            now: t(600),
        },
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::CreditsRefunded(r) if r.amount == PRICE)),
        "{events:?}"
    );
    decide_at(
        &mut h,
        t(601),
        submit(submission("b", 601).delegated("gateway", &d)),
    );
}

#[test]
fn an_expired_delegation_is_refused_but_a_retry_gets_its_request() {
    let d = to_gateway(10 * PRICE, 10);
    let mut h = funded();
    decide_at(
        &mut h,
        t(9),
        submit(submission("a", 9).delegated("gateway", &d)),
    );
    given(h.clone())
        .when(submit(submission("b", 10).delegated("gateway", &d)))
        .then_reject(RejectionCode::DelegationExpired, "delegation.expires_at");
    // The same request again is a retry: answered with the request it created, nothing new.
    given(h)
        .when(submit(submission("a", 11).delegated("gateway", &d)))
        .then_expect([]);
}

#[test]
fn a_delegation_signed_by_anyone_but_the_account_is_refused() {
    let domain = ConsentDomain::default();
    let forged = delegation("stranger", "ai", "gateway", 1_000, 4_000_000_000, &domain);
    given(funded())
        .when(submit(submission("a", 0).delegated("gateway", &forged)))
        .then_reject(RejectionCode::Unauthorized, "delegation.signature");
}

#[test]
fn a_delegate_without_a_delegation_or_another_than_the_named_one_is_refused() {
    // The delegate's own signature, no delegation: it is not the account's key.
    let mut s = submission("a", 0);
    prlx_commands::consent::sign_submission(
        &mut s,
        &prlx_commands::testkit::accounts::key("gateway"),
        &ConsentDomain::default(),
    );
    given(funded())
        .when(submit(s))
        .then_reject(RejectionCode::Unauthorized, "signature");
    // Another key signing under the gateway's delegation.
    let d = to_gateway(1_000, 3_600);
    given(funded())
        .when(submit(submission("a", 0).delegated("intruder", &d)))
        .then_reject(RejectionCode::Unauthorized, "signature");
}

#[test]
fn the_fold_refuses_a_log_that_spends_past_a_delegations_limit() {
    let d = to_gateway(PRICE, 3_600);
    let mut h = funded();
    let first = decide_at(
        &mut h,
        t(0),
        submit(submission("a", 0).delegated("gateway", &d)),
    );
    // The same acceptance again, as a forged log would record it: a second request under
    // a delegation whose limit the first one used up.
    let Event::RequestAccepted(r) = &first[0] else {
        panic!("{first:?}")
    };
    let again = RequestAccepted {
        request_id: RequestId(1),
        idempotency_key: Some("b".into()),
        ..r.clone()
    };
    h.record(t(1), fixtures::accepted_and_reserved(again));
    let e = prlx_commands::testkit::fold(&h).unwrap_err();
    assert_eq!(
        e.error.field.as_deref(),
        Some("consent.delegation.spending_limit"),
        "{e}"
    );
}

// Revocations: an account withdraws a delegation before it expires (`DelegationRevoked`).

/// `d` revoked, signed by the test account named `by`, its signer recovered as the door does.
fn revocation(by: &str, d: &DelegationBody) -> DelegationRevoked {
    let domain = ConsentDomain::default();
    let body = sign_revocation(&key(by), &address("ai"), d, &domain).unwrap();
    revocation_of(&body, &domain).unwrap()
}

fn revoke(r: DelegationRevoked, now: i64) -> Command {
    Command::RevokeDelegation {
        revocation: Box::new(r),
        now: t(now),
    }
}

/// [`submission`] `key` at `now`, signed by `gateway` under `d`.
fn under(d: &DelegationBody, key: &str, now: i64) -> Command {
    submit(submission(key, now).delegated("gateway", d))
}

#[test]
fn after_a_revocation_the_delegate_is_refused_but_a_retry_gets_its_request() {
    let d = to_gateway(10_000, 3_600);
    let mut h = funded();
    decide_at(&mut h, t(0), under(&d, "a", 0));
    let events = decide_at(&mut h, t(1), revoke(revocation("ai", &d), 1));
    let Event::DelegationRevoked(r) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(
        (r.signer.as_str(), &r.account),
        (address("ai").as_str(), &account())
    );
    let state = given(h.clone());
    assert!(!state
        .state()
        .is_delegate(&account(), &address("gateway"), t(2).timestamp()));
    let rejection = given(h.clone())
        .when(under(&d, "b", 2))
        .then_reject(RejectionCode::DelegationRevoked, "delegation");
    assert!(rejection.message.contains("revoked"), "{rejection}");
    // The request made before is a retry: answered with it, nothing new.
    given(h.clone()).when(under(&d, "a", 3)).then_expect([]);
    // Revoked again: the same answer, nothing recorded.
    given(h.clone())
        .when(revoke(revocation("ai", &d), 4))
        .then_expect([]);
    // The account's own key is not bound by it.
    given(h)
        .when(Command::SubmitRequest(Box::new(
            submission("c", 5).signed(),
        )))
        .events();
}

#[test]
fn only_the_account_revokes_and_only_a_living_delegation() {
    let d = to_gateway(10_000, 3_600);
    // The delegate withdrawing it (or anyone but the account) is not the account's word.
    given(funded())
        .when(revoke(revocation("gateway", &d), 0))
        .then_reject(RejectionCode::Unauthorized, "signature");
    // An account no deposit created has nothing to revoke (and keys cost nothing to make).
    let mut unfunded = History::new();
    unfunded.record(t(-100), [funded().envelopes()[0].event.clone()]);
    given(unfunded)
        .when(revoke(revocation("ai", &d), 0))
        .then_reject(RejectionCode::MalformedRequest, "account");
    // Expired: nothing left to revoke.
    given(funded())
        .when(revoke(revocation("ai", &d), 3_600))
        .then_reject(RejectionCode::DelegationExpired, "expires_at");
}

#[test]
fn an_account_holds_a_bounded_number_of_revocations_forgotten_at_expiry() {
    let mut h = funded();
    let short: Vec<DelegationBody> = (0..MAX_REVOKED as i64)
        .map(|i| to_gateway(10_000, 100 + i))
        .collect();
    for (i, d) in short.iter().enumerate() {
        decide_at(&mut h, t(i as i64), revoke(revocation("ai", d), i as i64));
    }
    let one_more = to_gateway(10_000, 10_000);
    given(h.clone())
        .when(revoke(revocation("ai", &one_more), 90))
        .then_reject(RejectionCode::MalformedRequest, "delegation");
    // Once the first of them expired, there is room again, and the fold forgets it.
    decide_at(&mut h, t(100), revoke(revocation("ai", &one_more), 100));
    let state = given(h);
    assert_eq!(state.state().revoked[&account()].len(), MAX_REVOKED);
    assert!(!state.state().is_revoked(
        &account(),
        &Hash32(
            prlx_chain::consent::DelegationFields {
                account: &address("ai"),
                delegate: &short[0].delegate,
                spending_limit: short[0].spending_limit,
                expires_at: short[0].expires_at,
            }
            .hash(&ConsentDomain::default().eip712())
            .unwrap()
            .0
        )
    ));
}

#[test]
fn the_fold_refuses_a_request_under_a_revoked_delegation_and_a_revocation_by_another() {
    let d = to_gateway(10_000, 3_600);
    let mut h = funded();
    let accepted = decide_at(&mut h, t(0), under(&d, "a", 0));
    decide_at(&mut h, t(1), revoke(revocation("ai", &d), 1));
    // A forged log: a request under the revoked delegation, accepted after the revocation.
    let Event::RequestAccepted(r) = &accepted[0] else {
        panic!("{accepted:?}")
    };
    let mut forged = h.clone();
    forged.record(
        t(2),
        fixtures::accepted_and_reserved(RequestAccepted {
            request_id: prlx_events::RequestId(1),
            idempotency_key: Some("b".into()),
            ..r.clone()
        }),
    );
    let e = prlx_commands::testkit::fold(&forged).unwrap_err();
    assert_eq!(
        e.error.field.as_deref(),
        Some("consent.delegation.hash"),
        "{e}"
    );
    // A revocation recorded as signed by someone but the account.
    let mut forged = funded();
    forged.record(
        t(0),
        [Event::DelegationRevoked(DelegationRevoked {
            signer: address("gateway"),
            ..revocation("ai", &d)
        })],
    );
    let e = prlx_commands::testkit::fold(&forged).unwrap_err();
    assert_eq!(e.error.field.as_deref(), Some("signature"), "{e}");
}
