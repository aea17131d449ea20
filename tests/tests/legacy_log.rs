//! A record an older version wrote and this one would refuse at intake: a node registered with
//! a 512-bit key, already on the log. The rule (docs/protocol.md, step 1): the coordinator
//! folds it, cannot grant that node a session, and records a decision that neutralises it
//! (`NodeDrained`), so the node never holds back work another node can take. No crash, no
//! loop, also across a restart.

use chrono::Utc;
use prlx_commands::decide::Command;
use prlx_commands::shell::Coordinator;
use prlx_commands::testkit::fixtures;
use prlx_events::crypto::{node_id_of, public_key_pem};
use prlx_events::event::NodeRegistered;
use prlx_events::log::LogUrl;
use prlx_events::{Envelope, Event, Hash32, Header, NodeId};
use prlx_tests::harness::client::read_log;
use prlx_tests::harness::inproc::open_coordinator;
use prlx_tests::tamper::write_log;
use rsa::rand_core::OsRng;
use rsa::RsaPrivateKey;

async fn open(url: &LogUrl, signing: &RsaPrivateKey) -> Coordinator {
    open_coordinator(url)
        .await
        .with_signing_key(signing.clone())
}

fn legacy(seq: u64, event: impl Into<Event>) -> Vec<u8> {
    Envelope::new(
        Header {
            event_id: uuid::Uuid::from_u128(u128::from(seq) + 1),
            recorded_at: Utc::now(),
            producer: "coordinator/0".into(),
            sequence: seq,
            correlation_id: Some(uuid::Uuid::from_u128(u128::from(seq) + 1)),
            causation_id: None,
            prev: None,
        },
        event,
    )
    .encode()
}

async fn events(url: &str) -> Vec<Event> {
    read_log(url)
        .await
        .iter()
        .map(|(_, p)| Envelope::decode(p).unwrap().event)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_registered_with_a_512_bit_key_on_an_old_log_is_drained_and_work_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let url_text = format!("file://{}", path.display());
    let url = LogUrl::parse(&url_text).unwrap();
    // What an older coordinator recorded: a catalog, then a node with a key it never checked.
    let weak = RsaPrivateKey::new(&mut OsRng, 512).unwrap().to_public_key();
    let weak_id = node_id_of(&weak);
    write_log(
        &path,
        &[
            legacy(
                0,
                fixtures::catalog(vec![fixtures::model("chat", Hash32([1; 32]))]),
            ),
            legacy(1, fixtures::registration(weak_id, public_key_pem(&weak))),
        ],
    )
    .await;

    let signing = RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
    let mut coord = open(&url, &signing).await;
    coord
        .execute(Command::DepositCredits {
            account: fixtures::account(),
            tx_ref: "bank-1".into(),
            amount: 10_000,
        })
        .await
        .unwrap();
    let good = RsaPrivateKey::new(&mut OsRng, 2048)
        .unwrap()
        .to_public_key();
    let good_id = node_id_of(&good);
    let reg: NodeRegistered =
        fixtures::with_chat_file(fixtures::registration(good_id, public_key_pem(&good)));
    coord
        .execute(Command::RegisterNode(Box::new(reg)))
        .await
        .unwrap();
    coord.note_registration();
    coord.housekeeping(Utc::now()).await.unwrap();
    let cmd = coord.submission(fixtures::submission("chat", b"hello"), b"hello");
    coord.execute(cmd).await.unwrap();
    coord.housekeeping(Utc::now()).await.unwrap();

    let log = events(&url_text).await;
    let drained: Vec<NodeId> = log
        .iter()
        .filter_map(|e| match e {
            Event::NodeDrained(d) => Some(d.node_id),
            _ => None,
        })
        .collect();
    assert_eq!(drained, [weak_id], "the weak node drains, once");
    let dispatched: Vec<NodeId> = log
        .iter()
        .filter_map(|e| match e {
            Event::TaskDispatched(d) => Some(d.node_id),
            _ => None,
        })
        .collect();
    assert_eq!(
        dispatched,
        [good_id],
        "the work goes to the node it can be sent to"
    );

    // A restart folds the same log and decides nothing more about the weak node.
    drop(coord);
    let mut coord = open(&url, &signing).await;
    coord.note_registration();
    coord.housekeeping(Utc::now()).await.unwrap();
    drop(coord);
    let again = events(&url_text).await;
    let drains = again
        .iter()
        .filter(|e| matches!(e, Event::NodeDrained(_)))
        .count();
    assert_eq!(drains, 1);
}
