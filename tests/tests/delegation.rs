//! Delegated spending with real processes (the process kit: `cargo build --workspace --bins`
//! and scripts/setup-models.sh first): the client's account, funded on a private chain,
//! delegates a spending limit to a gateway key with `prlx-client delegate`; the gateway runs
//! `prlx-client --delegation FILE` with its own key, gets its result from a real node and
//! reads it with its own read-access token; past the limit it is refused; a stranger reads
//! nothing; the account revokes the delegation (`prlx-client revoke`) and the gateway is
//! refused; the account signs two prompts once (`--batch-consent`); and the auditor verifies
//! the log, delegation, revocation and batch and all.

use std::process::Command;

use prlx_tests::harness::bins::workspace_bin;
use prlx_tests::harness::client::read;
use prlx_tests::harness::cluster::FileCluster;
use prlx_tests::harness::models::{tiny_catalog, TINY};

/// The gateway's key (the client's account on every test chain is anvil's dev account 2),
/// kept in a file as an operator keeps one.
const GATEWAY_KEY: &str = "0x5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn a_gateway_spends_under_its_delegation_within_the_limit_and_no_further() {
    let cluster = FileCluster::start(&tiny_catalog(&[TINY], 5), "delegation-test/1");
    cluster.deposit(1_000);
    let (_node, _) = cluster.spawn_node("node", &[]);
    let dir = cluster.dir.path();
    let gateway_key = dir.join("gateway.key");
    std::fs::write(&gateway_key, GATEWAY_KEY).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&gateway_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let gateway = prlx_chain::keyfile::read_key_file(&gateway_key).unwrap();
    let gateway_address = prlx_chain::record::hex0x(gateway.address().as_slice());
    let client = || {
        let mut cmd = Command::new(workspace_bin("prlx-client"));
        cmd.args(["--coordinator", &cluster.url])
            .arg("--coordinator-cert")
            .arg(&cluster.cert);
        cmd
    };

    // The account delegates 30 credits for an hour: one request of 8 tokens (10 + 8).
    let delegation = dir.join("delegation.json");
    let (ok, out) = run(client()
        .args([
            "--dev-account",
            "2",
            "delegate",
            "--delegate",
            &gateway_address,
        ])
        .args(["--spending-limit", "30", "--expires-in", "3600", "--out"])
        .arg(&delegation));
    assert!(ok, "{out}");
    let submit = |prompt: &str| {
        run(client()
            .arg("--key-file")
            .arg(&gateway_key)
            .arg("--delegation")
            .arg(&delegation)
            .args([
                "--model",
                TINY,
                "--max-tokens",
                "8",
                "--deadline-seconds",
                "30",
            ])
            .args(["--timeout-secs", "60", prompt]))
    };
    let (ok, out) = submit("The gateway asks");
    assert!(ok, "{out}");
    assert!(out.contains("PoE verified"), "{out}");
    let (ok, out) = submit("and asks again");
    assert!(!ok, "past the limit: {out}");
    assert!(out.contains("spending_limit_exceeded"), "{out}");

    // The account sees the one charge; a stranger's token reads nothing.
    let (status, account) = cluster.read(&format!("/v1/accounts/{}", cluster.account()));
    assert_eq!(
        (status, &account["balance"]),
        (200, &serde_json::json!(982)),
        "{account}"
    );
    let stranger = prlx_commands::testkit::accounts::read_token(
        "stranger",
        &cluster.account(),
        600,
        &cluster.chain.consent_domain(),
    );
    let addr = cluster
        .url
        .split_once("://")
        .map_or(cluster.url.as_str(), |(_, a)| a);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for path in [
        format!("/v1/accounts/{}", cluster.account()),
        "/v1/requests/0".into(),
    ] {
        let (status, body) = rt.block_on(read(addr, &path, &stranger));
        assert_eq!(status, 403, "{path}: {body}");
    }
    let (status, _) = rt.block_on(async {
        let coordinator = prlx_tests::harness::client::endpoint(addr);
        prlx_commands::client::request(&coordinator, "GET", "/v1/requests/0", None, None)
            .await
            .unwrap()
    });
    assert_eq!(status, 401);

    // The account revokes the delegation: the gateway is refused for that reason now.
    let (ok, out) = run(client()
        .args(["--dev-account", "2", "revoke", "--delegation"])
        .arg(&delegation));
    assert!(ok, "{out}");
    assert!(out.contains("revoked its delegation"), "{out}");
    let (ok, out) = submit("asks once revoked");
    assert!(!ok, "revoked: {out}");
    assert!(out.contains("delegation_revoked"), "{out}");

    // The account signs two prompts once (`--batch-consent`): both run.
    let (ok, out) = run(client()
        .args(["--dev-account", "2", "--batch-consent", "--model", TINY])
        .args(["--max-tokens", "8", "--deadline-seconds", "30"])
        .args([
            "--timeout-secs",
            "60",
            "first of a batch",
            "second of a batch",
        ]));
    assert!(ok, "{out}");
    assert_eq!(out.matches("PoE verified").count(), 2, "{out}");

    // The auditor recovers every signature (the batch's once) and re-derives the limit.
    let out = Command::new(workspace_bin("prlx-replay"))
        .args(["verify", "--json", "--log", &cluster.log_url()])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{report}");
    assert_eq!(report["evidence"]["signatures_reused"], 1, "{report}");
}
