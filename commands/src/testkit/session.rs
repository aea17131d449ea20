//! A node of the real coordinator shell as its daemon sees it: registered with a real key,
//! holding dispatches, its session key unwrapped from its grant on the log. For tests of what
//! a node reports (the HTTP intake in process, the auditor on the log the shell writes).

use chrono::Utc;
use prlx_events::crypto::{accept_session, node_id_of, public_key_pem, SessionGrant, SessionKey};
use prlx_events::event::{NodeRegistered, TaskDispatched};
use prlx_events::log::Batches;
use prlx_events::{Envelope, Event, Hash32, NodeId};
use rsa::rand_core::OsRng;
use rsa::{RsaPrivateKey, RsaPublicKey};

use super::fixtures;
use crate::decide::Command;
use crate::shell::Coordinator;

/// A registered node's key, id and session.
pub struct SessionNode {
    pub key: RsaPrivateKey,
    pub id: NodeId,
    pub session: SessionKey,
    pub epoch: u64,
}

impl std::fmt::Debug for SessionNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("SessionNode")
            .field("id", &self.id)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

/// Publishes a catalog of one model, `chat` (file `[1; 32]`), and deposits 10_000 on
/// [`fixtures::account`].
pub async fn publish_chat_and_credit(coord: &mut Coordinator) {
    let setup = [
        Command::PublishCatalog(fixtures::catalog(vec![fixtures::model(
            "chat",
            Hash32([1; 32]),
        )])),
        Command::DepositCredits {
            account: fixtures::account(),
            tx_ref: "bank-1".into(),
            amount: 10_000,
        },
    ];
    for command in setup {
        coord.execute(command).await.unwrap();
    }
}

/// Every event on `coord`'s log, in order.
pub async fn logged_events(coord: &Coordinator) -> Vec<Event> {
    let reader = coord.writer().reader();
    let mut batches = Batches::new(&reader, 0);
    let mut events = Vec::new();
    while let Some(batch) = batches.next().await.unwrap() {
        events.extend(
            batch
                .iter()
                .map(|r| Envelope::decode(&r.payload).unwrap().event),
        );
    }
    events
}

/// On a coordinator signing with `coordinator_key`'s private half, after
/// [`publish_chat_and_credit`]: registers a fresh node with `slots` slots (tier 1, `chat`),
/// lets housekeeping grant its session, and submits one `chat` request of each prompt. Answers
/// the node, its session taken from its grant as the daemon takes it, and the dispatches it
/// got, in log order.
pub async fn node_with_dispatches(
    coord: &mut Coordinator,
    coordinator_key: &RsaPublicKey,
    slots: u32,
    prompts: &[&str],
) -> (SessionNode, Vec<TaskDispatched>) {
    let key = RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
    let id = node_id_of(&key.to_public_key());
    let registration = NodeRegistered {
        slots,
        // The catalog's file for `chat` ([`publish_chat_and_credit`]).
        model_hashes: [("chat".to_owned(), Hash32([1; 32]))].into(),
        ..fixtures::registration(id, public_key_pem(&key.to_public_key()))
    };
    let outcome = coord
        .execute(Command::RegisterNode(Box::new(registration)))
        .await
        .unwrap();
    assert!(
        matches!(outcome, crate::shell::Outcome::Appended(_)),
        "the node registers: {outcome:?}"
    );
    coord.note_registration();
    coord.housekeeping(Utc::now()).await.unwrap();
    for prompt in prompts {
        let cmd = coord.submission(
            fixtures::submission("chat", prompt.as_bytes()),
            prompt.as_bytes(),
        );
        coord.execute(cmd).await.unwrap();
        coord.housekeeping(Utc::now()).await.unwrap();
    }
    let events = logged_events(coord).await;
    let grant = events
        .iter()
        .find_map(|e| match e {
            Event::SessionKeyIssued(g) if g.node_id == id => Some(g.clone()),
            _ => None,
        })
        .expect("the node is granted a session");
    let session = accept_session(
        coordinator_key,
        &key,
        &SessionGrant {
            node_id: id,
            epoch: grant.epoch,
            wrapped_key: grant.wrapped_key.0,
            signature: grant.signature.0,
        },
    )
    .unwrap();
    let dispatches = events
        .into_iter()
        .filter_map(|e| match e {
            Event::TaskDispatched(d) if d.node_id == id => Some(d),
            _ => None,
        })
        .collect();
    let node = SessionNode {
        key,
        id,
        session,
        epoch: grant.epoch,
    };
    (node, dispatches)
}
