//! `prlx-node`: the operator daemon. It will pull dispatches addressed to this node from the
//! log, decrypt them, run the model with ONNX Runtime, commit to the result and report it.
//! That work is its own issue (the node daemon); until it lands this binary only says so,
//! rather than pretending to serve. `prlx-node generate` runs one prompt through the engine, a
//! manual check for operators that their models and ONNX Runtime work.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use prlx_node::engine::{Engine, EngineOptions, Provider};
use prlx_node::registry::Registry;

#[derive(Parser, Debug)]
#[command(
    name = "prlx-node",
    version,
    about = "ParalleliX operator node (serving dispatches is not implemented yet: see the node daemon issue)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve dispatches (not implemented yet).
    Run,
    /// Run one prompt through a registry model and print the generation.
    Generate(GenerateArgs),
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
    /// ONNX Runtime intra-op threads.
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

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        None | Some(Command::Run) => anyhow::bail!(
            "prlx-node does not serve yet: the node daemon is not implemented in this build \
             (`prlx-node generate` runs one prompt as a check)"
        ),
        Some(Command::Generate(args)) => generate(args),
    }
}

fn generate(args: GenerateArgs) -> anyhow::Result<()> {
    let registry_path = args
        .registry
        .unwrap_or_else(|| args.root.join("node/models/registry.toml"));
    let registry = Registry::load(&registry_path, &args.root)?;
    let entry = registry.get(&args.model)?;
    let options = EngineOptions {
        intra_op_threads: args.threads,
        provider: args.provider,
        ort_library: args.ort_library,
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
