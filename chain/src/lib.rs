//! The ParalleliX coordinator's side of the chain.
//!
//! Money is real: credits are bought by depositing PRLX into the `CreditEscrow` contract,
//! operators bond PRLX in `NodeStaking`, each epoch's payouts are posted to the
//! `RewardsDistributor` as one Merkle root, and the bootstrap bucket streams to the distributor
//! from a real Sablier Lockup stream. The contracts live in `contracts/` (Solidity, compiled
//! by `scripts/chain.sh build` into the checked-in `contracts/out/`); this crate is what Rust
//! needs of them.
//!
//! # Layout
//! - [`bindings`]: typed contract bindings generated from the checked-in ABIs (and the
//!   part of Sablier's Lockup interface the coordinator calls).
//! - [`artifact`]: compiled artifacts read at run time (Sablier's, from its npm packages)
//!   and library linking.
//! - [`deployment`]: the deployment file (addresses, chain id, the reward stream) that the
//!   coordinator and the tools read.
//! - [`deploy`]: deploying every contract on a development chain (anvil).
//! - [`merkle`]: the payout tree the distributor verifies.
//! - [`claims`]: an operator's claims, found on the log and sent to the distributor.
//! - [`devchain`]: a private anvil for tests and the demo.
//! - [`watch`]: following the contracts' events with a confirmation depth.
//! - [`verify`]: checking a recorded observation against the chain (the auditor).
//! - [`consent`]: the EIP-712 typed data a client signs to have a request charged, and an
//!   account signs to delegate spending.
//! - [`consent_batch`]: one consent for a batch of submissions (a tree of their typed data).
//! - [`read_access`]: the short-lived token by which a caller proves it may read an account.
//! - [`record`]: an observation as the log records it, and back.
//! - [`stream`]: the bootstrap stream's terms, read off the Lockup.
//! - [`keyfile`]: a chain key kept in an owner-only file.
//! - [`wallet`]: a client's or an operator's transactions (deposit, stake, unstake,
//!   withdraw) and balances, with exact PRLX amounts and decoded reverts.
//!
//! No function here decides anything about credits or rewards: deciding stays in the pure
//! core (`prlx-commands`, `prlx-projections`); this crate only reads and writes the chain.

pub mod artifact;
pub mod bindings;
pub mod claims;
pub mod consent;
pub mod consent_batch;
pub mod deploy;
pub mod deployment;
pub mod devchain;
pub mod error;
pub mod keyfile;
pub mod merkle;
pub mod read_access;
pub mod record;
pub mod stream;
pub mod verify;
pub mod wallet;
pub mod watch;

pub use deployment::Deployment;
pub use error::ChainError;
