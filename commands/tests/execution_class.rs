//! Execution classes (docs/validation.md, "Execution classes"): what a node reports is
//! normalised (trimmed, lowercased, of a small vocabulary) before it is recorded, refused
//! naming the part when it has no normal form; the model file a node reports is the
//! catalog's, and replicas are drawn among nodes that run the same file. The fold refuses a
//! registration that is not in normal form or names another file.

use prlx_commands::decide::Command;
use prlx_commands::testkit::fixtures::{self, node, registration};
use prlx_commands::testkit::intake::client_pem;
use prlx_commands::testkit::sampling::{self, complete, dispatch, node_of, opened, refused, state};
use prlx_commands::testkit::{given, History};
use prlx_events::crypto::{node_id_of, parse_public_key_pem};
use prlx_events::event::*;
use prlx_events::{Event, Hash32, RequestId};
use prlx_projections::scheduler::replica_peers;

/// The catalog's file of model `chat` (in `testkit::sampling`).
const CHAT: Hash32 = Hash32([1; 32]);

fn class(device: &str, driver: &str, runtime: &str) -> ExecutionClass {
    ExecutionClass {
        device: device.into(),
        driver: driver.into(),
        runtime: runtime.into(),
    }
}

/// A registration of a real key (decide checks the id against it) serving `chat`.
fn registering(class: ExecutionClass) -> NodeRegistered {
    let key = parse_public_key_pem(client_pem()).unwrap();
    NodeRegistered {
        execution_class: class,
        model_hashes: [("chat".to_owned(), Hash32([1; 32]))].into(),
        ..registration(node_id_of(&key), client_pem().to_owned())
    }
}

fn catalog() -> Event {
    sampling::catalog(ValidationPolicy::default())
}

#[test]
fn a_reported_class_is_recorded_in_normal_form() {
    // Given a node that reports its class with padding, capitals and no driver
    let reported = registering(class(" CPU-x86_64-AVX2 ", "", "OnnxRuntime-1.22.0\n"));
    // When it registers
    let events = given([catalog()])
        .when(Command::RegisterNode(Box::new(reported.clone())))
        .events();
    // Then the log holds the class in normal form
    let normal = NodeRegistered {
        execution_class: class("cpu-x86_64-avx2", "none", "onnxruntime-1.22.0"),
        ..reported.clone()
    };
    assert_eq!(events, [normal.clone().into()]);
    // And a retry that spells it otherwise is the same registration
    let retry = registering(class("cpu-X86_64-avx2", "-", "ONNXRUNTIME-1.22.0"));
    given([catalog(), normal.into()])
        .when(Command::RegisterNode(Box::new(retry)))
        .then_expect([]);
}

#[test]
fn a_class_outside_the_vocabulary_or_charset_is_refused_naming_the_part() {
    for (class, field) in [
        (
            class("toaster", "none", "onnxruntime-1.22"),
            "execution_class.device",
        ),
        (
            class("cpu", "nvidia 550", "onnxruntime-1.22"),
            "execution_class.driver",
        ),
        (class("cpu", "none", "ort"), "execution_class.runtime"),
        (
            class("cpu", "none", "onnxruntime"),
            "execution_class.runtime",
        ),
    ] {
        given([catalog()])
            .when(Command::RegisterNode(Box::new(registering(class))))
            .then_reject(RejectionCode::MalformedRequest, field);
    }
}

#[test]
fn a_reported_model_file_must_be_the_catalogs() {
    let with = |model: &str, hash: Hash32| NodeRegistered {
        model_hashes: [(model.to_owned(), hash)].into(),
        ..registering(fixtures::cpu("onnxruntime-1.22"))
    };
    given([catalog()])
        .when(Command::RegisterNode(Box::new(with(
            "chat",
            Hash32([2; 32]),
        ))))
        .then_reject(RejectionCode::MalformedRequest, "model_hashes.chat");
    given([catalog()])
        .when(Command::RegisterNode(Box::new(with("other", CHAT))))
        .then_reject(RejectionCode::MalformedRequest, "model_hashes");
    let good = with("chat", CHAT);
    given([catalog()])
        .when(Command::RegisterNode(Box::new(good.clone())))
        .then_expect([good.into()]);
}

/// Node `n` of class cpu reporting `file` for `chat` (or none).
fn running(n: u8, file: Option<Hash32>) -> Event {
    let Event::NodeRegistered(r) = node_of(n, "cpu") else {
        unreachable!()
    };
    NodeRegistered {
        model_hashes: file.map(|f| ("chat".to_owned(), f)).into_iter().collect(),
        ..r
    }
    .into()
}

#[test]
fn replicas_are_drawn_among_nodes_that_run_the_primarys_model_file() {
    // Given three nodes of one device class: 1 and 3 report the catalog's file, 2 none
    let policy = ValidationPolicy {
        sampling_bp: 10_000,
        probation_results: 0,
        ..Default::default()
    };
    let nodes = vec![
        running(1, Some(CHAT)),
        running(2, None),
        running(3, Some(CHAT)),
    ];
    let mut h: History = opened(policy, nodes, 1);
    // When node 1's result is sampled
    let primary = dispatch(&mut h);
    assert_eq!(primary.node, node(1));
    complete(&mut h, RequestId(0), node(1), b"answer");
    // Then only node 3 is its peer, and takes the replica
    let st = state(&h);
    let req = &st.requests[&RequestId(0)];
    let class = req.replica_class.as_ref().unwrap();
    assert_eq!(class.model_sha256, Some(CHAT));
    let peers: Vec<_> = replica_peers(&st, req).iter().map(|p| p.key.node).collect();
    assert_eq!(peers, [node(3)]);
    assert_eq!(dispatch(&mut h).node, node(3));
}

#[test]
fn the_fold_refuses_a_registration_not_in_normal_form_or_naming_another_file() {
    let registered = |r: NodeRegistered| -> History { vec![catalog(), r.into()].into() };
    let base = || match node_of(1, "cpu") {
        Event::NodeRegistered(r) => r,
        _ => unreachable!(),
    };
    // The normal form folds.
    assert!(refused(&registered(base())).is_none());
    for (forged, field) in [
        (
            NodeRegistered {
                execution_class: class("CPU", "none", "onnxruntime-1.22"),
                ..base()
            },
            "execution_class",
        ),
        (
            NodeRegistered {
                execution_class: class("toaster", "none", "onnxruntime-1.22"),
                ..base()
            },
            "execution_class.device",
        ),
        (
            NodeRegistered {
                model_hashes: [("chat".to_owned(), Hash32([2; 32]))].into(),
                ..base()
            },
            "model_hashes.chat",
        ),
    ] {
        let err = refused(&registered(forged)).expect("refused");
        assert_eq!(
            (err.offset, err.error.event_type, err.error.field.as_deref()),
            (1, "NodeRegistered", Some(field)),
            "{err}"
        );
    }
}
