//! Tokens/s through the node, dispatch to result, against bare ONNX Runtime decoding of the same
//! model and prompt in the same run (target ≥ 0.95: crypto and events are per request, not per
//! token).
//!
//! ```sh
//! scripts/setup-models.sh
//! cargo build --release --bins && cargo bench -p prlx-node --bench through_node
//! ```
//!
//! Through the node: a real `prlx-coordinator serve` and a real `prlx-node run` (one slot) on a
//! file log; the clock runs from the moment the client's submission is answered to the moment
//! `GET /v1/requests/{id}` shows the result (polled every 10 ms: polling faster steals
//! the node's CPU on a 2-core machine), and the tokens are those of the
//! decrypted result. Bare: the `ort` loop of `common/floor.rs` generating the same number of
//! tokens, in this process while the node is idle. Rounds alternate; medians are reported.

#[path = "common/floor.rs"]
mod floor;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use floor::Floor;
use prlx_events::crypto::{open_with_private_key, public_key_pem};
use prlx_events::protocol::ResultBody;
use prlx_node::engine::{ort_environment, resolve_ort_library, Engine, EngineOptions};
use prlx_node::registry::Registry;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const PROMPT: &str = "Tell me a story about a robot";
const MAX_TOKENS: u32 = 64;
const ROUNDS: usize = 5;

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `cmd` and waits for the first stdout line starting with `prefix`.
fn spawn_until(mut cmd: Command, prefix: &'static str) -> (Kill, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix(prefix) {
                let _ = tx.send(rest.to_owned());
            }
        }
    });
    let found = rx
        .recv_timeout(Duration::from_secs(180))
        .unwrap_or_else(|_| panic!("no {prefix:?} line"));
    (Kill(child), found)
}

fn main() -> anyhow::Result<()> {
    let root: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned();
    let node_bin = PathBuf::from(env!("CARGO_BIN_EXE_prlx-node"));
    let coordinator_bin = node_bin.with_file_name("prlx-coordinator");
    anyhow::ensure!(
        coordinator_bin.exists(),
        "{} is missing: run `cargo build --release --bins` first",
        coordinator_bin.display()
    );
    let registry = Registry::load(&root.join("node/models/registry.toml"), &root)?;
    let entry = registry.get("oss-chat-v1")?;

    let dir = tempfile::tempdir()?;
    let catalog = dir.path().join("catalog.json");
    std::fs::write(
        &catalog,
        json!({"models": [{"model": "oss-chat-v1", "sha256": entry.sha256.clone(), "min_tier": 1, "base_price": 10,
            "per_token_price": 1, "max_tokens_limit": 512}],
            "max_tier": 5, "min_deadline_seconds": 5, "max_deadline_seconds": 3600})
        .to_string(),
    )?;
    let log = format!("file://{}", dir.path().join("log").display());
    let mut serve = Command::new(&coordinator_bin);
    serve
        .arg("serve")
        .args(["--log", &log, "--listen", "127.0.0.1:0"]);
    serve
        .arg("--key-file")
        .arg(dir.path().join("key"))
        .arg("--signing-key")
        .arg(dir.path().join("signing.pem"));
    serve.arg("--catalog").arg(&catalog);
    let (_coordinator, addr) = spawn_until(serve, "listening on http://");
    let mut node = Command::new(&node_bin);
    node.arg("run")
        .args(["--coordinator", &format!("http://{addr}"), "--log", &log]);
    node.arg("--key").arg(dir.path().join("node.pem"));
    node.args([
        "--models",
        "oss-chat-v1",
        "--tier",
        "1",
        "--slots",
        "1",
        "--stake",
        "1",
    ]);
    node.arg("--root").arg(&root);
    let (_node, _) = spawn_until(node, "node_id ");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)?;
    let pem = public_key_pem(&client.to_public_key());
    let http = |method: &'static str, path: String, body: Option<Value>| {
        let addr = addr.clone();
        rt.block_on(async move { prlx_node_client(&addr, method, &path, body).await })
    };
    assert_eq!(
        http(
            "POST",
            "/v1/accounts/bench/deposits".into(),
            Some(json!({"tx_ref": "t", "amount": 1_000_000_000u64}))
        )
        .0,
        200
    );

    let options = EngineOptions::default();
    let library = resolve_ort_library(options.ort_library.as_deref(), &entry.root)?;
    let mut bare = Floor::new(entry, &ort_environment(&library)?, options.intra_op_threads)?;
    let prompt_ids: Vec<i64> = Engine::load(entry, &options)?
        .encode_prompt(PROMPT)?
        .into_iter()
        .map(i64::from)
        .collect();

    let (mut through, mut floor_rates) = (Vec::new(), Vec::new());
    for round in 0..=ROUNDS {
        let body = json!({"workload_class": "ai.inference", "model": "oss-chat-v1", "hardware_tier": 1,
            "priority": "standard", "deadline_seconds": 600, "credit_account": "bench", "client_pubkey": pem,
            "prompt": PROMPT, "max_tokens": MAX_TOKENS, "payload_hash": hex::encode(Sha256::digest(PROMPT.as_bytes()))});
        let (status, accepted) = http("POST", "/v1/requests".into(), Some(body));
        assert_eq!(status, 202, "{accepted}");
        let started = Instant::now();
        let id = accepted["request_id"].as_u64().unwrap();
        let result = loop {
            let (_, st) = http("GET", format!("/v1/requests/{id}"), None);
            if st["result"].is_object() {
                break st["result"].clone();
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let elapsed = started.elapsed();
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(result["sealed_for_client"].as_str().unwrap())?;
        let body: ResultBody =
            serde_json::from_slice(&open_with_private_key(&client, &id.to_be_bytes(), &sealed)?)?;
        let runs = body.token_ids.len() + usize::from(body.stopped_at_eos);

        let t = Instant::now();
        let ids = bare.generate(&prompt_ids, runs)?;
        let bare_elapsed = t.elapsed();
        assert_eq!(
            ids[..body.token_ids.len()],
            body.token_ids[..],
            "the node and the floor computed the same tokens"
        );
        if round > 0 {
            through.push(runs as f64 / elapsed.as_secs_f64());
            floor_rates.push(runs as f64 / bare_elapsed.as_secs_f64());
        }
    }
    let (t, f) = (median(through), median(floor_rates));
    println!("oss-chat-v1, prompt {PROMPT:?}, max_tokens {MAX_TOKENS}, 1 intra-op thread, median of {ROUNDS}");
    println!("| path | tokens/s |");
    println!("|---|---:|");
    println!("| through the node (submission answered -> result visible) | {t:.1} |");
    println!("| bare ONNX Runtime loop, same tokens | {f:.1} |");
    println!("through node / bare: {:.3}", t / f);
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn prlx_node_client(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr)
        .header("content-type", "application/json");
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let res = sender
        .send_request(req.body(Full::new(Bytes::from(payload))).unwrap())
        .await
        .unwrap();
    let status = res.status().as_u16();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}
