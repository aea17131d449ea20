//! Starting the coordinator: open the log and recover, publish the catalog and the reward
//! policy, then serve under the log's lease with the Kafka intake and the nodes' feeds beside
//! the HTTP intake. The binary parses arguments into [`OpenOptions`] and [`ServeOptions`] and
//! calls [`serve`]; every failure is a [`StartupError`] that says whether it is the log's.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use prlx_events::event::{CatalogPublished, RewardMode, RewardPolicyPublished};
use prlx_events::log::feed::FeedTopics;
use prlx_events::log::{LogError, LogUrl};
use prlx_projections::settlement::policy_problem;

use crate::actor::CoordinatorHandle;
use crate::decide::{Command, Rejection};
use crate::failover;
use crate::feeds::NodeFeeds;
use crate::http;
use crate::kafka_intake::{self, KafkaIntakeConfig};
use crate::settle::SettlementCommand;
use crate::shell::{
    load_or_create_key, load_or_create_signing_key, Coordinator, Outcome, ShellError,
};

/// Why the coordinator could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Shell(#[from] ShellError),
    /// An option that does not fit the others (`field` names it).
    #[error("{field}: {reason}")]
    Option { field: &'static str, reason: String },
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    /// What the log already holds refuses what was asked (a policy cannot change).
    #[error("{source_name}: {reason}")]
    Conflict { source_name: String, reason: String },
    #[error("{what} refused: {rejection}")]
    Refused { what: String, rejection: Rejection },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Serve(String),
    #[error("TLS: {0}")]
    Tls(String),
}

impl StartupError {
    /// Whether this is the log's failure: worth retrying with a new writer while elected,
    /// rather than a bad option, file or key that would only fail again.
    pub fn is_log_failure(&self) -> bool {
        match self {
            StartupError::Log(e) => e.is_retryable(),
            StartupError::Shell(e) => failover::is_log_failure(e),
            _ => false,
        }
    }
}

/// How operators are rewarded (see docs/settlement.md).
#[derive(Debug, Clone, Default)]
pub struct RewardOptions {
    /// The policy file published if the log has none; it must equal the log's if it has one.
    pub policy: Option<PathBuf>,
    /// The mode to switch to, recorded only when it differs from the log's.
    pub mode: Option<RewardMode>,
}

/// What opening a coordinator takes.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    pub log: String,
    pub key_file: PathBuf,
    pub catalog: PathBuf,
    pub rewards: RewardOptions,
    pub producer: String,
    /// Where the request index and the snapshots are kept (`None`: not kept; a request that
    /// has left the state is then not found, and every start folds the whole log).
    pub state_dir: Option<PathBuf>,
    /// When snapshots are taken (with a state directory).
    pub snapshots: crate::shell::SnapshotPolicy,
}

/// The coordinator's state directory (request index, snapshot) beside the storage key (the coordinator's other files),
/// one per producer (instances of one deployment each keep their own): `coordinator-state/`.
pub fn state_dir(key_file: &Path, producer: &str) -> PathBuf {
    let parent = key_file.parent().unwrap_or(Path::new(""));
    let name: String = producer
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    parent.join("coordinator-state").join(name)
}

/// What serving takes besides [`OpenOptions`].
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub open: OpenOptions,
    pub listen: SocketAddr,
    pub signing_key: PathBuf,
    /// The Kafka consumer group's session timeout for the writer's election.
    pub lease_session: Duration,
    pub intake: Option<KafkaIntakeConfig>,
    pub feeds: Option<FeedTopics>,
    /// Credit deposits from this chain (and refuse them over HTTP).
    pub chain: Option<crate::chain_watch::ChainWatchConfig>,
    pub http: HttpOptions,
}

/// The HTTP door's transport checks and limits (docs/security.md), as the flags give them.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// `Host` values accepted besides the listen address and the loopback names on its port;
    /// `*` accepts any.
    pub allowed_hosts: Vec<String>,
    /// `Origin` values accepted; by default none, and a request with any `Origin` is refused.
    pub allowed_origins: Vec<String>,
    pub request_timeout: Duration,
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    /// `None`: no per-caller rate limit.
    pub rate: Option<http::RateLimit>,
    pub tls: ListenerTls,
}

/// How the listener speaks (docs/security.md, "TLS").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerTls {
    /// TLS with the operator's certificate chain and key (PEM).
    Given { cert: PathBuf, key: PathBuf },
    /// TLS with the development certificate kept in `dir`, made on first start.
    Development { dir: PathBuf },
    /// Plain HTTP (`--plain-http`): for a coordinator behind a proxy that terminates TLS.
    Plain,
}

/// The development certificate's directory beside the signing key (the coordinator's other
/// files), unless one is given: `coordinator-tls/`.
pub fn dev_cert_dir(signing_key: &Path) -> PathBuf {
    let parent = signing_key.parent().unwrap_or(Path::new(""));
    parent.join("coordinator-tls")
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            request_timeout: http::DEFAULT_REQUEST_TIMEOUT,
            header_read_timeout: http::DEFAULT_HEADER_READ_TIMEOUT,
            max_connections: http::DEFAULT_MAX_CONNECTIONS,
            rate: Some(http::DEFAULT_RATE_LIMIT),
            tls: ListenerTls::Development {
                dir: dev_cert_dir(Path::new("./coordinator-signing.pem")),
            },
        }
    }
}

impl HttpOptions {
    /// The checks for a coordinator bound to `bound` (known only once bound, for port 0),
    /// its certificate loaded (the development one made first if due) and logged.
    pub fn transport(&self, bound: SocketAddr) -> Result<http::TransportOptions, StartupError> {
        let source = match &self.tls {
            ListenerTls::Plain => {
                tracing::warn!(
                    "--plain-http: serving plain HTTP, so requests and answers cross the \
                     network readable and unauthenticated; only behind a proxy that \
                     terminates TLS (docs/security.md, \"TLS\")"
                );
                None
            }
            ListenerTls::Given { cert, key } => Some(http::CertificateSource::Given {
                cert: cert.clone(),
                key: key.clone(),
            }),
            ListenerTls::Development { dir } => Some(http::CertificateSource::Development {
                dir: dir.clone(),
                names: http::dev_cert_names(bound.ip(), &self.allowed_hosts),
            }),
        };
        let tls = match source {
            Some(source) => {
                let tls =
                    http::ServerTls::load(&source).map_err(|e| StartupError::Tls(e.to_string()))?;
                tls.log_start();
                Some(tls)
            }
            None => None,
        };
        Ok(http::TransportOptions {
            hosts: http::HostAllowList::for_listener(bound, &self.allowed_hosts),
            origins: self
                .allowed_origins
                .iter()
                .map(|o| o.trim().to_ascii_lowercase())
                .collect(),
            request_timeout: self.request_timeout,
            header_read_timeout: self.header_read_timeout,
            max_connections: self.max_connections,
            rate: self.rate,
            tls,
        })
    }
}

/// The Kafka intake's configuration from the serve options, or `None` when it is off
/// (`submissions` unset). `bootstrap` defaults to the log's brokers when the log is on Kafka.
pub fn intake_config(
    log: &str,
    submissions: Option<&str>,
    replies: &str,
    bootstrap: Option<&str>,
    group: &str,
) -> Result<Option<KafkaIntakeConfig>, StartupError> {
    let Some(submissions) = submissions else {
        return Ok(None);
    };
    let log_bootstrap = log
        .strip_prefix("kafka://")
        .map(|rest| rest.split(['/', '?']).next().unwrap_or_default().to_owned());
    let bootstrap = match (bootstrap, &log_bootstrap) {
        (Some(b), _) => b.to_owned(),
        (None, Some(b)) => b.clone(),
        (None, None) => {
            return Err(StartupError::Option {
                field: "--kafka-submissions",
                reason: "needs --kafka-bootstrap when the log is not on Kafka".into(),
            })
        }
    };
    // One transaction can hold the log's events, the answers and the offsets only when
    // they are on one cluster.
    let transactional = log_bootstrap.as_ref() == Some(&bootstrap);
    Ok(Some(KafkaIntakeConfig {
        bootstrap,
        submissions_topic: submissions.to_owned(),
        replies_topic: replies.to_owned(),
        group_id: group.to_owned(),
        transactional,
    }))
}

/// The nodes' feed topics from their template, or `None` when the feeds are off.
pub fn feed_topics(log: &str, template: Option<&str>) -> Result<Option<FeedTopics>, StartupError> {
    let Some(template) = template else {
        return Ok(None);
    };
    if !log.starts_with("kafka://") {
        return Err(StartupError::Option {
            field: "--node-feed-topic",
            reason: "needs a kafka:// log (nodes of a file:// log read the log itself)".into(),
        });
    }
    FeedTopics::parse(template)
        .map(Some)
        .map_err(|e| StartupError::Option {
            field: "--node-feed-topic",
            reason: e.to_string(),
        })
}

/// Opens the coordinator, publishes the catalog from `catalog` if the log has none, and
/// records the reward policy and mode (see [`RewardOptions`]).
pub async fn open_coordinator(o: &OpenOptions) -> Result<Coordinator, StartupError> {
    let url = LogUrl::parse(&o.log)?;
    let key = load_or_create_key(&o.key_file)?;
    let mut coord = Coordinator::open_indexed(&url, &o.producer, key, o.state_dir.as_deref())
        .await?
        .with_snapshot_policy(o.snapshots);
    tracing::info!(
        "log {}: recovered {} records",
        o.log,
        coord.state_fold().next_offset()
    );
    if coord.state().catalog.is_none() {
        let file = |reason: String| StartupError::File {
            path: o.catalog.display().to_string(),
            reason,
        };
        let text =
            std::fs::read_to_string(&o.catalog).map_err(|e| file(format!("reading: {e}")))?;
        let c: CatalogPublished =
            serde_json::from_str(&text).map_err(|e| file(format!("parsing: {e}")))?;
        if let Outcome::Rejected { rejection, .. } =
            coord.execute(Command::PublishCatalog(c)).await?
        {
            return Err(StartupError::Refused {
                what: format!("catalog {}", o.catalog.display()),
                rejection,
            });
        }
    }
    apply_reward_options(&mut coord, &o.rewards).await?;
    Ok(coord)
}

/// Publishes the reward policy and switches the mode as `o` asks, unless the log already
/// says so.
async fn apply_reward_options(
    coord: &mut Coordinator,
    o: &RewardOptions,
) -> Result<(), StartupError> {
    let existing = coord.state().rewards.policy.clone();
    let wanted = match (&o.policy, &existing) {
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
            Some(on_log) => {
                return Err(StartupError::Conflict {
                    reason: format!(
                        "the log already carries another reward policy ({}), and a policy \
                         cannot change; pass that policy, or no --reward-policy",
                        policy_difference(on_log, &policy)
                    ),
                    source_name: source,
                })
            }
            None => {
                let summary = format!(
                    "epochs of {} s, uptime slots of {} s, unstake cooldown {} s",
                    policy.epoch_seconds,
                    policy.uptime_slot_seconds,
                    policy.unstake_cooldown_seconds
                );
                let command = Command::Settlement(SettlementCommand::PublishPolicy(policy));
                if let Outcome::Rejected { rejection, .. } = coord.execute(command).await? {
                    return Err(StartupError::Refused {
                        what: source,
                        rejection,
                    });
                }
                tracing::info!("published {source}: {summary}");
            }
        }
    }
    if let Some(mode) = o.mode {
        if coord.state().rewards.mode() != mode {
            let command = Command::Settlement(SettlementCommand::ChangeMode { mode });
            if let Outcome::Rejected { rejection, .. } = coord.execute(command).await? {
                return Err(StartupError::Refused {
                    what: "reward mode".into(),
                    rejection,
                });
            }
            tracing::info!("reward mode switched to {mode:?}");
        }
    }
    Ok(())
}

/// Why a reward policy text is refused; the message starts with the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(String);

/// Reads a reward policy file; an error names the file and the field at fault.
pub fn load_reward_policy(path: &Path) -> Result<RewardPolicyPublished, StartupError> {
    let file = |reason: String| StartupError::File {
        path: format!("reward policy {}", path.display()),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file(format!("reading: {e}")))?;
    // One line, so the field at fault is beside the file.
    parse_reward_policy(&text).map_err(|e| file(e.to_string()))
}

/// Parses a reward policy: every field of `RewardPolicyPublished`, no other, and values
/// `policy_problem` accepts. The error starts with the field at fault.
pub fn parse_reward_policy(text: &str) -> Result<RewardPolicyPublished, PolicyError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| PolicyError(format!("not valid JSON: {e}")))?;
    let known = serde_json::to_value(RewardPolicyPublished::default())
        .map_err(|e| PolicyError(e.to_string()))?;
    if let (Some(given), Some(known)) = (value.as_object(), known.as_object()) {
        if let Some(unknown) = given.keys().find(|k| !known.contains_key(*k)) {
            let fields: Vec<&str> = known.keys().map(String::as_str).collect();
            return Err(PolicyError(format!(
                "{unknown}: unknown field (the fields are {})",
                fields.join(", ")
            )));
        }
    }
    let policy: RewardPolicyPublished = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let why = e.into_inner();
        match path.as_str() {
            "." => PolicyError(format!("{why}")),
            _ => PolicyError(format!("{path}: {why}")),
        }
    })?;
    if let Some((field, why)) = policy_problem(&policy) {
        return Err(PolicyError(format!("{field}: {why}")));
    }
    Ok(policy)
}

/// The first field where two policies differ, as `field: log X, given Y`.
pub fn policy_difference(on_log: &RewardPolicyPublished, given: &RewardPolicyPublished) -> String {
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

/// Serves until SIGTERM or Ctrl-C: the HTTP intake on `o.listen` under the log's lease, the
/// Kafka intake and the nodes' feeds beside it while this instance is active.
pub async fn serve(o: ServeOptions) -> Result<(), StartupError> {
    let ServeOptions {
        open: open_options,
        listen,
        signing_key,
        lease_session,
        intake,
        feeds,
        chain,
        http: http_options,
    } = o;
    let log = open_options.log.as_str();
    // Installed first: a SIGTERM that arrives while we start must not kill us mid-recovery
    // with the default action, but shut us down like any other.
    let signal = prlx_events::cli::shutdown_signal().map_err(|source| StartupError::Io {
        what: "installing signal handlers".into(),
        source,
    })?;
    let signing = load_or_create_signing_key(&signing_key)?;
    let url = LogUrl::parse(log)?;
    // The member name is for the broker's logs only; uniqueness comes from the group.
    let member = format!("{}-{}", open_options.producer, std::process::id());
    let lease = url.join_lease(&member, lease_session)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| StartupError::Io {
            what: format!("binding {listen}"),
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| StartupError::Io {
        what: format!("binding {listen}"),
        source,
    })?;
    if bound.ip().is_unspecified() && http_options.allowed_hosts.is_empty() {
        tracing::warn!(
            "listening on {bound} with no --allowed-host: only requests naming a loopback \
             host (localhost:{port}, 127.0.0.1:{port}) are served; name the host clients \
             use with --allowed-host",
            port = bound.port()
        );
    }
    let transport = http_options.transport(bound)?;
    let scheme = if transport.tls.is_some() {
        "https"
    } else {
        "http"
    };
    // Submissions are signed for the deployment the coordinator credits from.
    let consent = chain
        .as_ref()
        .map_or_else(crate::consent::ConsentDomain::default, |c| {
            crate::consent::ConsentDomain {
                chain_id: c.deployment.chain_id,
                escrow: c.deployment.contracts.credit_escrow,
            }
        });
    // Opened anew each time this instance is elected (once, on a file log).
    let open = || {
        let signing = signing.clone();
        let open_options = &open_options;
        async move {
            open_coordinator(open_options)
                .await
                .map(|coord| {
                    // A serving coordinator takes money from the chain only, with or without
                    // a chain configured: no caller's claim credits or moves stake.
                    coord
                        .with_signing_key(signing)
                        .money_from_chain_only(true)
                        .with_consent_domain(consent)
                })
                .map_err(|e| {
                    let why = e.to_string();
                    if e.is_log_failure() {
                        failover::OpenError::Log(why)
                    } else {
                        failover::OpenError::Fatal(why)
                    }
                })
        }
    };
    // Printed when the port first answers (the standby answers too, with 503): on stdout,
    // for scripts and tests to read the port from.
    let listening = |addr| println!("listening on {scheme}://{addr}");
    // The Kafka intake runs beside the HTTP intake, and the nodes' feeds are written, while
    // this instance is active.
    let on_active = |handle: CoordinatorHandle| {
        if intake.is_none() && feeds.is_none() && chain.is_none() {
            return None;
        }
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let chain_post = chain.as_ref().and_then(|c| {
            let config = crate::chain_post::PosterConfig {
                deployment: c.deployment.clone(),
                rpc_url: c.rpc_url.clone(),
                signer: c.poster.clone()?,
                log: log.to_owned(),
                interval: c.interval,
            };
            Some(tokio::spawn(crate::chain_post::run(
                handle.clone(),
                config,
                stopped.clone(),
            )))
        });
        let chain_watch = chain.clone().map(|config| {
            tokio::spawn(crate::chain_watch::run(
                handle.clone(),
                config,
                stopped.clone(),
            ))
        });
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
                    tracing::error!(
                        "node feeds: could not start ({e}); nodes on feeds get no work"
                    );
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
            for task in [chain_watch, chain_post].into_iter().flatten() {
                let _ = task.await;
            }
            if let Some(projector) = projector {
                // Its transaction in progress may block a moment: off the runtime.
                let _ = tokio::task::spawn_blocking(move || projector.stop()).await;
            }
        });
        Some(failover::ActiveTask { stop, task })
    };
    failover::serve(
        listener, &transport, lease, open, listening, signal, on_active,
    )
    .await
    .map_err(|e| StartupError::Serve(format!("{e:#}")))?;
    tracing::info!("stopped");
    Ok(())
}

/// The Kafka intake until `stopped`: a failure (Kafka away at start, a failed subscription)
/// is retried every 2 s; the HTTP door serves meanwhile, and nothing on the topic is lost by
/// waiting.
async fn run_intake(
    handle: CoordinatorHandle,
    config: KafkaIntakeConfig,
    stopped: tokio::sync::watch::Receiver<bool>,
) {
    tracing::info!(
        "kafka intake: consuming {} on {}, answering on {}",
        config.submissions_topic,
        config.bootstrap,
        config.replies_topic
    );
    loop {
        let mut until = stopped.clone();
        match kafka_intake::run(handle.clone(), config.clone(), stopped.clone()).await {
            Ok(()) => break,
            Err(e) => tracing::warn!("{e}; trying again in 2 s"),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = until.changed() => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_in_policy_is_the_built_in_default() {
        let text = include_str!("../../config/rewards.json");
        assert_eq!(
            parse_reward_policy(text).unwrap(),
            RewardPolicyPublished::default()
        );
        let demo = parse_reward_policy(include_str!("../../config/rewards-demo.json")).unwrap();
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
