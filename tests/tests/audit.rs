//! The auditor against golden logs (`tests/fixtures/audit/`, written by the real coordinator
//! core; see `tests/fixtures/audit/README.md`): a clean log verifies, and each tampered copy is
//! reported at the offset `manifest.json` says was tampered with.

use std::path::{Path, PathBuf};

use prlx_replay::{verify, DivergenceKind, Report, VerifyError, VerifyOptions};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/audit")
}

fn manifest() -> Value {
    let text = std::fs::read_to_string(fixtures().join("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn options(case: &str) -> VerifyOptions {
    VerifyOptions {
        log: format!("file://{}", fixtures().join(case).display()),
        ..VerifyOptions::default()
    }
}

async fn audit(options: &VerifyOptions) -> Report {
    verify(options, |_| ()).await.unwrap()
}

/// Checks a tampered fixture's report against its manifest entry.
async fn check_reported_where_tampered(case: &str) {
    let want = &manifest()[case];
    let report = audit(&options(case)).await;
    assert!(!report.ok, "{case}: {}", report.to_text());
    assert_eq!(report.exit_code(), 1);
    let d = report.divergence.as_ref().expect("a divergence");
    assert_eq!(d.offset, want["offset"].as_u64().unwrap(), "{case}: {d:?}");
    assert_eq!(
        serde_json::to_value(d.kind).unwrap(),
        want["kind"],
        "{case}: {d:?}"
    );
    if let Some(t) = want["event_type"].as_str() {
        assert_eq!(d.event_type.as_deref(), Some(t), "{case}: {d:?}");
    }
    if let Some(f) = want["field"].as_str() {
        assert_eq!(d.field.as_deref(), Some(f), "{case}: {d:?}");
    }
    // Everything before the divergence verified.
    assert_eq!(report.records, d.offset, "{case}");
    let text = report.to_text();
    assert!(
        text.contains(&format!("DIVERGENCE at offset {}", d.offset)),
        "{text}"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["ok"], false);
    assert_eq!(json["divergence"]["offset"], want["offset"]);
}

#[tokio::test]
async fn the_clean_golden_log_verifies_under_the_current_code() {
    let report = audit(&options("clean")).await;
    assert!(report.ok, "{}", report.to_text());
    assert_eq!(report.exit_code(), 0);
    assert_eq!(
        report.records,
        manifest()["clean"]["records"].as_u64().unwrap()
    );
    assert_eq!(report.records, report.end_offset);
    // The scenario's shape: a refused submission, a missed deadline, verified results,
    // settled reward epochs.
    for t in [
        "RequestRejected",
        "DeadlineExpired",
        "RequestScheduled",
        "CommitmentVerified",
        "RewardEpochSettled",
    ] {
        assert!(report.events_by_type.contains_key(t), "no {t}: {report:?}");
    }
    assert!(report
        .to_text()
        .contains("OK: every record decodes and folds"));
}

#[tokio::test]
async fn a_removed_event_is_reported_where_the_log_first_needs_it() {
    check_reported_where_tampered("event-removed").await;
}

#[tokio::test]
async fn a_receipt_naming_a_node_without_the_capability_is_refused_at_its_offset() {
    check_reported_where_tampered("unqualified-node").await;
    let report = audit(&options("unqualified-node")).await;
    let d = report.divergence.unwrap();
    assert_eq!(d.kind, DivergenceKind::FoldRefused);
    assert!(d.message.contains("scheduling receipt"), "{}", d.message);
}

#[tokio::test]
async fn a_flipped_byte_is_reported_at_its_record() {
    check_reported_where_tampered("flipped-byte").await;
    let report = audit(&options("flipped-byte")).await;
    let d = report.divergence.unwrap();
    assert!(d.message.contains("checksum"), "{}", d.message);
}

/// Without the hash chain, a charge removed and the rest renumbered is still caught: the
/// decision that returned the result owes its charge before the next one begins.
#[tokio::test]
async fn a_removed_charge_is_caught_where_its_decision_should_have_ended() {
    check_reported_where_tampered("charge-removed").await;
    let report = audit(&options("charge-removed")).await;
    let d = report.divergence.unwrap();
    assert!(
        d.message.contains("never recorded CreditsCharged"),
        "{}",
        d.message
    );
}

/// A request re-priced in its acceptance, reservation and charge alike is caught at the
/// acceptance: the fold re-derives the price from the catalog in force.
#[tokio::test]
async fn a_consistent_re_pricing_is_caught_at_the_acceptance() {
    check_reported_where_tampered("repriced").await;
    let report = audit(&options("repriced")).await;
    let d = report.divergence.unwrap();
    assert!(d.message.contains("price"), "{}", d.message);
}

#[tokio::test]
async fn an_altered_payout_is_reported_at_its_epoch_with_the_field() {
    check_reported_where_tampered("altered-payout").await;
    let report = audit(&options("altered-payout")).await;
    let d = report.divergence.clone().unwrap();
    assert_eq!(d.field.as_deref(), Some("payouts[0].amount"), "{d:?}");
    assert!(
        report
            .to_text()
            .contains("(RewardEpochSettled, field payouts[0].amount)"),
        "{}",
        report.to_text()
    );
}

#[tokio::test]
async fn the_chained_golden_log_verifies_from_its_first_record() {
    let report = audit(&options("chained")).await;
    assert!(report.ok, "{}", report.to_text());
    assert_eq!(
        report.records,
        manifest()["chained"]["records"].as_u64().unwrap()
    );
    assert_eq!(report.chain_from, Some(0));
    // The same records as `clean`, which is not linked at all.
    let clean = audit(&options("clean")).await;
    assert_eq!(clean.chain_from, None);
    assert_eq!(report.events_by_type, clean.events_by_type);
}

/// The case: a request's `CreditsCharged` removed and the rest renumbered
/// consistently verified before the chain; now the record after the gap is named.
#[tokio::test]
async fn a_record_removed_from_a_chained_log_is_named_by_its_offset() {
    check_reported_where_tampered("chained-record-removed").await;
    let at = manifest()["chained-record-removed"]["offset"]
        .as_u64()
        .unwrap();
    let found = audit(&options("chained-record-removed"))
        .await
        .divergence
        .map(|d| (d.kind, d.message));
    let message = format!("the record at offset {at} does not link to the record before it");
    assert!(
        matches!(&found, Some((DivergenceKind::ChainBroken, m)) if m.starts_with(&message)),
        "{found:?}"
    );
}

#[tokio::test]
async fn a_snapshot_restores_to_the_full_replay_and_resumes_the_audit() {
    let tmp = tempfile::tempdir().unwrap();
    let snap = tmp.path().join("coordinator.snapshot");
    let full = audit(&VerifyOptions {
        snapshot: Some(snap.clone()),
        ..options("clean")
    })
    .await;
    assert!(full.ok, "{}", full.to_text());
    let check = full.snapshot.as_ref().unwrap();
    assert!(check.restored_equals_full);
    assert_eq!(check.cut_plus_tail_equals_full, Some(true));
    assert!(check.cut_after_offset.unwrap() < full.end_offset);

    // From the saved snapshot nothing is left to verify, and the state is the same.
    let resumed = audit(&VerifyOptions {
        from_snapshot: Some(snap),
        ..options("clean")
    })
    .await;
    assert!(resumed.ok, "{}", resumed.to_text());
    assert_eq!(resumed.records, 0);
    assert_eq!(
        resumed.resumed.as_ref().unwrap().from_offset,
        full.end_offset
    );
    assert_eq!(resumed.accounts, full.accounts);
    assert_eq!(resumed.requests, full.requests);
}

#[tokio::test]
async fn a_snapshot_of_a_clean_prefix_still_catches_tampering_in_the_tail() {
    // The fixtures share their history up to the tampered record, so a snapshot of the clean
    // log's first records is a valid start for the tampered one.
    let want = manifest()["unqualified-node"]["offset"].as_u64().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let snap = tmp.path().join("prefix.snapshot");
    // A prefix: fold the clean log up to (not including) the tampered offset.
    let reader = prlx_events::log::LogUrl::parse(&options("clean").log)
        .unwrap()
        .open_reader()
        .unwrap();
    let mut fold = prlx_projections::Fold::<prlx_projections::CoordinatorState>::default();
    let records = prlx_events::log::LogReader::read(&reader, 0, want as usize)
        .await
        .unwrap();
    for r in records {
        let env = prlx_events::Envelope::decode(&r.payload).unwrap();
        fold.feed(r.offset, &env).unwrap();
    }
    prlx_projections::snapshot::Snapshot::of(&fold)
        .save(&snap)
        .unwrap();
    let report = audit(&VerifyOptions {
        from_snapshot: Some(snap),
        ..options("unqualified-node")
    })
    .await;
    assert!(!report.ok);
    assert_eq!(report.divergence.unwrap().offset, want);
    assert_eq!(report.records, 0);
}

#[tokio::test]
async fn a_log_that_cannot_be_read_is_an_error_not_a_divergence() {
    let tmp = tempfile::tempdir().unwrap();
    let err = verify(
        &VerifyOptions {
            log: format!("file://{}", tmp.path().join("nothing-here").display()),
            ..VerifyOptions::default()
        },
        |_| (),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, VerifyError::Log(_)), "{err}");
    let err = verify(
        &VerifyOptions {
            from_snapshot: Some(tmp.path().join("missing.snapshot")),
            ..options("clean")
        },
        |_| (),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, VerifyError::UnusableSnapshot(_)), "{err}");
}
