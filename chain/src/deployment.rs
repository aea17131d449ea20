//! The deployment file: which chain, which contracts, which stream.
//!
//! `prlx-chain deploy` writes it on a development chain; on a real network an operator of the
//! coordinator writes it by hand (docs/settlement.md). The coordinator, the node's `claim` and
//! the auditor read it. JSON, camelCase, addresses as 0x-hex (written lowercase, read in any
//! case, checksum not enforced), amounts as decimal
//! strings (they pass 2^53), small counts as numbers. Written to a temporary name and
//! renamed, so a reader never sees half of it.

use std::path::Path;

use alloy::primitives::{Address, U256};
use serde::{Deserialize, Serialize};

use crate::ChainError;

/// The format version this build reads and writes.
pub const FORMAT: u32 = 1;

/// Everything needed to talk to one deployment of the contracts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Deployment {
    /// [`FORMAT`].
    pub format: u32,
    /// The chain id every transaction and signature is bound to.
    pub chain_id: u64,
    /// Where the deployer reached the chain (a default for tools; each may be given another).
    pub rpc_url: String,
    /// The block of the first deployment transaction: watchers start there.
    pub deployed_at_block: u64,
    /// Who holds which role.
    pub roles: Roles,
    /// The PRLX token.
    pub token: Token,
    /// The contracts' addresses.
    pub contracts: Contracts,
    /// NodeStaking's parameters.
    pub staking: Staking,
    /// The bootstrap reward stream (Sablier Lockup, linear).
    pub reward_stream: RewardStream,
}

/// Who holds which role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Roles {
    /// Sent the deployment transactions and funded the stream.
    pub deployer: Address,
    /// The coordinator's chain key: posts epochs to the distributor and settles escrow.
    pub coordinator: Address,
    /// Receives the treasury's 10 % of settled usage.
    pub treasury: Address,
    /// Receives infrastructure's 5 % of settled usage.
    pub infra: Address,
}

/// The token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Token {
    /// Its address.
    pub address: Address,
    /// ERC-20 decimals.
    pub decimals: u8,
    /// Its total supply, minor units.
    #[serde(with = "decimal")]
    pub total_supply: U256,
}

/// The contracts' addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Contracts {
    /// `CreditEscrow`.
    pub credit_escrow: Address,
    /// `NodeStaking`.
    pub node_staking: Address,
    /// `RewardsDistributor`.
    pub rewards_distributor: Address,
    /// Sablier's `SablierLockup`, which holds the bootstrap stream.
    pub sablier_lockup: Address,
}

/// NodeStaking's parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Staking {
    /// Seconds from an unstake request until withdrawal.
    pub cooldown_seconds: u64,
}

/// The bootstrap bucket's stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RewardStream {
    /// The stream's id in the Lockup contract.
    #[serde(with = "decimal")]
    pub stream_id: U256,
    /// What it streams in all, minor units (the 25 % Operator Rewards bucket).
    #[serde(with = "decimal")]
    pub deposit_amount: U256,
    /// Its length in seconds (linear from its start).
    pub duration_seconds: u64,
}

impl Deployment {
    /// Reads and checks a deployment file.
    pub fn read(path: &Path) -> Result<Self, ChainError> {
        let text = std::fs::read_to_string(path).map_err(|source| ChainError::Io {
            path: path.to_owned(),
            source,
        })?;
        let d: Deployment = serde_json::from_str(&text).map_err(|e| ChainError::Malformed {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        if d.format != FORMAT {
            return Err(ChainError::Malformed {
                path: path.to_owned(),
                reason: format!(
                    "format: {} is not {FORMAT}, the version this build reads",
                    d.format
                ),
            });
        }
        Ok(d)
    }

    /// Writes it atomically (temporary file, then rename).
    pub fn write(&self, path: &Path) -> Result<(), ChainError> {
        let io = |source| ChainError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut text = serde_json::to_string_pretty(self).expect("a deployment serializes");
        text.push('\n');
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}

/// U256 as a decimal string: JSON numbers lose precision past 2^53.
mod decimal {
    use alloy::primitives::U256;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &U256, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<U256, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(serde::de::Error::custom(format!(
                "{text:?} is not a decimal amount"
            )));
        }
        U256::from_str_radix(&text, 10).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Deployment {
        let a = |b| Address::repeat_byte(b);
        Deployment {
            format: FORMAT,
            chain_id: 31337,
            rpc_url: "http://127.0.0.1:18545".into(),
            deployed_at_block: 1,
            roles: Roles {
                deployer: a(1),
                coordinator: a(2),
                treasury: a(3),
                infra: a(4),
            },
            token: Token {
                address: a(5),
                decimals: 18,
                total_supply: U256::from(10).pow(U256::from(27)),
            },
            contracts: Contracts {
                credit_escrow: a(6),
                node_staking: a(7),
                rewards_distributor: a(8),
                sablier_lockup: a(9),
            },
            staking: Staking {
                cooldown_seconds: 60,
            },
            reward_stream: RewardStream {
                stream_id: U256::from(1),
                deposit_amount: U256::from(25) * U256::from(10).pow(U256::from(25)),
                duration_seconds: 730 * 86_400,
            },
        }
    }

    #[test]
    fn round_trips_with_decimal_amounts_and_refuses_other_formats() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d/deployment.json");
        let d = sample();
        d.write(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("\"totalSupply\": \"1000000000000000000000000000\""),
            "{text}"
        );
        assert!(text.contains("\"CreditEscrow\""), "{text}");
        assert_eq!(Deployment::read(&path).unwrap(), d);

        std::fs::write(&path, text.replace("\"format\": 1", "\"format\": 2")).unwrap();
        let err = Deployment::read(&path).unwrap_err().to_string();
        assert!(err.contains("format: 2"), "{err}");
        std::fs::write(
            &path,
            text.replace("\"1000000000000000000000000000\"", "\"1e27\""),
        )
        .unwrap();
        let err = Deployment::read(&path).unwrap_err().to_string();
        assert!(err.contains("not a decimal amount"), "{err}");
    }
}
