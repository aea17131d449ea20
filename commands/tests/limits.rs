//! Length caps at intake, Given/When/Then: every string from outside that would reach an event
//! is refused naming its field when it is longer than any honest caller needs; at the cap it
//! is taken.

use prlx_commands::decide::limits::{
    MAX_KEY_PEM_BYTES, MAX_MODELS_PER_NODE, MAX_NAME_BYTES, MAX_REFERENCE_BYTES,
};
use prlx_commands::decide::{Command, Submission};
use prlx_commands::testkit::fixtures::{self, model, registration};
use prlx_commands::testkit::given;
use prlx_events::crypto::{node_id_of, public_key_pem};
use prlx_events::event::*;
use prlx_events::{AccountId, Event, Hash32};

fn catalog() -> Event {
    fixtures::catalog(vec![model("chat", Hash32::of(b"model"))]).into()
}

fn long(n: usize) -> String {
    "x".repeat(n)
}

#[test]
fn deposits_refuse_an_account_or_reference_over_the_cap() {
    let deposit = |account: String, tx_ref: String| Command::DepositCredits {
        account: AccountId(account),
        tx_ref,
        amount: 5,
    };
    given([catalog()])
        .when(deposit(long(MAX_NAME_BYTES + 1), "0x1".into()))
        .then_reject(RejectionCode::MalformedRequest, "account");
    given([catalog()])
        .when(deposit("ai".into(), long(MAX_REFERENCE_BYTES + 1)))
        .then_reject(RejectionCode::MalformedRequest, "tx_ref");
    let at_cap = given([catalog()])
        .when(deposit(long(MAX_NAME_BYTES), long(MAX_REFERENCE_BYTES)))
        .events();
    assert_eq!(at_cap.len(), 1, "{at_cap:?}");
}

#[test]
fn submissions_refuse_each_string_over_the_cap_naming_it() {
    let base = fixtures::submission("chat", b"hi");
    let cases: Vec<(Submission, &str)> = vec![
        (
            Submission {
                credit_account: AccountId(long(MAX_NAME_BYTES + 1)),
                ..base.clone()
            },
            "credit_account",
        ),
        (
            Submission {
                model: long(MAX_NAME_BYTES + 1),
                ..base.clone()
            },
            "model",
        ),
        (
            Submission {
                workload_class: long(MAX_NAME_BYTES + 1),
                ..base.clone()
            },
            "workload_class",
        ),
        (
            Submission {
                client_pubkey: long(MAX_KEY_PEM_BYTES + 1),
                ..base.clone()
            },
            "client_pubkey",
        ),
        (
            Submission {
                idempotency_key: Some(long(MAX_REFERENCE_BYTES + 1)),
                ..base.clone()
            },
            "idempotency_key",
        ),
    ];
    for (submission, field) in cases {
        let rejection = given([catalog()])
            .when(Command::SubmitRequest(Box::new(submission)))
            .then_reject(RejectionCode::MalformedRequest, field);
        assert!(rejection.message.contains("at most"), "{rejection}");
    }
}

#[test]
fn registrations_refuse_too_many_models_and_long_names() {
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let public = key.to_public_key();
    let base = NodeRegistered {
        model_hashes: [("chat".to_owned(), Hash32::of(b"model"))].into(),
        ..registration(node_id_of(&public), public_key_pem(&public))
    };
    let register = |n: NodeRegistered| Command::RegisterNode(Box::new(n));
    given([catalog()])
        .when(register(NodeRegistered {
            models: (0..=MAX_MODELS_PER_NODE).map(|i| format!("m{i}")).collect(),
            ..base.clone()
        }))
        .then_reject(RejectionCode::MalformedRequest, "models");
    given([catalog()])
        .when(register(NodeRegistered {
            models: vec!["chat".into(), long(MAX_NAME_BYTES + 1)],
            ..base.clone()
        }))
        .then_reject(RejectionCode::MalformedRequest, "models[1]");
    let mut class = base.execution_class.clone();
    class.driver = long(MAX_NAME_BYTES + 1);
    given([catalog()])
        .when(register(NodeRegistered {
            execution_class: class,
            ..base.clone()
        }))
        .then_reject(RejectionCode::MalformedRequest, "execution_class.driver");
    let taken = given([catalog()]).when(register(base)).events();
    assert_eq!(taken.len(), 1, "{taken:?}");
}
