//! Starting the real binaries: `prlx-coordinator serve` on a file or Kafka log, and
//! `prlx-node run` reaching it over HTTP and following its log (or its own feed).
//!
//! Each launch names every setting itself and removes the `PRLX_*` variables that would set
//! them, so the environment a test runs in cannot change what it starts.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use prlx_events::NodeId;

use super::bins::{workspace_bin, workspace_root};
use super::models::TINY;
use super::process::Proc;

/// How long a process may take to say it is up (listening, registered, granted a session).
pub const STARTUP: Duration = Duration::from_secs(120);

/// What a node prints once it holds its session grant (and so can take dispatches).
pub const SESSION_GRANTED: &str = "accepted the session grant for epoch";

/// `prlx-coordinator` (see [`workspace_bin`]), without the variables that stand for its flags.
pub fn coordinator_command() -> Command {
    command_without(
        "prlx-coordinator",
        &[
            "PRLX_LOG",
            "PRLX_LISTEN",
            "PRLX_KEY_FILE",
            "PRLX_CATALOG",
            "PRLX_PRODUCER",
            "PRLX_SIGNING_KEY",
            "PRLX_REWARD_POLICY",
            "PRLX_REWARD_MODE",
            "PRLX_LEASE_SESSION_MS",
            "PRLX_NODE_FEED_TOPIC",
            "PRLX_TLS_CERT",
            "PRLX_TLS_KEY",
            "PRLX_TLS_DEV_DIR",
            "PRLX_PLAIN_HTTP",
        ],
    )
}

/// `prlx-node` (see [`workspace_bin`]), without the variables that stand for its flags.
pub fn node_command() -> Command {
    command_without(
        "prlx-node",
        &[
            "PRLX_COORDINATOR",
            "PRLX_LOG",
            "PRLX_NODE_KEY",
            "PRLX_COORDINATOR_KEY",
            "PRLX_COORDINATOR_CERT",
        ],
    )
}

fn command_without(bin: &str, vars: &[&str]) -> Command {
    let mut cmd = Command::new(workspace_bin(bin));
    for var in vars {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs `prlx-node run` for the tiny model with `extra` arguments on the key file `key`, a log
/// under `dir` and a coordinator nobody listens at, to its exit: for runs that stop before they
/// reach a coordinator (a key others can read, a bad flag).
pub fn node_run_to_exit(dir: &Path, key: &Path, extra: &[&str]) -> Output {
    node_command()
        .args(["run", "--coordinator", "http://127.0.0.1:9"])
        .arg("--log")
        .arg(format!("file://{}", dir.join("log").display()))
        .arg("--key")
        .arg(key)
        .args(["--models", TINY, "--tier", "1", "--slots", "1"])
        .args(extra)
        .output()
        .unwrap()
}

/// How a launched coordinator speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaunchTls {
    /// TLS with the development certificate it makes (or finds) in
    /// [`ServeLaunch::tls_dir`] (`--tls-dev-dir`).
    Development,
    /// TLS with these files (`--tls-cert`, `--tls-key`).
    Given { cert: PathBuf, key: PathBuf },
    /// `--plain-http`.
    Plain,
}

/// `prlx-coordinator serve` on a free loopback port, over TLS with its development
/// certificate unless told otherwise (`tls`).
#[derive(Debug, Clone)]
pub struct ServeLaunch {
    /// `--log`: `file://…` or `kafka://…`.
    pub log: String,
    /// `--key-file`: the storage key, made on first start.
    pub key_file: PathBuf,
    /// `--signing-key`: made on first start unless the test wrote one
    /// ([`CoordinatorKeys`](super::keys::CoordinatorKeys)).
    pub signing_key: PathBuf,
    /// `--catalog`.
    pub catalog: PathBuf,
    /// `--producer`.
    pub producer: String,
    /// `--node-feed-topic`, when the nodes read feeds of their own.
    pub node_feed_topic: Option<String>,
    /// The `--chain-*` flags of the chain it credits from
    /// ([`TestChain::serve_args`](super::chain::TestChain::serve_args)); none: no chain, so
    /// no account is ever credited.
    pub chain: Vec<String>,
    /// `--allowed-host`, each: the addresses of a front that forwards to the coordinator
    /// (its clients' `Host` names the front, not the coordinator).
    pub allowed_hosts: Vec<String>,
    /// TLS, and with which certificate.
    pub tls: LaunchTls,
    /// More arguments, last (`--rate-limit 0` for a load test, say).
    pub extra: Vec<String>,
}

impl ServeLaunch {
    /// Everything under `dir`: a file log at `dir/log`, `dir/storage.key` and
    /// `dir/coordinator-signing.pem`, where [`CoordinatorKeys::create`] writes it.
    ///
    /// [`CoordinatorKeys::create`]: super::keys::CoordinatorKeys::create
    pub fn in_dir(dir: &Path, catalog: &Path, producer: &str) -> ServeLaunch {
        ServeLaunch {
            log: format!("file://{}", dir.join("log").display()),
            key_file: dir.join("storage.key"),
            signing_key: dir.join("coordinator-signing.pem"),
            catalog: catalog.to_owned(),
            producer: producer.to_owned(),
            node_feed_topic: None,
            chain: Vec::new(),
            allowed_hosts: Vec::new(),
            tls: LaunchTls::Development,
            extra: Vec::new(),
        }
    }

    /// `--tls-dev-dir`: `coordinator-tls/` beside the signing key (the binary's default too),
    /// so instances sharing their keys (a Kafka standby) share the certificate as well.
    pub fn tls_dir(&self) -> PathBuf {
        let keys = self.signing_key.parent().unwrap_or(Path::new("."));
        keys.join("coordinator-tls")
    }

    /// The certificate it serves, the one to pin (`--coordinator-cert`): the development
    /// one once it has started, or the given one.
    pub fn cert(&self) -> PathBuf {
        match &self.tls {
            LaunchTls::Development => self.tls_dir().join("cert.pem"),
            LaunchTls::Given { cert, .. } => cert.clone(),
            LaunchTls::Plain => panic!("a coordinator serving plain HTTP has no certificate"),
        }
    }

    /// Starts it as `name`; returns once it listens, with its address (`127.0.0.1:PORT`),
    /// which the kit's exchanges ([`super::client`]) then reach over https pinned to
    /// [`cert`](Self::cert) (or plain http).
    pub fn spawn(&self, name: &str) -> (Proc, String) {
        self.spawn_at(name, "127.0.0.1:0")
    }

    /// As [`spawn`](Self::spawn), listening on `listen` (the address an earlier instance had,
    /// for a restart its nodes find again).
    pub fn spawn_at(&self, name: &str, listen: &str) -> (Proc, String) {
        let mut cmd = coordinator_command();
        cmd.arg("serve")
            .args(["--log", &self.log])
            .args(["--listen", listen])
            .arg("--key-file")
            .arg(&self.key_file)
            .arg("--signing-key")
            .arg(&self.signing_key)
            .arg("--catalog")
            .arg(&self.catalog)
            .args(["--producer", &self.producer]);
        if let Some(template) = &self.node_feed_topic {
            cmd.args(["--node-feed-topic", template]);
        }
        cmd.args(&self.chain);
        for host in &self.allowed_hosts {
            cmd.args(["--allowed-host", host]);
        }
        match &self.tls {
            LaunchTls::Development => cmd.arg("--tls-dev-dir").arg(self.tls_dir()),
            LaunchTls::Given { cert, key } => {
                cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key)
            }
            LaunchTls::Plain => cmd.arg("--plain-http"),
        };
        cmd.args(&self.extra);
        let mut proc = Proc::spawn(name, cmd);
        let listening = match self.tls {
            LaunchTls::Plain => "listening on http://",
            _ => "listening on https://",
        };
        let line = proc.wait_line(listening, STARTUP);
        let addr = line
            .trim()
            .strip_prefix(listening)
            .unwrap_or_else(|| panic!("{name}: unexpected line {line:?}"))
            .to_owned();
        if self.tls != LaunchTls::Plain {
            super::client::pin(&addr, &self.cert());
        }
        (proc, addr)
    }
}

/// `prlx-node run` at tier 1 with one slot (no stake bonded), heartbeating every second, its
/// models and ONNX Runtime found under the workspace root (scripts/setup-models.sh).
#[derive(Debug, Clone)]
pub struct NodeLaunch {
    /// `--coordinator`: `https://HOST:PORT` (or `http://` for a plain coordinator).
    pub coordinator: String,
    /// `--coordinator-cert`: the coordinator's certificate to pin (https).
    pub coordinator_cert: Option<PathBuf>,
    /// `--log`: the coordinator's log, or the node's feed on Kafka.
    pub log: String,
    /// `--key`: made on first start unless the test wrote one.
    pub key: PathBuf,
    /// `--coordinator-key`: the signing key to pin.
    pub coordinator_key: PathBuf,
    /// `--models`.
    pub models: String,
    /// `--slots` (1 unless set).
    pub slots: u32,
    /// `--registry`, instead of `node/models/registry.toml`.
    pub registry: Option<PathBuf>,
    /// `--drain-secs`, instead of the node's default.
    pub drain_secs: Option<u32>,
    /// More arguments, last (`--fault KIND`).
    pub extra: Vec<String>,
    /// Variables set for it: `RUST_LOG` to quiet its per-job lines under load, say.
    pub env: Vec<(String, String)>,
}

impl NodeLaunch {
    /// A node serving the tiny model, with the node's defaults for the rest; `coordinator`
    /// is `https://…` pinned to `coordinator_cert`, or `http://…` without one.
    pub fn new(
        coordinator: &str,
        coordinator_cert: Option<&Path>,
        log: &str,
        key: &Path,
        coordinator_key: &Path,
    ) -> NodeLaunch {
        NodeLaunch {
            coordinator: coordinator.to_owned(),
            coordinator_cert: coordinator_cert.map(Path::to_owned),
            log: log.to_owned(),
            key: key.to_owned(),
            coordinator_key: coordinator_key.to_owned(),
            models: TINY.to_owned(),
            slots: 1,
            registry: None,
            drain_secs: None,
            extra: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Starts it as `name`; returns once it prints its node id (it has registered).
    pub fn spawn(&self, name: &str) -> (Proc, NodeId) {
        let mut cmd = node_command();
        cmd.arg("run")
            .args(["--coordinator", &self.coordinator])
            .args(["--log", &self.log])
            .arg("--key")
            .arg(&self.key)
            .args(["--models", &self.models])
            .args(["--tier", "1", "--slots", &self.slots.to_string()])
            .args(["--heartbeat-secs", "1"])
            .arg("--root")
            .arg(workspace_root())
            .arg("--coordinator-key")
            .arg(&self.coordinator_key);
        if let Some(cert) = &self.coordinator_cert {
            cmd.arg("--coordinator-cert").arg(cert);
        }
        if let Some(secs) = self.drain_secs {
            cmd.args(["--drain-secs", &secs.to_string()]);
        }
        if let Some(registry) = &self.registry {
            cmd.arg("--registry").arg(registry);
        }
        cmd.args(&self.extra);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let mut proc = Proc::spawn(name, cmd);
        let line = proc.wait_line("node_id ", STARTUP);
        let id = line
            .trim()
            .strip_prefix("node_id ")
            .unwrap()
            .parse()
            .unwrap_or_else(|e| panic!("{name}: {line:?}: {e}"));
        (proc, id)
    }
}
