//! `prlx-client`: submits prompts to a coordinator as ParalleliX AI would, waits for the
//! results, opens them with the client's own key and checks their proof-of-execution. Its
//! subcommands show (or wait for) an account's credits, delegate an account's spending to
//! another key, show a node's stake and show the rewards settled. Credits and stake move on
//! the chain only (`prlx-chain deposit`, `stake`).
//!
//! Submissions are signed by the account's key, or by a delegate's with the account's
//! delegation (`--delegation FILE`, made by `prlx-client delegate`); the reads of an
//! account's balance and requests carry a read-access token signed by the same key.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine as _;
use clap::{Parser, Subcommand};
use prlx_commands::client::AccountReads;
use prlx_commands::consent::DelegationFile;
use prlx_events::crypto::{open_with_private_key, proof_of_execution, public_key_pem};
use prlx_events::endpoint::Endpoint;
use prlx_events::protocol::ResultBody;
use prlx_events::{Hash32, NodeId, RequestId, TaskId};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

#[derive(Parser, Debug)]
#[command(
    name = "prlx-client",
    version,
    about = "Submit prompts to a ParalleliX coordinator, wait for the results, decrypt and verify them",
    long_about = "Submit prompts to a ParalleliX coordinator, wait for the results, decrypt and \
        verify them; or, with a subcommand, show an account's credits, a node's stake and the \
        rewards settled. Credits are bought on chain (`prlx-chain deposit`), stake is bonded on \
        chain (`prlx-chain stake`). Submissions are signed by the account's key (--key-file or \
        --dev-account), or by a delegate's with --delegation FILE (see `delegate`); reads of a \
        balance or a request are signed by the same key. \
        A prompt that is a subcommand's name goes after `--`.",
    subcommand_negates_reqs = true
)]
struct Cli {
    /// How log lines on stderr are written: `text` for people, `json` (one object a line) for
    /// collectors. `RUST_LOG` filters them (default `info`).
    #[arg(long, global = true, env = "PRLX_LOG_FORMAT", default_value = "text")]
    log_format: prlx_events::cli::LogFormat,
    /// The coordinator's address: https://HOST[:PORT], or http://HOST:PORT for one serving
    /// --plain-http.
    #[arg(
        long,
        env = "PRLX_COORDINATOR",
        default_value = "https://127.0.0.1:8080",
        global = true
    )]
    coordinator: String,
    /// The coordinator's certificate (PEM) to pin: the only certificate trusted, e.g. the
    /// development certificate `coordinator-tls/cert.pem` it made on first start (or a CA
    /// that issued its certificate). Without it, https trusts the system's roots.
    #[arg(
        long,
        env = "PRLX_COORDINATOR_CERT",
        value_name = "FILE",
        global = true
    )]
    coordinator_cert: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Option<Sub>,
    /// The credit account to charge: a 0x address (any case). Defaults to the signing key's
    /// address; another account refuses the request unless it is the signer's.
    #[arg(long, value_parser = account_id)]
    account: Option<String>,
    /// The account's key (a file holding the hex private key, readable by its owner only):
    /// every submission carries its EIP-712 signature (the coordinator charges nothing
    /// unsigned), and every read of the account a token it signed. Domain and types come from
    /// the coordinator's `GET /v1/consent`. With --delegation, the delegate's key.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "dev_account",
        global = true
    )]
    key_file: Option<std::path::PathBuf>,
    /// Sign with anvil's public dev account N instead (development chains only).
    #[arg(long, value_name = "N", global = true)]
    dev_account: Option<usize>,
    /// Submit as a delegate: the account's delegation (a file `prlx-client delegate`
    /// wrote), whose delegate's key is --key-file. Charges the delegation's account.
    #[arg(long, value_name = "FILE")]
    delegation: Option<std::path::PathBuf>,
    /// Sign all the prompts of this run with one signature (EIP-712 `SubmissionBatch` over
    /// the root of a tree of their typed data), each submission carrying its place in the
    /// batch: one recovery for the coordinator and the auditor instead of one per request.
    #[arg(long)]
    batch_consent: bool,
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
    /// The workload class: `ai.inference` (prompts), or a general-path class
    /// (`batch.inference`, `mapreduce.wordcount`, `render.tiles`, `sweep.epidemic`) whose
    /// tasks' parameters are given as JSON in place of prompts (`@FILE` reads a file).
    #[arg(long, default_value = "ai.inference")]
    class: String,
    /// Where a general-path task's output goes (`FILE`; `FILE.ID` for each of several
    /// tasks, by request id). Without it, only its size and SHA-256 are printed.
    #[arg(long, value_name = "FILE")]
    out: Option<std::path::PathBuf>,
    /// The prompts, one request each (for a general-path class, each task's parameters).
    #[arg(required = true)]
    prompts: Vec<String>,
}

/// Credits, stake and rewards, as the coordinator has recorded them from the chain.
#[derive(Subcommand, Debug)]
enum Sub {
    /// Show an account's credits (`account A balance B reserved R available V`); with
    /// --at-least, wait until the balance reaches it, e.g. for the coordinator to credit a
    /// chain deposit.
    Balance {
        /// The credit account (a chain account is its 0x address).
        #[arg(value_parser = account_id)]
        account: String,
        /// Wait until the balance is at least this many credits.
        #[arg(long, value_name = "CREDITS")]
        at_least: Option<u64>,
        /// How long to wait for --at-least, seconds.
        #[arg(long, default_value_t = 60)]
        wait_secs: u64,
    },
    /// Let another key (ParalleliX AI's gateway, say) sign submissions charged to the account
    /// of --key-file, up to a spending limit until an expiry: signs the EIP-712 delegation and
    /// writes it to --out, for the delegate's `prlx-client --delegation FILE`. Nothing is sent
    /// to the coordinator but the request for its domain.
    Delegate {
        /// The delegate's 0x address.
        #[arg(long, value_parser = account_id)]
        delegate: String,
        /// Credits that may be reserved and charged under it in all (a refund gives its
        /// credits back).
        #[arg(long, value_name = "CREDITS")]
        spending_limit: u64,
        /// Seconds from now until it expires.
        #[arg(long, default_value_t = 86_400)]
        expires_in: u64,
        /// Where to write the delegation (JSON).
        #[arg(long, value_name = "FILE")]
        out: std::path::PathBuf,
    },
    /// Withdraw a delegation of the account of --key-file before it expires (the file
    /// `delegate` wrote): the account signs the EIP-712 revocation and the coordinator
    /// records it; no submission signed under the delegation is accepted after.
    Revoke {
        /// The delegation (JSON, as `delegate` wrote it).
        #[arg(long, value_name = "FILE")]
        delegation: std::path::PathBuf,
    },
    /// Show a node's stake: staked, pending unstakes, returned, rewards paid.
    StakeInfo {
        /// The node id, 64 hex characters.
        node_id: String,
    },
    /// Show the reward policy, the mode and the next epoch to settle (`next_epoch N` on a
    /// line of its own).
    Rewards,
    /// List settled reward epochs and their payouts.
    Epochs {
        /// The first epoch to list.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Wait up to this many seconds for an epoch from `--from` on that paid someone.
        #[arg(long)]
        wait_for_payouts: Option<u64>,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    prlx_events::cli::init_tracing(cli.log_format);
    let coordinator = &Endpoint::new(&cli.coordinator, cli.coordinator_cert.as_deref())?;
    match cli.command.take() {
        Some(Sub::Balance {
            account,
            at_least,
            wait_secs,
        }) => {
            let domain = consent_domain(coordinator).await?.eip712();
            let reads = AccountReads::new(signer(&cli)?, &account, domain)
                .map_err(|e| anyhow::anyhow!("reading account {account}: {e}"))?;
            return balance(coordinator, reads, at_least, wait_secs).await;
        }
        Some(Sub::Delegate {
            delegate,
            spending_limit,
            expires_in,
            out,
        }) => {
            let signer = signer(&cli)?;
            let grant = Grant {
                delegate,
                spending_limit,
                expires_in,
            };
            return delegate_to(coordinator, &signer, cli.account.as_deref(), grant, &out).await;
        }
        Some(Sub::Revoke { delegation }) => {
            return revoke(coordinator, &signer(&cli)?, &delegation).await;
        }
        Some(command) => return rewards(coordinator, command).await,
        None => {}
    }
    // A fresh key per run: results are sealed to it, so only this process can read them.
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)?;
    let pem = public_key_pem(&key.to_public_key());
    let run: u64 = rand::random();
    let signer = signer(&cli)?;
    let delegation = match &cli.delegation {
        Some(path) => Some(read_delegation(path, &signer)?),
        None => None,
    };
    let account = match (&cli.account, &delegation) {
        (Some(a), Some(d)) if *a != d.account => {
            bail!("--account {a}: the delegation is of account {}", d.account)
        }
        (Some(a), _) => a.clone(),
        (None, Some(d)) => d.account.clone(),
        (None, None) => prlx_chain::record::hex0x(signer.address().as_slice()),
    };
    let domain = consent_domain(coordinator).await?;
    if let Some(d) = &delegation {
        d.check_domain(&domain)
            .map_err(|e| anyhow::anyhow!("--delegation: {e}"))?;
    }
    let mut reads = AccountReads::new(signer.clone(), &account, domain.eip712())
        .map_err(|e| anyhow::anyhow!("--account {account}: {e}"))?;
    let domain = domain.eip712();

    let general = cli.class != "ai.inference";
    // Every body and its typed data's struct hash first: a batch signs them all at once.
    let mut bodies = Vec::new();
    for (i, prompt) in cli.prompts.iter().enumerate() {
        let prompt = match prompt.strip_prefix('@') {
            Some(path) if general => std::fs::read_to_string(path)
                .with_context(|| format!("reading the parameters of task {i} from {path}"))?,
            _ => prompt.clone(),
        };
        let key = format!("client-{run:016x}-{i}");
        let payload_hash = Sha256::digest(prompt.as_bytes());
        let fields = prlx_chain::consent::SubmissionFields {
            account: &account,
            idempotency_key: &key,
            workload_class: &cli.class,
            model: &cli.model,
            hardware_tier: cli.hardware_tier,
            priority: "standard",
            deadline_seconds: cli.deadline_seconds,
            max_tokens: cli.max_tokens,
            payload_hash: payload_hash.into(),
            client_pubkey: &pem,
        };
        let leaf = fields
            .leaf()
            .map_err(|e| anyhow::anyhow!("--account: {e}"))?;
        let mut body = json!({
            "workload_class": cli.class, "model": cli.model, "hardware_tier": cli.hardware_tier,
            "priority": "standard", "deadline_seconds": cli.deadline_seconds,
            "credit_account": account, "client_pubkey": pem, "prompt": prompt,
            "max_tokens": cli.max_tokens, "payload_hash": hex::encode(payload_hash),
        });
        if let Some(d) = &delegation {
            body["delegation"] = serde_json::to_value(&d.delegation)?;
        }
        bodies.push((key, body, prompt, leaf));
    }
    sign_bodies(&mut bodies, &signer, &domain, cli.batch_consent)?;

    let mut ids = Vec::new();
    for (i, (key, body, prompt, _)) in bodies.into_iter().enumerate() {
        let (status, answer) =
            http(coordinator, "POST", "/v1/requests", Some(body), Some(&key)).await?;
        if status != 202 {
            bail!("request {i} refused: {status} {answer}");
        }
        let id = answer["request_id"].as_u64().context("no request_id")?;
        println!(
            "request {id} accepted, price {}: {prompt:?}",
            answer["price"]
        );
        ids.push((id, prompt));
    }

    let deadline = Instant::now() + Duration::from_secs(cli.timeout_secs);
    let mut failures = 0;
    let tasks = ids.len();
    for (id, prompt) in ids {
        let status = loop {
            let path = format!("/v1/requests/{id}");
            let (code, status) = reads.get(coordinator, &path).await?;
            if code != 200 {
                bail!("GET {path}: {code} {status}");
            }
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
        if general {
            if !task_output(&cli, id, &status, &bytes, tasks)? {
                failures += 1;
            }
            continue;
        }
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

/// A general-path task's output: checked against the hash the coordinator recorded with its
/// aggregate, written to --out if given. Whether it verified.
fn task_output(
    cli: &Cli,
    id: u64,
    status: &Value,
    output: &[u8],
    tasks: usize,
) -> anyhow::Result<bool> {
    let recorded: Hash32 = status["result"]["poe"]
        .as_str()
        .unwrap_or_default()
        .parse()?;
    let hash = Hash32::of(output);
    let subtasks = status["subtasks"].as_array().map_or(0, Vec::len);
    let mut line = format!(
        "\ntask {id} ({}): {} bytes aggregated from {subtasks} sub-tasks, validation {}, SHA-256 {hash} ({})",
        cli.class,
        output.len(),
        status["validation"].as_str().unwrap_or("?"),
        if hash == recorded { "as recorded" } else { "MISMATCH" }
    );
    if let Some(out) = &cli.out {
        let path = match tasks {
            1 => out.clone(),
            _ => std::path::PathBuf::from(format!("{}.{id}", out.display())),
        };
        std::fs::write(&path, output).with_context(|| format!("writing {}", path.display()))?;
        line.push_str(&format!(", written to {}", path.display()));
    }
    println!("{line}");
    Ok(hash == recorded)
}

async fn http(
    coordinator: &Endpoint,
    method: &str,
    path: &str,
    body: Option<Value>,
    idempotency_key: Option<&str>,
) -> anyhow::Result<(u16, Value)> {
    Ok(
        prlx_commands::client::request(coordinator, method, path, body.as_ref(), idempotency_key)
            .await?,
    )
}

/// A credit account as the coordinator names it: a 0x address in lowercase (the watcher
/// credits the lowercase hex of the address a deposit names), anything else as given.
fn account_id(text: &str) -> Result<String, String> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) if hex.len() == 40 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(format!("0x{}", hex.to_ascii_lowercase()))
        }
        Some(_) => Err(format!(
            "{text:?} looks like a chain address but is not 0x and 40 hex characters"
        )),
        None if text.is_empty() => Err("must not be empty".into()),
        None => Ok(text.to_owned()),
    }
}

/// Prints an account's credits, first waiting up to `wait_secs` for `at_least` of them.
async fn balance(
    coordinator: &Endpoint,
    mut reads: AccountReads,
    at_least: Option<u64>,
    wait_secs: u64,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(wait_secs);
    let account = reads.account().to_owned();
    let path = format!("/v1/accounts/{account}");
    loop {
        let (status, body) = reads.get(coordinator, &path).await?;
        // 404: never credited yet, which is a balance of 0 while waiting.
        let balance = match status {
            200 => body["balance"]
                .as_u64()
                .context("no balance in the answer")?,
            404 => 0,
            _ => bail!("{status} {body}"),
        };
        let reached = at_least.is_none_or(|min| balance >= min);
        if reached {
            println!(
                "account {account} balance {balance} reserved {} available {}",
                body["reserved"].as_u64().unwrap_or(0),
                body["available"].as_u64().unwrap_or(0)
            );
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "account {account}: balance {balance} after {wait_secs} s, not yet {}",
                at_least.unwrap_or(0)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The deployment `coordinator` takes signatures for (`GET /v1/consent`).
async fn consent_domain(
    coordinator: &Endpoint,
) -> anyhow::Result<prlx_commands::consent::ConsentDomain> {
    let (status, body) = http(coordinator, "GET", "/v1/consent", None, None).await?;
    if status != 200 {
        bail!("GET /v1/consent: {status} {body}");
    }
    let chain_id = body["chain_id"]
        .as_u64()
        .context("/v1/consent: no chain_id")?;
    let escrow = body["verifying_contract"]
        .as_str()
        .context("/v1/consent: no verifying_contract")?;
    let escrow = prlx_chain::consent::address(escrow)?;
    Ok(prlx_commands::consent::ConsentDomain { chain_id, escrow })
}

/// Runs a stake or rewards subcommand.
async fn rewards(coordinator: &Endpoint, command: Sub) -> anyhow::Result<()> {
    match command {
        Sub::Balance { .. } | Sub::Delegate { .. } | Sub::Revoke { .. } => {
            unreachable!("handled in main")
        }
        Sub::StakeInfo { node_id } => {
            let path = format!("/v1/nodes/{node_id}/stake");
            let (status, body) = http(coordinator, "GET", &path, None, None).await?;
            if status != 200 {
                bail!("{status} {body}");
            }
            println!("{}", describe_stake(&body));
        }
        Sub::Rewards => {
            let (status, body) = http(coordinator, "GET", "/v1/rewards", None, None).await?;
            if status != 200 {
                bail!("{status} {body}");
            }
            let p = &body["policy"];
            if p.is_null() {
                println!("no reward policy is published: nothing is earned yet");
            } else {
                println!(
                    "policy: epochs of {} s, uptime slots of {} s, unstake cooldown {} s",
                    p["epoch_seconds"], p["uptime_slot_seconds"], p["unstake_cooldown_seconds"]
                );
            }
            println!("mode {}", body["mode"].as_str().unwrap_or("?"));
            println!("next_epoch {}", body["next_epoch"]);
            println!(
                "next epoch ends at {}, carried into it {}",
                body["next_epoch_ends_at"].as_str().unwrap_or("-"),
                body["carried"]
            );
        }
        Sub::Epochs {
            from,
            wait_for_payouts,
        } => {
            let deadline = wait_for_payouts.map(|s| Instant::now() + Duration::from_secs(s));
            let path = format!("/v1/rewards/epochs?from={from}");
            let epochs = loop {
                let (status, body) = http(coordinator, "GET", &path, None, None).await?;
                if status != 200 {
                    bail!("{status} {body}");
                }
                let epochs = body.as_array().cloned().unwrap_or_default();
                let paid = epochs
                    .iter()
                    .any(|e| e["payouts"].as_array().is_some_and(|p| !p.is_empty()));
                match deadline {
                    Some(at) if !paid => {
                        if Instant::now() > at {
                            bail!(
                                "no epoch from {from} on paid anyone within {} s",
                                wait_for_payouts.unwrap_or(0)
                            );
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    _ => break epochs,
                }
            };
            if epochs.is_empty() {
                println!("no epoch from {from} on is settled yet");
            }
            for e in &epochs {
                println!(
                    "epoch {} [{} .. {}) {}: income {}, carried in {}, pool {}, treasury {}, infra {}, carried over {}",
                    e["epoch"],
                    e["starts_at"].as_str().unwrap_or("?"),
                    e["ends_at"].as_str().unwrap_or("?"),
                    e["mode"].as_str().unwrap_or("?"),
                    e["income"],
                    e["carried_in"],
                    e["pool"],
                    e["treasury"],
                    e["infra"],
                    e["carried_over"]
                );
                for p in e["payouts"].as_array().into_iter().flatten() {
                    println!(
                        "  node {}: {} verified slots, weight {}, paid {}",
                        p["node_id"].as_str().unwrap_or("?"),
                        p["verified_slots"],
                        p["weight"].as_str().unwrap_or("?"),
                        p["amount"]
                    );
                }
            }
        }
    }
    Ok(())
}

fn describe_stake(body: &Value) -> String {
    let pending: Vec<String> = body["pending"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|u| {
            format!(
                "{} at {}",
                u["amount"],
                u["available_at"].as_str().unwrap_or("?")
            )
        })
        .collect();
    format!(
        "node {}: staked {}, pending [{}], returned {}, rewards paid {}",
        body["node_id"].as_str().unwrap_or("?"),
        body["staked"],
        pending.join(", "),
        body["returned"],
        body["rewards_paid"]
    )
}

/// Signs each body (key, body, prompt, its typed data's struct hash): alone, or with `batch`
/// all of them once, each body carrying its place in the batch.
fn sign_bodies(
    bodies: &mut [(String, Value, String, alloy::primitives::B256)],
    signer: &alloy::signers::local::PrivateKeySigner,
    domain: &alloy::sol_types::Eip712Domain,
    batch: bool,
) -> anyhow::Result<()> {
    use prlx_chain::consent::{sign, typed_data_hash};
    if !batch {
        let separator = domain.separator();
        for (_, body, _, leaf) in bodies.iter_mut() {
            body["signature"] = json!(sign(signer, typed_data_hash(&separator, leaf)));
        }
        return Ok(());
    }
    let leaves: Vec<_> = bodies.iter().map(|b| b.3).collect();
    let (signature, proofs) = prlx_chain::consent_batch::sign_batch(signer, &leaves, domain)
        .map_err(|e| anyhow::anyhow!("--batch-consent: {e}"))?;
    let count = leaves.len() as u32;
    for (index, ((_, body, _, _), proof)) in bodies.iter_mut().zip(proofs).enumerate() {
        body["signature"] = json!(signature);
        body["consent_batch"] = json!({
            "index": index,
            "count": count,
            "proof": proof.iter().map(hex::encode).collect::<Vec<_>>(),
        });
    }
    Ok(())
}

/// The key that signs: the account's, or with --delegation the delegate's.
fn signer(cli: &Cli) -> anyhow::Result<alloy::signers::local::PrivateKeySigner> {
    match (&cli.key_file, cli.dev_account) {
        (Some(path), _) => Ok(prlx_chain::keyfile::read_key_file(path)?),
        (None, Some(n)) => {
            anyhow::ensure!(
                n < prlx_chain::devchain::DEV_KEYS.len(),
                "--dev-account: {n} is not one of anvil's ten dev accounts"
            );
            Ok(prlx_chain::devchain::dev_signer(n))
        }
        (None, None) => bail!(
            "submissions and reads are signed by the account's key (or its delegate's): give \
             --key-file FILE (or --dev-account N on a development chain)"
        ),
    }
}

/// What `delegate` grants.
struct Grant {
    delegate: String,
    spending_limit: u64,
    expires_in: u64,
}

/// Signs `grant` as the account of `signer` (which must be `account`, if given) and writes it
/// to `out`.
async fn delegate_to(
    coordinator: &Endpoint,
    signer: &alloy::signers::local::PrivateKeySigner,
    account: Option<&str>,
    grant: Grant,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let own = prlx_chain::record::hex0x(signer.address().as_slice());
    if let Some(account) = account {
        anyhow::ensure!(
            account == own,
            "--account {account}: only the account's own key delegates (this key is {own})"
        );
    }
    let domain = consent_domain(coordinator).await?;
    let expires_at = unix_now() + grant.expires_in;
    let delegation = prlx_commands::consent::sign_delegation(
        signer,
        &own,
        &grant.delegate,
        grant.spending_limit,
        expires_at,
        &domain,
    )
    .map_err(|e| anyhow::anyhow!("--delegate: {e}"))?;
    let file = DelegationFile {
        account: own.clone(),
        chain_id: domain.chain_id,
        verifying_contract: prlx_chain::record::hex0x(domain.escrow.as_slice()),
        delegation,
    };
    std::fs::write(out, serde_json::to_string_pretty(&file)? + "\n")
        .with_context(|| format!("--out {}", out.display()))?;
    println!(
        "account {own} delegates up to {} credits to {} until {expires_at}: {}",
        grant.spending_limit,
        grant.delegate,
        out.display()
    );
    Ok(())
}

/// Revokes the delegation in `path`, which must be of `signer`'s own account.
async fn revoke(
    coordinator: &Endpoint,
    signer: &alloy::signers::local::PrivateKeySigner,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    let file = delegation_file(path)?;
    let own = prlx_chain::record::hex0x(signer.address().as_slice());
    anyhow::ensure!(
        file.account.eq_ignore_ascii_case(&own),
        "--delegation {}: a delegation of account {}, but the key signing is {own}",
        path.display(),
        file.account
    );
    let domain = consent_domain(coordinator).await?;
    file.check_domain(&domain)
        .map_err(|e| anyhow::anyhow!("--delegation {}: {e}", path.display()))?;
    let body = prlx_commands::revocation::sign_revocation(signer, &own, &file.delegation, &domain)
        .map_err(|e| anyhow::anyhow!("--delegation {}: {e}", path.display()))?;
    let (status, answer) = http(
        coordinator,
        "POST",
        "/v1/delegations/revocations",
        Some(serde_json::to_value(&body)?),
        None,
    )
    .await?;
    if status != 200 {
        bail!("revocation refused: {status} {answer}");
    }
    println!(
        "account {own} revoked its delegation {} to {}",
        answer["delegation"].as_str().unwrap_or("?"),
        file.delegation.delegate
    );
    Ok(())
}

/// Reads the delegation in `path`, whose delegate must be `signer`.
fn read_delegation(
    path: &std::path::Path,
    signer: &alloy::signers::local::PrivateKeySigner,
) -> anyhow::Result<DelegationFile> {
    let file = delegation_file(path)?;
    let key = prlx_chain::record::hex0x(signer.address().as_slice());
    anyhow::ensure!(
        file.delegation.delegate.eq_ignore_ascii_case(&key),
        "--delegation {}: delegates to {}, but the key signing is {key}",
        path.display(),
        file.delegation.delegate
    );
    Ok(file)
}

/// The delegation `prlx-client delegate` wrote to `path`.
fn delegation_file(path: &std::path::Path) -> anyhow::Result<DelegationFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--delegation {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("--delegation {}: not a delegation", path.display()))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
