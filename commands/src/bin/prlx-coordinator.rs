//! `prlx-coordinator`: the single writer of the ParalleliX event log.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use prlx_commands::startup::{self, OpenOptions, RewardOptions, ServeOptions};
use prlx_commands::tour;
use prlx_events::cli::LogFormat;
use prlx_events::event::RewardMode;

#[derive(Parser, Debug)]
#[command(
    name = "prlx-coordinator",
    version,
    about = "The ParalleliX coordinator: intake, scheduling and settlement, all as events on one log"
)]
struct Cli {
    /// How log lines on stderr are written: `text` for people, `json` (one object a line) for
    /// collectors. `RUST_LOG` filters them (default `info`).
    #[arg(long, global = true, env = "PRLX_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the intake lifecycle on a log end to end: publish the catalog, take deposits
    /// (a repeated on-chain transaction credits once), accept and reject submissions
    /// (idempotent retry, bad payload hash, unknown workload class and model, insufficient
    /// credit) and print what the log now holds. Safe to run again on the same log.
    Demo {
        /// Where the event log lives: file://DIR (embedded, the default) or kafka://HOST:PORT/TOPIC.
        #[arg(long, env = "PRLX_LOG", default_value = "file://./demo-log")]
        log: String,
        /// The coordinator's storage key (32 bytes, mode 0600); created on first start.
        /// Accepted payloads are sealed to it on the log.
        #[arg(long, env = "PRLX_KEY_FILE", default_value = "./demo-log.key")]
        key_file: PathBuf,
        /// The model catalog and prices (JSON) published to the log if none is there yet.
        #[arg(long, default_value = "config/catalog.json")]
        catalog: PathBuf,
        #[command(flatten)]
        rewards: RewardArgs,
        /// How many valid requests to submit.
        #[arg(long, default_value_t = 20)]
        requests: u32,
        /// This writer's producer id on the log.
        #[arg(long, default_value = "coordinator/1")]
        producer: String,
    },
    /// Serve the HTTP intake (submissions, deposits, quotes, node registration and heartbeats;
    /// the API is described at /openapi.json) until SIGTERM or Ctrl-C.
    ///
    /// Prints `listening on https://ADDR` to stdout once bound (`http://` with --plain-http).
    /// On a signal it stops taking connections, lets requests in flight finish, and exits 0;
    /// everything it acknowledged is already durable on the log.
    ///
    /// It speaks TLS: with --tls-cert and --tls-key in production, else with a development
    /// certificate made on first start (self-signed, kept in --tls-dev-dir and logged with its
    /// SHA-256 fingerprint), which clients pin with `--coordinator-cert DIR/cert.pem`.
    /// --plain-http turns TLS off, for a proxy that terminates it in front (docs/security.md,
    /// "TLS").
    ///
    /// The API is unauthenticated: bind it to loopback or put it behind an authenticating
    /// proxy. Every request's Host, Origin, Content-Type, rate and time are checked
    /// (docs/security.md; the --allowed-host flag and those after it).
    ///
    /// On a kafka:// log, several instances may serve the same log: they elect one through a
    /// Kafka consumer group (docs/adr/04-kafka-failover.md). The elected one opens the writer
    /// and serves; the others answer 503 with Retry-After (health check: GET /healthz) and take
    /// over when the active one is gone (after --lease-session-ms at most) or steps down. A
    /// file:// log has one instance: a second one is refused by the log's lock.
    Serve {
        /// Where the event log lives: file://DIR (embedded, the default) or kafka://HOST:PORT/TOPIC.
        #[arg(long, env = "PRLX_LOG", default_value = "file://./coordinator-log")]
        log: String,
        /// The address to listen on; port 0 picks a free port (the line on stdout says which).
        #[arg(long, env = "PRLX_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// The coordinator's storage key (32 bytes, mode 0600); created on first start.
        /// Accepted payloads are sealed to it on the log.
        #[arg(long, env = "PRLX_KEY_FILE", default_value = "./coordinator.key")]
        key_file: PathBuf,
        /// The model catalog and prices (JSON) published to the log if none is there yet.
        #[arg(long, env = "PRLX_CATALOG", default_value = "config/catalog.json")]
        catalog: PathBuf,
        #[command(flatten)]
        rewards: RewardArgs,
        /// This writer's producer id on the log.
        #[arg(long, env = "PRLX_PRODUCER", default_value = "coordinator/1")]
        producer: String,
        /// The coordinator's local state, derived from the log: the request index (settled
        /// requests that have left its memory, for reads and late retries) and its snapshot
        /// (taken every 200,000 records or minute, so a restart folds only the tail). Made,
        /// caught up or rebuilt from the log at start; delete it to rebuild.
        /// [default: coordinator-state/<producer> beside --key-file]
        #[arg(long, env = "PRLX_STATE_DIR", value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// A snapshot after this many records since the last one.
        #[arg(long, env = "PRLX_SNAPSHOT_EVERY_RECORDS", default_value_t = 200_000,
            value_parser = clap::value_parser!(u64).range(1..))]
        snapshot_every_records: u64,
        /// A snapshot after this many seconds since the last one, if any record came since.
        #[arg(long, env = "PRLX_SNAPSHOT_EVERY_SECS", default_value_t = 60,
            value_parser = clap::value_parser!(u64).range(1..))]
        snapshot_every_secs: u64,
        /// The coordinator's RSA signing key (PKCS#8 PEM, mode 0600; a 3072-bit key is
        /// created on first start). It signs the session grants that let nodes read their
        /// dispatches; its public half goes on the log for nodes and auditors.
        #[arg(
            long,
            env = "PRLX_SIGNING_KEY",
            default_value = "./coordinator-signing.pem"
        )]
        signing_key: PathBuf,
        #[command(flatten)]
        lease: LeaseArgs,
        #[command(flatten)]
        intake: Box<IntakeArgs>,
        #[command(flatten)]
        feeds: FeedArgs,
        #[command(flatten)]
        chain: Box<ChainArgs>,
        #[command(flatten)]
        http: Box<HttpArgs>,
    },
}

/// The HTTP door's TLS, transport checks and limits (docs/security.md, "TLS" and "Transport
/// checks").
#[derive(clap::Args, Debug)]
struct HttpArgs {
    /// The server's certificate (PEM; the chain, the server's own first) for TLS in
    /// production. Without it, a development certificate (see --tls-dev-dir).
    #[arg(long, env = "PRLX_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1; readable by its owner
    /// only).
    #[arg(long, env = "PRLX_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Where the development certificate is kept (cert.pem, and key.pem with mode 0600),
    /// made on first start without --tls-cert and reused after: self-signed (ECDSA P-256)
    /// for localhost, 127.0.0.1, ::1, the listen address and the --allowed-host names.
    /// [default: coordinator-tls/ beside --signing-key]
    #[arg(
        long,
        env = "PRLX_TLS_DEV_DIR",
        value_name = "DIR",
        conflicts_with = "tls_cert"
    )]
    tls_dev_dir: Option<PathBuf>,
    /// Serve plain HTTP, without TLS: only behind a proxy that terminates TLS for it (a
    /// warning says so at start).
    #[arg(
        long,
        env = "PRLX_PLAIN_HTTP",
        conflicts_with_all = ["tls_cert", "tls_key", "tls_dev_dir"]
    )]
    plain_http: bool,
    /// Also accept requests whose Host header is this (repeatable). By default only the
    /// listen address and localhost, 127.0.0.1 and [::1] on its port are accepted, which
    /// refuses DNS-rebinding pages. NAME:PORT matches exactly, a bare NAME on any port; `*`
    /// accepts any Host (behind a proxy that checks it).
    #[arg(
        long = "allowed-host",
        value_name = "HOST",
        env = "PRLX_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    allowed_hosts: Vec<String>,
    /// Accept requests carrying this Origin header, as `scheme://host[:port]` (repeatable).
    /// By default a request with any Origin (sent by browsers only) is refused with 403.
    #[arg(
        long = "allowed-origin",
        value_name = "ORIGIN",
        env = "PRLX_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    allowed_origins: Vec<String>,
    /// Seconds a request may take, body and handling included, before it is answered 408.
    #[arg(long, env = "PRLX_REQUEST_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    request_timeout_secs: u64,
    /// Seconds a connection has to send a request's headers (and an idle keep-alive
    /// connection is kept) before it is closed.
    #[arg(long, env = "PRLX_HEADER_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout_secs: u64,
    /// Open connections at most; further ones wait to be accepted until one closes.
    #[arg(long, env = "PRLX_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,
    /// Requests per second, sustained, from one caller IP address (an IPv6 caller by its
    /// /64); over it, 429 with Retry-After. 0 turns the limit off (behind a proxy every
    /// caller has the proxy's address).
    #[arg(long, env = "PRLX_RATE_LIMIT", default_value_t = 200)]
    rate_limit: u32,
    /// Requests a caller idle for a while may send at once, above the sustained rate.
    #[arg(long, env = "PRLX_RATE_BURST", default_value_t = 400, value_parser = clap::value_parser!(u32).range(1..))]
    rate_burst: u32,
}

impl HttpArgs {
    fn options(self, signing_key: &std::path::Path) -> startup::HttpOptions {
        use std::time::Duration;
        let tls = match (self.plain_http, self.tls_cert, self.tls_key) {
            (true, _, _) => startup::ListenerTls::Plain,
            (false, Some(cert), Some(key)) => startup::ListenerTls::Given { cert, key },
            _ => startup::ListenerTls::Development {
                dir: self
                    .tls_dev_dir
                    .unwrap_or_else(|| startup::dev_cert_dir(signing_key)),
            },
        };
        startup::HttpOptions {
            tls,
            allowed_hosts: self.allowed_hosts,
            allowed_origins: self.allowed_origins,
            request_timeout: Duration::from_secs(self.request_timeout_secs),
            header_read_timeout: Duration::from_secs(self.header_timeout_secs),
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
            rate: (self.rate_limit > 0).then_some(prlx_commands::http::RateLimit {
                per_second: self.rate_limit,
                burst: self.rate_burst,
            }),
        }
    }
}

/// Money from a chain (docs/settlement.md, "On chain"): accounts are credited only from
/// `CreditEscrow.Deposited` events and stake taken only from `NodeStaking`; without
/// --chain-deployment nothing is ever credited (no endpoint credits).
#[derive(clap::Args, Debug)]
struct ChainArgs {
    /// The deployment file (`scripts/chain.sh deploy` writes .cache/chain/deployment.json).
    #[arg(long, env = "PRLX_CHAIN_DEPLOYMENT")]
    chain_deployment: Option<PathBuf>,
    /// The chain's JSON-RPC URL; defaults to the deployment file's.
    #[arg(long, env = "PRLX_CHAIN_RPC_URL")]
    chain_rpc_url: Option<String>,
    /// Blocks, counted inclusively, before a deposit is credited (1: as soon as it is mined).
    #[arg(long, env = "PRLX_CHAIN_CONFIRMATIONS", default_value_t = 12)]
    chain_confirmations: u64,
    /// Milliseconds between two reads of the chain.
    #[arg(long, env = "PRLX_CHAIN_POLL_MS", default_value_t = 1000)]
    chain_poll_ms: u64,
    /// The coordinator's chain key (a file holding the hex private key, readable by its
    /// owner only): with it, each settled epoch's payout root is posted to the distributor.
    /// Without it (and without --chain-dev-account), nothing is posted.
    #[arg(
        long,
        env = "PRLX_CHAIN_KEY_FILE",
        conflicts_with = "chain_dev_account"
    )]
    chain_key_file: Option<PathBuf>,
    /// Post with anvil's dev account N (development chains only, chain id 31337; the
    /// deployment's coordinator is account 1).
    #[arg(long)]
    chain_dev_account: Option<usize>,
}

impl ChainArgs {
    fn config(self) -> anyhow::Result<Option<prlx_commands::chain_watch::ChainWatchConfig>> {
        let Some(path) = self.chain_deployment else {
            return Ok(None);
        };
        let deployment = prlx_chain::Deployment::read(&path)?;
        if self.chain_confirmations == 0 {
            anyhow::bail!("--chain-confirmations: must be at least 1");
        }
        let poster = match (self.chain_key_file, self.chain_dev_account) {
            (Some(path), _) => Some(prlx_chain::keyfile::read_key_file(&path)?),
            (None, Some(n)) => {
                if deployment.chain_id != prlx_chain::devchain::DEV_CHAIN_ID {
                    anyhow::bail!(
                        "--chain-dev-account: chain {} is not a development chain; use --chain-key-file",
                        deployment.chain_id
                    );
                }
                if n >= prlx_chain::devchain::DEV_KEYS.len() {
                    anyhow::bail!(
                        "--chain-dev-account: {n} is not one of anvil's ten dev accounts"
                    );
                }
                Some(prlx_chain::devchain::dev_signer(n))
            }
            (None, None) => None,
        };
        Ok(Some(prlx_commands::chain_watch::ChainWatchConfig {
            rpc_url: self
                .chain_rpc_url
                .unwrap_or_else(|| deployment.rpc_url.clone()),
            deployment,
            watch: prlx_chain::watch::WatchConfig {
                confirmations: self.chain_confirmations,
                ..Default::default()
            },
            interval: std::time::Duration::from_millis(self.chain_poll_ms),
            poster,
        }))
    }
}

/// Per-node dispatch feeds (docs/kafka-topics.md): off unless --node-feed-topic is given.
#[derive(clap::Args, Debug)]
struct FeedArgs {
    /// On a kafka:// log, also copy what each node needs (its session grants, its dispatches
    /// and what closes them, the coordinator key and the catalog) to a topic of the node's
    /// own, exactly once, while this instance is active. The template names it: `{node}`
    /// becomes the node's id, e.g. `prlx-node.{node}`. A node then reads `--log
    /// kafka://HOST:PORT/prlx-node.{node}` and sees nothing of other nodes' work. Turned on
    /// for a log with history, the first run copies that history into the feeds.
    #[arg(long, env = "PRLX_NODE_FEED_TOPIC")]
    node_feed_topic: Option<String>,
}

/// The Kafka submissions intake (docs/kafka-topics.md): off unless --kafka-submissions is
/// given; it runs only while this instance is the active one.
#[derive(clap::Args, Debug)]
struct IntakeArgs {
    /// Consume submissions (the JSON body of POST /v1/requests, keyed by the submitter's
    /// reference) from this Kafka topic, and answer each on --kafka-replies: exactly once
    /// when the log is on the same Kafka cluster (answer, offset and events in one
    /// transaction), else at least once (a repeated answer is identical).
    #[arg(long, env = "PRLX_KAFKA_SUBMISSIONS")]
    kafka_submissions: Option<String>,
    /// The topic answers go to, keyed by the submission's reference.
    #[arg(long, env = "PRLX_KAFKA_REPLIES", default_value = "prlx-replies")]
    kafka_replies: String,
    /// The brokers of the intake topics; defaults to the log's when the log is on Kafka.
    #[arg(long, env = "PRLX_KAFKA_BOOTSTRAP")]
    kafka_bootstrap: Option<String>,
    /// The consumer group the intake commits its progress under.
    #[arg(
        long,
        env = "PRLX_KAFKA_INTAKE_GROUP",
        default_value = "prlx-coordinator-intake"
    )]
    kafka_intake_group: String,
}

/// The election among instances serving one kafka:// log.
#[derive(clap::Args, Debug)]
struct LeaseArgs {
    /// How long the Kafka broker waits for a silent active instance before another takes
    /// over (the consumer group's session timeout; the broker accepts 6000 to 1800000 by
    /// default). Unused on a file:// log.
    #[arg(long, env = "PRLX_LEASE_SESSION_MS", default_value_t = 6000)]
    lease_session_ms: u64,
}

/// How operators are rewarded (see docs/settlement.md).
#[derive(clap::Args, Debug)]
struct RewardArgs {
    /// The reward policy (JSON with every field of `RewardPolicyPublished`; config/rewards.json
    /// holds the defaults: one-day epochs of one-minute uptime slots), published if the log has
    /// none. A policy cannot change: if the log carries a different one, the coordinator
    /// refuses to start. Without this option a log with no policy gets the built-in defaults
    /// (the same as config/rewards.json), and a log with one keeps it.
    #[arg(long, env = "PRLX_REWARD_POLICY")]
    reward_policy: Option<PathBuf>,
    /// Switch the reward mode (recorded only when it differs from the log's): `bootstrap`
    /// (the Operator Rewards bucket unlocks linearly) or `steady-state` (operators share the
    /// credits charged). The epoch in progress settles in the new mode. Without it, the
    /// log's mode stays (bootstrap until a switch is recorded).
    #[arg(long, env = "PRLX_REWARD_MODE", value_enum)]
    reward_mode: Option<ModeArg>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModeArg {
    Bootstrap,
    SteadyState,
}

impl From<ModeArg> for RewardMode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Bootstrap => RewardMode::Bootstrap,
            ModeArg::SteadyState => RewardMode::SteadyState,
        }
    }
}

impl RewardArgs {
    fn options(&self) -> RewardOptions {
        RewardOptions {
            policy: self.reward_policy.clone(),
            mode: self.reward_mode.map(RewardMode::from),
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    prlx_events::cli::init_tracing(cli.log_format);
    match cli.command {
        Cmd::Demo {
            log,
            key_file,
            catalog,
            rewards,
            requests,
            producer,
        } => {
            let open = OpenOptions {
                log,
                key_file,
                catalog,
                rewards: rewards.options(),
                producer,
                state_dir: None,
                snapshots: Default::default(),
            };
            Ok(tour::run(&open, requests, &mut std::io::stdout()).await?)
        }
        Cmd::Serve {
            log,
            listen,
            key_file,
            catalog,
            rewards,
            producer,
            state_dir,
            snapshot_every_records,
            snapshot_every_secs,
            signing_key,
            lease,
            intake,
            feeds,
            chain,
            http,
        } => {
            let options = ServeOptions {
                http: (*http).options(&signing_key),
                chain: (*chain).config()?,
                intake: startup::intake_config(
                    &log,
                    intake.kafka_submissions.as_deref(),
                    &intake.kafka_replies,
                    intake.kafka_bootstrap.as_deref(),
                    &intake.kafka_intake_group,
                )?,
                feeds: startup::feed_topics(&log, feeds.node_feed_topic.as_deref())?,
                listen,
                signing_key,
                lease_session: std::time::Duration::from_millis(lease.lease_session_ms),
                open: OpenOptions {
                    state_dir: Some(
                        state_dir.unwrap_or_else(|| startup::state_dir(&key_file, &producer)),
                    ),
                    log,
                    key_file,
                    catalog,
                    rewards: rewards.options(),
                    producer,
                    snapshots: prlx_commands::shell::SnapshotPolicy {
                        every_records: snapshot_every_records,
                        every: std::time::Duration::from_secs(snapshot_every_secs),
                    },
                },
            };
            Ok(startup::serve(options).await?)
        }
    }
}
