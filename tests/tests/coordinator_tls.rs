//! TLS on `prlx-coordinator serve` as real processes (docs/security.md, "TLS"), through the
//! process kit ([`prlx_tests::harness`]; build it first with `cargo build --workspace
//! --bins`): the development certificate made once and kept across a restart, given
//! certificate files served, `--plain-http`, and `prlx-client` and `prlx-node` refusing a
//! coordinator whose certificate is not the one they pin, each naming the flag. The transport
//! itself (handshakes, plain HTTP to the TLS port, slots) is tested in process in
//! `commands/tests/http_tls.rs`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use prlx_commands::http::{dev_cert_names, CertificateSource, ServerTls};
use prlx_commands::testkit::intake::CATALOG;
use prlx_events::endpoint::trust::{fingerprint, read_certificates};
use prlx_tests::harness::bins::{workspace_bin, workspace_root};
use prlx_tests::harness::client::http;
use prlx_tests::harness::keys::{new_key, write_private};
use prlx_tests::harness::launch::{node_command, LaunchTls, ServeLaunch, STARTUP};
use prlx_tests::harness::models::TINY;
use prlx_tests::harness::process::Proc;

/// A coordinator with every key, the log and the catalog under `dir`.
fn launch(dir: &Path) -> ServeLaunch {
    let catalog = dir.join("catalog.json");
    std::fs::write(&catalog, CATALOG).unwrap();
    ServeLaunch::in_dir(dir, &catalog, "tls-test/1")
}

/// The SHA-256 fingerprint in a `… (SHA-256 AB:CD:…) …` log line.
fn logged_fingerprint(line: &str) -> String {
    let start = line.find("(SHA-256 ").expect("a fingerprint") + "(SHA-256 ".len();
    let len = line[start..].find(')').unwrap();
    line[start..start + len].to_owned()
}

/// The fingerprint of the first certificate in a PEM file.
fn file_fingerprint(cert: &Path) -> String {
    fingerprint(&read_certificates(cert).unwrap()[0])
}

/// Another self-signed certificate with the same names (and its key), under `dir`: what a
/// client pinning the wrong coordinator would hold.
fn another_certificate(dir: &Path) -> PathBuf {
    let tls = ServerTls::load(&CertificateSource::Development {
        dir: dir.to_owned(),
        names: dev_cert_names("127.0.0.1".parse().unwrap(), &[]),
    })
    .unwrap();
    tls.cert_path().to_owned()
}

fn stop(proc: &mut Proc) {
    proc.signal("-TERM");
    assert_eq!(proc.wait_exit(Duration::from_secs(30)).code(), Some(0));
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[tokio::test]
async fn the_development_certificate_is_made_once_and_kept_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let launch = launch(dir.path());
    let (mut first, addr) = launch.spawn("coordinator");
    let made = first.wait_line("made a development certificate", STARTUP);
    let cert = launch.cert();
    assert!(made.contains(&cert.display().to_string()), "{made}");
    let fingerprint = logged_fingerprint(&made);
    assert_eq!(fingerprint, file_fingerprint(&cert));
    let key = launch.tls_dir().join("key.pem");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the key is its owner's only");
    // The kit pins the certificate: a pinned client is served.
    assert_eq!(http(&addr, "GET", "/healthz", None, None).await.0, 200);
    stop(&mut first);
    assert_eq!(first.count("PRIVATE KEY"), 0, "the key is never logged");

    let (mut second, addr) = launch.spawn("coordinator again");
    let kept = second.wait_line("serving TLS with the certificate", STARTUP);
    assert_eq!(logged_fingerprint(&kept), fingerprint, "{kept}");
    assert_eq!(second.count("made a development certificate"), 0);
    // The same pin still works.
    assert_eq!(http(&addr, "GET", "/healthz", None, None).await.0, 200);
}

#[tokio::test]
async fn given_certificate_files_are_served() {
    let dir = tempfile::tempdir().unwrap();
    // An operator's certificate and key (made here as a development one elsewhere).
    let given = another_certificate(&dir.path().join("operator"));
    let launch = ServeLaunch {
        tls: LaunchTls::Given {
            cert: given.clone(),
            key: dir.path().join("operator/key.pem"),
        },
        ..launch(dir.path())
    };
    let (mut proc, addr) = launch.spawn("coordinator");
    let line = proc.wait_line("serving TLS with the certificate", STARTUP);
    assert_eq!(
        logged_fingerprint(&line),
        file_fingerprint(&given),
        "{line}"
    );
    assert_eq!(http(&addr, "GET", "/healthz", None, None).await.0, 200);
    assert!(
        !launch.tls_dir().exists(),
        "no development certificate is made"
    );
}

#[tokio::test]
async fn plain_http_is_served_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let launch = ServeLaunch {
        tls: LaunchTls::Plain,
        ..launch(dir.path())
    };
    let (mut proc, addr) = launch.spawn("coordinator");
    assert!(proc.find("--plain-http: serving plain HTTP").is_some());
    assert_eq!(http(&addr, "GET", "/healthz", None, None).await.0, 200);
    assert!(!launch.tls_dir().exists());
}

#[test]
fn clients_refuse_a_coordinator_that_is_not_the_one_they_pin_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let launch = launch(dir.path());
    let (_coordinator, addr) = launch.spawn("coordinator");
    let url = format!("https://{addr}");
    let wrong = another_certificate(&dir.path().join("wrong"));
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    let client = |args: &[&str]| {
        std::process::Command::new(workspace_bin("prlx-client"))
            .env_remove("PRLX_COORDINATOR")
            .env_remove("PRLX_COORDINATOR_CERT")
            .args(args)
            .output()
            .unwrap()
    };
    let cert = launch.cert();
    let pinned = client(&[
        "--coordinator",
        &url,
        "--coordinator-cert",
        cert.to_str().unwrap(),
        "rewards",
    ]);
    assert!(pinned.status.success(), "{}", text(&pinned));

    for (args, says) in [
        (
            vec![
                "--coordinator",
                &url,
                "--coordinator-cert",
                wrong.to_str().unwrap(),
            ],
            "is not the pinned one (--coordinator-cert)",
        ),
        (
            vec![
                "--coordinator",
                &url,
                "--coordinator-cert",
                not_pem.to_str().unwrap(),
            ],
            "holds no PEM certificate",
        ),
        (vec!["--coordinator", &url], "--coordinator-cert"),
        (
            vec!["--coordinator", &format!("http://{addr}")],
            "tls_required",
        ),
    ] {
        let mut args = args;
        args.push("rewards");
        let out = client(&args);
        let said = text(&out);
        assert!(!out.status.success(), "{args:?}: {said}");
        assert!(said.contains(says), "{args:?}: {said}");
    }

    // A node pinning another certificate stops at its registration rather than retrying.
    let key = dir.path().join("node.pem");
    write_private(&key, &new_key());
    let mut cmd = node_command();
    cmd.args(["run", "--coordinator", &url, "--coordinator-cert"])
        .arg(&wrong)
        .args(["--log", &launch.log])
        .arg("--key")
        .arg(&key)
        .args(["--models", TINY, "--tier", "1", "--slots", "1"])
        .arg("--root")
        .arg(workspace_root());
    let mut node = Proc::spawn("node", cmd);
    let exit = node.wait_exit(STARTUP);
    assert!(!exit.success());
    let said = node
        .find("is not the pinned one (--coordinator-cert)")
        .expect("the node says why it stopped");
    assert!(said.contains(&url), "{said}");
}
