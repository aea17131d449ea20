//! The `prlx-chain` wallet subcommands, as a script runs them: the real binary against a
//! private anvil with every contract deployed. Deposits, stake, unstake and withdrawal move
//! exactly the amounts they print; a malformed argument, a withdrawal inside the cooldown and
//! the public dev keys on another chain are refused, each saying which and why.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use common::{prlx, World, COOLDOWN};
use prlx_chain::deploy::{deploy_dev, DevParams};
use prlx_chain::devchain::{dev_role, DevChain, DEV_KEYS};

const CLIENT: usize = dev_role::CLIENT;
const OPERATOR: usize = dev_role::FIRST_OPERATOR;
const NODE: &str = "5eed000000000000000000000000000000000000000000000000000000000001";

/// `d` written as a deployment file in a temporary directory.
fn deployment_file(d: &prlx_chain::Deployment) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deployment.json");
    d.write(&path).unwrap();
    (dir, path)
}

fn prlx_chain(deployment: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prlx-chain"))
        .args(args)
        .arg("--deployment")
        .arg(deployment)
        .output()
        .unwrap()
}

/// Runs a subcommand that must succeed; its one stdout line.
fn ok(deployment: &Path, args: &[&str]) -> String {
    let out = prlx_chain(deployment, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?} failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "one summary line: {stdout}");
    stdout
}

/// Runs a subcommand that must fail; what it said on stderr.
fn refused(deployment: &Path, args: &[&str]) -> String {
    let out = prlx_chain(deployment, args);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(out.stdout.is_empty(), "nothing on stdout when refused");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn hex(a: Address) -> String {
    format!("{a:#x}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deposit_stake_unstake_and_withdraw_move_exactly_what_they_print() {
    let w = World::new().await;
    let (_dir, file) = deployment_file(&w.d);
    let client = hex(w.addr(CLIENT));

    let line = ok(&file, &["fund", "--to", &client, "--amount", "10"]);
    assert!(
        line.starts_with(&format!(
            "funded {client} with 10 PRLX (10000000000000000000 minor units) tx 0x"
        )),
        "{line}"
    );
    assert!(line.contains(" block "), "{line}");
    let line = ok(&file, &["balance", "--address", &client]);
    assert_eq!(
        line.trim(),
        format!("balance {client} 10 PRLX (10000000000000000000 minor units)")
    );

    // The client deposits for its own (checksummed) address; the escrow holds it exactly.
    let checksummed = w.addr(CLIENT).to_checksum(None);
    let line = ok(
        &file,
        &[
            "deposit",
            "--dev-account",
            "2",
            "--account",
            &checksummed,
            "--amount",
            "1.5",
        ],
    );
    assert!(
        line.starts_with(&format!(
            "deposited 1.5 PRLX (1500000000000000000 minor units) for {client} tx 0x"
        )),
        "{line}"
    );
    let milli = |n: u64| U256::from(n) * U256::from(10).pow(U256::from(15));
    assert_eq!(w.balance(w.d.contracts.credit_escrow).await, milli(1_500));
    assert_eq!(w.balance(w.addr(CLIENT)).await, milli(8_500));

    // An operator signs with a key file of its own.
    w.fund(OPERATOR, prlx(100)).await;
    let key_dir = tempfile::tempdir().unwrap();
    let key = key_dir.path().join("operator.key");
    std::fs::write(&key, format!("0x{}\n", DEV_KEYS[OPERATOR])).unwrap();
    set_mode(&key, 0o600);
    let key = key.to_str().unwrap();
    let node = format!("0x{NODE}");
    let line = ok(
        &file,
        &[
            "stake",
            "--key-file",
            key,
            "--node-id",
            &node,
            "--amount",
            "60.000000000000000007",
        ],
    );
    assert!(
        line.starts_with(&format!(
            "staked 60.000000000000000007 PRLX (60000000000000000007 minor units) for node {NODE}"
        )),
        "{line}"
    );
    let bonded = prlx(60) + U256::from(7);
    assert_eq!(w.balance(w.addr(OPERATOR)).await, prlx(100) - bonded);

    let line = ok(
        &file,
        &[
            "unstake",
            "--key-file",
            key,
            "--node-id",
            NODE,
            "--amount",
            "20",
        ],
    );
    assert!(line.contains("withdrawable at "), "{line}");
    let line = ok(&file, &["stake-info", "--node-id", NODE]);
    assert!(
        line.contains("bonded 40.000000000000000007 PRLX")
            && line.contains("pending 20 PRLX")
            && line.contains(&format!("staker {}", hex(w.addr(OPERATOR)))),
        "{line}"
    );

    // Inside the cooldown: refused, saying when it unlocks.
    let early = refused(&file, &["withdraw", "--key-file", key, "--node-id", NODE]);
    assert!(
        early.contains("withdraw: refused by the contract: still in its cooldown: it unlocks at"),
        "{early}"
    );
    // Time passes with no block mined (anvil mines only for a transaction): the withdrawal
    // is still judged by the time it will be mined at, not the last block's.
    let _: serde_json::Value = w
        .as_account(0)
        .raw_request("evm_increaseTime".into(), (COOLDOWN,))
        .await
        .unwrap();
    let line = ok(&file, &["withdraw", "--key-file", key, "--node-id", NODE]);
    assert!(
        line.starts_with(&format!(
            "withdrew 20 PRLX (20000000000000000000 minor units) for node {NODE} to {}",
            hex(w.addr(OPERATOR))
        )),
        "{line}"
    );
    assert_eq!(
        w.balance(w.addr(OPERATOR)).await,
        prlx(100) - bonded + prlx(20),
        "the principal back to the minor unit"
    );
    assert_eq!(
        w.balance(w.d.contracts.node_staking).await,
        bonded - prlx(20)
    );
    let again = refused(&file, &["withdraw", "--key-file", key, "--node-id", NODE]);
    assert!(again.contains("nothing is pending"), "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_arguments_are_refused_naming_them() {
    let w = World::new().await;
    let (_dir, file) = deployment_file(&w.d);
    let client = hex(w.addr(CLIENT));
    let stake = |node: &str, amount: &str| {
        refused(
            &file,
            &[
                "stake",
                "--dev-account",
                "3",
                "--node-id",
                node,
                "--amount",
                amount,
            ],
        )
    };
    for bad in ["1234", "0x1234", &format!("{NODE}00"), &"zz".repeat(32)] {
        let err = stake(bad, "1");
        assert!(
            err.contains("--node-id: ") && err.contains("64 hex"),
            "{err}"
        );
    }
    for (bad, why) in [
        ("1.0000000000000000001", "more than 18 decimals"),
        ("1e3", "not a decimal amount"),
        ("0", "is zero"),
    ] {
        let err = stake(NODE, bad);
        assert!(err.contains("--amount: ") && err.contains(why), "{err}");
    }
    let err = stake(NODE, "1");
    assert!(err.contains("holds 0 PRLX, needs 1 PRLX"), "{err}");

    let err = refused(&file, &["balance", "--address", "0x1234"]);
    assert!(err.contains("--address: "), "{err}");
    let err = refused(
        &file,
        &[
            "deposit",
            "--dev-account",
            "10",
            "--account",
            &client,
            "--amount",
            "1",
        ],
    );
    assert!(err.contains("--dev-account: 10"), "{err}");
    let err = refused(&file, &["deposit", "--account", &client, "--amount", "1"]);
    assert!(
        err.contains("--dev-account") && err.contains("--key-file"),
        "{err}"
    );

    let key_dir = tempfile::tempdir().unwrap();
    let key = key_dir.path().join("loose.key");
    std::fs::write(&key, DEV_KEYS[CLIENT]).unwrap();
    set_mode(&key, 0o644);
    let err = refused(
        &file,
        &[
            "deposit",
            "--key-file",
            key.to_str().unwrap(),
            "--account",
            &client,
            "--amount",
            "1",
        ],
    );
    assert!(
        err.contains("--key-file") && err.contains("chmod 600"),
        "{err}"
    );
    assert!(!err.contains(DEV_KEYS[CLIENT]), "the key is never printed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_dev_keys_are_refused_on_another_chain() {
    let chain = DevChain::spawn_with(&["--chain-id", "1337"]).unwrap();
    let params = DevParams::for_devchain(&chain, COOLDOWN);
    let provider = chain.provider(dev_role::DEPLOYER).unwrap();
    let d = deploy_dev(&provider, chain.address(dev_role::DEPLOYER), &params)
        .await
        .unwrap();
    assert_eq!(d.chain_id, 1337);
    let (_dir, file) = deployment_file(&d);
    let client = hex(chain.address(CLIENT));
    let err = refused(
        &file,
        &[
            "deposit",
            "--dev-account",
            "2",
            "--account",
            &client,
            "--amount",
            "1",
        ],
    );
    assert!(err.contains("not a development chain"), "{err}");
    let err = refused(&file, &["fund", "--to", &client, "--amount", "1"]);
    assert!(err.contains("not a development chain"), "{err}");
    // Reading needs no key, so it works on any chain.
    let line = ok(&file, &["balance", "--address", &client]);
    assert!(line.contains(" 0 PRLX (0 minor units)"), "{line}");
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
