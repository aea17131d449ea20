//! A private anvil: Foundry's local Ethereum node, from the npm packages
//! `scripts/chain.sh setup` installs, for tests and the demo.
//!
//! Each [`DevChain`] is its own node on a free loopback port with ten funded accounts, mined
//! instantly, killed on drop, so tests never share chain state.

use std::path::PathBuf;

use alloy::network::EthereumWallet;
use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::Address;
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;

use crate::ChainError;

/// The anvil binary: `PRLX_ANVIL` if set, else the one npm installed under `contracts/`
/// (`@foundry-rs/anvil-linux-amd64`; the `.bin/anvil` beside it is a Node wrapper that only
/// adds start-up time).
pub fn anvil_path() -> PathBuf {
    if let Some(p) = std::env::var_os("PRLX_ANVIL") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../contracts/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
}

/// A running anvil.
#[derive(Debug)]
pub struct DevChain {
    anvil: AnvilInstance,
}

impl DevChain {
    /// Starts anvil on a free port (instant mining).
    pub fn spawn() -> Result<Self, ChainError> {
        Self::spawn_with(&[])
    }

    /// Starts anvil with extra arguments (e.g. `["--block-time", "1"]`).
    pub fn spawn_with(args: &[&str]) -> Result<Self, ChainError> {
        let path = anvil_path();
        if !path.exists() {
            return Err(ChainError::Spawn(format!(
                "{} is missing: run scripts/chain.sh setup (or set PRLX_ANVIL)",
                path.display()
            )));
        }
        let anvil = Anvil::new()
            .path(path)
            .args(args.iter().copied())
            .try_spawn()
            .map_err(|e| ChainError::Spawn(e.to_string()))?;
        Ok(DevChain { anvil })
    }

    /// Its HTTP endpoint.
    pub fn endpoint(&self) -> String {
        self.anvil.endpoint()
    }

    /// Its chain id.
    pub fn chain_id(&self) -> u64 {
        self.anvil.chain_id()
    }

    /// Dev account `i`'s key (0..10).
    pub fn signer(&self, i: usize) -> PrivateKeySigner {
        PrivateKeySigner::from_signing_key(self.anvil.keys()[i].clone().into())
    }

    /// Dev account `i`'s address.
    pub fn address(&self, i: usize) -> Address {
        self.anvil.addresses()[i]
    }

    /// A provider that signs as dev account `i`.
    pub fn provider(&self, i: usize) -> Result<DynProvider, ChainError> {
        connect(&self.endpoint(), Some(self.signer(i)))
    }
}

/// A provider for `url`, signing with `signer` when given (read-only otherwise).
pub fn connect(url: &str, signer: Option<PrivateKeySigner>) -> Result<DynProvider, ChainError> {
    let url = url
        .parse()
        .map_err(|e| ChainError::rpc(format!("the RPC URL {url:?}"), e))?;
    Ok(match signer {
        Some(s) => ProviderBuilder::new()
            .wallet(EthereumWallet::from(s))
            .connect_http(url)
            .erased(),
        None => ProviderBuilder::new().connect_http(url).erased(),
    })
}

/// Anvil's ten dev accounts' keys (from the well-known "test ... junk" mnemonic): public
/// knowledge, so only ever for a development chain ([`DEV_CHAIN_ID`]).
pub const DEV_KEYS: [&str; 10] = [
    "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "dbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
];

/// Anvil's chain id: the only one the dev keys may sign for.
pub const DEV_CHAIN_ID: u64 = 31337;

/// Which dev account plays which part on a development chain (docs/settlement.md).
pub mod dev_role {
    /// Deploys the contracts and funds the reward stream (holds the supply).
    pub const DEPLOYER: usize = 0;
    /// The coordinator's chain key: posts epochs, settles escrow.
    pub const COORDINATOR: usize = 1;
    /// The client (ParalleliX AI's wallet): deposits credits.
    pub const CLIENT: usize = 2;
    /// Operators' wallets: stake for nodes, claim payouts (3 to 7).
    pub const FIRST_OPERATOR: usize = 3;
    /// Receives the treasury's share.
    pub const TREASURY: usize = 8;
    /// Receives infrastructure's share.
    pub const INFRA: usize = 9;
}

/// Dev account `i`'s key.
pub fn dev_signer(i: usize) -> PrivateKeySigner {
    DEV_KEYS[i].parse().expect("a dev key parses")
}
