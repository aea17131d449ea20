//! Many requests accepted and settled the cheap way, through the shell's own housekeeping: no
//! node serves their model, so once the catalog's `node_timeout_seconds` (1 s here) has passed
//! they fail and are refunded in full. For tests of what happens after settled requests leave
//! the state's window (the request index, the auditor's keys).

use std::time::Duration;

use chrono::Utc;
use prlx_events::Hash32;

use super::fixtures::{account, catalog, model, unsigned_submission};
use crate::decide::Command;
use crate::shell::{Coordinator, Outcome};

/// The model the requests ask for, which no node serves.
pub const MODEL: &str = "chat";

/// Request `i`'s submission: its own prompt and idempotency key (`key-{i}`), signed by
/// [`account`].
pub fn keyed_submission(i: usize, max_tokens: u32) -> Command {
    let mut s = unsigned_submission(MODEL, format!("prompt {i}").as_bytes());
    s.idempotency_key = Some(format!("key-{i}"));
    s.max_tokens = max_tokens;
    Command::SubmitRequest(Box::new(s.signed()))
}

/// Publishes the catalog, credits [`account`], accepts `n` requests ([`keyed_submission`]
/// `0..n`) and settles them all (the coordinator needs its signing key for housekeeping).
pub async fn settle(coord: &mut Coordinator, n: usize) {
    let mut cat = catalog(vec![model(MODEL, Hash32([1; 32]))]);
    cat.node_timeout_seconds = 1;
    coord.execute(Command::PublishCatalog(cat)).await.unwrap();
    coord
        .execute(Command::DepositCredits {
            account: account(),
            tx_ref: "0x1".into(),
            amount: 1_000_000_000,
        })
        .await
        .unwrap();
    for i in 0..n {
        let outcome = coord.execute(keyed_submission(i, 16)).await.unwrap();
        assert!(matches!(outcome, Outcome::Appended(_)), "{outcome:?}");
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    coord.housekeeping(Utc::now()).await.unwrap();
    assert_eq!(
        coord.state().settled_total() as usize,
        n,
        "every request settled"
    );
}
