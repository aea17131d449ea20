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
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<Vec<u8>> = h.envelopes().iter().map(Envelope::encode).collect();
    prlx_tests::tamper::write_log(&dir.path().join("log"), &records).await;
    let options = VerifyOptions {
        log: format!("file://{}", dir.path().join("log").display()),
        ..VerifyOptions::default()
    };
    let report = verify(&options, |_| ()).await.unwrap();
    report.divergence.map(|d| {
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
