//! `prlx-coordinator`: the single writer of the ParalleliX event log.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use prlx_commands::actor;
use prlx_commands::decide::{Command, Submission, INFERENCE};
use prlx_commands::http;
use prlx_commands::shell::{load_or_create_key, load_or_create_signing_key, Coordinator, Outcome};
use prlx_events::event::{CatalogPublished, IntakeSource, Priority, Sealed};
use prlx_events::log::LogUrl;
use prlx_events::{AccountId, Hash32};

#[derive(Parser, Debug)]
#[command(
    name = "prlx-coordinator",
    version,
    about = "The ParalleliX coordinator: intake, scheduling and settlement, all as events on one log"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the intake lifecycle on a log end to end: publish the catalog, take deposits
    /// (a repeated on-chain transaction credits once), accept and reject submissions
    /// (idempotent retry, bad payload hash, unknown workload class and model, insufficient
    /// credit) and print what the log now holds. Safe to run again on the same log.
    Demo {
        /// Where the event log lives: file://DIR (embedded, the default) or kafka://HOST:PORT/TOPIC.
        #[arg(long, env = "PRLX_LOG", default_value = "file://./demo-log")]
        log: String,
        /// The coordinator's storage key (32 bytes, mode 0600); created on first start.
        /// Accepted payloads are sealed to it on the log.
        #[arg(long, env = "PRLX_KEY_FILE", default_value = "./demo-log.key")]
        key_file: PathBuf,
        /// The model catalog and prices (JSON) published to the log if none is there yet.
        #[arg(long, default_value = "config/catalog.json")]
        catalog: PathBuf,
        /// How many valid requests to submit.
        #[arg(long, default_value_t = 20)]
        requests: u32,
        /// This writer's producer id on the log.
        #[arg(long, default_value = "coordinator/1")]
        producer: String,
    },
    /// Serve the HTTP intake (submissions, deposits, quotes, node registration and heartbeats;
    /// the API is described at /openapi.json) until SIGTERM or Ctrl-C.
    ///
    /// Prints `listening on http://ADDR` to stdout once bound. On a signal it stops taking
    /// connections, lets requests in flight finish, and exits 0; everything it acknowledged is
    /// already durable on the log.
    ///
    /// The API is unauthenticated: bind it to loopback or put it behind an authenticating
    /// proxy.
    Serve {
        /// Where the event log lives: file://DIR (embedded, the default) or kafka://HOST:PORT/TOPIC.
        #[arg(long, env = "PRLX_LOG", default_value = "file://./coordinator-log")]
        log: String,
        /// The address to listen on; port 0 picks a free port (the line on stdout says which).
        #[arg(long, env = "PRLX_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// The coordinator's storage key (32 bytes, mode 0600); created on first start.
        /// Accepted payloads are sealed to it on the log.
        #[arg(long, env = "PRLX_KEY_FILE", default_value = "./coordinator.key")]
        key_file: PathBuf,
        /// The model catalog and prices (JSON) published to the log if none is there yet.
        #[arg(long, env = "PRLX_CATALOG", default_value = "config/catalog.json")]
        catalog: PathBuf,
        /// This writer's producer id on the log.
        #[arg(long, env = "PRLX_PRODUCER", default_value = "coordinator/1")]
        producer: String,
        /// The coordinator's RSA signing key (PKCS#8 PEM, mode 0600; a 3072-bit key is
        /// created on first start). It signs the session grants that let nodes read their
        /// dispatches; its public half goes on the log for nodes and auditors.
        #[arg(
            long,
            env = "PRLX_SIGNING_KEY",
            default_value = "./coordinator-signing.pem"
        )]
        signing_key: PathBuf,
    },
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Demo {
            log,
            key_file,
            catalog,
            requests,
            producer,
        } => demo(&log, &key_file, &catalog, requests, &producer).await,
        Cmd::Serve {
            log,
            listen,
            key_file,
            catalog,
            producer,
            signing_key,
        } => serve(&log, listen, &key_file, &catalog, &producer, &signing_key).await,
    }
}

/// Opens the coordinator and publishes the catalog from `catalog` if the log has none.
async fn open_coordinator(
    log: &str,
    key_file: &Path,
    catalog: &Path,
    producer: &str,
) -> anyhow::Result<Coordinator> {
    let url = LogUrl::parse(log)?;
    let key = load_or_create_key(key_file)?;
    let mut coord = Coordinator::open(&url, producer, key)
        .await
        .context("opening the coordinator")?;
    eprintln!(
        "log {log}: recovered {} records",
        coord.state_fold().next_offset()
    );
    if coord.state().catalog.is_none() {
        let text = std::fs::read_to_string(catalog)
            .with_context(|| format!("reading {}", catalog.display()))?;
        let c: CatalogPublished = serde_json::from_str(&text)
            .with_context(|| format!("parsing {}", catalog.display()))?;
        if let Outcome::Rejected { rejection, .. } =
            coord.execute(Command::PublishCatalog(c)).await?
        {
            anyhow::bail!("catalog {} refused: {rejection}", catalog.display());
        }
    }
    Ok(coord)
}

async fn serve(
    log: &str,
    listen: SocketAddr,
    key_file: &Path,
    catalog: &Path,
    producer: &str,
    signing_key: &Path,
) -> anyhow::Result<()> {
    // Installed first: a SIGTERM that arrives while we start must not kill us mid-recovery
    // with the default action, but shut us down like any other.
    let signal = http::shutdown_signal().context("installing signal handlers")?;
    let signing = load_or_create_signing_key(signing_key)?;
    let coord = open_coordinator(log, key_file, catalog, producer)
        .await?
        .with_signing_key(signing);
    let (handle, actor) = actor::spawn(coord);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    println!("listening on http://{addr}");

    let stopped = handle.clone();
    axum::serve(listener, http::app(handle.clone()))
        .with_graceful_shutdown(async move {
            tokio::select! {
                () = signal => eprintln!("shutting down: finishing requests in flight"),
                () = stopped.stopped() => eprintln!("the coordinator stopped; shutting down"),
            }
        })
        .await
        .context("serving HTTP")?;
    // Every handle is gone with the router: the actor drains its queue and ends.
    drop(handle);
    actor
        .await
        .context("the coordinator task panicked")?
        .context("the coordinator failed")?;
    eprintln!("stopped");
    Ok(())
}

async fn demo(
    log: &str,
    key_file: &std::path::Path,
    catalog: &std::path::Path,
    requests: u32,
    producer: &str,
) -> anyhow::Result<()> {
    let mut coord = open_coordinator(log, key_file, catalog, producer).await?;

    // Deposits observed on-chain. The run number keeps tx refs fresh when the demo runs again.
    let run = coord.state().deposits.len() as u64;
    let big = AccountId("parallelix-ai".into());
    let small = AccountId("small-client".into());
    for (account, tx, amount) in [
        (&big, format!("0xdemo-{run}"), 1_000_000),
        (&big, format!("0xdemo-{run}"), 1_000_000),
        (&small, format!("0xsmall-{run}"), 50),
    ] {
        let outcome = coord
            .execute(Command::DepositCredits {
                account: account.clone(),
                tx_ref: tx.clone(),
                amount,
            })
            .await?;
        println!(
            "deposit {tx} of {amount} to {account}: {}",
            describe(&outcome)
        );
    }

    let base = |account: &AccountId, key: Option<String>, prompt: &str| Submission {
        idempotency_key: key,
        source: IntakeSource::Local,
        workload_class: INFERENCE.into(),
        model: "oss-chat-v1".into(),
        hardware_tier: 1,
        priority: Priority::Standard,
        deadline_seconds: 60,
        max_tokens: 32,
        credit_account: account.clone(),
        client_pubkey: String::new(),
        payload_hash: Hash32::of(prompt.as_bytes()),
        computed_payload_hash: Hash32([0; 32]),
        sealed_payload: Sealed(Vec::new()),
    };
    let mut accepted = 0;
    for i in 0..requests {
        let prompt = format!("Prompt {run}.{i}: what is the capital of France?");
        let cmd = coord.submission(
            base(&big, Some(format!("demo-{run}-{i}")), &prompt),
            prompt.as_bytes(),
        );
        if let Outcome::Appended(_) = coord.execute(cmd).await? {
            accepted += 1;
        }
    }
    println!("submitted {requests} valid requests: {accepted} accepted");

    let prompt = format!("Prompt {run}.0: what is the capital of France?");
    let retry = coord.submission(
        base(&big, Some(format!("demo-{run}-0")), &prompt),
        prompt.as_bytes(),
    );
    let outcome = coord.execute(retry).await?;
    let id = coord
        .state()
        .request_for_key(&big, &format!("demo-{run}-0"));
    println!(
        "retry with the same Idempotency-Key: {} (request {})",
        describe(&outcome),
        id.map_or("none".into(), |r| r.to_string())
    );

    let mut bad_hash = base(&big, None, "something else");
    bad_hash.payload_hash = Hash32::of(b"not the payload");
    let mut unknown_class = base(&big, None, "x");
    unknown_class.workload_class = "ai.training".into();
    let mut unknown_model = base(&big, None, "x");
    unknown_model.model = "gpt-omega".into();
    for (what, s, payload) in [
        ("payload hash mismatch", bad_hash, &b"something else"[..]),
        ("unknown workload class", unknown_class, b"x"),
        ("unknown model", unknown_model, b"x"),
        ("insufficient credit", base(&small, None, "x"), b"x"),
    ] {
        let cmd = coord.submission(s, payload);
        println!("{what}: {}", describe(&coord.execute(cmd).await?));
    }

    let st = coord.state();
    println!(
        "\nstate after {} records:",
        coord.state_fold().next_offset()
    );
    println!("  requests accepted: {}", st.requests.len());
    for (code, n) in &st.rejections {
        println!("  rejected {code}: {n}");
    }
    for (account, a) in &st.accounts {
        println!(
            "  account {account}: balance {}, reserved {}, available {}",
            a.balance,
            a.reserved,
            a.available()
        );
    }
    Ok(())
}

fn describe(o: &Outcome) -> String {
    match o {
        Outcome::Appended(r) => format!("recorded at offsets {}..{}", r.start, r.end),
        Outcome::Unchanged => "already recorded, nothing new".into(),
        Outcome::Rejected { rejection, offset } => format!(
            "rejected {} ({}): {}{}",
            serde_json::to_value(rejection.code)
                .unwrap()
                .as_str()
                .unwrap_or("?"),
            rejection.field.as_deref().unwrap_or("-"),
            rejection.message,
            offset.map_or(String::new(), |o| format!(" [audit record at offset {o}]"))
        ),
        Outcome::Refused(why) => format!("refused, nothing recorded: {why}"),
    }
}
