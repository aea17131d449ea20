//! Helpers for tests that run the real `prlx-coordinator serve` process over real HTTP.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// Kills the child if the test fails before it exits.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `prlx-coordinator serve` on a free loopback port with every key and the log under
/// `dir`, and returns it with its address once it says it is listening.
pub fn spawn_serve(dir: &Path, catalog: &Path) -> (Guard, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_prlx-coordinator"));
    for var in [
        "PRLX_LOG",
        "PRLX_LISTEN",
        "PRLX_KEY_FILE",
        "PRLX_CATALOG",
        "PRLX_PRODUCER",
        "PRLX_SIGNING_KEY",
    ] {
        cmd.env_remove(var);
    }
    let child = cmd
        .arg("serve")
        .arg("--log")
        .arg(format!("file://{}", dir.join("log").display()))
        .args(["--listen", "127.0.0.1:0"])
        .arg("--key-file")
        .arg(dir.join("key"))
        .arg("--signing-key")
        .arg(dir.join("signing.pem"))
        .arg("--catalog")
        .arg(catalog)
        .args(["--producer", "serve-test/1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut child = Guard(child);
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("no `listening on` line within 120 s");
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, addr)
}

/// One exchange; `Err` when the connection fails (a killed server), so callers can tell
/// "refused" from "answered".
pub async fn try_http(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    idempotency_key: Option<&str>,
) -> Result<(u16, Value), String> {
    prlx_commands::client::request(addr, method, path, body, idempotency_key)
        .await
        .map_err(|e| e.to_string())
}

pub async fn http(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    idempotency_key: Option<&str>,
) -> (u16, Value) {
    try_http(addr, method, path, body, idempotency_key)
        .await
        .unwrap()
}
