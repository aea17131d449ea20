//! Property: folding a log whole equals restoring a snapshot taken anywhere and folding the
//! tail; histories come from random commands run through the real `decide`.

use prlx_commands::decide::{decide, Command, Submission};
use prlx_commands::testkit::envelopes;
use prlx_commands::testkit::fixtures::{self, model, submission};
use prlx_events::event::*;
use prlx_events::log::file::{FileLogOptions, FileLogWriter};
use prlx_events::log::LogWriter;
use prlx_events::{AccountId, Envelope, Hash32};
use prlx_projections::fold::Projection;
use prlx_projections::restart::restore;
use prlx_projections::snapshot::Snapshot;
use prlx_projections::{CoordinatorState, Fold};
use proptest::prelude::*;

fn catalog() -> Command {
    Command::PublishCatalog(CatalogPublished {
        max_tier: 3,
        max_deadline_seconds: 100,
        ..fixtures::catalog(vec![CatalogModel {
            base_price: 5,
            max_tokens_limit: 50,
            ..model("m", Hash32([1; 32]))
        }])
    })
}

fn arb_command() -> impl Strategy<Value = Command> {
    let account = (0u8..3).prop_map(|a| AccountId(format!("acct-{a}")));
    prop_oneof![
        (account.clone(), 0u8..20, 1u64..500).prop_map(|(account, tx, amount)| {
            Command::DepositCredits {
                account,
                tx_ref: format!("tx-{tx}"),
                amount,
            }
        }),
        (
            account,
            proptest::option::of(0u8..10),
            0u32..60,
            any::<bool>()
        )
            .prop_map(|(account, key, max_tokens, good_hash)| {
                Command::SubmitRequest(Box::new(Submission {
                    idempotency_key: key.map(|k| format!("key-{k}")),
                    deadline_seconds: 10,
                    max_tokens,
                    credit_account: account,
                    payload_hash: Hash32([2; 32]),
                    earlier: None,
                    plan: None,
                    computed_payload_hash: if good_hash {
                        Hash32([2; 32])
                    } else {
                        Hash32([3; 32])
                    },
                    sealed_payload: Sealed(vec![9; 4]),
                    ..submission("m", &[])
                }))
            }),
    ]
}

/// Runs commands through decide and the fold, as the shell does; rejections are recorded.
fn history(commands: Vec<Command>) -> Vec<Envelope> {
    let mut state = CoordinatorState::default();
    let mut events = Vec::new();
    for cmd in std::iter::once(catalog()).chain(commands) {
        let decided = match decide(&state, cmd) {
            Ok(evs) => evs,
            Err(r) => vec![r.to_event(None, IntakeSource::Http)],
        };
        for e in decided {
            let env = envelopes([e.clone()]).pop().unwrap();
            state.apply(&env).expect("decided events fold");
            events.push(e);
        }
    }
    envelopes(events)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn fold_all_equals_snapshot_plus_tail(commands in proptest::collection::vec(arb_command(), 1..60), cut in any::<proptest::sample::Index>()) {
        let log = history(commands);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let w = FileLogWriter::open(dir.path().join("log"), FileLogOptions::default()).unwrap();
            w.append(log.iter().map(Envelope::encode).collect()).await.unwrap();
            let reader = w.reader();

            let mut all = Fold::<CoordinatorState>::default();
            for (i, env) in log.iter().enumerate() {
                all.feed(i as u64, env).unwrap();
            }
            let k = cut.index(log.len() + 1);
            let mut head = Fold::<CoordinatorState>::default();
            for (i, env) in log.iter().enumerate().take(k) {
                head.feed(i as u64, env).unwrap();
            }
            let snap = dir.path().join("coordinator.snapshot");
            Snapshot::of(&head).save(&snap).unwrap();
            let restored: Fold<CoordinatorState> = restore(&snap, &reader).await.unwrap();
            assert_eq!(restored, all);
            // Byte for byte, too.
            assert_eq!(serde_json::to_vec(&restored).unwrap(), serde_json::to_vec(&all).unwrap());
        });
    }
}

#[tokio::test]
async fn a_snapshot_of_another_fold_version_is_rebuilt_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let w = FileLogWriter::open(dir.path().join("log"), FileLogOptions::default()).unwrap();
    let log = history(vec![Command::DepositCredits {
        account: AccountId("a".into()),
        tx_ref: "t".into(),
        amount: 7,
    }]);
    w.append(log.iter().map(Envelope::encode).collect())
        .await
        .unwrap();
    // A snapshot that claims an old fold version and a wrong balance.
    let mut stale = Fold::<CoordinatorState>::default();
    for (i, env) in log.iter().enumerate() {
        stale.feed(i as u64, env).unwrap();
    }
    stale
        .state
        .accounts
        .get_mut(&AccountId("a".into()))
        .unwrap()
        .balance = 999;
    let mut snap = Snapshot::of(&stale);
    snap.fold_version = CoordinatorState::FOLD_VERSION + 1;
    let path = dir.path().join("snap");
    snap.save(&path).unwrap();
    let restored: Fold<CoordinatorState> = restore(&path, &w.reader()).await.unwrap();
    assert_eq!(restored.state.accounts[&AccountId("a".into())].balance, 7);
}

/// Loading decodes the body once; the versions are read on their own only when it does not
/// decode, so a snapshot of another build whose state no longer decodes is still "rebuild",
/// and one of this build that does not decode is still damaged.
#[test]
fn a_snapshot_that_does_not_decode_is_old_or_malformed_by_its_versions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap");
    let body = |fold_version: u32| {
        format!(
            r#"{{"format_version":{},"fold_version":{fold_version},"last_offset":3,"fold":{{"state":"a shape of some other build"}}}}"#,
            prlx_projections::snapshot::FORMAT_VERSION
        )
    };

    std::fs::write(&path, body(CoordinatorState::FOLD_VERSION + 1)).unwrap();
    assert!(Snapshot::<CoordinatorState>::load(&path).unwrap().is_none());

    std::fs::write(&path, body(CoordinatorState::FOLD_VERSION)).unwrap();
    let err = Snapshot::<CoordinatorState>::load(&path).unwrap_err();
    assert!(
        err.to_string().contains("is malformed"),
        "a snapshot of this build that does not decode is damaged: {err}"
    );

    std::fs::write(&path, b"{\"format_version\":").unwrap();
    let err = Snapshot::<CoordinatorState>::load(&path).unwrap_err();
    assert!(err.to_string().contains("is malformed"), "{err}");
}

#[test]
fn a_redelivered_event_is_dropped_not_applied_twice() {
    let log = history(vec![Command::DepositCredits {
        account: AccountId("a".into()),
        tx_ref: "t".into(),
        amount: 7,
    }]);
    let mut fold = Fold::<CoordinatorState>::default();
    for (i, env) in log.iter().enumerate() {
        fold.feed(i as u64, env).unwrap();
    }
    // The same envelope again at a later offset (a retried append that had landed).
    let last = log.last().unwrap();
    assert_eq!(
        fold.feed(log.len() as u64, last).unwrap(),
        prlx_projections::fold::Fed::Duplicate
    );
    assert_eq!(fold.state.accounts[&AccountId("a".into())].balance, 7);
    assert_eq!(fold.duplicates_dropped, 1);
}
