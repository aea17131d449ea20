//! What is checked in matches what it is built from: `contracts/out/` is what the pinned
//! solcjs makes of `contracts/src/` today, and the Rust payout tree is the one
//! `contracts/scripts/merkle.js` (the reference, in the layout OpenZeppelin's tools use) builds.
//! Both run Node.js with the packages `scripts/chain.sh setup` installs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use alloy::primitives::{Address, B256, U256};
use prlx_chain::merkle::{Payout, PayoutTree};

fn contracts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../contracts")
}

#[test]
fn checked_in_contract_artifacts_are_not_stale() {
    let dir = contracts_dir();
    assert!(
        dir.join("node_modules/solc").is_dir(),
        "contracts/node_modules is missing: run scripts/chain.sh setup"
    );
    let out = tempfile::tempdir().unwrap();
    let status = Command::new("node")
        .arg("scripts/build.js")
        .arg(out.path())
        .current_dir(&dir)
        .status()
        .expect("node runs");
    assert!(status.success(), "contracts/scripts/build.js failed");
    let mut built: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let mut checked_in: Vec<_> = std::fs::read_dir(dir.join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    built.sort();
    checked_in.sort();
    assert_eq!(
        built, checked_in,
        "contracts/out has other files than the build: run scripts/chain.sh build"
    );
    for name in built {
        let fresh = std::fs::read(out.path().join(&name)).unwrap();
        let old = std::fs::read(dir.join("out").join(&name)).unwrap();
        assert!(
            fresh == old,
            "contracts/out/{} is stale: run scripts/chain.sh build and commit it",
            name.to_string_lossy()
        );
    }
}

#[test]
fn the_payout_tree_matches_the_reference_implementation() {
    for n in [1usize, 2, 3, 7, 16, 33] {
        let payouts: Vec<Payout> = (0..n)
            .map(|i| Payout {
                node_id: B256::from(U256::from(i * 7919 + 1)),
                recipient: Address::from_word(B256::from(U256::from(i * 104_729 + 3))),
                amount: U256::from(10u64.pow(18)) * U256::from(i + 1) + U256::from(i),
            })
            .collect();
        let tree = PayoutTree::build(42, payouts.clone()).unwrap();
        let input = serde_json::json!({
            "epoch": "42",
            "claims": payouts.iter().map(|p| serde_json::json!({
                "nodeId": p.node_id.to_string(),
                "recipient": p.recipient.to_string(),
                "amount": p.amount.to_string(),
            })).collect::<Vec<_>>(),
        });
        let mut child = Command::new("node")
            .args(["scripts/merkle.js", "tree", "-"])
            .current_dir(contracts_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("node runs");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.to_string().as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "merkle.js failed");
        let reference: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(reference["root"], tree.root().to_string(), "n={n}");
        assert_eq!(reference["total"], tree.total.to_string(), "n={n}");
        for (i, claim) in reference["claims"].as_array().unwrap().iter().enumerate() {
            let proof: Vec<String> = tree.proof(i).iter().map(|h| h.to_string()).collect();
            assert_eq!(claim["proof"], serde_json::json!(proof), "n={n} i={i}");
        }
    }
}
