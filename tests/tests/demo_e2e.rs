//! The README's main job as real processes: the coordinator demo writes a log, the auditor
//! verifies it; a damaged log is reported at the damaged offset with a non-zero exit. The
//! binaries come from the process kit ([`prlx_tests::harness`]; build them first with `cargo
//! build --workspace --bins`).

use std::os::unix::fs::FileExt;
use std::process::Command;

use prlx_tests::harness::bins::workspace_bin;
use prlx_tests::harness::launch::coordinator_command;

fn run(cmd: &mut Command) -> (i32, String) {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn demo_then_replay_verifies_and_detects_a_flipped_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    let url = format!("file://{}", log.display());
    let catalog = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/catalog.json");
    let demo = |requests: &str| {
        run(coordinator_command()
            .args([
                "demo",
                "--log",
                &url,
                "--catalog",
                catalog,
                "--requests",
                requests,
            ])
            .arg("--key-file")
            .arg(tmp.path().join("key")))
    };
    let (code, out) = demo("12");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("12 accepted"), "{out}");
    assert!(
        out.contains("already recorded, nothing new (request req-0)"),
        "{out}"
    );
    for code in [
        "payload_hash_mismatch",
        "unknown_workload_class",
        "unknown_model",
        "insufficient_credit",
    ] {
        assert!(out.contains(&format!("rejected {code}")), "{code}: {out}");
    }
    // Running again continues the same log (recovery, new sequence numbers, new request ids).
    let (code, out) = demo("3");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("requests accepted: 15"), "{out}");

    let (code, out) =
        run(Command::new(workspace_bin("prlx-replay")).args(["verify", "--json", "--log", &url]));
    assert_eq!(code, 0, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["requests"], 15);
    // Six kinds of rejection a run, two of them about the signature, over two runs.
    assert_eq!(report["events_by_type"]["RequestRejected"], 12);
    // 12 + 3 requests of 1320 each reserved; the repeated tx ref was credited once per run.
    // The tour's big account is anvil's dev account 2 (every submission is signed by it).
    assert_eq!(
        report["accounts"]["0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc"],
        serde_json::json!([2_000_000, 15 * 1320])
    );

    // No prompt lies on the log in plaintext.
    let seg = std::fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .unwrap();
    let bytes = std::fs::read(&seg).unwrap();
    assert!(
        !bytes.windows(7).any(|w| w == b"capital"),
        "a prompt is on the log in plaintext"
    );

    // Flip one byte inside the record at offset 5 (a payload byte): replay names offset 5.
    let mut pos = 32usize;
    for _ in 0..5 {
        let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
        pos += 24 + len;
    }
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.write_all_at(&[bytes[pos + 40] ^ 0x01], (pos + 40) as u64)
        .unwrap();
    let (code, out) =
        run(Command::new(workspace_bin("prlx-replay")).args(["verify", "--log", &url]));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("DIVERGENCE at offset 5"), "{out}");
}
