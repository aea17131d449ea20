//! Spending consent on the log: each accepted request records its account's EIP-712
//! signature, and the auditor recovers it again. A signature by another key, one moved onto
//! another request, or a signer that is not the account charged is named by offset.

use prlx_commands::decide::Command;
use prlx_commands::testkit::accounts::key;
use prlx_commands::testkit::fixtures::{self, t};
use prlx_commands::testkit::{decide_at, History};
use prlx_events::event::{Consent, RequestAccepted};
use prlx_events::{Envelope, Event, Hash32};
use prlx_replay::{verify, VerifyOptions};

/// The catalog, the account funded, and one request it signed.
fn signed_request() -> (History, usize, RequestAccepted) {
    let mut h = History::new();
    h.record(
        t(-100),
        [fixtures::catalog(vec![fixtures::model("chat", Hash32([1; 32]))]).into()],
    );
    h.record(t(-90), [fixtures::deposited(1_000).into()]);
    let events = decide_at(
        &mut h,
        t(-80),
        Command::SubmitRequest(Box::new(fixtures::submission("chat", b"hello"))),
    );
    let Event::RequestAccepted(accepted) = &events[0] else {
        panic!("{events:?}")
    };
    let at = h.envelopes().len() - 2;
    (h, at, accepted.clone())
}

/// The auditor's first divergence over `h`: (offset, event type, field).
async fn audited(h: &History) -> Option<(u64, String, String)> {
    audited_report(h).await.divergence.map(|d| {
        (
            d.offset,
            d.event_type.unwrap_or_default(),
            d.field.unwrap_or_default(),
        )
    })
}

#[tokio::test]
async fn the_auditor_recovers_each_consent_and_names_a_forged_one() {
    let (h, at, accepted) = signed_request();
    let consent = accepted.consent.clone().expect("a signed request");
    assert_eq!(consent.signer, accepted.credit_account.0);
    assert_eq!(audited(&h).await, None, "the honest log verifies");

    // Another key's signature over the same request, recorded as the account's.
    let mut as_stranger = fixtures::submission("chat", b"hello");
    prlx_commands::consent::sign_submission(
        &mut as_stranger,
        &key("stranger"),
        &prlx_commands::consent::ConsentDomain::default(),
    );
    let stranger_signature = as_stranger.consent.unwrap().signature;
    // The account's own signature, over another request (another prompt).
    let other = fixtures::submission("chat", b"another prompt").signed();
    let moved_signature = other.consent.unwrap().signature;

    for (consent, field) in [
        (
            Consent {
                signature: stranger_signature,
                ..consent.clone()
            },
            "signature",
        ),
        (
            Consent {
                signature: moved_signature,
                ..consent.clone()
            },
            "signature",
        ),
        (
            Consent {
                signer: prlx_commands::testkit::accounts::address("stranger"),
                ..consent.clone()
            },
            "consent.signer",
        ),
    ] {
        let mut forged = h.clone();
        forged.replace(
            at,
            RequestAccepted {
                consent: Some(consent),
                ..accepted.clone()
            },
        );
        let found = audited(&forged).await.expect("a forged consent is caught");
        assert_eq!(
            (found.0, found.1.as_str()),
            (at as u64, "RequestAccepted"),
            "{found:?}"
        );
        if field == "consent.signer" {
            assert_eq!(found.2, field, "{found:?}");
        }
    }
}

/// `ai`'s delegation to `gateway` of `limit` credits for an hour from `t(0)`.
fn to_gateway(limit: u64) -> prlx_commands::consent::DelegationBody {
    prlx_commands::testkit::accounts::delegation(
        "ai",
        "ai",
        "gateway",
        limit,
        u64::try_from(t(3_600).timestamp()).unwrap(),
        &prlx_commands::consent::ConsentDomain::default(),
    )
}

/// The catalog, the account funded, and `prompt` submitted by the gateway under `d` at
/// `t(-80)`: the history and the offset of its `RequestAccepted`.
fn delegated_request(
    prompt: &[u8],
    d: &prlx_commands::consent::DelegationBody,
) -> (History, usize) {
    let (mut h, _, _) = signed_request();
    let s = prlx_commands::decide::Submission {
        idempotency_key: Some(String::from_utf8_lossy(prompt).into_owned()),
        now: t(-70),
        ..fixtures::unsigned_submission("chat", prompt)
    }
    .delegated("gateway", d);
    decide_at(&mut h, t(-70), Command::SubmitRequest(Box::new(s)));
    let at = h.envelopes().len() - 2;
    (h, at)
}

#[tokio::test]
async fn the_auditor_recovers_each_delegation_and_re_derives_its_limit() {
    let d = to_gateway(1_000);
    let (h, at) = delegated_request(b"via the gateway", &d);
    assert_eq!(audited(&h).await, None, "the honest log verifies");
    let Event::RequestAccepted(accepted) = &h.envelopes()[at].event else {
        panic!("not the acceptance")
    };
    let consent = accepted.consent.clone().unwrap();
    let recorded = consent.delegation.clone().unwrap();
    let stranger = prlx_commands::testkit::accounts::delegation(
        "stranger",
        "ai",
        "gateway",
        1_000,
        recorded.expires_at,
        &prlx_commands::consent::ConsentDomain::default(),
    );
    let forgeries = [
        // Another key's signature over the same terms, recorded as the account's.
        (
            prlx_events::event::Delegation {
                signature: stranger.signature,
                ..recorded.clone()
            },
            "consent.delegation.signature",
        ),
        // A higher limit than the account signed, under the hash it did sign.
        (
            prlx_events::event::Delegation {
                spending_limit: 1_000_000,
                ..recorded.clone()
            },
            "consent.delegation.hash",
        ),
        // A fresh hash, so that the fold would count the spending anew.
        (
            prlx_events::event::Delegation {
                hash: Hash32([7; 32]),
                ..recorded.clone()
            },
            "consent.delegation.hash",
        ),
        // A delegation said to be signed by someone other than the account.
        (
            prlx_events::event::Delegation {
                signer: prlx_commands::testkit::accounts::address("stranger"),
                ..recorded.clone()
            },
            "consent.delegation.signer",
        ),
    ];
    for (delegation, field) in forgeries {
        let mut forged = h.clone();
        forged.replace(
            at,
            RequestAccepted {
                consent: Some(Consent {
                    delegation: Some(delegation),
                    ..consent.clone()
                }),
                ..accepted.clone()
            },
        );
        let found = audited(&forged)
            .await
            .expect("a forged delegation is caught");
        assert_eq!(
            (found.0, found.1.as_str(), found.2.as_str()),
            (at as u64, "RequestAccepted", field),
            "{found:?}"
        );
    }

    // Two requests each signed under a delegation of one request's price, the second
    // recorded as though the limit allowed it: every signature holds, the limit does not.
    let price = accepted.price;
    let d = to_gateway(price);
    let (mut h, _) = delegated_request(b"first", &d);
    let (other, other_at) = delegated_request(b"second", &d);
    let Event::RequestAccepted(second) = &other.envelopes()[other_at].event else {
        panic!("not the acceptance")
    };
    let second = RequestAccepted {
        request_id: prlx_events::RequestId(2),
        ..second.clone()
    };
    h.record(t(-60), fixtures::accepted_and_reserved(second));
    let at = h.envelopes().len() - 2;
    assert_eq!(
        audited(&h).await,
        Some((
            at as u64,
            "RequestAccepted".into(),
            "consent.delegation.spending_limit".into()
        ))
    );
}

/// The catalog, the account funded, and three requests whose account signed them once, as a
/// batch: the history and the offsets of their `RequestAccepted`s.
fn batch_signed_requests() -> (History, Vec<usize>) {
    let (mut h, _, _) = signed_request();
    let mut batch: Vec<_> = [b"one".as_slice(), b"two", b"three"]
        .iter()
        .map(|prompt| prlx_commands::decide::Submission {
            idempotency_key: Some(String::from_utf8_lossy(prompt).into_owned()),
            now: t(-70),
            ..fixtures::unsigned_submission("chat", prompt)
        })
        .collect();
    let account = batch[0].credit_account.0.clone();
    let key = prlx_commands::testkit::accounts::key_of_address(&account).expect("a test account");
    prlx_commands::consent::sign_batch(
        &mut batch,
        &key,
        &prlx_commands::consent::ConsentDomain::default(),
    )
    .unwrap();
    let mut at = Vec::new();
    for s in batch {
        decide_at(&mut h, t(-70), Command::SubmitRequest(Box::new(s)));
        at.push(h.envelopes().len() - 2);
    }
    (h, at)
}

/// One signature for three requests: the auditor recovers it once, and still names the
/// record whose place in the batch, or whose signed fields, were changed, though the same
/// signature verified for its neighbours.
#[tokio::test]
async fn the_auditor_recovers_a_batch_consent_once_and_names_a_forged_place() {
    let (h, at) = batch_signed_requests();
    let accepted = |i: usize| match &h.envelopes()[at[i]].event {
        Event::RequestAccepted(r) => r.clone(),
        other => panic!("{other:?}"),
    };
    let second = accepted(1);
    let consent = second.consent.clone().expect("signed");
    let place = *consent.batch.clone().expect("in a batch");
    assert_eq!((place.index, place.count), (1, 3));
    assert_eq!(consent.signature, accepted(0).consent.unwrap().signature);
    let report = audited_report(&h).await;
    assert!(report.divergence.is_none(), "{:?}", report.divergence);
    assert_eq!(
        report.evidence.signatures_reused, 2,
        "{:?}",
        report.evidence
    );

    let with_place = |b: prlx_events::event::ConsentBatch| RequestAccepted {
        consent: Some(Consent {
            batch: Some(Box::new(b)),
            ..consent.clone()
        }),
        ..second.clone()
    };
    let mut bent = place.clone();
    bent.proof[0] = Hash32([9; 32]);
    let forgeries = [
        // Another sibling: another root, a signature that is not the account's over it.
        (with_place(bent), "consent.signature"),
        // Another place: the first's (whose path has the same length).
        (
            with_place(prlx_events::event::ConsentBatch {
                index: 0,
                ..place.clone()
            }),
            "consent.signature",
        ),
        // A place the count does not have.
        (
            with_place(prlx_events::event::ConsentBatch {
                index: 3,
                ..place.clone()
            }),
            "consent.batch",
        ),
        // A proof one hash short.
        (
            with_place(prlx_events::event::ConsentBatch {
                proof: place.proof[1..].to_vec(),
                ..place.clone()
            }),
            "consent.batch",
        ),
        // A signed field changed (the prompt's hash, which the fold cannot see behind the
        // seal), the batch consent kept.
        (
            RequestAccepted {
                payload_hash: Hash32([5; 32]),
                ..second.clone()
            },
            "consent.signature",
        ),
        // Not in a batch at all: the signature is not over the request alone.
        (
            RequestAccepted {
                consent: Some(Consent {
                    batch: None,
                    ..consent.clone()
                }),
                ..second.clone()
            },
            "consent.signature",
        ),
    ];
    for (forged_record, field) in forgeries {
        let mut forged = h.clone();
        forged.replace(at[1], forged_record.clone());
        let found = audited(&forged).await.expect("a forged place is caught");
        assert_eq!(
            found,
            (at[1] as u64, "RequestAccepted".to_owned(), field.to_owned()),
            "{forged_record:?}"
        );
    }
}

/// The auditor's whole report over `h`.
async fn audited_report(h: &History) -> prlx_replay::Report {
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<Vec<u8>> = h.envelopes().iter().map(Envelope::encode).collect();
    prlx_tests::tamper::write_log(&dir.path().join("log"), &records).await;
    let options = VerifyOptions {
        log: format!("file://{}", dir.path().join("log").display()),
        ..VerifyOptions::default()
    };
    verify(&options, |_| ()).await.unwrap()
}

/// A revocation on the log: the auditor derives the delegation's hash from its recorded terms
/// and recovers the account's signature over the revocation; another key's signature, or
/// terms that do not give the recorded hash, are named by offset.
#[tokio::test]
async fn the_auditor_recovers_each_revocation_and_names_a_forged_one() {
    let d = to_gateway(1_000);
    let (mut h, _) = delegated_request(b"before the revocation", &d);
    let domain = prlx_commands::consent::ConsentDomain::default();
    let revocation = |by: &str| {
        let body = prlx_commands::revocation::sign_revocation(
            &key(by),
            &prlx_commands::testkit::accounts::address("ai"),
            &d,
            &domain,
        )
        .unwrap();
        prlx_commands::revocation::revocation_of(&body, &domain).unwrap()
    };
    decide_at(
        &mut h,
        t(-60),
        Command::RevokeDelegation {
            revocation: Box::new(revocation("ai")),
            now: t(-60),
        },
    );
    let at = h.envelopes().len() - 1;
    let Event::DelegationRevoked(honest) = h.envelopes()[at].event.clone() else {
        panic!("not the revocation")
    };
    assert_eq!(audited(&h).await, None, "the honest log verifies");
    let forgeries = [
        // Another key's signature, recorded as the account's.
        (
            prlx_events::event::DelegationRevoked {
                signature: revocation("stranger").signature,
                ..honest.clone()
            },
            "signature",
        ),
        // Terms that do not give the hash recorded: another delegation's.
        (
            prlx_events::event::DelegationRevoked {
                spending_limit: honest.spending_limit + 1,
                ..honest.clone()
            },
            "delegation",
        ),
    ];
    for (forged_record, field) in forgeries {
        let mut forged = h.clone();
        forged.replace(at, forged_record);
        let found = audited(&forged)
            .await
            .expect("a forged revocation is caught");
        assert_eq!(
            found,
            (at as u64, "DelegationRevoked".to_owned(), field.to_owned())
        );
    }
}
