//! The one error type of this crate.

use std::path::PathBuf;

/// What can go wrong talking to a chain or reading what describes one.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// A file (artifact, deployment file) could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not what it should be (bad JSON, a missing field, a wrong format version).
    #[error("{path}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the field.
        reason: String,
    },
    /// Library linking failed (a missing library, a placeholder not where the artifact says).
    #[error("linking {artifact}: {reason}")]
    Link {
        /// The artifact being linked.
        artifact: String,
        /// What is wrong.
        reason: String,
    },
    /// The node answered an RPC with an error, or could not be reached.
    #[error("{what}: {reason}")]
    Rpc {
        /// What was being done.
        what: String,
        /// The node's or the transport's answer.
        reason: String,
    },
    /// A transaction was mined but reverted, or did not do what it must (no contract address).
    #[error("{what}: {reason}")]
    Transaction {
        /// What was being done.
        what: String,
        /// The revert or the missing effect.
        reason: String,
    },
    /// A chain node (anvil) could not be started.
    #[error("starting anvil: {0}")]
    Spawn(String),
    /// A Merkle tree input is unusable (no leaves, a node twice).
    #[error("payout tree: {0}")]
    Tree(String),
}

impl ChainError {
    /// An RPC error while doing `what`.
    pub fn rpc(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        ChainError::Rpc {
            what: what.into(),
            reason: reason.to_string(),
        }
    }

    /// A transaction that failed while doing `what`.
    pub fn tx(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        ChainError::Transaction {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}
