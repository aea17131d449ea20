//! Intake decisions, Given/When/Then.

use prlx_commands::decide::{task_price, Command, SignedHeartbeat, Submission};
use prlx_commands::testkit::fixtures::{
    self, accepted_and_reserved, account, cpu, model, registration, t,
};
use prlx_commands::testkit::{given, History};
use prlx_events::crypto::{node_id_of, public_key_pem};
use prlx_events::event::*;
use prlx_events::{Event, Hash32, NodeId, RequestId};

fn catalog() -> Event {
    CatalogPublished {
        max_tier: 4,
        min_deadline_seconds: 5,
        max_attempts: 2,
        ..fixtures::catalog(vec![CatalogModel {
            min_tier: 2,
            base_price: 100,
            per_token_price: 3,
            max_tokens_limit: 64,
            ..model("oss-chat-v1", Hash32::of(b"model"))
        }])
    }
    .into()
}

fn deposit(amount: u64) -> Event {
    CreditsDeposited {
        tx_ref: "0x1".into(),
        ..fixtures::deposited(amount)
    }
    .into()
}

fn submission() -> Submission {
    Submission {
        idempotency_key: Some("k1".into()),
        hardware_tier: 3,
        max_tokens: 10,
        client_pubkey: "pem".into(),
        sealed_payload: Sealed(vec![1, 2, 3]),
        ..fixtures::submission("oss-chat-v1", b"payload")
    }
    .signed()
}

fn submit(s: Submission) -> Command {
    Command::SubmitRequest(Box::new(s))
}

fn accepted(id: u64, s: &Submission, price: u64) -> Vec<Event> {
    accepted_and_reserved(RequestAccepted {
        request_id: RequestId(id),
        idempotency_key: s.idempotency_key.clone(),
        source: s.source.clone(),
        workload_class: s.workload_class.clone(),
        model: s.model.clone(),
        hardware_tier: s.hardware_tier,
        priority: s.priority,
        deadline_seconds: s.deadline_seconds,
        max_tokens: s.max_tokens,
        credit_account: s.credit_account.clone(),
        client_pubkey: s.client_pubkey.clone(),
        payload_hash: s.payload_hash,
        sealed_payload: s.sealed_payload.clone(),
        price,
        consent: s.consent.clone(),
    })
}

#[test]
fn a_funded_valid_submission_is_accepted_and_its_price_reserved() {
    // (100 + 3 * 10) * 100% = 130
    given([catalog(), deposit(1_000)])
        .when(submit(submission()))
        .then_expect(accepted(0, &submission(), 130));
}

#[test]
fn request_ids_are_allocated_densely_from_the_log() {
    let first = accepted(0, &submission(), 130);
    let mut second = submission();
    second.idempotency_key = Some("k2".into());
    let mut history = vec![catalog(), deposit(1_000)];
    history.extend(first);
    given(history)
        .when(submit(second.clone()))
        .then_expect(accepted(1, &second, 130));
}

#[test]
fn a_retry_with_the_same_idempotency_key_adds_nothing() {
    let mut history = vec![catalog(), deposit(1_000)];
    history.extend(accepted(0, &submission(), 130));
    let g = given(history);
    assert_eq!(
        g.state().request_for_key(&account(), "k1"),
        Some(RequestId(0))
    );
    g.when(submit(submission())).then_expect([]);
}

#[test]
fn insufficient_credit_is_refused_and_allocates_no_id() {
    let r = given([catalog(), deposit(129)])
        .when(submit(submission()))
        .then_reject(RejectionCode::InsufficientCredit, "credit_account");
    assert!(
        r.message.contains("130") && r.message.contains("129"),
        "{}",
        r.message
    );
    // Credit already reserved by another request is not available.
    let mut history = vec![catalog(), deposit(200)];
    history.extend(accepted(0, &submission(), 130));
    let mut s = submission();
    s.idempotency_key = None;
    given(history)
        .when(submit(s))
        .then_reject(RejectionCode::InsufficientCredit, "credit_account");
}

#[test]
fn each_bad_field_is_named() {
    type Case = (fn(&mut Submission), RejectionCode, &'static str);
    let cases: Vec<Case> = vec![
        (
            |s| s.workload_class = "ai.training".into(),
            RejectionCode::UnknownWorkloadClass,
            "workload_class",
        ),
        (
            |s| s.model = "nope".into(),
            RejectionCode::UnknownModel,
            "model",
        ),
        (
            |s| s.hardware_tier = 1,
            RejectionCode::TierOutOfRange,
            "hardware_tier",
        ),
        (
            |s| s.hardware_tier = 5,
            RejectionCode::TierOutOfRange,
            "hardware_tier",
        ),
        (
            |s| s.deadline_seconds = 4,
            RejectionCode::DeadlineOutOfRange,
            "deadline_seconds",
        ),
        (
            |s| s.deadline_seconds = 601,
            RejectionCode::DeadlineOutOfRange,
            "deadline_seconds",
        ),
        (
            |s| s.max_tokens = 0,
            RejectionCode::MalformedRequest,
            "max_tokens",
        ),
        (
            |s| s.max_tokens = 65,
            RejectionCode::MalformedRequest,
            "max_tokens",
        ),
        (
            |s| s.computed_payload_hash = Hash32::of(b"other"),
            RejectionCode::PayloadHashMismatch,
            "payload_hash",
        ),
    ];
    for (break_it, code, field) in cases {
        let mut s = submission();
        break_it(&mut s);
        given([catalog(), deposit(1_000)])
            .when(submit(s))
            .then_reject(code, field);
    }
    // With no catalog at all, every model is unknown.
    given([deposit(1_000)])
        .when(submit(submission()))
        .then_reject(RejectionCode::UnknownModel, "model");
}

#[test]
fn a_deposit_is_credited_once_per_transaction() {
    let cmd = || Command::DepositCredits {
        account: account(),
        tx_ref: "0x1".into(),
        amount: 5,
    };
    given([]).when(cmd()).then_expect([deposit(5)]);
    given([deposit(5)]).when(cmd()).then_expect([]);
    given([])
        .when(Command::DepositCredits {
            account: account(),
            tx_ref: "0x2".into(),
            amount: 0,
        })
        .then_reject(RejectionCode::InvalidAmount, "amount");
    given([deposit(u64::MAX)])
        .when(Command::DepositCredits {
            account: account(),
            tx_ref: "0x2".into(),
            amount: 1,
        })
        .then_reject(RejectionCode::InvalidAmount, "amount");
}

#[test]
fn nodes_register_once_and_heartbeat_only_when_known() {
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
        .unwrap()
        .to_public_key();
    let node = NodeRegistered {
        hardware_tier: 2,
        models: vec!["oss-chat-v1".into()],
        slots: 2,
        stake: 10,
        execution_class: cpu("onnxruntime-1.32"),
        model_hashes: [("oss-chat-v1".to_owned(), Hash32::of(b"model"))].into(),
        ..registration(node_id_of(&key), public_key_pem(&key))
    };
    let id = node.node_id;
    // The id must be the key's fingerprint, and the key must be a key.
    let mut claimed = node.clone();
    claimed.node_id = NodeId(Hash32::of(b"someone else"));
    given([catalog()])
        .when(Command::RegisterNode(Box::new(claimed)))
        .then_reject(RejectionCode::MalformedRequest, "node_id");
    let mut garbage = node.clone();
    garbage.public_key_pem = "pem".into();
    given([catalog()])
        .when(Command::RegisterNode(Box::new(garbage)))
        .then_reject(RejectionCode::MalformedRequest, "public_key_pem");
    given([catalog()])
        .when(Command::RegisterNode(Box::new(node.clone())))
        .then_expect([node.clone().into()]);
    given([catalog(), node.clone().into()])
        .when(Command::RegisterNode(Box::new(node.clone())))
        .then_expect([]);
    let mut changed = node.clone();
    changed.slots = 9;
    given([catalog(), node.clone().into()])
        .when(Command::RegisterNode(Box::new(changed)))
        .then_reject(RejectionCode::NodeAlreadyRegistered, "public_key_pem");
    let mut too_big = node.clone();
    too_big.hardware_tier = 9;
    given([catalog()])
        .when(Command::RegisterNode(Box::new(too_big)))
        .then_reject(RejectionCode::TierOutOfRange, "hardware_tier");
    given([])
        .when(fixtures::heartbeat(id, t(5)))
        .then_reject(RejectionCode::UnknownNode, "node_id");
    // Registered at t(0); a heartbeat signed at t(5), recorded at t(5).
    let signed_at = |at: i64, now: i64| Command::Heartbeat {
        node_id: id,
        signed: SignedHeartbeat {
            at: t(at).timestamp(),
            signature: vec![7; 4],
        },
        now: t(now),
    };
    given([node.clone().into()])
        .when(signed_at(5, 5))
        // The signed statement is recorded with the heartbeat, for the auditor.
        .then_expect([NodeHeartbeat {
            node_id: id,
            at: Some(t(5).timestamp()),
            signature: Some(Sealed(vec![7; 4])),
        }
        .into()]);
    // Signed further than the skew allows from the time it would be recorded at.
    given([node.clone().into()])
        .when(signed_at(5, 5 + 121))
        .then_reject(RejectionCode::MalformedRequest, "at");
    // A statement not newer than the last one recorded: a replay.
    let mut h = History::from(vec![Event::from(node)]);
    h.record(t(5), [fixtures::heartbeat_recorded(id, t(5)).into()]);
    given(&h)
        .when(signed_at(5, 6))
        .then_reject(RejectionCode::MalformedRequest, "at");
}

#[test]
fn price_is_integer_and_rounds_up() {
    let m = CatalogModel {
        base_price: 1,
        max_tokens_limit: 10,
        ..model("m", Hash32([0; 32]))
    };
    assert_eq!(task_price(&m, Priority::Standard, 2), Some(3));
    assert_eq!(task_price(&m, Priority::High, 2), Some(5)); // 4.5 -> 5
    assert_eq!(task_price(&m, Priority::Low, 2), Some(3)); // 2.4 -> 3
    let huge = CatalogModel {
        per_token_price: u64::MAX,
        ..m
    };
    assert_eq!(task_price(&huge, Priority::Standard, 2), None);
}

#[test]
fn max_tokens_must_leave_room_for_a_prompt_in_the_model_s_context() {
    // The catalog's model with a context of `context_length` tokens; its `max_tokens_limit`
    // is 64, so a context of 64 is one the limit alone would let a request fill.
    let with_context = |context_length| -> Event {
        let Event::CatalogPublished(mut c) = catalog() else {
            unreachable!()
        };
        c.models[0].context_length = context_length;
        c.into()
    };
    let submit_tokens = |context_length, max_tokens| {
        given([with_context(context_length), deposit(1_000)]).when(submit(Submission {
            max_tokens,
            ..submission()
        }))
    };
    let r = submit_tokens(64, 64).then_reject(RejectionCode::MalformedRequest, "max_tokens");
    assert!(
        r.message
            .contains("oss-chat-v1 has a context of 64 tokens, prompt and output together"),
        "{r}"
    );
    assert!(r.message.contains("(at most 63)"), "{r}");
    submit_tokens(10, 10).then_reject(RejectionCode::MalformedRequest, "max_tokens");
    // One token of room is enough: the prompt takes at least one.
    assert_eq!(
        submit_tokens(64, 63).events()[0].type_name(),
        "RequestAccepted"
    );
    // Not declared (catalogs from before): only the limit holds.
    assert_eq!(
        submit_tokens(0, 64).events()[0].type_name(),
        "RequestAccepted"
    );
}

#[test]
fn a_catalog_without_a_queue_bound_is_refused() {
    let Event::CatalogPublished(c) = catalog() else {
        unreachable!()
    };
    given([])
        .when(Command::PublishCatalog(CatalogPublished {
            queue_timeout_seconds: 0,
            ..c
        }))
        .then_reject(RejectionCode::MalformedRequest, "queue_timeout_seconds");
}
