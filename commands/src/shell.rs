//! The I/O shell around `decide`: recovers state from the log, stamps events with the time,
//! ids and sequence numbers, appends them, and only then applies them to its state.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use prlx_events::event::Sealed;
use prlx_events::log::{AnyWriter, LogError, LogUrl, Offset};
use prlx_events::seal::StorageKey;
use prlx_events::{Envelope, Event, Hash32, Header};
use prlx_projections::fold::FoldAtError;
use prlx_projections::snapshot::{catch_up, SnapshotError};
use prlx_projections::{CoordinatorState, Fold};
use rand::RngCore;
use uuid::Uuid;

use std::collections::BTreeMap;
use std::ops::Range;

use chrono::{DateTime, Utc};
use prlx_events::crypto::{
    grant_session, open_message, proof_of_execution, result_statement, seal_message,
    seal_to_public_key, verify, Direction, SessionKey,
};
use prlx_events::event::SessionKeyIssued;
use prlx_events::protocol::{DispatchBody, ResultReport};
use prlx_events::{NodeId, RequestId, TaskId};
use prlx_projections::scheduler::{next_assignment, Choice};
use rsa::RsaPrivateKey;

use crate::decide::{decide, Command, Completion, Dispatch, Rejection, Submission};
use crate::encoder::{Encoder, SideSender};

#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("recovering state from the log: {0}")]
    Recover(#[from] SnapshotError),
    #[error("the coordinator's own events do not fold (a bug): {0}")]
    Fold(#[from] FoldAtError),
    #[error("the coordinator decided an event its own fold refuses (a bug): {0}")]
    OwnFold(prlx_projections::FoldError),
    #[error("storage key {path}: {reason}")]
    Key { path: String, reason: String },
}

/// An append in flight: resolves with the offsets once durable.
pub type AppendFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Range<Offset>, LogError>> + Send>>;

/// A command decided and applied, its events on their way to the log.
pub struct Staged {
    /// What the command came to; offsets are filled in by [`Coordinator::settle`].
    pub outcome: Outcome,
    /// `None` when there was nothing to append.
    pub durable: Option<AppendFuture>,
}

impl std::fmt::Debug for Staged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staged")
            .field("outcome", &self.outcome)
            .field("appending", &self.durable.is_some())
            .finish()
    }
}

impl Outcome {
    /// The outcome with the offsets its append got.
    pub fn at(self, range: Range<Offset>) -> Outcome {
        match self {
            Outcome::Appended(_) => Outcome::Appended(range),
            Outcome::Rejected { rejection, .. } => Outcome::Rejected {
                rejection,
                offset: Some(range.start),
            },
            other => other,
        }
    }
}

/// What a command came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Events appended at these offsets.
    Appended(std::ops::Range<Offset>),
    /// Nothing to do (a retry of something already recorded).
    Unchanged,
    /// Refused; a refused submission is recorded at `offset`.
    Rejected {
        rejection: Rejection,
        offset: Option<Offset>,
    },
    /// Refused before `decide`, recording nothing: a node report that does not verify.
    Refused(String),
}

/// The coordinator's single writer.
#[derive(Debug)]
pub struct Coordinator {
    writer: std::sync::Arc<AnyWriter>,
    /// Encodes and appends what the coordinator stages, beside the actor.
    encoder: Encoder,
    fold: Fold<CoordinatorState>,
    producer: String,
    next_sequence: u64,
    key: StorageKey,
    /// Signs session grants; without it the coordinator takes requests but dispatches none.
    signing_key: Option<std::sync::Arc<RsaPrivateKey>>,
    /// Its public half as published (PEM), encoded once: housekeeping compares it with the
    /// log's after every command, and encoding it each time showed in the profile.
    signing_pem: Option<String>,
    /// Session keys opened from the log, by node.
    sessions: BTreeMap<NodeId, (u64, SessionKey)>,
    /// Set when nodes may lack a session grant (at start, after a registration).
    grants_pending: bool,
    /// The open sampling epoch's seed, opened from the log on first use.
    seed: Option<(u64, Hash32)>,
    /// Set while staging a command whose append takes a side ([`Coordinator::stage_riding`]);
    /// where to send it, once its append is handed over.
    riding: bool,
    rider: Option<SideSender>,
}

/// Why a node's result report was refused before it reached `decide` (it proves nothing
/// about the node, so it must not count against it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("unknown request {0}")]
    UnknownRequest(RequestId),
    #[error("unknown node {0}")]
    UnknownNode(NodeId),
    #[error("the node has no session for epoch {0}")]
    WrongEpoch(u64),
    /// Neither the signature nor the session-key seal proves the report is the node's: it
    /// may be anyone's, so it is not held against the node.
    #[error("the report's signature does not verify against the node's key, and its result does not open under the node's session key")]
    BadSignature,
}

/// The epoch of session grants. Key rotation (new epochs) is not implemented yet.
pub const SESSION_EPOCH: u64 = 1;

impl Coordinator {
    /// Opens the log as its only writer and folds it from the start.
    pub async fn open(
        url: &LogUrl,
        producer: impl Into<String>,
        key: StorageKey,
    ) -> Result<Self, ShellError> {
        let writer = std::sync::Arc::new(url.open_writer()?);
        let encoder = Encoder::start(writer.clone()).map_err(|e| LogError::Io {
            op: "start the encoder thread",
            path: Default::default(),
            source: std::sync::Arc::new(e),
        })?;
        let mut fold = Fold::default();
        catch_up(&mut fold, &writer.reader()).await?;
        let producer = producer.into();
        let next_sequence = fold.producers.get(&producer).map_or(0, |s| s + 1);
        Ok(Self {
            writer,
            encoder,
            fold,
            producer,
            next_sequence,
            key,
            signing_key: None,
            signing_pem: None,
            sessions: BTreeMap::new(),
            grants_pending: true,
            seed: None,
            riding: false,
            rider: None,
        })
    }

    /// Enables dispatch: session grants are signed with `key`.
    pub fn with_signing_key(mut self, key: RsaPrivateKey) -> Self {
        self.signing_pem = Some(prlx_events::crypto::public_key_pem(&key.to_public_key()));
        self.signing_key = Some(std::sync::Arc::new(key));
        self
    }

    /// The earliest deadline of a running dispatch, for the timer service.
    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        self.fold.state.sched.deadlines.first().map(|(at, _)| *at)
    }

    /// Everything the shell owes the log after a change, at time `now`: the coordinator's key,
    /// session grants for new nodes, expiries of passed deadlines, then dispatches until no
    /// waiting request has a free capable node. Each is one command through `decide`, so each
    /// decision sees the state the previous one left.
    pub async fn housekeeping(&mut self, now: DateTime<Utc>) -> Result<(), ShellError> {
        for durable in self.stage_housekeeping(now)? {
            let range = durable.await?;
            self.durable_through(&range);
        }
        Ok(())
    }

    /// [`Coordinator::housekeeping`] without waiting: the commands are decided and applied,
    /// and their appends are in flight, in order.
    pub fn stage_housekeeping(
        &mut self,
        now: DateTime<Utc>,
    ) -> Result<Vec<AppendFuture>, ShellError> {
        let mut pending = Vec::new();
        let mut stage = |this: &mut Self, command| -> Result<(), ShellError> {
            if let Some(durable) = this.stage(command)?.durable {
                pending.push(durable);
            }
            Ok(())
        };
        // An `Arc`: cloning the key itself copies its big integers on every command.
        let Some(signing) = self.signing_key.clone() else {
            return Ok(pending);
        };
        if self.fold.state.coordinator_key.as_deref() != self.signing_pem.as_deref() {
            let pem = self.signing_pem.clone().expect("set with the key");
            stage(
                self,
                Command::PublishCoordinatorKey {
                    public_key_pem: pem,
                },
            )?;
        }
        // Sampling epochs: reveal the seed of one that ended, open the next.
        let ended = match &self.fold.state.sampling.current {
            Some(open) if now >= open.ends_at => Some(open.epoch),
            Some(_) => None,
            None => Some(0),
        };
        if let Some(epoch) = ended {
            if epoch > 0 {
                let seed = self.sampling_seed()?.expect("an epoch is open");
                stage(self, Command::RevealSamplingSeed { epoch, seed })?;
            }
            let mut seed = [0u8; 32];
            rsa::rand_core::OsRng.fill_bytes(&mut seed);
            let seed = Hash32(seed);
            let next = self.fold.state.sampling.last_epoch + 1;
            let mut nonce = [0u8; prlx_events::seal::NONCE_LEN];
            rsa::rand_core::OsRng.fill_bytes(&mut nonce);
            let sealed_seed = self.key.seal(nonce, &seed_aad(next), &seed.0);
            stage(
                self,
                Command::CommitSamplingSeed {
                    epoch: next,
                    seed_hash: Hash32::of(&seed.0),
                    sealed_seed,
                },
            )?;
            self.seed = Some((next, seed));
        }
        if self.grants_pending {
            self.grants_pending = false;
            let needing: Vec<(NodeId, String)> = self
                .fold
                .state
                .nodes
                .iter()
                .filter(|(_, n)| n.session.is_none() && n.in_pool)
                .map(|(id, n)| (*id, n.public_key_pem.clone()))
                .collect();
            for (node, pem) in needing {
                if let Some(command) = self.grant(&signing, node, &pem) {
                    stage(self, command)?;
                }
            }
        }
        let timeout = self.fold.state.node_timeout();
        let silent: Vec<NodeId> = self
            .fold
            .state
            .sched
            .heartbeats
            .iter()
            .take_while(|(at, _)| *at + timeout <= now)
            .map(|(_, node)| *node)
            .collect();
        for node_id in silent {
            stage(self, Command::LapseNode { node_id, now })?;
        }
        let due: Vec<(DateTime<Utc>, RequestId)> = self
            .fold
            .state
            .sched
            .deadlines
            .iter()
            .take_while(|(at, _)| *at <= now)
            .copied()
            .collect();
        for (_, request) in due {
            let Some(a) = self.fold.state.requests[&request].running.clone() else {
                continue;
            };
            let release = self.release_for_client(request);
            stage(
                self,
                Command::ExpireDeadline {
                    request,
                    node: a.node,
                    attempt: a.attempt,
                    now,
                    release,
                },
            )?;
        }
        for command in crate::settle::due_settlements(&self.fold.state, now) {
            stage(self, Command::Settlement(command))?;
        }
        while let Some(choice) = next_assignment(&self.fold.state) {
            let Some(sealed_work) = self.seal_dispatch(&choice)? else {
                break;
            };
            stage(
                self,
                Command::Dispatch(Box::new(Dispatch {
                    choice,
                    sealed_work,
                    now,
                })),
            )?;
        }
        Ok(pending)
    }

    /// The open sampling epoch's seed, opened from its `SamplingSeedCommitted` on first use
    /// (after a restart); `None` when no epoch is open.
    fn sampling_seed(&mut self) -> Result<Option<Hash32>, ShellError> {
        let Some(open) = &self.fold.state.sampling.current else {
            return Ok(None);
        };
        if let Some((epoch, seed)) = self.seed {
            if epoch == open.epoch {
                return Ok(Some(seed));
            }
        }
        let epoch = open.epoch;
        let opened = open
            .sealed_seed
            .as_ref()
            .and_then(|sealed| self.key.open(&seed_aad(epoch), sealed).ok())
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .map(Hash32)
            .filter(|seed| Hash32::of(&seed.0) == open.seed_hash)
            .ok_or_else(|| ShellError::Key {
                path: "storage key".into(),
                reason: format!(
                    "the seed of sampling epoch {epoch} does not open with this storage key"
                ),
            })?;
        self.seed = Some((epoch, opened));
        Ok(Some(opened))
    }

    /// The request's one verified result, sealed to its client, for a command that may
    /// release it unconfirmed. `None` unless exactly one verified result is held.
    fn release_for_client(&self, request: RequestId) -> Option<Sealed> {
        let req = self.fold.state.requests.get(&request)?;
        let [only] = req.results.as_slice() else {
            return None;
        };
        let task = TaskId::whole(request);
        let result = self
            .key
            .open(&result_aad(task, only.attempt), &only.sealed_result)
            .ok()?;
        let client = prlx_events::crypto::parse_public_key_pem(&req.client_pubkey).ok()?;
        Some(Sealed(seal_to_public_key(
            &client,
            &request.0.to_be_bytes(),
            &result,
            &mut rsa::rand_core::OsRng,
        )))
    }

    /// Marks that a node may need a session grant (after a registration).
    pub fn note_registration(&mut self) {
        self.grants_pending = true;
    }

    /// A session grant for `node`, as the command that records it; the key is cached.
    fn grant(&mut self, signing: &RsaPrivateKey, node: NodeId, pem: &str) -> Option<Command> {
        let Ok(node_key) = prlx_events::crypto::parse_public_key_pem(pem) else {
            // Registration checks the key; a node whose key does not parse gets no work.
            return None;
        };
        let mut rng = rsa::rand_core::OsRng;
        let session = SessionKey::generate(&mut rng);
        let grant = grant_session(signing, &node_key, SESSION_EPOCH, &session, &mut rng);
        let mut nonce = [0u8; prlx_events::seal::NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let sealed = self.key.seal(
            nonce,
            &session_aad(node, SESSION_EPOCH),
            session.expose_bytes(),
        );
        self.sessions.insert(node, (SESSION_EPOCH, session));
        Some(Command::IssueSession(Box::new(SessionKeyIssued {
            node_id: node,
            epoch: SESSION_EPOCH,
            wrapped_key: Sealed(grant.wrapped_key),
            signature: Sealed(grant.signature),
            sealed_for_coordinator: sealed,
        })))
    }

    /// The session key of `node`, opened from the log on first use.
    fn session(&mut self, node: NodeId) -> Option<(u64, SessionKey)> {
        if let Some(s) = self.sessions.get(&node) {
            return Some(s.clone());
        }
        let (epoch, sealed) = self.fold.state.nodes.get(&node)?.session.clone()?;
        let bytes = self.key.open(&session_aad(node, epoch), &sealed).ok()?;
        let key = SessionKey::from_bytes(bytes.try_into().ok()?);
        self.sessions.insert(node, (epoch, key.clone()));
        Some((epoch, key))
    }

    /// The work for `choice`, sealed to its node; `None` when the node has no session yet.
    fn seal_dispatch(&mut self, choice: &Choice) -> Result<Option<Sealed>, ShellError> {
        let Some((epoch, session)) = self.session(choice.node) else {
            return Ok(None);
        };
        let req = &self.fold.state.requests[&choice.request];
        let prompt = self
            .open_payload(&req.payload_hash, &req.sealed_payload)
            .map_err(|e| ShellError::Key {
                path: "storage key".into(),
                reason: format!("payload of {} does not open: {e}", choice.request),
            })?;
        let body = DispatchBody {
            request_id: choice.request,
            model: req.model.clone(),
            prompt: String::from_utf8_lossy(&prompt).into_owned(),
            max_tokens: req.max_tokens,
        };
        let mut nonce = [0u8; prlx_events::seal::NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let task = TaskId::whole(choice.request);
        let json = serde_json::to_vec(&body).expect("plain data");
        Ok(Some(Sealed(seal_message(
            &session,
            Direction::Dispatch,
            task,
            choice.node,
            choice.attempt,
            epoch,
            nonce,
            &json,
        ))))
    }

    /// Checks a node's result report and builds the command that records it. A report whose
    /// signature does not verify is refused here: it may not come from the node at all, so it
    /// must not count against the node. A signed report whose result does not open or does not
    /// match its PoE is the node's fault and goes to `decide` as a failed commitment.
    pub fn completion(
        &mut self,
        node: NodeId,
        report: &ResultReport,
    ) -> Result<Command, ReportError> {
        let state = &self.fold.state;
        let req = state
            .requests
            .get(&report.request_id)
            .ok_or(ReportError::UnknownRequest(report.request_id))?;
        let view = state
            .nodes
            .get(&node)
            .ok_or(ReportError::UnknownNode(node))?;
        let node_key = prlx_events::crypto::parse_public_key_pem(&view.public_key_pem)
            .map_err(|_| ReportError::UnknownNode(node))?;
        let task = TaskId::whole(report.request_id);
        let statement = result_statement(report.request_id, task, node, report.attempt, report.poe);
        let signed = verify(&node_key, &statement, &report.signature);
        let client_pubkey = req.client_pubkey.clone();
        let (epoch, session) = self
            .session(node)
            .ok_or(ReportError::WrongEpoch(report.epoch))?;
        if epoch != report.epoch {
            return Err(ReportError::WrongEpoch(report.epoch));
        }
        let opened = open_message(
            &session,
            Direction::Result,
            task,
            node,
            report.attempt,
            epoch,
            &report.sealed_result,
        );
        // A report is the node's when either its signature or the session-key seal proves
        // it; only then may a defect count against the node. The checks in the order of
        // the protocol: the result opens, the signature is over this task, the PoE matches.
        let (commitment, result) = match (opened, signed) {
            (Err(_), false) => return Err(ReportError::BadSignature),
            (Err(_), true) => (
                Err("the result does not open under the node's session key".to_owned()),
                Vec::new(),
            ),
            (Ok(bytes), false) => (
                Err("the signature does not verify for this task (replayed or forged)".to_owned()),
                bytes,
            ),
            (Ok(bytes), true) if proof_of_execution(task, &bytes, node) != report.poe => (
                Err("PoE does not match SHA-256(task_id || result || node_id)".to_owned()),
                bytes,
            ),
            (Ok(bytes), true) => (Ok(()), bytes),
        };
        let mut rng = rsa::rand_core::OsRng;
        let mut nonce = [0u8; prlx_events::seal::NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let sealed_result = self
            .key
            .seal(nonce, &result_aad(task, report.attempt), &result);
        let sealed_for_client = match prlx_events::crypto::parse_public_key_pem(&client_pubkey) {
            Ok(client) if commitment.is_ok() => Sealed(seal_to_public_key(
                &client,
                &report.request_id.0.to_be_bytes(),
                &result,
                &mut rng,
            )),
            _ => self
                .release_for_client(report.request_id)
                .unwrap_or(Sealed(Vec::new())),
        };
        let seed = self.sampling_seed().ok().flatten();
        Ok(Command::CompleteTask(Box::new(Completion {
            request: report.request_id,
            node,
            attempt: report.attempt,
            sealed_result,
            poe: report.poe,
            signature: Sealed(report.signature.clone()),
            token_count: report.token_count,
            commitment,
            result_hash: Hash32::of(&result),
            sealed_for_client,
            seed,
        })))
    }

    pub fn state(&self) -> &CoordinatorState {
        &self.state_fold().state
    }

    pub fn state_fold(&self) -> &Fold<CoordinatorState> {
        &self.fold
    }

    pub fn writer(&self) -> &AnyWriter {
        &self.writer
    }

    /// Decides, appends, applies. A rejection is recorded too (without a request id).
    /// Decides, appends, waits until durable, and returns what the command came to.
    pub async fn execute(&mut self, command: Command) -> Result<Outcome, ShellError> {
        let staged = self.stage(command)?;
        self.settle(staged).await
    }

    /// Decides `command` and applies its events now; their append is started (ordered now)
    /// and completes when [`Staged::durable`] resolves. The caller must not report the outcome
    /// to anyone before that: until then it is not on the log.
    pub fn stage(&mut self, command: Command) -> Result<Staged, ShellError> {
        let audit = match &command {
            Command::SubmitRequest(s) => Some((s.idempotency_key.clone(), s.source.clone())),
            _ => None,
        };
        match decide(&self.fold.state, command) {
            Ok(events) if events.is_empty() => Ok(Staged {
                outcome: Outcome::Unchanged,
                durable: None,
            }),
            Ok(events) => Ok(Staged {
                outcome: Outcome::Appended(0..0),
                durable: Some(self.stage_events(events)?),
            }),
            // Refused submissions are part of the intake audit trail; other refusals (a
            // heartbeat from an unknown node, say) would only let anyone fill the log.
            Err(rejection) => match audit {
                Some((key, source)) => {
                    let durable = self.stage_events(vec![rejection.to_event(key, source)])?;
                    Ok(Staged {
                        outcome: Outcome::Rejected {
                            rejection,
                            offset: None,
                        },
                        durable: Some(durable),
                    })
                }
                None => Ok(Staged {
                    outcome: Outcome::Rejected {
                        rejection,
                        offset: None,
                    },
                    durable: None,
                }),
            },
        }
    }

    /// As [`Coordinator::stage`], for a command whose append carries a side computed from its
    /// outcome (Kafka's consume-transform-produce): the sender takes it, and must be used at
    /// once (the encoding thread waits for it). `None` when nothing was appended: append the
    /// side alone then ([`Coordinator::append_side`]).
    pub fn stage_riding(
        &mut self,
        command: Command,
    ) -> Result<(Staged, Option<SideSender>), ShellError> {
        self.riding = true;
        let staged = self.stage(command);
        self.riding = false;
        Ok((staged?, self.rider.take()))
    }

    /// Appends a side alone (records for other topics, consumer offsets), in order with the
    /// batches staged before it.
    pub fn append_side(&self, side: prlx_events::log::Side) -> AppendFuture {
        self.encoder.append_side(side)
    }

    /// Waits for a staged command's events to be durable and fills in their offsets.
    pub async fn settle(&mut self, staged: Staged) -> Result<Outcome, ShellError> {
        match staged.durable {
            None => Ok(staged.outcome),
            Some(durable) => {
                let range = durable.await?;
                self.durable_through(&range);
                Ok(staged.outcome.at(range))
            }
        }
    }

    /// Records that an append finished: the fold's offset catches up.
    pub fn durable_through(&mut self, range: &Range<Offset>) {
        if range.end > range.start {
            self.fold.advance(range.end - 1);
        }
    }

    /// Stamps `events`, applies them to the state and starts their append.
    fn stage_events(&mut self, events: Vec<Event>) -> Result<AppendFuture, ShellError> {
        // Log time never goes back: a decision made at `now` is stamped at or after it, and
        // at or after everything before it, so the fold's time checks (deadlines, lapses,
        // epoch ends) hold even if the wall clock steps back.
        let now = self
            .fold
            .state
            .log_time
            .map_or_else(Utc::now, |t| t.max(Utc::now()));
        let correlation = random_uuid();
        let mut staged = Vec::with_capacity(events.len());
        for event in events {
            let env = Envelope::new(
                Header {
                    event_id: random_uuid(),
                    recorded_at: now,
                    producer: self.producer.clone(),
                    sequence: self.next_sequence,
                    correlation_id: Some(correlation),
                    causation_id: None,
                },
                event,
            );
            self.fold.apply_own(&env).map_err(ShellError::OwnFold)?;
            self.next_sequence += 1;
            staged.push(env);
        }
        if std::mem::take(&mut self.riding) {
            let (append, side) = self.encoder.append_riding(staged);
            self.rider = Some(side);
            return Ok(append);
        }
        Ok(self.encoder.append(staged))
    }

    /// Hashes and seals a payload for a [`Submission`]: the plaintext goes no further.
    pub fn seal_payload(&self, payload: &[u8]) -> (Hash32, Sealed) {
        let hash = Hash32::of(payload);
        let mut nonce = [0u8; prlx_events::seal::NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        (hash, self.key.seal(nonce, &payload_aad(&hash), payload))
    }

    /// Opens a payload sealed by [`Coordinator::seal_payload`] (for re-dispatch).
    pub fn open_payload(
        &self,
        hash: &Hash32,
        sealed: &Sealed,
    ) -> Result<Vec<u8>, prlx_events::seal::SealError> {
        self.key.open(&payload_aad(hash), sealed)
    }

    /// Builds the command for a submission whose payload arrived as bytes.
    pub fn submission(&self, mut s: Submission, payload: &[u8]) -> Command {
        let (computed, sealed) = self.seal_payload(payload);
        s.computed_payload_hash = computed;
        s.sealed_payload = sealed;
        Command::SubmitRequest(Box::new(s))
    }
}

/// A v4 UUID from the thread's CSPRNG: `Uuid::new_v4` asks the kernel (a syscall) per id,
/// and the coordinator stamps several ids per request.
fn random_uuid() -> Uuid {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid()
}

fn session_aad(node: NodeId, epoch: u64) -> Vec<u8> {
    let mut aad = b"prlx/session/v1/".to_vec();
    aad.extend_from_slice(&node.to_bytes());
    aad.extend_from_slice(&epoch.to_be_bytes());
    aad
}

fn seed_aad(epoch: u64) -> Vec<u8> {
    let mut aad = b"prlx/sampling-seed/v1/".to_vec();
    aad.extend_from_slice(&epoch.to_be_bytes());
    aad
}

fn result_aad(task: TaskId, attempt: u32) -> Vec<u8> {
    let mut aad = b"prlx/result-at-rest/v1/".to_vec();
    aad.extend_from_slice(&task.to_bytes());
    aad.extend_from_slice(&attempt.to_be_bytes());
    aad
}

/// The AAD binds a sealed payload to its hash, so a blob cannot be swapped into another record.
fn payload_aad(hash: &Hash32) -> Vec<u8> {
    let mut aad = b"prlx/payload/v1/".to_vec();
    aad.extend_from_slice(&hash.0);
    aad
}

/// Reads a secret key file, refusing one that others can read; `None` when it does not exist.
fn read_secret(path: &Path) -> Result<Option<Vec<u8>>, ShellError> {
    let err = |reason: String| key_error(path, reason);
    match std::fs::read(path) {
        Ok(bytes) => {
            let mode = std::fs::metadata(path)
                .map_err(|e| err(e.to_string()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(err(format!(
                    "permissions {:o} let others read it; chmod 600",
                    mode & 0o777
                )));
            }
            Ok(Some(bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err(e.to_string())),
    }
}

/// Creates a secret key file with mode 0600 (never replacing one) and syncs it.
fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), ShellError> {
    let err = |e: std::io::Error| key_error(path, e.to_string());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(err)
}

fn key_error(path: &Path, reason: String) -> ShellError {
    ShellError::Key {
        path: path.display().to_string(),
        reason,
    }
}

/// Loads the 32-byte storage key at `path`, creating it (mode 0600) on first start. A key file
/// readable by others is refused: it opens every payload on the log.
pub fn load_or_create_key(path: &Path) -> Result<StorageKey, ShellError> {
    if let Some(bytes) = read_secret(path)? {
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| key_error(path, format!("{} bytes, expected 32", b.len())))?;
        return Ok(StorageKey::from_bytes(bytes));
    }
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    write_secret(path, &bytes)?;
    Ok(StorageKey::from_bytes(bytes))
}

/// Bits of a signing key created on first start.
pub const SIGNING_KEY_BITS: usize = 3072;

/// Loads the coordinator's RSA signing key (PKCS#8 PEM) at `path`, creating a
/// [`SIGNING_KEY_BITS`]-bit one (mode 0600) on first start. A key file readable by others is
/// refused.
pub fn load_or_create_signing_key(path: &Path) -> Result<RsaPrivateKey, ShellError> {
    use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
    if let Some(bytes) = read_secret(path)? {
        let pem = String::from_utf8(bytes).map_err(|_| key_error(path, "not UTF-8 PEM".into()))?;
        return RsaPrivateKey::from_pkcs8_pem(&pem)
            .map_err(|e| key_error(path, format!("not a PKCS#8 RSA key: {e}")));
    }
    let key = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, SIGNING_KEY_BITS)
        .map_err(|e| key_error(path, e.to_string()))?;
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| key_error(path, e.to_string()))?;
    write_secret(path, pem.as_bytes())?;
    Ok(key)
}
