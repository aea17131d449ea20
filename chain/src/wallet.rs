//! A wallet's side of the contracts: what a client or an operator does by hand (deposit for
//! credits, bond and unbond stake, read balances), for `prlx-chain`'s subcommands and the demo.
//!
//! Amounts are exact: PRLX is written as a decimal with up to the token's decimals and held
//! as minor units ([`parse_amount`], [`format_amount`]); no float ever touches them. A
//! transaction is first simulated, so a revert comes back decoded with the contracts' own
//! error types and said in words ([`Wallet`]), not as a gas-estimation failure.
//! Who signs is explicit ([`SignerChoice`]): anvil's public dev keys only on the
//! development chain id, or a key file that only its owner can read.

use std::path::{Path, PathBuf};

use alloy::contract::CallBuilder;
use alloy::eips::{BlockId, BlockNumberOrTag};
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::signers::local::PrivateKeySigner;

use crate::bindings::CreditEscrow::{self, CreditEscrowErrors};
use crate::bindings::NodeStaking::{self, NodeStakingErrors};
use crate::bindings::PRLX::{self, PRLXErrors};
use crate::deploy::confirm;
use crate::devchain::{connect, dev_signer, DEV_CHAIN_ID, DEV_KEYS};
use crate::record::hex0x;
use crate::{ChainError, Deployment};

/// Why a wallet action was not done.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    /// An argument is unusable; names it.
    #[error("{arg}: {reason}")]
    Argument {
        /// The argument, as the command line spells it (`--amount`).
        arg: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The key file cannot be used (never says anything of the key itself).
    #[error("--key-file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The RPC endpoint is another chain than the deployment file's, or the dev keys were
    /// asked to sign for a chain that is not a development one.
    #[error("{0}")]
    WrongChain(String),
    /// The contract refused: its error, decoded and said in words.
    #[error("{what}: refused by the contract: {reason}")]
    Refused {
        /// What was being done.
        what: String,
        /// The contract's reason.
        reason: String,
    },
    /// The chain could not be asked, or a transaction failed for another reason.
    #[error(transparent)]
    Chain(#[from] ChainError),
}

fn argument(arg: &'static str, reason: impl Into<String>) -> WalletError {
    WalletError::Argument {
        arg,
        reason: reason.into(),
    }
}

/// `text` PRLX (a decimal with at most `decimals` places, like `1.5` or `1000`) in minor
/// units, exactly.
pub fn parse_amount(text: &str, decimals: u8) -> Result<U256, WalletError> {
    let bad = |why: &str| argument("--amount", format!("{text:?} {why}"));
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || text.ends_with('.') {
        return Err(bad("is not a decimal amount of PRLX (e.g. 1000 or 1.5)"));
    }
    if fraction.len() > usize::from(decimals) {
        return Err(bad(&format!(
            "has more than {decimals} decimals (the token's smallest unit)"
        )));
    }
    let padded = format!("{whole}{fraction:0<width$}", width = usize::from(decimals));
    let minor = U256::from_str_radix(&padded, 10).map_err(|_| bad("is too large"))?;
    if minor.is_zero() {
        return Err(bad("is zero"));
    }
    Ok(minor)
}

/// `minor` units as PRLX with `decimals` places, trailing zeros dropped (`1.5`, `1000`).
pub fn format_amount(minor: U256, decimals: u8) -> String {
    let text = minor.to_string();
    let places = usize::from(decimals);
    if places == 0 {
        return text;
    }
    let padded = format!("{text:0>width$}", width = places + 1);
    let (whole, fraction) = padded.split_at(padded.len() - places);
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        whole.to_owned()
    } else {
        format!("{whole}.{fraction}")
    }
}

/// A node id as `prlx-node` prints it (`node_id HEX`): 64 hex characters, `0x` optional.
pub fn parse_node_id(text: &str) -> Result<B256, WalletError> {
    let hex = text.strip_prefix("0x").unwrap_or(text);
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(argument(
            "--node-id",
            format!(
                "{text:?} is not a node id: 64 hex characters (what prlx-node prints as `node_id ...`)"
            ),
        ));
    }
    hex.parse()
        .map_err(|e| argument("--node-id", format!("{text:?}: {e}")))
}

/// An address for `arg`: 0x and 40 hex characters (any case; the checksum is not enforced).
pub fn parse_address(arg: &'static str, text: &str) -> Result<Address, WalletError> {
    let hex = text
        .strip_prefix("0x")
        .ok_or_else(|| argument(arg, format!("{text:?} is not a 0x address")))?;
    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(argument(
            arg,
            format!("{text:?} is not an address: 0x and 40 hex characters"),
        ));
    }
    hex.parse()
        .map_err(|e| argument(arg, format!("{text:?}: {e}")))
}

/// Who signs a transaction.
#[derive(Debug, Clone)]
pub enum SignerChoice {
    /// Anvil's dev account `n` (0..10): public keys, so only for [`DEV_CHAIN_ID`].
    Dev(usize),
    /// A hex private key read from a file (see [`read_key_file`]).
    Key(PrivateKeySigner),
}

impl SignerChoice {
    /// Dev account `n`, checked to exist.
    pub fn dev(n: usize) -> Result<Self, WalletError> {
        if n >= DEV_KEYS.len() {
            return Err(argument(
                "--dev-account",
                format!("{n}: anvil has dev accounts 0 to {}", DEV_KEYS.len() - 1),
            ));
        }
        Ok(SignerChoice::Dev(n))
    }

    fn signer(&self) -> PrivateKeySigner {
        match self {
            SignerChoice::Dev(n) => dev_signer(*n),
            SignerChoice::Key(k) => k.clone(),
        }
    }
}

/// The private key in `path` ([`crate::keyfile::read_key_file`]: hex, owner-only), with the
/// wallet's error naming `--key-file`.
pub fn read_key_file(path: &Path) -> Result<PrivateKeySigner, WalletError> {
    crate::keyfile::read_key_file(path).map_err(|e| WalletError::KeyFile {
        path: path.to_owned(),
        reason: match e {
            crate::ChainError::Io { source, .. } => source.to_string(),
            crate::ChainError::Malformed { reason, .. } => reason,
            other => other.to_string(),
        },
    })
}

/// A mined transaction: where to find it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mined {
    /// Its hash.
    pub tx: B256,
    /// The block it is in.
    pub block: u64,
}

impl std::fmt::Display for Mined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tx {} block {}", hex0x(self.tx.as_slice()), self.block)
    }
}

/// A node's stake as `NodeStaking` holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StakeInfo {
    /// Bonded (counted by the coordinator's weighting).
    pub bonded: U256,
    /// Requested out, not yet withdrawn (zero: none).
    pub pending: U256,
    /// When the pending amount can be withdrawn (chain time, Unix seconds).
    pub unlock_at: u64,
    /// Who staked first and alone may move it (zero: never staked).
    pub staker: Address,
}

/// One deployment, reached over one RPC endpoint, signing as one account (or read-only).
#[derive(Debug)]
pub struct Wallet {
    provider: DynProvider,
    /// The contracts.
    pub deployment: Deployment,
    signer: Option<Address>,
}

impl Wallet {
    /// Connects to `rpc_url` and checks it is the deployment's chain; a dev signer is refused
    /// on any chain but [`DEV_CHAIN_ID`].
    pub async fn open(
        deployment: Deployment,
        rpc_url: &str,
        signer: Option<SignerChoice>,
    ) -> Result<Self, WalletError> {
        let key = signer.as_ref().map(SignerChoice::signer);
        let address = key.as_ref().map(PrivateKeySigner::address);
        let provider = connect(rpc_url, key)?;
        let chain_id = provider
            .get_chain_id()
            .await
            .map_err(|e| ChainError::rpc(format!("asking {rpc_url} for its chain id"), e))?;
        if chain_id != deployment.chain_id {
            return Err(WalletError::WrongChain(format!(
                "{rpc_url} is chain {chain_id}, the deployment file's is {}",
                deployment.chain_id
            )));
        }
        if let Some(SignerChoice::Dev(n)) = signer {
            if chain_id != DEV_CHAIN_ID {
                return Err(WalletError::WrongChain(format!(
                    "--dev-account {n}: chain {chain_id} is not a development chain \
                     ({DEV_CHAIN_ID}); anvil's dev keys are public, use --key-file"
                )));
            }
        }
        Ok(Wallet {
            provider,
            deployment,
            signer: address,
        })
    }

    /// The signing account (`None`: read-only).
    pub fn signer(&self) -> Option<Address> {
        self.signer
    }

    /// The token's decimals.
    pub fn decimals(&self) -> u8 {
        self.deployment.token.decimals
    }

    fn token(&self) -> PRLX::PRLXInstance<DynProvider> {
        PRLX::new(self.deployment.token.address, self.provider.clone())
    }

    fn staking(&self) -> NodeStaking::NodeStakingInstance<DynProvider> {
        NodeStaking::new(
            self.deployment.contracts.node_staking,
            self.provider.clone(),
        )
    }

    /// PRLX held by `address`, minor units.
    pub async fn balance(&self, address: Address) -> Result<U256, WalletError> {
        Ok(self
            .token()
            .balanceOf(address)
            .call()
            .await
            .map_err(|e| ChainError::rpc("PRLX.balanceOf", e))?)
    }

    /// `node`'s stake.
    pub async fn stake_info(&self, node: B256) -> Result<StakeInfo, WalletError> {
        let staking = self.staking();
        let rpc = |what| move |e| ChainError::rpc(what, e);
        let bonded = staking
            .bonded(node)
            .call()
            .await
            .map_err(rpc("NodeStaking.bonded"))?;
        let pending = staking
            .pendingOf(node)
            .call()
            .await
            .map_err(rpc("NodeStaking.pendingOf"))?;
        let staker = staking
            .stakerOf(node)
            .call()
            .await
            .map_err(rpc("NodeStaking.stakerOf"))?;
        Ok(StakeInfo {
            bonded,
            pending: pending.amount,
            unlock_at: pending.unlockAt.saturating_to(),
            staker,
        })
    }

    /// Sends `amount` PRLX to `to`.
    pub async fn transfer(&self, to: Address, amount: U256) -> Result<Mined, WalletError> {
        self.send("transfer", self.token().transfer(to, amount))
            .await
    }

    /// Approves the escrow and deposits `amount` for `account` (which the coordinator credits).
    pub async fn deposit(&self, account: Address, amount: U256) -> Result<Mined, WalletError> {
        let escrow = self.deployment.contracts.credit_escrow;
        self.send("approve", self.token().approve(escrow, amount))
            .await?;
        let escrow = CreditEscrow::new(escrow, self.provider.clone());
        self.send("deposit", escrow.deposit(account, amount)).await
    }

    /// Approves the staking contract and bonds `amount` for `node`.
    pub async fn stake(&self, node: B256, amount: U256) -> Result<Mined, WalletError> {
        let staking = self.staking();
        self.send("approve", self.token().approve(*staking.address(), amount))
            .await?;
        self.send("stake", staking.stake(node, amount)).await
    }

    /// Asks for `amount` of `node`'s bond back; returns when it unlocks too.
    pub async fn request_unstake(
        &self,
        node: B256,
        amount: U256,
    ) -> Result<(Mined, u64), WalletError> {
        let mined = self
            .send("unstake", self.staking().requestUnstake(node, amount))
            .await?;
        Ok((mined, self.stake_info(node).await?.unlock_at))
    }

    /// Withdraws `node`'s pending unstake to its staker; returns the amount too.
    pub async fn withdraw(&self, node: B256) -> Result<(Mined, U256), WalletError> {
        let pending = self.stake_info(node).await?.pending;
        let mined = self.send("withdraw", self.staking().withdraw(node)).await?;
        Ok((mined, pending))
    }

    /// The pending block's time: what a transaction sent now is measured against.
    pub async fn chain_time(&self) -> Result<u64, WalletError> {
        let block = self
            .provider
            .get_block_by_number(BlockNumberOrTag::Pending)
            .await
            .map_err(|e| ChainError::rpc("eth_getBlockByNumber", e))?
            .ok_or_else(|| ChainError::rpc("eth_getBlockByNumber", "no pending block"))?;
        Ok(block.header.timestamp)
    }

    /// Simulates `call`, then sends it and waits for it to be mined. A revert, in the
    /// simulation or after, is decoded with the contracts' errors.
    async fn send<C: alloy::contract::CallDecoder>(
        &self,
        what: &str,
        call: CallBuilder<&DynProvider, C>,
    ) -> Result<Mined, WalletError> {
        if self.signer.is_none() {
            return Err(argument(
                "--dev-account/--key-file",
                format!("{what} needs a signer"),
            ));
        }
        // Against the pending block: its time is the next block's, which is what a
        // time-locked check (the cooldown) meets; the latest block's can be long past on a
        // chain that mines only when a transaction comes (anvil).
        if let Err(e) = call.call().block(BlockId::pending()).await {
            return Err(self.refused(what, &e).await);
        }
        let pending = match call.send().await {
            Ok(p) => p,
            Err(e) => return Err(self.refused(what, &e).await),
        };
        let receipt = confirm(Ok::<_, ChainError>(pending), what).await?;
        Ok(Mined {
            tx: receipt.transaction_hash,
            block: receipt.block_number.unwrap_or_default(),
        })
    }

    /// `e` in words: the contract's error when it reverted with one of ours.
    async fn refused(&self, what: &str, e: &alloy::contract::Error) -> WalletError {
        let d = self.decimals();
        let amount = |v: &U256| format!("{} PRLX", format_amount(*v, d));
        let reason = if let Some(err) = e.as_decoded_interface_error::<NodeStakingErrors>() {
            match err {
                NodeStakingErrors::StillLocked(s) => {
                    let unlock: u64 = s.unlockAt.saturating_to();
                    let wait = match self.chain_time().await {
                        Ok(now) => format!(", in {} s", unlock.saturating_sub(now)),
                        Err(_) => String::new(),
                    };
                    format!("still in its cooldown: it unlocks at {unlock} (Unix time on the chain){wait}")
                }
                NodeStakingErrors::NothingPending(_) => {
                    "nothing is pending for this node: request an unstake first".into()
                }
                NodeStakingErrors::NotStaker(s) => format!(
                    "the signer {} is not this node's staker ({})",
                    hex0x(s.caller.as_slice()),
                    hex0x(s.staker.as_slice())
                ),
                NodeStakingErrors::InsufficientBond(s) => format!(
                    "asked {}, bonded {}",
                    amount(&s.requested),
                    amount(&s.bonded)
                ),
                NodeStakingErrors::UnstakeAlreadyPending(s) => format!(
                    "an unstake of {} is already pending (unlocks at {}): withdraw it first",
                    amount(&s.amount),
                    s.unlockAt
                ),
                other => format!("{other:?}"),
            }
        } else if let Some(err) = e.as_decoded_interface_error::<PRLXErrors>() {
            match err {
                PRLXErrors::ERC20InsufficientBalance(s) => format!(
                    "{} holds {}, needs {}",
                    hex0x(s.sender.as_slice()),
                    amount(&s.balance),
                    amount(&s.needed)
                ),
                other => format!("{other:?}"),
            }
        } else if let Some(err) = e.as_decoded_interface_error::<CreditEscrowErrors>() {
            format!("{err:?}")
        } else {
            return ChainError::tx(what, e).into();
        };
        WalletError::Refused {
            what: what.into(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_exactly_and_print_back() {
        let prlx = |s: &str| parse_amount(s, 18).unwrap();
        assert_eq!(prlx("1"), U256::from(10).pow(U256::from(18)));
        assert_eq!(
            prlx("1.5"),
            U256::from(15) * U256::from(10).pow(U256::from(17))
        );
        assert_eq!(prlx("0.000000000000000001"), U256::from(1));
        assert_eq!(
            prlx("1000000000.000000000000000007").to_string(),
            "1000000000000000000000000007"
        );
        for (minor, text) in [
            ("1", "0.000000000000000001"),
            ("1500000000000000000", "1.5"),
            ("2000000000000000000000", "2000"),
            (
                "1000000000000000000000000007",
                "1000000000.000000000000000007",
            ),
        ] {
            let minor = U256::from_str_radix(minor, 10).unwrap();
            assert_eq!(format_amount(minor, 18), text);
            assert_eq!(prlx(text), minor);
        }
        assert_eq!(format_amount(U256::ZERO, 18), "0");
        assert_eq!(format_amount(U256::from(7), 0), "7");
    }

    #[test]
    fn malformed_amounts_are_refused_naming_the_argument() {
        for bad in [
            "", ".5", "1.", "1e3", "-1", "1,5", " 1", "0", "0.000", "abc",
        ] {
            let err = parse_amount(bad, 18).unwrap_err().to_string();
            assert!(err.starts_with("--amount: "), "{bad:?}: {err}");
        }
        let err = parse_amount("0.0000000000000000001", 18)
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than 18 decimals"), "{err}");
        let huge = "9".repeat(80);
        assert!(parse_amount(&huge, 18)
            .unwrap_err()
            .to_string()
            .contains("too large"));
    }

    #[test]
    fn node_ids_and_addresses_are_checked() {
        let hex = "ab".repeat(32);
        assert_eq!(parse_node_id(&hex).unwrap(), B256::repeat_byte(0xab));
        assert_eq!(
            parse_node_id(&format!("0x{hex}")).unwrap(),
            B256::repeat_byte(0xab)
        );
        for bad in ["abc", &hex[2..], &format!("{hex}00"), &"zz".repeat(32)] {
            let err = parse_node_id(bad).unwrap_err().to_string();
            assert!(err.starts_with("--node-id: "), "{err}");
        }
        let a = parse_address("--account", "0x70997970C51812dc3A010C7d01b50e0d17dc79C8").unwrap();
        assert_eq!(
            hex0x(a.as_slice()),
            "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"
        );
        for bad in ["70997970c51812dc3a010c7d01b50e0d17dc79c8", "0x1234", "0xzz"] {
            let err = parse_address("--to", bad).unwrap_err().to_string();
            assert!(err.starts_with("--to: "), "{err}");
        }
    }
}
