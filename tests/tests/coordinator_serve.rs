//! `prlx-coordinator serve` as a real process over real HTTP, through the process kit
//! ([`prlx_tests::harness`]; build it first with `cargo build --workspace --bins`): the
//! in-process intake's rejection table over a socket, the reward policy recorded at start,
//! SIGTERM, and scheduling. The same intake driven in process with `oneshot` is tested in
//! `commands/tests/http.rs`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use prlx_commands::http::MAX_BODY_BYTES;
use prlx_commands::testkit::accounts::address;
use prlx_commands::testkit::intake::{
    registration_body, rejection_cases, signed_heartbeat, signed_registration, submission, CATALOG,
    REJECTION_KEY,
};
use prlx_events::crypto::{node_id_of, public_key_pem};
use prlx_events::event::{RewardMode, RewardPolicyPublished};
use prlx_events::log::LogUrl;
use prlx_events::{AccountId, Envelope, Event, RequestId};
use prlx_projections::snapshot::catch_up;
use prlx_projections::{CoordinatorState, Fold};
use prlx_tests::harness::chain::{TestChain, CLIENT_ACCOUNT};
use prlx_tests::harness::client::{http, read};
use prlx_tests::harness::keys::new_key;
use prlx_tests::harness::launch::{coordinator_command, ServeLaunch};
use prlx_tests::harness::process::Proc;
use serde_json::json;

/// `prlx-coordinator serve` with every key and the log under `dir`, crediting from `chain`,
/// and its address.
fn spawn_serve(dir: &Path, catalog: &Path, chain: &TestChain) -> (Proc, String) {
    ServeLaunch {
        chain: chain.serve_args(),
        ..ServeLaunch::in_dir(dir, catalog, "serve-test/1")
    }
    .spawn("coordinator")
}

/// [`submission`] charged to the test chain's client.
fn client_submission(prompt: &str) -> serde_json::Value {
    submission(CLIENT_ACCOUNT, prompt)
}

/// The same rejection table as the in-process test, over a real socket to a real
/// `serve` process: status, code and field, and nothing accepted.
#[tokio::test]
async fn every_rejection_over_real_http() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("catalog.json");
    std::fs::write(&catalog, CATALOG).unwrap();
    let chain = TestChain::start(dir.path()).await;
    let (_child, addr) = spawn_serve(dir.path(), &catalog, &chain);
    chain.fund(&addr, 10_000, 10_000).await;
    for (mut body, status, code, field, _) in rejection_cases() {
        if body["credit_account"] == address("ai") {
            body["credit_account"] = json!(CLIENT_ACCOUNT);
        }
        let body = chain.signed(body, REJECTION_KEY);
        let (got, answer) = http(&addr, "POST", "/v1/requests", Some(&body), None).await;
        assert_eq!(got, status.as_u16(), "{code}/{field}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{answer}");
        assert_eq!(answer["error"]["field"], field, "{answer}");
    }
    // Nobody credits an account or moves stake over the wire: the endpoints that did are
    // gone, and a registration declaring stake is refused naming the field.
    let claim = json!({"tx_ref": "0x1", "amount": 10_000});
    let (got, _) = http(
        &addr,
        "POST",
        &format!("/v1/accounts/{CLIENT_ACCOUNT}/deposits"),
        Some(&claim),
        None,
    )
    .await;
    assert_eq!(got, 404, "no deposit endpoint");
    let node = "0".repeat(64);
    for verb in ["stake", "unstake"] {
        let (got, _) = http(
            &addr,
            "POST",
            &format!("/v1/nodes/{node}/{verb}"),
            Some(&json!({"amount": 5})),
            None,
        )
        .await;
        assert!(got == 404 || got == 405, "{verb}: {got}");
    }
    let key = new_key().to_public_key();
    let declared = json!({
        "public_key_pem": public_key_pem(&key), "hardware_tier": 1, "models": ["oss-chat-v1"],
        "slots": 1, "stake": 1_000,
        "execution_class": {"device": "cpu", "driver": "-", "runtime": "onnxruntime-1.22.0"},
    });
    let (got, answer) = http(&addr, "POST", "/v1/nodes", Some(&declared), None).await;
    assert_eq!(
        (got, &answer["error"]["field"]),
        (400, &json!("stake")),
        "{answer}"
    );
    let (_, account) = read(
        &addr,
        &format!("/v1/accounts/{CLIENT_ACCOUNT}"),
        &chain.read_token(),
    )
    .await;
    assert_eq!(
        (&account["balance"], &account["reserved"]),
        (&json!(10_000), &json!(0)),
        "only the chain deposit is credited, and nothing was accepted: {account}"
    );
    // An oversized body is refused whole.
    let mut big = chain.signed(client_submission("x"), "big");
    big["prompt"] = json!("x".repeat(MAX_BODY_BYTES + 1));
    assert_eq!(
        http(&addr, "POST", "/v1/requests", Some(&big), None)
            .await
            .0,
        413
    );
}

/// `--reward-policy` and `--reward-mode` at start (through `demo`, which opens the
/// coordinator as `serve` does and exits): recorded once, kept on restart, a different
/// or a bad policy refused naming the field.
#[tokio::test]
async fn the_reward_policy_and_mode_are_recorded_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = format!("file://{}", dir.path().join("log").display());
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../config");
    let start = |extra: &[&str]| {
        let out = coordinator_command()
            .args(["demo", "--requests", "1", "--log", &log])
            .arg("--key-file")
            .arg(dir.path().join("key"))
            .arg("--catalog")
            .arg(format!("{config}/catalog.json"))
            .args(extra)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        (out.status.code(), text)
    };
    let fold = || async {
        let url = LogUrl::parse(&log).unwrap();
        let mut fold = Fold::<CoordinatorState>::default();
        catch_up(&mut fold, &url.open_reader().unwrap())
            .await
            .unwrap();
        fold.state.rewards
    };
    let demo_policy = format!("{config}/rewards-demo.json");

    let (code, out) = start(&[
        "--reward-policy",
        &demo_policy,
        "--reward-mode",
        "steady-state",
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("epochs of 10 s"), "{out}");
    let rewards = fold().await;
    assert_eq!(rewards.policy.as_ref().unwrap().epoch_seconds, 10);
    assert_eq!(rewards.mode(), RewardMode::SteadyState);
    assert_eq!(rewards.mode_changes.len(), 1);

    // Again with the same settings, or none: nothing new.
    for extra in [
        &[
            "--reward-policy",
            &demo_policy,
            "--reward-mode",
            "steady-state",
        ][..],
        &[],
    ] {
        let (code, out) = start(extra);
        assert_eq!(code, Some(0), "{out}");
        assert_eq!(fold().await, rewards);
    }

    let (code, out) = start(&["--reward-policy", &format!("{config}/rewards.json")]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("another reward policy (epoch_seconds: log 10, given 86400)"),
        "{out}"
    );
    let bad = dir.path().join("bad.json");
    let mut policy = serde_json::to_value(RewardPolicyPublished::default()).unwrap();
    policy["uptime_slot_seconds"] = json!(7);
    std::fs::write(&bad, policy.to_string()).unwrap();
    let (code, out) = start(&["--reward-policy", bad.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("bad.json: uptime_slot_seconds: must be positive and divide epoch_seconds"),
        "{out}"
    );

    let (code, out) = start(&["--reward-mode", "bootstrap"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(fold().await.mode(), RewardMode::Bootstrap);
}

#[tokio::test]
async fn serve_takes_real_http_and_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let catalog = dir.path().join("catalog.json");
    std::fs::write(&catalog, CATALOG).unwrap();
    let chain = TestChain::start(dir.path()).await;
    let (mut child, addr) = spawn_serve(dir.path(), &catalog, &chain);
    assert!(!addr.ends_with(":0"), "the real port is printed: {addr}");
    chain.fund(&addr, 5_000, 5_000).await;
    let prompt = "the plaintext prompt must never reach the log";
    let (status, accepted) = http(
        &addr,
        "POST",
        "/v1/requests",
        Some(&chain.signed(client_submission(prompt), "serve-1")),
        Some("serve-1"),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["request_id"].as_u64().unwrap();
    let (status, fetched) = read(&addr, &format!("/v1/requests/{id}"), &chain.read_token()).await;
    assert_eq!(status, 200);
    assert_eq!(fetched["price"], accepted["price"]);
    assert_eq!(fetched["reserved"], accepted["price"]);

    let pid = child.pid().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(status) = child.try_wait() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running 30 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(exit.code(), Some(0), "{exit:?}");

    // What it acknowledged is on the log: fold it again from the start.
    let url = LogUrl::parse(&format!("file://{}", log_dir.display())).unwrap();
    let reader = url.open_reader().unwrap();
    let mut fold = Fold::<CoordinatorState>::default();
    catch_up(&mut fold, &reader).await.unwrap();
    let request = &fold.state.requests[&RequestId(id)];
    let client = AccountId(CLIENT_ACCOUNT.into());
    assert_eq!(request.account, client);
    assert_eq!(Some(request.price), accepted["price"].as_u64());
    assert_eq!(
        fold.state.request_for_key(&client, "serve-1"),
        Some(RequestId(id))
    );
    assert_eq!(fold.state.accounts[&client].balance, 5_000);

    let mut segments = 0;
    for entry in std::fs::read_dir(&log_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "seg") {
            segments += 1;
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(prompt.len()).any(|w| w == prompt.as_bytes()),
                "{} holds the plaintext prompt",
                path.display()
            );
            assert!(
                !bytes.windows(16).any(|w| w == b"must never reach"),
                "{} holds part of the prompt",
                path.display()
            );
        }
    }
    assert!(segments > 0, "no .seg files in {}", log_dir.display());
}

/// Scheduling over real HTTP to a real `serve`: best fit (the smallest tier that fits,
/// with its reasons on the log), then capacity (the next request goes to the bigger node),
/// then queueing (no capable node has a slot; a node too small never gets one).
#[tokio::test]
async fn best_fit_then_capacity_then_queueing_over_real_http() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("catalog.json");
    std::fs::write(&catalog, CATALOG).unwrap();
    let chain = TestChain::start(dir.path()).await;
    let (_child, addr) = spawn_serve(dir.path(), &catalog, &chain);
    let mut ids = Vec::new();
    for tier in [2, 4, 3] {
        // Signed by its key, as `prlx-node run` registers, and up (a heartbeat) to take work.
        let private = new_key();
        let key = private.to_public_key();
        let node = signed_registration(&private, registration_body(&key, tier));
        let (status, body) = http(&addr, "POST", "/v1/nodes", Some(&node), None).await;
        assert_eq!(status, 201, "{body}");
        let id = node_id_of(&key);
        let path = format!("/v1/nodes/{}/heartbeat", id.0.to_hex());
        let beat = signed_heartbeat(&private, id);
        let (status, body) = http(&addr, "POST", &path, Some(&beat), None).await;
        assert_eq!(status, 204, "{body}");
        ids.push((tier, id));
    }
    let node_of = |tier: u8| ids.iter().find(|(t, _)| *t == tier).unwrap().1;
    chain.fund(&addr, 10_000, 10_000).await;
    for i in 0..3 {
        let (status, body) = http(
            &addr,
            "POST",
            "/v1/requests",
            Some(&chain.signed(client_submission(&format!("prompt {i}")), &format!("k-{i}"))),
            None,
        )
        .await;
        assert_eq!(status, 202, "{body}");
    }
    // The log, read from this process while the coordinator writes it.
    let url = LogUrl::parse(&format!("file://{}", dir.path().join("log").display())).unwrap();
    let reader = url.open_reader().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let scheduled = loop {
        let records = prlx_events::log::LogReader::read(&reader, 0, 10_000)
            .await
            .unwrap();
        let scheduled: Vec<_> = records
            .iter()
            .filter_map(|r| match Envelope::decode(&r.payload).unwrap().event {
                Event::RequestScheduled(s) => Some(s),
                _ => None,
            })
            .collect();
        if scheduled.len() >= 2 || std::time::Instant::now() > deadline {
            break scheduled;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(scheduled.len(), 2, "two dispatches: {scheduled:?}");
    let first = &scheduled[0];
    assert_eq!(first.task_id.request, RequestId(0));
    assert_eq!(
        first.node_id,
        node_of(3),
        "tier 3 fits a tier-3 request best"
    );
    assert_eq!(first.candidates_considered, 2, "tier 2 is not a candidate");
    let reasons: Vec<(u8, u32)> = first
        .ranked
        .iter()
        .map(|c| (c.hardware_tier, c.free_slots))
        .collect();
    assert_eq!(reasons, [(3, 1), (4, 1)], "the reasons, best first");
    assert_eq!(scheduled[1].task_id.request, RequestId(1));
    assert_eq!(scheduled[1].node_id, node_of(4), "the tier-3 node is busy");
    let (_, third) = read(&addr, "/v1/requests/2", &chain.read_token()).await;
    assert_eq!(third["stage"], "queued", "{third}");
    assert_eq!(third["attempts"], 0);
    assert!(
        scheduled.iter().all(|s| s.node_id != node_of(2)),
        "the tier-2 node is too small for every request"
    );
}

/// A 512-bit key, node's or client's, is refused at intake naming the field, and the
/// coordinator keeps serving, also after a restart on the same log. Before keys were bounded,
/// such a node made it panic wrapping the node's session key, and such a client at release;
/// the node's record on the log made every restart panic again.
#[tokio::test]
async fn keys_of_512_bits_are_refused_and_the_coordinator_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("catalog.json");
    std::fs::write(&catalog, CATALOG).unwrap();
    let small = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 512).unwrap();
    let small_pem = public_key_pem(&small.to_public_key());
    let node = json!({
        "public_key_pem": small_pem,
        "hardware_tier": 1,
        "models": ["oss-chat-v1"],
        "slots": 1,
        "execution_class": {"device": "cpu", "driver": "-", "runtime": "onnxruntime-1.22.0"},
    });
    let mut request = client_submission("hello");
    request["client_pubkey"] = json!(small_pem);
    let chain = TestChain::start(dir.path()).await;
    let request = chain.signed(request, "small-key");
    for round in ["first start", "after a restart"] {
        let (mut child, addr) = spawn_serve(dir.path(), &catalog, &chain);
        if round == "first start" {
            chain.fund(&addr, 10_000, 10_000).await;
        }

        let (status, body) = http(&addr, "POST", "/v1/nodes", Some(&node), None).await;
        assert_eq!(status, 400, "{round}: {body}");
        assert_eq!(body["error"]["field"], "public_key_pem", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("512 bits"), "{message}");

        let (status, body) = http(&addr, "POST", "/v1/requests", Some(&request), None).await;
        assert_eq!(status, 400, "{round}: {body}");
        assert_eq!(body["error"]["field"], "client_pubkey", "{body}");

        // Still serving: the next command is answered, and the process has not exited.
        let (status, _) = http(&addr, "GET", "/healthz", None, None).await;
        assert_eq!(status, 200, "{round}");
        let (status, nodes) = http(&addr, "GET", "/v1/nodes", None, None).await;
        assert_eq!((status, nodes), (200, json!([])), "{round}");
        assert!(
            child.try_wait().is_none(),
            "{round}: the coordinator exited"
        );
        child.signal("-TERM");
        assert_eq!(
            child.wait_exit(Duration::from_secs(30)).code(),
            Some(0),
            "{round}"
        );
    }
}
