//! The auditor catches an idempotency key accepted twice at any age, not only inside the
//! coordinator's window of settled requests: a coordinator without its request index (or one
//! replaying an account's signed submission to charge it again) accepts a key whose request
//! has left its state, and the fold alone, which keeps keys only for the window, lets it by.
//!
//! The log is written by the real coordinator core: `FINISHED_WINDOW + 8` requests accepted
//! and settled (no node serves their model, so they fail once the catalog's node timeout has
//! passed, refunded), then the first one's signed submission again, to a coordinator opened
//! without its index.

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use prlx_commands::shell::{Coordinator, Outcome};
use prlx_commands::testkit::settled::{self, keyed_submission};
use prlx_events::log::{LogReader, LogUrl};
use prlx_events::seal::StorageKey;
use prlx_projections::coordinator::FINISHED_WINDOW;
use prlx_replay::{verify, DivergenceKind, VerifyOptions};

fn url(dir: &Path) -> LogUrl {
    LogUrl::parse(&format!("file://{}", dir.join("log").display())).unwrap()
}

/// The coordinator on `dir`'s log, with its request index or without; housekeeping (the
/// settling) runs only with a signing key. The last one's encoder lets go of the log's lock
/// just after it is dropped: tried again.
async fn open(dir: &Path, index: bool) -> Coordinator {
    for _ in 0..500 {
        let key = StorageKey::from_bytes([7; 32]);
        let index_dir = dir.join("index");
        let opened = match index {
            true => {
                Coordinator::open_indexed(&url(dir), "coordinator/1", key, Some(&index_dir)).await
            }
            false => Coordinator::open(&url(dir), "coordinator/1", key).await,
        };
        match opened {
            Ok(coord) => return coord.with_signing_key(signing_key()),
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    panic!("the log stayed locked")
}

/// One signing key for both coordinators: the log's seals are checked against the key
/// published before them.
fn signing_key() -> rsa::RsaPrivateKey {
    static KEY: std::sync::OnceLock<rsa::RsaPrivateKey> = std::sync::OnceLock::new();
    KEY.get_or_init(prlx_tests::harness::keys::new_key).clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_accepted_again_after_it_left_the_window_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let options = VerifyOptions {
        log: format!("file://{}", dir.path().join("log").display()),
        ..VerifyOptions::default()
    };
    {
        let mut coord = open(dir.path(), true).await;
        // Publishes the coordinator's key before the first seal needs it.
        coord.housekeeping(Utc::now()).await.unwrap();
        settled::settle(&mut coord, FINISHED_WINDOW + 8).await;
        // With its index the coordinator answers the retry with the first request.
        let again = coord.execute(keyed_submission(0, 16)).await.unwrap();
        assert!(!matches!(again, Outcome::Appended(_)), "{again:?}");
    }
    let clean = verify(&options, |_| ()).await.unwrap();
    assert!(clean.ok, "{}", clean.to_text());

    // Without it, key-0 has left the state's window: accepted anew.
    let end = {
        let mut coord = open(dir.path(), false).await;
        let before = coord.writer().reader().end().await.unwrap();
        let again = coord.execute(keyed_submission(0, 16)).await.unwrap();
        assert!(matches!(again, Outcome::Appended(_)), "{again:?}");
        before
    };
    let report = verify(&options, |_| ()).await.unwrap();
    assert!(!report.ok, "the second acceptance of key-0 went unnoticed");
    let d = report.divergence.as_ref().unwrap();
    assert_eq!(d.kind, DivergenceKind::FoldRefused, "{d:?}");
    assert_eq!(d.field.as_deref(), Some("idempotency_key"), "{d:?}");
    assert_eq!(d.event_type.as_deref(), Some("RequestAccepted"), "{d:?}");
    assert!(d.offset >= end, "named at the new acceptance: {d:?}");
    assert!(d.message.contains("\"key-0\""), "{}", d.message);
}
