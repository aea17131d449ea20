//! `prlx-chain`: the chain-side tools of a ParalleliX deployment.
//!
//! `deploy` puts every contract on a development chain and writes the deployment file the
//! coordinator, the nodes and the auditor read (`scripts/chain.sh deploy` runs it).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use prlx_chain::artifact::SablierArtifacts;
use prlx_chain::deploy::{deploy_dev, DevParams, DEFAULT_STREAM_SECONDS};
use prlx_chain::devchain::{connect, dev_role, dev_signer, DEV_CHAIN_ID};
use prlx_events::cli::{init_tracing, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "prlx-chain",
    version,
    about = "ParalleliX chain tools: deploy the contracts on a development chain"
)]
struct Cli {
    /// Log lines as `text` or `json` (stderr; filter with RUST_LOG).
    #[arg(long, global = true, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Deploy PRLX, CreditEscrow, NodeStaking, RewardsDistributor, Sablier's Lockup and the
    /// bootstrap stream on a development chain (chain id 31337, anvil's dev accounts), and
    /// write the deployment file.
    Deploy {
        /// The chain's JSON-RPC URL.
        #[arg(long, default_value = "http://127.0.0.1:18545")]
        rpc_url: String,
        /// Where to write the deployment file.
        #[arg(long, default_value = ".cache/chain/deployment.json")]
        out: PathBuf,
        /// Where `scripts/chain.sh setup` unpacked Sablier's npm packages.
        #[arg(long, default_value = ".cache/chain/sablier")]
        sablier: PathBuf,
        /// NodeStaking's unstake cooldown, seconds.
        #[arg(long, default_value_t = 60)]
        cooldown_seconds: u64,
        /// The bootstrap stream's length, seconds (default ~24 months).
        #[arg(long, default_value_t = DEFAULT_STREAM_SECONDS)]
        stream_seconds: u64,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Deploy {
            rpc_url,
            out,
            sablier,
            cooldown_seconds,
            stream_seconds,
        } => {
            let deployer = dev_signer(dev_role::DEPLOYER);
            let address = deployer.address();
            let provider = connect(&rpc_url, Some(deployer))?;
            let chain_id = alloy::providers::Provider::get_chain_id(&provider)
                .await
                .with_context(|| format!("asking {rpc_url} for its chain id"))?;
            // The dev keys are public: refuse to use them anywhere but a development chain.
            if chain_id != DEV_CHAIN_ID {
                bail!("chain id {chain_id} is not a development chain ({DEV_CHAIN_ID}); deploy uses anvil's public dev keys");
            }
            let params = DevParams {
                coordinator: dev_signer(dev_role::COORDINATOR).address(),
                treasury: dev_signer(dev_role::TREASURY).address(),
                infra: dev_signer(dev_role::INFRA).address(),
                cooldown_seconds,
                stream_seconds,
                sablier: SablierArtifacts::under(&sablier),
                rpc_url: rpc_url.clone(),
            };
            let deployment = deploy_dev(&provider, address, &params).await?;
            deployment.write(&out)?;
            tracing::info!(path = %out.display(), "deployment file written");
            Ok(())
        }
    }
}
