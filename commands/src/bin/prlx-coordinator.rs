//! `prlx-coordinator`: the single writer of the ParalleliX event log.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use prlx_commands::decide::{Command, Submission, INFERENCE};
use prlx_commands::failover;
use prlx_commands::feeds::NodeFeeds;
use prlx_commands::http;
use prlx_commands::kafka_intake::{self, KafkaIntakeConfig};
use prlx_commands::settle::SettlementCommand;
use prlx_commands::shell::{
    load_or_create_key, load_or_create_signing_key, Coordinator, Outcome, ShellError,
};
use prlx_events::event::{
    CatalogPublished, IntakeSource, Priority, RewardMode, RewardPolicyPublished, Sealed,
};
use prlx_events::log::feed::FeedTopics;
use prlx_events::log::{LogError, LogUrl};
use prlx_events::{AccountId, Hash32};
use prlx_projections::settlement::policy_problem;

#[derive(Parser, Debug)]
#[command(
    name = "prlx-coordinator",
    version,
    about = "The ParalleliX coordinator: intake, scheduling and settlement, all as events on one log"
)]
struct Cli {
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
    /// Prints `listening on http://ADDR` to stdout once bound. On a signal it stops taking
    /// connections, lets requests in flight finish, and exits 0; everything it acknowledged is
    /// already durable on the log.
    ///
    /// The API is unauthenticated: bind it to loopback or put it behind an authenticating
    /// proxy.
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
        intake: IntakeArgs,
        #[command(flatten)]
        feeds: FeedArgs,
    },
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

impl FeedArgs {
    /// The feeds' topics, or `None` when they are off.
    fn topics(&self, log: &str) -> anyhow::Result<Option<FeedTopics>> {
        let Some(template) = &self.node_feed_topic else {
            return Ok(None);
        };
        if !log.starts_with("kafka://") {
            bail!("--node-feed-topic needs a kafka:// log (nodes of a file:// log read the log itself)");
        }
        Ok(Some(FeedTopics::parse(template)?))
    }
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

impl IntakeArgs {
    /// The intake's configuration, or `None` when it is off.
    fn config(&self, log: &str) -> anyhow::Result<Option<KafkaIntakeConfig>> {
        let Some(submissions) = &self.kafka_submissions else {
            return Ok(None);
        };
        let log_bootstrap = log
            .strip_prefix("kafka://")
            .map(|rest| rest.split(['/', '?']).next().unwrap_or_default().to_owned());
        let bootstrap = match (&self.kafka_bootstrap, &log_bootstrap) {
            (Some(b), _) => b.clone(),
            (None, Some(b)) => b.clone(),
            (None, None) => {
                bail!("--kafka-submissions needs --kafka-bootstrap when the log is not on Kafka")
            }
        };
        // One transaction can hold the log's events, the answers and the offsets only when
        // they are on one cluster.
        let transactional = log_bootstrap.as_ref() == Some(&bootstrap);
        Ok(Some(KafkaIntakeConfig {
            bootstrap,
            submissions_topic: submissions.clone(),
            replies_topic: self.kafka_replies.clone(),
            group_id: self.kafka_intake_group.clone(),
            transactional,
        }))
    }
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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Demo {
            log,
            key_file,
            catalog,
            rewards,
            requests,
            producer,
        } => demo(&log, &key_file, &catalog, &rewards, requests, &producer).await,
        Cmd::Serve {
            log,
            listen,
            key_file,
            catalog,
            rewards,
            producer,
            signing_key,
            lease,
            intake,
            feeds,
        } => {
            serve(
                &log,
                listen,
                &key_file,
                &catalog,
                &rewards,
                &producer,
                &signing_key,
                &lease,
                &intake,
                &feeds,
            )
            .await
        }
    }
}

/// Opens the coordinator, publishes the catalog from `catalog` if the log has none, and
/// records the reward policy and mode (see [`RewardArgs`]).
async fn open_coordinator(
    log: &str,
    key_file: &Path,
    catalog: &Path,
    rewards: &RewardArgs,
    producer: &str,
) -> anyhow::Result<Coordinator> {
    let url = LogUrl::parse(log)?;
    let key = load_or_create_key(key_file)?;
    let mut coord = Coordinator::open(&url, producer, key)
        .await
        .context("opening the coordinator")?;
    eprintln!(
        "log {log}: recovered {} records",
        coord.state_fold().next_offset()
    );
    if coord.state().catalog.is_none() {
        let text = std::fs::read_to_string(catalog)
            .with_context(|| format!("reading {}", catalog.display()))?;
        let c: CatalogPublished = serde_json::from_str(&text)
            .with_context(|| format!("parsing {}", catalog.display()))?;
        if let Outcome::Rejected { rejection, .. } =
            coord.execute(Command::PublishCatalog(c)).await?
        {
            anyhow::bail!("catalog {} refused: {rejection}", catalog.display());
        }
    }
    apply_reward_args(&mut coord, rewards).await?;
    Ok(coord)
}

/// Publishes the reward policy and switches the mode as `args` ask, unless the log already
/// says so.
async fn apply_reward_args(coord: &mut Coordinator, args: &RewardArgs) -> anyhow::Result<()> {
    let existing = coord.state().rewards.policy.clone();
    let wanted = match (&args.reward_policy, &existing) {
        (Some(path), _) => Some((load_reward_policy(path)?, path.display().to_string())),
        (None, None) => Some((
            RewardPolicyPublished::default(),
            "the built-in reward policy".to_owned(),
        )),
        (None, Some(_)) => None,
    };
    if let Some((policy, source)) = wanted {
        match &existing {
            Some(on_log) if *on_log == policy => {}
            Some(on_log) => bail!(
                "{source}: the log already carries another reward policy ({}), and a policy \
                 cannot change; pass that policy, or no --reward-policy",
                policy_difference(on_log, &policy)
            ),
            None => {
                let summary = format!(
                    "epochs of {} s, uptime slots of {} s, unstake cooldown {} s",
                    policy.epoch_seconds,
                    policy.uptime_slot_seconds,
                    policy.unstake_cooldown_seconds
                );
                let command = Command::Settlement(SettlementCommand::PublishPolicy(policy));
                if let Outcome::Rejected { rejection, .. } = coord.execute(command).await? {
                    bail!("{source} refused: {rejection}");
                }
                eprintln!("published {source}: {summary}");
            }
        }
    }
    if let Some(mode) = args.reward_mode.map(RewardMode::from) {
        if coord.state().rewards.mode() != mode {
            let command = Command::Settlement(SettlementCommand::ChangeMode { mode });
            if let Outcome::Rejected { rejection, .. } = coord.execute(command).await? {
                bail!("reward mode refused: {rejection}");
            }
            eprintln!("reward mode switched to {mode:?}");
        }
    }
    Ok(())
}

/// Reads a reward policy file; an error names the file and the field at fault.
fn load_reward_policy(path: &Path) -> anyhow::Result<RewardPolicyPublished> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    // One line, so the field at fault is beside the file.
    parse_reward_policy(&text)
        .map_err(|e| anyhow::anyhow!("reward policy {}: {e:#}", path.display()))
}

/// Parses a reward policy: every field of `RewardPolicyPublished`, no other, and values
/// `policy_problem` accepts. The error starts with the field at fault.
fn parse_reward_policy(text: &str) -> anyhow::Result<RewardPolicyPublished> {
    let value: serde_json::Value = serde_json::from_str(text).context("not valid JSON")?;
    let known = serde_json::to_value(RewardPolicyPublished::default())?;
    if let (Some(given), Some(known)) = (value.as_object(), known.as_object()) {
        if let Some(unknown) = given.keys().find(|k| !known.contains_key(*k)) {
            let fields: Vec<&str> = known.keys().map(String::as_str).collect();
            bail!(
                "{unknown}: unknown field (the fields are {})",
                fields.join(", ")
            );
        }
    }
    let policy: RewardPolicyPublished = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let why = e.into_inner();
        match path.as_str() {
            "." => anyhow::anyhow!("{why}"),
            _ => anyhow::anyhow!("{path}: {why}"),
        }
    })?;
    if let Some((field, why)) = policy_problem(&policy) {
        bail!("{field}: {why}");
    }
    Ok(policy)
}

/// The first field where two policies differ, as `field: log X, given Y`.
fn policy_difference(on_log: &RewardPolicyPublished, given: &RewardPolicyPublished) -> String {
    let (a, b) = (
        serde_json::to_value(on_log).unwrap_or_default(),
        serde_json::to_value(given).unwrap_or_default(),
    );
    a.as_object()
        .into_iter()
        .flatten()
        .find(|(k, v)| b.get(k.as_str()) != Some(*v))
        .map_or_else(
            || "they differ".to_owned(),
            |(k, v)| format!("{k}: log {v}, given {}", b[k.as_str()]),
        )
}

// One parameter per option of the subcommand.
#[allow(clippy::too_many_arguments)]
async fn serve(
    log: &str,
    listen: SocketAddr,
    key_file: &Path,
    catalog: &Path,
    rewards: &RewardArgs,
    producer: &str,
    signing_key: &Path,
    lease: &LeaseArgs,
    intake: &IntakeArgs,
    feeds: &FeedArgs,
) -> anyhow::Result<()> {
    let intake = intake.config(log)?;
    let feeds = feeds.topics(log)?;
    // Installed first: a SIGTERM that arrives while we start must not kill us mid-recovery
    // with the default action, but shut us down like any other.
    let signal = http::shutdown_signal().context("installing signal handlers")?;
    let signing = load_or_create_signing_key(signing_key)?;
    let url = LogUrl::parse(log)?;
    // The member name is for the broker's logs only; uniqueness comes from the group.
    let member = format!("{producer}-{}", std::process::id());
    let lease = url
        .join_lease(
            &member,
            std::time::Duration::from_millis(lease.lease_session_ms),
        )
        .context("joining the election for the log's writer")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    // Opened anew each time this instance is elected (once, on a file log).
    let open = || {
        let signing = signing.clone();
        async move {
            open_coordinator(log, key_file, catalog, rewards, producer)
                .await
                .map(|coord| coord.with_signing_key(signing))
                .map_err(open_error)
        }
    };
    // Printed when the port first answers (the standby answers too, with 503).
    let listening = |addr| println!("listening on http://{addr}");
    // The Kafka intake runs beside the HTTP intake, and the nodes' feeds are written, while
    // this instance is active.
    let on_active = |handle: prlx_commands::actor::CoordinatorHandle| {
        if intake.is_none() && feeds.is_none() {
            return None;
        }
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let intake = intake.clone();
        let projector = match (&feeds, &url) {
            (
                Some(topics),
                LogUrl::Kafka {
                    bootstrap,
                    topic,
                    options,
                },
            ) => match NodeFeeds::start(bootstrap, topic, options.clone(), topics.clone()) {
                Ok(p) => Some(p),
                Err(e) => {
                    eprintln!("node feeds: could not start ({e}); nodes on feeds get no work");
                    None
                }
            },
            _ => None,
        };
        let task = tokio::spawn(async move {
            if let Some(config) = intake {
                run_intake(handle, config, stopped.clone()).await;
            } else {
                let _ = stopped.clone().wait_for(|s| *s).await;
            }
            if let Some(projector) = projector {
                // Its transaction in progress may block a moment: off the runtime.
                let _ = tokio::task::spawn_blocking(move || projector.stop()).await;
            }
        });
        Some(failover::ActiveTask { stop, task })
    };
    failover::serve(listener, lease, open, listening, signal, on_active).await?;
    eprintln!("stopped");
    Ok(())
}

/// The Kafka intake until `stopped`: a failure (Kafka away at start, a failed subscription)
/// is retried every 2 s; the HTTP door serves meanwhile, and nothing on the topic is lost by
/// waiting.
async fn run_intake(
    handle: prlx_commands::actor::CoordinatorHandle,
    config: KafkaIntakeConfig,
    stopped: tokio::sync::watch::Receiver<bool>,
) {
    eprintln!(
        "kafka intake: consuming {} on {}, answering on {}",
        config.submissions_topic, config.bootstrap, config.replies_topic
    );
    loop {
        let mut until = stopped.clone();
        match kafka_intake::run(handle.clone(), config.clone(), stopped.clone()).await {
            Ok(()) => break,
            Err(e) => eprintln!("{e}; trying again in 2 s"),
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
            _ = until.changed() => break,
        }
    }
}

/// Sorts a failure to open the coordinator: the log's (retried while elected) or not.
fn open_error(e: anyhow::Error) -> failover::OpenError {
    let of_the_log = e.chain().any(|cause| {
        cause
            .downcast_ref::<ShellError>()
            .is_some_and(failover::is_log_failure)
            || cause
                .downcast_ref::<LogError>()
                .is_some_and(failover::is_transient)
    });
    let why = format!("{e:#}");
    if of_the_log {
        failover::OpenError::Log(why)
    } else {
        failover::OpenError::Fatal(why)
    }
}

async fn demo(
    log: &str,
    key_file: &std::path::Path,
    catalog: &std::path::Path,
    rewards: &RewardArgs,
    requests: u32,
    producer: &str,
) -> anyhow::Result<()> {
    let mut coord = open_coordinator(log, key_file, catalog, rewards, producer).await?;

    // Deposits observed on-chain. The run number keeps tx refs fresh when the demo runs again.
    let run = coord.state().deposits.len() as u64;
    let big = AccountId("parallelix-ai".into());
    let small = AccountId("small-client".into());
    for (account, tx, amount) in [
        (&big, format!("0xdemo-{run}"), 1_000_000),
        (&big, format!("0xdemo-{run}"), 1_000_000),
        (&small, format!("0xsmall-{run}"), 50),
    ] {
        let outcome = coord
            .execute(Command::DepositCredits {
                account: account.clone(),
                tx_ref: tx.clone(),
                amount,
            })
            .await?;
        println!(
            "deposit {tx} of {amount} to {account}: {}",
            describe(&outcome)
        );
    }

    let base = |account: &AccountId, key: Option<String>, prompt: &str| Submission {
        idempotency_key: key,
        source: IntakeSource::Local,
        workload_class: INFERENCE.into(),
        model: "oss-chat-v1".into(),
        hardware_tier: 1,
        priority: Priority::Standard,
        deadline_seconds: 60,
        max_tokens: 32,
        credit_account: account.clone(),
        client_pubkey: String::new(),
        payload_hash: Hash32::of(prompt.as_bytes()),
        computed_payload_hash: Hash32([0; 32]),
        sealed_payload: Sealed(Vec::new()),
    };
    let mut accepted = 0;
    for i in 0..requests {
        let prompt = format!("Prompt {run}.{i}: what is the capital of France?");
        let cmd = coord.submission(
            base(&big, Some(format!("demo-{run}-{i}")), &prompt),
            prompt.as_bytes(),
        );
        if let Outcome::Appended(_) = coord.execute(cmd).await? {
            accepted += 1;
        }
    }
    println!("submitted {requests} valid requests: {accepted} accepted");

    let prompt = format!("Prompt {run}.0: what is the capital of France?");
    let retry = coord.submission(
        base(&big, Some(format!("demo-{run}-0")), &prompt),
        prompt.as_bytes(),
    );
    let outcome = coord.execute(retry).await?;
    let id = coord
        .state()
        .request_for_key(&big, &format!("demo-{run}-0"));
    println!(
        "retry with the same Idempotency-Key: {} (request {})",
        describe(&outcome),
        id.map_or("none".into(), |r| r.to_string())
    );

    let mut bad_hash = base(&big, None, "something else");
    bad_hash.payload_hash = Hash32::of(b"not the payload");
    let mut unknown_class = base(&big, None, "x");
    unknown_class.workload_class = "ai.training".into();
    let mut unknown_model = base(&big, None, "x");
    unknown_model.model = "gpt-omega".into();
    for (what, s, payload) in [
        ("payload hash mismatch", bad_hash, &b"something else"[..]),
        ("unknown workload class", unknown_class, b"x"),
        ("unknown model", unknown_model, b"x"),
        ("insufficient credit", base(&small, None, "x"), b"x"),
    ] {
        let cmd = coord.submission(s, payload);
        println!("{what}: {}", describe(&coord.execute(cmd).await?));
    }

    let st = coord.state();
    println!(
        "\nstate after {} records:",
        coord.state_fold().next_offset()
    );
    println!("  requests accepted: {}", st.requests.len());
    for (code, n) in &st.rejections {
        println!("  rejected {code}: {n}");
    }
    for (account, a) in &st.accounts {
        println!(
            "  account {account}: balance {}, reserved {}, available {}",
            a.balance,
            a.reserved,
            a.available()
        );
    }
    let r = &st.rewards;
    if let (Some(p), Some((_, ends))) = (&r.policy, r.epoch_bounds(r.next_epoch)) {
        println!(
            "  rewards: {:?} mode, epochs of {} s; epoch {} settles at {ends} (serve settles \
             epochs as they end; this demo does not wait)",
            r.mode(),
            p.epoch_seconds,
            r.next_epoch
        );
    }
    Ok(())
}

fn describe(o: &Outcome) -> String {
    match o {
        Outcome::Appended(r) => format!("recorded at offsets {}..{}", r.start, r.end),
        Outcome::Unchanged => "already recorded, nothing new".into(),
        Outcome::Rejected { rejection, offset } => format!(
            "rejected {} ({}): {}{}",
            serde_json::to_value(rejection.code)
                .unwrap()
                .as_str()
                .unwrap_or("?"),
            rejection.field.as_deref().unwrap_or("-"),
            rejection.message,
            offset.map_or(String::new(), |o| format!(" [audit record at offset {o}]"))
        ),
        Outcome::Refused(why) => format!("refused, nothing recorded: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_in_policy_is_the_built_in_default() {
        let text = include_str!("../../../config/rewards.json");
        assert_eq!(
            parse_reward_policy(text).unwrap(),
            RewardPolicyPublished::default()
        );
        let demo = parse_reward_policy(include_str!("../../../config/rewards-demo.json")).unwrap();
        assert_eq!(demo.epoch_seconds, 10);
    }

    #[test]
    fn a_bad_policy_file_is_refused_naming_the_field() {
        let good = serde_json::to_value(RewardPolicyPublished::default()).unwrap();
        let with = |field: &str, value: serde_json::Value| {
            let mut v = good.clone();
            v[field] = value;
            v.to_string()
        };
        let without = |field: &str| {
            let mut v = good.clone();
            v.as_object_mut().unwrap().remove(field);
            v.to_string()
        };
        for (text, starts) in [
            (
                with("epoch_seconds", "a day".into()),
                "epoch_seconds: invalid type",
            ),
            (
                with("uptime_slot_seconds", 7.into()),
                "uptime_slot_seconds: must be",
            ),
            (
                with("treasury_pct", 20.into()),
                "operators_pct: operators_pct + treasury_pct",
            ),
            (with("epoch_secs", 10.into()), "epoch_secs: unknown field"),
            (without("unlock_epochs"), "missing field `unlock_epochs`"),
            (
                with(
                    "tier_weights",
                    serde_json::json!([{"tier": 1, "weight": -1}]),
                ),
                "tier_weights[0].weight: invalid value",
            ),
            ("{".to_owned(), "not valid JSON"),
        ] {
            let err = format!("{:#}", parse_reward_policy(&text).unwrap_err());
            assert!(err.starts_with(starts), "{err}");
        }
    }

    #[test]
    fn a_policy_difference_names_the_first_field() {
        let a = RewardPolicyPublished::default();
        let b = RewardPolicyPublished {
            epoch_seconds: 10,
            uptime_slot_seconds: 1,
            ..a.clone()
        };
        assert_eq!(
            policy_difference(&a, &b),
            "epoch_seconds: log 86400, given 10"
        );
    }
}
