//! `prlx-chain`: the chain-side tools of a ParalleliX deployment.
//!
//! `deploy` puts every contract on a development chain and writes the deployment file the
//! coordinator, the nodes and the auditor read (`scripts/chain.sh deploy` runs it). The
//! wallet subcommands (`deposit`, `stake`, `unstake`, `withdraw`, `balance`, `stake-info`,
//! `fund`, `address`) are what a client or an operator does on the chain by hand; each prints
//! one summary line on stdout for scripts (the work is in `prlx_chain::wallet`).

use std::path::PathBuf;
use std::process::ExitCode;

use alloy::primitives::{B256, U256};
use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use prlx_chain::artifact::SablierArtifacts;
use prlx_chain::deploy::{deploy_dev, DevParams, DEFAULT_STREAM_SECONDS};
use prlx_chain::devchain::{connect, dev_role, dev_signer, DEV_CHAIN_ID};
use prlx_chain::wallet::{
    format_amount, parse_address, parse_amount, parse_node_id, read_key_file, SignerChoice, Wallet,
};
use prlx_chain::Deployment;
use prlx_events::cli::{init_tracing, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "prlx-chain",
    version,
    about = "ParalleliX chain tools: deploy the contracts on a development chain; deposit, \
        stake and read balances as a wallet"
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
    /// Deposit PRLX into CreditEscrow for a credit account (approve, then deposit). The
    /// coordinator credits the account amount / 10^9 credits once its watcher sees the
    /// deposit confirmed.
    Deposit {
        #[command(flatten)]
        chain: ChainArgs,
        #[command(flatten)]
        signer: SignerArgs,
        /// The credit account, a 0x address (the coordinator's account is its lowercase hex).
        #[arg(long, value_name = "0xADDR")]
        account: String,
        /// PRLX, a decimal with up to 18 places (e.g. 1.5).
        #[arg(long, value_name = "PRLX")]
        amount: String,
    },
    /// Bond PRLX for a node in NodeStaking (approve, then stake). The first signer to stake
    /// for a node id is its staker for good.
    Stake(NodeAmount),
    /// Request part of a node's bond back; it can be withdrawn after the contract's cooldown.
    Unstake(NodeAmount),
    /// Withdraw a node's pending unstake to its staker, once the cooldown has passed.
    Withdraw(NodeSigned),
    /// Print an address's PRLX balance.
    Balance {
        #[command(flatten)]
        chain: ChainArgs,
        /// The address.
        #[arg(long, value_name = "0xADDR")]
        address: String,
    },
    /// Print a node's stake: bonded, pending and when it unlocks, staker.
    StakeInfo {
        #[command(flatten)]
        chain: ChainArgs,
        /// The node id (64 hex, 0x optional).
        #[arg(long, value_name = "HEX64")]
        node_id: String,
    },
    /// Send PRLX from the deployer, who holds the supply (development chain only: it signs
    /// with anvil's dev account 0).
    Fund {
        #[command(flatten)]
        chain: ChainArgs,
        /// The receiver.
        #[arg(long, value_name = "0xADDR")]
        to: String,
        /// PRLX, a decimal with up to 18 places.
        #[arg(long, value_name = "PRLX")]
        amount: String,
    },
    /// Print anvil's dev account N's address (dev_role: 0 deployer, 1 coordinator, 2 client,
    /// 3 to 7 operators, 8 treasury, 9 infra).
    Address {
        #[arg(long, value_name = "N")]
        dev_account: usize,
    },
}

/// A node's stake moved by its staker.
#[derive(Debug, clap::Args)]
struct NodeSigned {
    #[command(flatten)]
    chain: ChainArgs,
    #[command(flatten)]
    signer: SignerArgs,
    /// The node id `prlx-node run` prints as `node_id ...` (64 hex, 0x optional).
    #[arg(long, value_name = "HEX64")]
    node_id: String,
}

impl NodeSigned {
    /// The node and the wallet, each checked.
    async fn open(&self) -> anyhow::Result<(B256, Wallet)> {
        let node = parse_node_id(&self.node_id)?;
        Ok((node, self.chain.open(Some(self.signer.choice()?)).await?))
    }
}

/// An amount moved for a node by its staker.
#[derive(Debug, clap::Args)]
struct NodeAmount {
    #[command(flatten)]
    node: NodeSigned,
    /// PRLX, a decimal with up to 18 places.
    #[arg(long, value_name = "PRLX")]
    amount: String,
}

impl NodeAmount {
    /// The node, the wallet and the amount in minor units, each checked.
    async fn open(&self) -> anyhow::Result<(B256, Wallet, U256)> {
        let (node, w) = self.node.open().await?;
        let minor = parse_amount(&self.amount, w.decimals())?;
        Ok((node, w, minor))
    }
}

/// Which deployment, over which endpoint.
#[derive(Debug, clap::Args)]
struct ChainArgs {
    /// The deployment file (`scripts/chain.sh deploy` writes it).
    #[arg(
        long,
        value_name = "FILE",
        default_value = ".cache/chain/deployment.json"
    )]
    deployment: PathBuf,
    /// The chain's JSON-RPC URL [default: the deployment file's].
    #[arg(long)]
    rpc_url: Option<String>,
}

/// Who signs: one of the two.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct SignerArgs {
    /// Anvil's dev account N (0..9); refused unless the chain id is 31337.
    #[arg(long, value_name = "N")]
    dev_account: Option<usize>,
    /// A file holding a hex private key; refused if its group or others can read it.
    #[arg(long, value_name = "PATH")]
    key_file: Option<PathBuf>,
}

impl SignerArgs {
    fn choice(&self) -> anyhow::Result<SignerChoice> {
        Ok(match (&self.key_file, self.dev_account) {
            (Some(path), _) => SignerChoice::Key(read_key_file(path)?),
            (None, Some(n)) => SignerChoice::dev(n)?,
            (None, None) => bail!("--dev-account or --key-file: say who signs"),
        })
    }
}

impl ChainArgs {
    /// The wallet, signing as `signer` (read-only without).
    async fn open(&self, signer: Option<SignerChoice>) -> anyhow::Result<Wallet> {
        let d = Deployment::read(&self.deployment)
            .with_context(|| format!("--deployment {}", self.deployment.display()))?;
        let url = self.rpc_url.clone().unwrap_or_else(|| d.rpc_url.clone());
        Ok(Wallet::open(d, &url, signer).await?)
    }
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
        Command::Address { dev_account } => {
            SignerChoice::dev(dev_account)?;
            println!("{:#x}", dev_signer(dev_account).address());
            Ok(())
        }
        other => wallet(other).await,
    }
}

/// The wallet subcommands: arguments are checked before the chain is asked anything.
async fn wallet(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Deposit {
            chain,
            signer,
            account,
            amount,
        } => {
            let account = parse_address("--account", &account)?;
            let w = chain.open(Some(signer.choice()?)).await?;
            let minor = parse_amount(&amount, w.decimals())?;
            let mined = w.deposit(account, minor).await?;
            println!(
                "deposited {} for {account:#x} {mined}",
                prlx(minor, w.decimals())
            );
        }
        Command::Stake(args) => {
            let (node, w, minor) = args.open().await?;
            let mined = w.stake(node, minor).await?;
            let bonded = w.stake_info(node).await?.bonded;
            println!(
                "staked {} for node {node:x}, bonded {} {mined}",
                prlx(minor, w.decimals()),
                prlx(bonded, w.decimals())
            );
        }
        Command::Unstake(args) => {
            let (node, w, minor) = args.open().await?;
            let (mined, unlock_at) = w.request_unstake(node, minor).await?;
            println!(
                "unstake requested {} for node {node:x}, withdrawable at {unlock_at} {mined}",
                prlx(minor, w.decimals())
            );
        }
        Command::Withdraw(args) => {
            let (node, w) = args.open().await?;
            let (mined, amount) = w.withdraw(node).await?;
            let to = w.signer().expect("a signer was given");
            println!(
                "withdrew {} for node {node:x} to {to:#x} {mined}",
                prlx(amount, w.decimals())
            );
        }
        Command::Balance { chain, address } => {
            let address = parse_address("--address", &address)?;
            let w = chain.open(None).await?;
            let balance = w.balance(address).await?;
            println!("balance {address:#x} {}", prlx(balance, w.decimals()));
        }
        Command::StakeInfo { chain, node_id } => {
            let node = parse_node_id(&node_id)?;
            let w = chain.open(None).await?;
            let s = w.stake_info(node).await?;
            let d = w.decimals();
            println!(
                "node {node:x}: bonded {}, pending {} withdrawable at {}, staker {:#x}",
                prlx(s.bonded, d),
                prlx(s.pending, d),
                s.unlock_at,
                s.staker
            );
        }
        Command::Fund { chain, to, amount } => {
            let to = parse_address("--to", &to)?;
            let w = chain
                .open(Some(SignerChoice::dev(dev_role::DEPLOYER)?))
                .await?;
            let minor = parse_amount(&amount, w.decimals())?;
            let mined = w.transfer(to, minor).await?;
            println!("funded {to:#x} with {} {mined}", prlx(minor, w.decimals()));
        }
        Command::Deploy { .. } | Command::Address { .. } => unreachable!("handled in run"),
    }
    Ok(())
}

/// An amount as PRLX and minor units, so a reader and a script each get theirs exactly.
fn prlx(minor: U256, decimals: u8) -> String {
    format!(
        "{} PRLX ({minor} minor units)",
        format_amount(minor, decimals)
    )
}
