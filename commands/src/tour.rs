//! `prlx-coordinator demo`: a model-free tour of intake on a log: the catalog published,
//! deposits credited once (a repeated on-chain transaction is a no-op), submissions accepted,
//! an idempotent retry, each kind of rejection, and what the state holds afterwards. Safe to
//! run again on the same log: the run number keeps references fresh.

use std::io::Write;

use prlx_events::event::{IntakeSource, Priority, Sealed};
use prlx_events::{AccountId, Hash32};

use crate::consent::sign_submission;
use crate::decide::{Command, Submission, INFERENCE};
use crate::shell::Outcome;
use crate::startup::{open_coordinator, OpenOptions, StartupError};

/// Writes one line of the tour's report; a closed output ends the tour.
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {
        writeln!($out, $($arg)*).map_err(|source| StartupError::Io {
            what: "writing the tour's report".into(),
            source,
        })?
    };
}

/// Runs the tour on the log `open` names, submitting `requests` valid requests, and writes its
/// report to `out`.
pub async fn run(
    open: &OpenOptions,
    requests: u32,
    out: &mut (impl Write + Send),
) -> Result<(), StartupError> {
    let mut coord = open_coordinator(open).await?;

    // Deposits observed on-chain. The run number keeps tx refs fresh when the demo runs again.
    let run = coord.state().deposits.len() as u64;
    // Accounts are chain addresses, and every submission is signed by its account's key:
    // anvil's public dev keys 2 and 3 (this tour is a development tool).
    use prlx_chain::devchain::{dev_role, dev_signer};
    let big_key = dev_signer(dev_role::CLIENT);
    let small_key = dev_signer(dev_role::FIRST_OPERATOR);
    let big = AccountId(prlx_chain::record::hex0x(big_key.address().as_slice()));
    let small = AccountId(prlx_chain::record::hex0x(small_key.address().as_slice()));
    let domain = coord.consent_domain();
    for (account, tx, amount) in [
        (&big, format!("0xdemo-{run}"), 1_000_000),
        (&big, format!("0xdemo-{run}"), 1_000_000),
        (&small, format!("0xsmall-{run}"), 50),
    ] {
        let outcome = coord
            .execute(Command::DepositCredits {
                account: account.clone(),
                tx_ref: tx.clone(),
                amount,
            })
            .await?;
        say!(
            out,
            "deposit {tx} of {amount} to {account}: {}",
            describe(&outcome)
        );
    }

    let unsigned = |account: &AccountId, key: Option<String>, prompt: &str| Submission {
        idempotency_key: key,
        source: IntakeSource::Local,
        workload_class: INFERENCE.into(),
        model: "oss-chat-v1".into(),
        hardware_tier: 1,
        priority: Priority::Standard,
        deadline_seconds: 60,
        max_tokens: 32,
        credit_account: account.clone(),
        client_pubkey: String::new(),
        payload_hash: Hash32::of(prompt.as_bytes()),
        earlier: None,
        plan: None,
        computed_payload_hash: Hash32([0; 32]),
        sealed_payload: Sealed(Vec::new()),
        consent: None,
        now: chrono::DateTime::UNIX_EPOCH,
    };
    let signed_by = |signer: &alloy::signers::local::PrivateKeySigner, mut s: Submission| {
        sign_submission(&mut s, signer, &domain);
        s
    };
    let base = |account: &AccountId, key: Option<String>, prompt: &str| {
        let signer = if *account == big {
            &big_key
        } else {
            &small_key
        };
        signed_by(signer, unsigned(account, key, prompt))
    };
    let mut accepted = 0;
    for i in 0..requests {
        let prompt = format!("Prompt {run}.{i}: what is the capital of France?");
        let cmd = coord.submission(
            base(&big, Some(format!("demo-{run}-{i}")), &prompt),
            prompt.as_bytes(),
        );
        if let Outcome::Appended(_) = coord.execute(cmd).await? {
            accepted += 1;
        }
    }
    say!(
        out,
        "submitted {requests} valid requests: {accepted} accepted"
    );

    let prompt = format!("Prompt {run}.0: what is the capital of France?");
    let retry = coord.submission(
        base(&big, Some(format!("demo-{run}-0")), &prompt),
        prompt.as_bytes(),
    );
    let outcome = coord.execute(retry).await?;
    let id = coord
        .state()
        .request_for_key(&big, &format!("demo-{run}-0"));
    say!(
        out,
        "retry with the same Idempotency-Key: {} (request {})",
        describe(&outcome),
        id.map_or("none".into(), |r| r.to_string())
    );

    let mut bad_hash = unsigned(&big, None, "something else");
    bad_hash.payload_hash = Hash32::of(b"not the payload");
    let bad_hash = signed_by(&big_key, bad_hash);
    let mut unknown_class = unsigned(&big, None, "x");
    unknown_class.workload_class = "ai.training".into();
    let unknown_class = signed_by(&big_key, unknown_class);
    let mut unknown_model = unsigned(&big, None, "x");
    unknown_model.model = "gpt-omega".into();
    let unknown_model = signed_by(&big_key, unknown_model);
    for (what, s, payload) in [
        ("unsigned", unsigned(&big, None, "x"), &b"x"[..]),
        (
            "signed by another account's key",
            signed_by(&small_key, unsigned(&big, None, "x")),
            b"x",
        ),
        ("payload hash mismatch", bad_hash, b"something else"),
        ("unknown workload class", unknown_class, b"x"),
        ("unknown model", unknown_model, b"x"),
        ("insufficient credit", base(&small, None, "x"), b"x"),
    ] {
        let cmd = coord.submission(s, payload);
        say!(out, "{what}: {}", describe(&coord.execute(cmd).await?));
    }

    let st = coord.state();
    say!(
        out,
        "\nstate after {} records:",
        coord.state_fold().next_offset()
    );
    say!(out, "  requests accepted: {}", st.requests.len());
    for (code, n) in &st.rejections {
        say!(out, "  rejected {code}: {n}");
    }
    for (account, a) in &st.accounts {
        say!(
            out,
            "  account {account}: balance {}, reserved {}, available {}",
            a.balance,
            a.reserved,
            a.available()
        );
    }
    let r = &st.rewards;
    if let (Some(p), Some((_, ends))) = (&r.policy, r.epoch_bounds(r.next_epoch)) {
        say!(
            out,
            "  rewards: {:?} mode, epochs of {} s; epoch {} settles at {ends} (serve settles \
             epochs as they end; this demo does not wait)",
            r.mode(),
            p.epoch_seconds,
            r.next_epoch
        );
    }
    Ok(())
}

fn describe(o: &Outcome) -> String {
    match o {
        Outcome::Appended(r) => format!("recorded at offsets {}..{}", r.start, r.end),
        Outcome::Unchanged => "already recorded, nothing new".into(),
        Outcome::EarlierRequest { request_id, .. } => {
            format!("a retry of request {}, settled earlier", request_id.0)
        }
        Outcome::Rejected { rejection, offset } => format!(
            "rejected {} ({}): {}{}",
            serde_json::to_value(rejection.code)
                .unwrap()
                .as_str()
                .unwrap_or("?"),
            rejection.field.as_deref().unwrap_or("-"),
            rejection.message,
            offset.map_or(String::new(), |o| format!(" [audit record at offset {o}]"))
        ),
        Outcome::Refused(why) => format!("refused, nothing recorded: {why}"),
    }
}
