//! `prlx-client`: submits prompts to a coordinator as ParalleliX AI would, waits for the
//! results, opens them with the client's own key and checks their proof-of-execution.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine as _;
use clap::Parser;
use prlx_events::crypto::{open_with_private_key, proof_of_execution, public_key_pem};
use prlx_events::protocol::ResultBody;
use prlx_events::{Hash32, NodeId, RequestId, TaskId};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

#[derive(Parser, Debug)]
#[command(
    name = "prlx-client",
    version,
    about = "Submit prompts to a ParalleliX coordinator, wait for the results, decrypt and verify them"
)]
struct Cli {
    /// The coordinator's HTTP address.
    #[arg(
        long,
        env = "PRLX_COORDINATOR",
        default_value = "http://127.0.0.1:8080"
    )]
    coordinator: String,
    /// The credit account to charge.
    #[arg(long, default_value = "parallelix-ai")]
    account: String,
    /// Credit this many minor units first (as a deposit observed on-chain, with a fresh tx ref).
    #[arg(long)]
    deposit: Option<u64>,
    /// The model reference.
    #[arg(long, default_value = "oss-chat-v1")]
    model: String,
    #[arg(long, default_value_t = 1)]
    hardware_tier: u8,
    #[arg(long, default_value_t = 48)]
    max_tokens: u32,
    /// Seconds the coordinator gives a node before re-dispatching.
    #[arg(long, default_value_t = 120)]
    deadline_seconds: u32,
    /// How long to wait for all results.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// The prompts, one request each.
    #[arg(required = true)]
    prompts: Vec<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let addr = cli
        .coordinator
        .strip_prefix("http://")
        .context("--coordinator must be http://HOST:PORT")?
        .trim_end_matches('/')
        .to_owned();
    // A fresh key per run: results are sealed to it, so only this process can read them.
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)?;
    let pem = public_key_pem(&key.to_public_key());
    let run: u64 = rand::random();

    if let Some(amount) = cli.deposit {
        let (status, body) = http(
            &addr,
            "POST",
            &format!("/v1/accounts/{}/deposits", cli.account),
            Some(json!({"tx_ref": format!("client-{run:016x}"), "amount": amount})),
            None,
        )
        .await?;
        if status != 200 {
            bail!("deposit refused: {status} {body}");
        }
        println!(
            "deposited {amount} to {}: balance {}",
            cli.account, body["balance"]
        );
    }

    let mut ids = Vec::new();
    for (i, prompt) in cli.prompts.iter().enumerate() {
        let body = json!({
            "workload_class": "ai.inference", "model": cli.model, "hardware_tier": cli.hardware_tier,
            "priority": "standard", "deadline_seconds": cli.deadline_seconds,
            "credit_account": cli.account, "client_pubkey": pem, "prompt": prompt,
            "max_tokens": cli.max_tokens, "payload_hash": hex::encode(Sha256::digest(prompt.as_bytes())),
        });
        let key = format!("client-{run:016x}-{i}");
        let (status, answer) = http(&addr, "POST", "/v1/requests", Some(body), Some(&key)).await?;
        if status != 202 {
            bail!("request {i} refused: {status} {answer}");
        }
        let id = answer["request_id"].as_u64().context("no request_id")?;
        println!(
            "request {id} accepted, price {}: {prompt:?}",
            answer["price"]
        );
        ids.push((id, prompt.clone()));
    }

    let deadline = Instant::now() + Duration::from_secs(cli.timeout_secs);
    let mut failures = 0;
    for (id, prompt) in ids {
        let status = loop {
            let (_, status) = http(&addr, "GET", &format!("/v1/requests/{id}"), None, None).await?;
            if status["result"].is_object() || status["status"] == "failed" {
                break status;
            }
            if Instant::now() > deadline {
                bail!(
                    "no result for request {id} within {} s: {status}",
                    cli.timeout_secs
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        if status["status"] == "failed" {
            println!("request {id} failed after {} attempts", status["attempts"]);
            failures += 1;
            continue;
        }
        let result = &status["result"];
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(result["sealed_for_client"].as_str().unwrap_or_default())?;
        let bytes = open_with_private_key(&key, &id.to_be_bytes(), &sealed)
            .context("opening the result with the client key")?;
        let body: ResultBody = serde_json::from_slice(&bytes).context("parsing the result")?;
        let node: NodeId = result["node_id"].as_str().unwrap_or_default().parse()?;
        let poe: Hash32 = result["poe"].as_str().unwrap_or_default().parse()?;
        let verified = proof_of_execution(TaskId::whole(RequestId(id)), &bytes, node) == poe;
        println!(
            "\nrequest {id}: {prompt:?}\n  answer ({} tokens, node {node}, attempts {}, PoE {}): {}",
            body.token_ids.len(),
            status["attempts"],
            if verified { "verified" } else { "MISMATCH" },
            body.text.trim()
        );
        if !verified {
            failures += 1;
        }
    }
    if failures > 0 {
        bail!("{failures} request(s) failed or did not verify");
    }
    Ok(())
}

async fn http(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
    idempotency_key: Option<&str>,
) -> anyhow::Result<(u16, Value)> {
    Ok(prlx_commands::client::request(addr, method, path, body.as_ref(), idempotency_key).await?)
}
