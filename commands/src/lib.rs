//! The ParalleliX coordinator: intake, the pure `decide` core, and the I/O shell that appends
//! what it decides to the log.
//!
//! # Layout
//! - [`actor`]: the task that owns the coordinator and serves commands and reads in log
//!   order, and the cloneable [`CoordinatorHandle`](actor::CoordinatorHandle) that reaches it.
//! - [`client`]: a minimal JSON client of the API over https or http (`prlx-client`, tests),
//!   and the reads of an account with a read-access token.
//! - [`consent`]: the EIP-712 domain submissions are signed under, checking a submission's
//!   signature and its delegation's, and signing a delegation.
//! - [`revocation`]: an account's revocation of a delegation at the door.
//! - [`decide`]: commands, rejections, pricing, and `decide(&state, command)`.
//! - [`encoder`]: the thread that encodes the coordinator's events and starts their appends.
//! - [`failover`]: `serve` under the log's lease: active while holding it, a standby that
//!   answers 503 otherwise, stepping down and taking over as the lease moves.
//! - [`error`]: [`AppError`](error::AppError), the one error answer of every door (HTTP and the
//!   Kafka replies), and JSON decoding that names the field at fault.
//! - [`feeds`]: which node's dispatch feed (Kafka) each event is copied to.
//! - [`http`]: the HTTP intake: `app(handle) -> Router`, its bodies, its handlers by resource
//!   and its OpenAPI document.
//! - `kafka_intake` (feature `kafka`): submissions consumed from a Kafka topic, answers
//!   produced to a reply topic.
//! - [`index`]: the request index: settled requests that have left the state, on disk,
//!   for reads and retries at any age.
//! - [`settle`]: staking, reward mode and reward-epoch commands.
//! - [`shell`]: the [`Coordinator`](shell::Coordinator): recovery, stamping, append, apply;
//!   housekeeping; result reports and heartbeats checked; the storage and signing keys.
//! - `startup` (feature `kafka`): open the log and recover, publish the catalog and reward
//!   policy, serve under the lease with the Kafka intake and the feeds; `StartupError`
//!   says whether a failure is the log's.
//! - [`submission`]: a submission's body, checks and trip through the actor, shared by the
//!   HTTP and Kafka intakes.
//! - `tour` (feature `kafka`): `prlx-coordinator demo`, a model-free tour of intake.
//! - `testkit` (feature `testkit`, and this crate's own tests): Given/When/Then for
//!   decisions, builders of the events and submissions tests start from.
//! - `src/bin/`: the binaries, thin (parse arguments, call this library):
//!   `prlx-coordinator` (`serve`, `demo`) and `prlx-client` (submit prompts and check the
//!   results, as the account or its delegate; delegate; balances, stakes and rewards).

pub mod actor;
pub mod chain_post;
pub mod chain_watch;
pub mod client;
pub mod consent;
pub mod decide;
pub mod encoder;
pub mod error;
pub mod failover;
pub mod feeds;
pub mod http;
pub mod index;
#[cfg(feature = "kafka")]
pub mod kafka_intake;
pub mod revocation;
pub mod settle;
pub mod shell;
#[cfg(feature = "kafka")]
pub mod startup;
pub mod submission;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
#[cfg(feature = "kafka")]
pub mod tour;
