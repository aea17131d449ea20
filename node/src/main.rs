//! `prlx-node`: the operator daemon. `prlx-node run` registers with the coordinator, follows
//! its log for dispatches addressed to this node, runs them with ONNX Runtime and reports
//! signed, committed results (see `prlx_node::daemon`). `prlx-node generate` runs one prompt
//! through the engine, a manual check for operators that their models and ONNX Runtime work.
//!
//! What the node reports goes to stderr through `tracing` (`--log-format`, `RUST_LOG`); stdout
//! carries only what scripts read (`node_id HEX`, the generation).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use prlx_events::cli::{init_tracing, shutdown_signal, LogFormat};
use prlx_node::daemon::{self, DaemonConfig, Stopped};
use prlx_node::engine::{Engine, EngineOptions, Provider};
use prlx_node::fault::Fault;
use prlx_node::registry::Registry;

#[derive(Parser, Debug)]
#[command(name = "prlx-node", version, about = "ParalleliX operator node")]
struct Cli {
    /// How the lines on stderr are written: text (one line per event, for people) or json
    /// (one JSON object per line, for collectors). RUST_LOG filters them (info when unset;
    /// e.g. RUST_LOG=warn, RUST_LOG=prlx_node=debug,info).
    #[arg(
        long,
        global = true,
        value_name = "FORMAT",
        default_value = "text",
        value_parser = clap::value_parser!(LogFormat)
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve dispatches: register with the coordinator, follow its log for work addressed to
    /// this node, run it with ONNX Runtime and report signed results, until SIGTERM or Ctrl-C.
    ///
    /// Prints `node_id HEX` to stdout once registered; progress goes to stderr (see
    /// --log-format).
    ///
    /// On SIGTERM or Ctrl-C the node takes no new dispatches, lets the generations already
    /// running finish and report (for up to --drain-secs), and exits 0. Dispatches it had not
    /// started are not run: the coordinator re-dispatches them to another node when their
    /// deadline passes. A node restarted with the same key reads the log from the start and
    /// runs only the dispatches still open for it, whose deadline has not passed.
    Run(RunArgs),
    /// Run one prompt through a registry model and print the generation.
    Generate(GenerateArgs),
    /// Claim this node's payouts on chain: read the coordinator's log for the epochs whose
    /// payout root was posted to the RewardsDistributor, rebuild this node's proof in each,
    /// and claim every one not claimed yet. The tokens go to the node's staker (the leaf's
    /// recipient) whoever sends the transactions. Prints one line per epoch.
    Claim(ClaimArgs),
}

#[derive(clap::Args, Debug)]
struct ClaimArgs {
    /// The coordinator's log: file://DIR or kafka://HOST:PORT/TOPIC.
    #[arg(long, env = "PRLX_LOG")]
    log: String,
    /// The node's key file (its id is the SHA-256 of its public key); or give --node-id.
    #[arg(long, required_unless_present = "node_id", conflicts_with = "node_id")]
    key: Option<PathBuf>,
    /// The node's id, 64 hex digits (as `prlx-node run` prints it).
    #[arg(long)]
    node_id: Option<prlx_events::NodeId>,
    /// The deployment file (contract addresses, chain id).
    #[arg(
        long,
        env = "PRLX_CHAIN_DEPLOYMENT",
        default_value = ".cache/chain/deployment.json"
    )]
    deployment: PathBuf,
    /// The chain's JSON-RPC URL; defaults to the deployment file's.
    #[arg(long, env = "PRLX_CHAIN_RPC_URL")]
    rpc_url: Option<String>,
    /// The key that sends (and pays the gas for) the claims: a file with the hex private key,
    /// readable by its owner only.
    #[arg(
        long,
        env = "PRLX_CHAIN_KEY_FILE",
        required_unless_present = "dev_account"
    )]
    chain_key_file: Option<PathBuf>,
    /// Send with anvil's dev account N instead (development chains only, chain id 31337).
    #[arg(long, conflicts_with = "chain_key_file")]
    dev_account: Option<usize>,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// The coordinator's HTTP API (registration, heartbeats, results): https://HOST[:PORT],
    /// or http://HOST:PORT for a coordinator serving --plain-http.
    #[arg(long, env = "PRLX_COORDINATOR")]
    coordinator: String,
    /// The coordinator's TLS certificate (PEM) to pin: the only certificate trusted, e.g.
    /// the development certificate `coordinator-tls/cert.pem` the coordinator made on first
    /// start (or a CA that issued its certificate). Without it, https trusts the system's
    /// roots.
    #[arg(long, env = "PRLX_COORDINATOR_CERT", value_name = "FILE")]
    coordinator_cert: Option<PathBuf>,
    /// The coordinator's event log, which this node reads (never writes) for its session
    /// grants and dispatches: file://DIR for the embedded log, kafka://HOST:PORT/TOPIC for
    /// Kafka. With a coordinator serving per-node feeds (--node-feed-topic), name the feed
    /// with the same template: kafka://HOST:PORT/prlx-node.{node}, where {node} becomes this
    /// node's id; the node then reads only what is addressed to it.
    #[arg(long, env = "PRLX_LOG")]
    log: String,
    /// This node's RSA private key (PKCS#8 PEM). Created (3072 bits, mode 0600) on first
    /// start; a key file that group or others can read is refused. Its public key's SHA-256
    /// is the node id: keep the file to keep the identity.
    #[arg(long, env = "PRLX_NODE_KEY")]
    key: PathBuf,
    /// Registry references of the models to serve, comma-separated (e.g. oss-chat-v1).
    #[arg(long, value_delimiter = ',', required = true)]
    models: Vec<String>,
    /// Hardware tier this node declares (1..=the catalog's max_tier); it gets requests of
    /// this tier and below.
    #[arg(long)]
    tier: u8,
    /// Requests run at once. One engine per slot is loaded for each model, or, with
    /// --batching, one engine per model holding this many requests in its batch.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    slots: u32,
    /// Continuous batching: one engine per model decodes up to --slots requests at once,
    /// joining and leaving between steps, with the bytes single-stream decoding gives.
    #[arg(long)]
    batching: bool,
    #[command(flatten)]
    engine: EngineArgs,
    /// Seconds between heartbeats to the coordinator.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    heartbeat_secs: u64,
    /// On SIGTERM or Ctrl-C, how long running generations may take to finish and report
    /// before the node exits anyway.
    #[arg(long, default_value_t = 60)]
    drain_secs: u64,
    /// The coordinator's signing public key (PEM) to pin. Every key the log publishes must
    /// equal it, else the node stops; without it the node trusts the key the log publishes.
    #[arg(long, env = "PRLX_COORDINATOR_KEY")]
    coordinator_key: Option<PathBuf>,
    /// Fault drill, for testing the coordinator's validation only: every report this node
    /// makes is defective in the named way (silent: none is made). Without it (the default)
    /// the node is honest. Deliberately not settable from the environment.
    #[arg(long, value_enum, value_name = "KIND")]
    fault: Option<Fault>,
    /// The chain address that stakes for this node on NodeStaking and receives its payouts
    /// (0x and 40 hex digits), signed into its registration: only this address's bond counts
    /// for the node, so someone who stakes for its id first gains nothing. Without it no bond
    /// counts and the node is never paid (it still serves). Fixed at first registration.
    #[arg(long, env = "PRLX_OPERATOR", value_name = "0xADDR", value_parser = parse_operator)]
    operator: Option<String>,
}

/// A chain address as the log spells it: `0x` and 40 lowercase hex digits.
fn parse_operator(s: &str) -> Result<String, String> {
    let lower = s.to_ascii_lowercase();
    let ok = lower.len() == 42
        && lower.starts_with("0x")
        && lower[2..].bytes().all(|b| b.is_ascii_hexdigit());
    if ok {
        Ok(lower)
    } else {
        Err("must be a chain address: 0x and 40 hex digits".into())
    }
}

#[derive(clap::Args, Debug)]
struct GenerateArgs {
    /// Registry reference of the model, e.g. oss-chat-v1 or tiny-test-v1.
    #[arg(long)]
    model: String,
    #[arg(long)]
    prompt: String,
    #[arg(long, default_value_t = 64)]
    max_tokens: u32,
    #[command(flatten)]
    engine: EngineArgs,
}

/// How models are found and run; shared by `run` and `generate`.
#[derive(clap::Args, Debug)]
struct EngineArgs {
    /// ONNX Runtime intra-op threads per engine.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// The model registry [default: ROOT/node/models/registry.toml].
    #[arg(long)]
    registry: Option<PathBuf>,
    /// The directory the registry's paths are relative to (the repository root).
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// Execution provider: cpu, or cuda (needs a build with the `cuda` feature).
    #[arg(long, default_value = "cpu")]
    provider: Provider,
    /// The ONNX Runtime library [default: $ORT_DYLIB_PATH, else ROOT/.cache/ort/ORT_DYLIB_PATH].
    #[arg(long)]
    ort_library: Option<PathBuf>,
}

impl EngineArgs {
    fn registry_path(&self) -> PathBuf {
        self.registry
            .clone()
            .unwrap_or_else(|| self.root.join("node/models/registry.toml"))
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let engine = match &cli.command {
        Command::Run(args) => Some(&args.engine),
        Command::Generate(args) => Some(&args.engine),
        Command::Claim(_) => None,
    };
    if let Some(engine) = engine.filter(|e| e.provider == Provider::Cuda) {
        with_cuda_libraries(&engine.root)?;
    }
    match cli.command {
        Command::Run(args) => run(args),
        Command::Generate(args) => generate(args),
        Command::Claim(args) => claim(args),
    }
}

fn claim(args: ClaimArgs) -> anyhow::Result<()> {
    use prlx_chain::claims::{claim_all, ClaimFinder, Claimed};
    use prlx_chain::devchain::{connect, dev_signer, DEV_CHAIN_ID, DEV_KEYS};
    use prlx_events::log::LogUrl;
    let node = match (args.node_id, &args.key) {
        (Some(id), _) => id,
        (None, Some(path)) => {
            // Read only: a claim must not make a key up.
            if !path.exists() {
                bail!("--key {}: no such file", path.display());
            }
            let (key, _) = prlx_node::keys::load_or_create(path, prlx_node::keys::MIN_KEY_BITS)
                .with_context(|| format!("--key {}", path.display()))?;
            prlx_events::crypto::node_id_of(&key.to_public_key())
        }
        (None, None) => bail!("give --key or --node-id"),
    };
    let deployment = prlx_chain::Deployment::read(&args.deployment)?;
    let signer = match (&args.chain_key_file, args.dev_account) {
        (Some(path), _) => prlx_chain::keyfile::read_key_file(path)?,
        (None, Some(n)) if deployment.chain_id == DEV_CHAIN_ID && n < DEV_KEYS.len() => {
            dev_signer(n)
        }
        (None, Some(n)) => {
            bail!("--dev-account {n}: only anvil's ten dev accounts, on chain {DEV_CHAIN_ID}")
        }
        (None, None) => bail!("give --chain-key-file or --dev-account"),
    };
    let rpc_url = args
        .rpc_url
        .clone()
        .unwrap_or_else(|| deployment.rpc_url.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let reader = LogUrl::parse(&args.log)?.open_reader()?;
        let mut finder = ClaimFinder::default();
        let mut batches = prlx_events::log::Batches::new(&reader, 0);
        while let Some(batch) = batches.next().await? {
            for record in &batch {
                // What does not decode is the auditor's business; claims need only the trees.
                if let Ok(env) = prlx_events::Envelope::decode(&record.payload) {
                    finder.see(&env.event);
                }
            }
        }
        let claims = finder.claims_of(node)?;
        if claims.is_empty() {
            println!("nothing to claim for {node}");
            return Ok(());
        }
        let provider = connect(&rpc_url, Some(signer))?;
        for ((epoch, outcome), c) in
            claim_all(&provider, deployment.contracts.rewards_distributor, &claims)
                .await?
                .into_iter()
                .zip(&claims)
        {
            match outcome {
                Claimed::Paid(tx) => println!(
                    "epoch {epoch}: claimed {} to {} (tx {tx})",
                    c.amount, c.recipient
                ),
                Claimed::Already => println!("epoch {epoch}: already claimed"),
            }
        }
        Ok(())
    })
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = DaemonConfig {
        coordinator: args.coordinator,
        coordinator_cert: args.coordinator_cert,
        log: args.log,
        key: args.key,
        models: args.models,
        hardware_tier: args.tier,
        slots: args.slots,
        batching: args.batching,
        threads: args.engine.threads,
        registry: args.engine.registry_path(),
        root: args.engine.root,
        provider: args.engine.provider,
        ort_library: args.engine.ort_library,
        heartbeat: Duration::from_secs(args.heartbeat_secs),
        drain: Duration::from_secs(args.drain_secs),
        coordinator_key: args.coordinator_key,
        fault: args.fault,
        operator: args.operator,
    };
    // Engines run on their own threads; the runtime only carries the I/O.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let signal = shutdown_signal().context("installing signal handlers")?;
        let stopped = daemon::run(config, signal).await?;
        if stopped == Stopped::DrainTimedOut {
            tracing::warn!("exiting with work unfinished (drain timeout)");
        }
        anyhow::Ok(())
    })?;
    // Returning from main ends the process, worker threads still generating after a drain
    // timeout included; the coordinator re-dispatches their work after its deadline.
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

fn generate(args: GenerateArgs) -> anyhow::Result<()> {
    let registry = Registry::load(&args.engine.registry_path(), &args.engine.root)?;
    let entry = registry.get(&args.model)?;
    let options = EngineOptions {
        intra_op_threads: args.engine.threads,
        provider: args.engine.provider,
        ort_library: args.engine.ort_library,
    };
    let mut engine = Engine::load(entry, &options)
        .with_context(|| format!("loading model {}", entry.reference))?;
    let generation = engine.generate(&args.prompt, args.max_tokens)?;

    println!("{}", generation.text);
    println!("---");
    println!(
        "model {} (sha256 {}), provider {}, {} intra-op thread(s), {} decoding",
        engine.reference(),
        generation.model_sha256,
        engine.provider(),
        engine.intra_op_threads(),
        generation.decoding
    );
    let stop = match generation.eos_token_id {
        Some(id) => format!("EOS id {id}"),
        None => format!("max tokens {}", args.max_tokens),
    };
    println!(
        "{} prompt tokens, {} generated tokens (stopped at {stop})",
        generation.prompt_tokens, generation.generated_tokens
    );
    let timing = &generation.timing;
    println!(
        "{:.1} tokens/s overall ({:.0} ms: prefill {:.1} ms, decode {:.1} tokens/s)",
        generation.tokens_per_second(),
        timing.total.as_secs_f64() * 1e3,
        timing.prefill.as_secs_f64() * 1e3,
        timing.decode_tokens_per_second()
    );
    println!("token ids: {:?}", generation.token_ids);
    Ok(())
}

/// Set when this process was started again with the CUDA wheels' libraries on the loader's
/// path, so it does not start itself once more.
const CUDA_LIBRARIES_ENV: &str = "PRLX_NODE_CUDA_LIBRARIES";

/// ONNX Runtime opens its CUDA provider with the dynamic loader, which finds `libcudart`,
/// `libcublas` and `libcudnn` only on `LD_LIBRARY_PATH` (read once, when a process starts).
/// When `scripts/setup-models.sh --gpu` installed them under the root, the node starts itself
/// again with their folders first on that path; without them it runs as it is (a system
/// CUDA install), and a provider that cannot load is the engine's clear error.
fn with_cuda_libraries(root: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt as _;
    if std::env::var_os(CUDA_LIBRARIES_ENV).is_some() {
        return Ok(());
    }
    let Some(folders) = prlx_node::gpu::library_path(root) else {
        return Ok(());
    };
    let path = match std::env::var("LD_LIBRARY_PATH") {
        Ok(old) if !old.is_empty() => format!("{folders}:{old}"),
        _ => folders,
    };
    let exe = std::env::current_exe().context("finding this executable to start it again")?;
    tracing::info!(
        "starting again with the CUDA libraries of {} on LD_LIBRARY_PATH",
        prlx_node::gpu::GPU_CACHE
    );
    let error = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("LD_LIBRARY_PATH", path)
        .env(CUDA_LIBRARIES_ENV, "1")
        .exec();
    Err(error).context("starting again with the CUDA libraries on LD_LIBRARY_PATH")
}
